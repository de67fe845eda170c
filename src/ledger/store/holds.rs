//! Holds and the grants they earmark.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::{hold, hold_allocation};
use crate::error::Result;
use crate::ledger::burn_down::Allocation;
use crate::ledger::holds::{Hold, HoldStatus};
use crate::ledger::types::EndUserId;

pub async fn insert_hold(
    txn: &impl ConnectionTrait,
    hold: &Hold,
    earmarks: &[Allocation],
) -> Result<()> {
    hold::Entity::insert(hold::ActiveModel {
        id: Set(hold.id),
        end_user_id: Set(hold.end_user_id.to_string()),
        amount: Set(hold.amount),
        captured_amount: Set(hold.captured_amount),
        status: Set(hold.status.as_str().to_owned()),
        description: Set(hold.description.clone()),
        expires_at: Set(hold.expires_at),
        created_at: Set(hold.created_at),
        closed_at: Set(hold.closed_at),
    })
    .exec_without_returning(txn)
    .await?;
    hold_allocation::Entity::insert_many(earmarks.iter().zip(0..).map(|(earmark, position)| {
        hold_allocation::ActiveModel {
            hold_id: Set(hold.id),
            grant_id: Set(earmark.grant_id),
            amount: Set(earmark.amount),
            position: Set(position),
        }
    }))
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

pub async fn find_hold(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Hold>> {
    hold::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(Hold::from_model)
        .transpose()
}

/// The grants a hold earmarks, in the order they were drawn on.
pub async fn hold_allocations(
    conn: &impl ConnectionTrait,
    hold_id: Uuid,
) -> Result<Vec<hold_allocation::Model>> {
    Ok(hold_allocation::Entity::find()
        .filter(hold_allocation::Column::HoldId.eq(hold_id))
        .order_by_asc(hold_allocation::Column::Position)
        .all(conn)
        .await?)
}

pub async fn close_hold(
    txn: &impl ConnectionTrait,
    hold_id: Uuid,
    status: HoldStatus,
    captured: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    hold::Entity::update_many()
        .col_expr(hold::Column::Status, Expr::val(status.as_str()))
        .col_expr(hold::Column::CapturedAmount, Expr::val(captured))
        .col_expr(hold::Column::ClosedAt, Expr::val(now))
        .filter(hold::Column::Id.eq(hold_id))
        .exec(txn)
        .await?;
    Ok(())
}

/// The end user's open holds past their deadline.
pub async fn due_holds(
    conn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
    now: DateTime<Utc>,
) -> Result<Vec<Hold>> {
    hold::Entity::find()
        .filter(hold::Column::EndUserId.eq(end_user_id.as_str()))
        .filter(hold::Column::Status.eq(HoldStatus::Open.as_str()))
        .filter(hold::Column::ExpiresAt.lte(now))
        .order_by_asc(hold::Column::ExpiresAt)
        .all(conn)
        .await?
        .into_iter()
        .map(Hold::from_model)
        .collect()
}

pub async fn end_users_with_due_holds(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<EndUserId>> {
    use sea_orm::QuerySelect;
    let users = hold::Entity::find()
        .select_only()
        .column(hold::Column::EndUserId)
        .distinct()
        .filter(hold::Column::Status.eq(HoldStatus::Open.as_str()))
        .filter(hold::Column::ExpiresAt.lte(now))
        .limit(limit)
        .into_tuple::<String>()
        .all(conn)
        .await?;
    Ok(users.into_iter().map(EndUserId::from_stored).collect())
}

pub async fn next_hold_deadline_after(
    conn: &impl ConnectionTrait,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    use sea_orm::QuerySelect;
    Ok(hold::Entity::find()
        .select_only()
        .column(hold::Column::ExpiresAt)
        .filter(hold::Column::Status.eq(HoldStatus::Open.as_str()))
        .filter(hold::Column::ExpiresAt.gt(after))
        .order_by_asc(hold::Column::ExpiresAt)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?)
}
