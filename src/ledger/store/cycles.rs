//! Recurring cycles.

use chrono::{DateTime, Utc};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::cycle;
use crate::error::Result;
use crate::ledger::cycles::{Cycle, CycleStatus};
use crate::ledger::types::EndUserId;

fn cycle_model(cycle: &Cycle) -> cycle::ActiveModel {
    cycle::ActiveModel {
        id: Set(cycle.id),
        end_user_id: Set(cycle.end_user_id.to_string()),
        amount: Set(cycle.amount),
        validity_days: Set(cycle.validity_days),
        rollover_max: Set(cycle.rollover_max),
        status: Set(cycle.status.as_str().to_owned()),
        current_period_start: Set(cycle.current_period_start),
        current_period_end: Set(cycle.current_period_end),
        current_grant_id: Set(cycle.current_grant_id),
        created_at: Set(cycle.created_at),
        canceled_at: Set(cycle.canceled_at),
    }
}

pub async fn insert_cycle(txn: &impl ConnectionTrait, cycle: &Cycle) -> Result<()> {
    cycle::Entity::insert(cycle_model(cycle))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

pub async fn update_cycle(txn: &impl ConnectionTrait, cycle: &Cycle) -> Result<()> {
    use sea_orm::ActiveModelTrait;
    cycle_model(cycle).reset_all().update(txn).await?;
    Ok(())
}

pub async fn active_cycle(
    conn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
) -> Result<Option<Cycle>> {
    cycle::Entity::find()
        .filter(cycle::Column::EndUserId.eq(end_user_id.as_str()))
        .filter(cycle::Column::Status.eq(CycleStatus::Active.as_str()))
        .one(conn)
        .await?
        .map(Cycle::from_model)
        .transpose()
}

pub async fn latest_cycle(
    conn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
) -> Result<Option<Cycle>> {
    cycle::Entity::find()
        .filter(cycle::Column::EndUserId.eq(end_user_id.as_str()))
        .order_by_desc(cycle::Column::CreatedAt)
        .one(conn)
        .await?
        .map(Cycle::from_model)
        .transpose()
}

/// All cycles of an end user (for Creduse's per-cycle balances).
pub async fn cycles_of(conn: &impl ConnectionTrait, end_user_id: &EndUserId) -> Result<Vec<Cycle>> {
    cycle::Entity::find()
        .filter(cycle::Column::EndUserId.eq(end_user_id.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(Cycle::from_model)
        .collect()
}

/// The cycle a grant belongs to.
pub async fn cycle_granting(conn: &impl ConnectionTrait, grant_id: Uuid) -> Result<Option<Cycle>> {
    let Some(grant) = super::grants::find_grant(conn, grant_id).await? else {
        return Ok(None);
    };
    let Some(cycle_id) = grant.cycle_id else {
        return Ok(None);
    };
    cycle::Entity::find_by_id(cycle_id)
        .one(conn)
        .await?
        .map(Cycle::from_model)
        .transpose()
}

pub async fn end_users_with_due_cycles(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<EndUserId>> {
    use sea_orm::QuerySelect;
    let users = cycle::Entity::find()
        .select_only()
        .column(cycle::Column::EndUserId)
        .distinct()
        .filter(cycle::Column::Status.eq(CycleStatus::Active.as_str()))
        .filter(cycle::Column::CurrentPeriodEnd.lte(now))
        .limit(limit)
        .into_tuple::<String>()
        .all(conn)
        .await?;
    Ok(users.into_iter().map(EndUserId::from_stored).collect())
}

pub async fn next_period_end_after(
    conn: &impl ConnectionTrait,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    use sea_orm::QuerySelect;
    Ok(cycle::Entity::find()
        .select_only()
        .column(cycle::Column::CurrentPeriodEnd)
        .filter(cycle::Column::Status.eq(CycleStatus::Active.as_str()))
        .filter(cycle::Column::CurrentPeriodEnd.gt(after))
        .order_by_asc(cycle::Column::CurrentPeriodEnd)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?)
}
