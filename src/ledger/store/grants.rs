//! Grants: loading an end user's open grants, taking credits from them, earmarks, voids.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::grant;
use crate::error::{Error, Result};
use crate::ledger::burn_down::Allocation;
use crate::ledger::grant::Grant;
use crate::ledger::types::EndUserId;

/// The soonest expiry after `after` among grants that still hold credits.
pub async fn next_expiry_after(
    conn: &impl ConnectionTrait,
    after: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    use sea_orm::QuerySelect;
    let next = grant::Entity::find()
        .select_only()
        .column(grant::Column::ExpiresAt)
        .filter(Expr::col(grant::Column::Remaining).gt(Expr::col(grant::Column::Held)))
        .filter(grant::Column::VoidedAt.is_null())
        .filter(grant::Column::ExpiresAt.gt(after))
        .order_by_asc(grant::Column::ExpiresAt)
        .limit(1)
        .into_tuple::<Option<DateTime<Utc>>>()
        .one(conn)
        .await?;
    Ok(next.flatten())
}

/// End users holding credits that expired at or before `now` without an expiry entry yet.
pub async fn end_users_with_due_expiries(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<EndUserId>> {
    use sea_orm::QuerySelect;
    let users = grant::Entity::find()
        .select_only()
        .column(grant::Column::EndUserId)
        .distinct()
        .filter(Expr::col(grant::Column::Remaining).gt(Expr::col(grant::Column::Held)))
        .filter(grant::Column::VoidedAt.is_null())
        .filter(grant::Column::ExpiresAt.lte(now))
        .limit(limit)
        .into_tuple::<String>()
        .all(conn)
        .await?;
    Ok(users.into_iter().map(EndUserId::from_stored).collect())
}

/// The end user's grants that may still hold credits: not voided, something remaining.
/// Whether each is active is decided in `burn_down` against the transaction's clock.
pub async fn load_open_grants(
    conn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
) -> Result<Vec<Grant>> {
    grant::Entity::find()
        .filter(grant::Column::EndUserId.eq(end_user_id.as_str()))
        .filter(grant::Column::Remaining.gt(0))
        .filter(grant::Column::VoidedAt.is_null())
        .all(conn)
        .await?
        .into_iter()
        .map(Grant::from_model)
        .collect()
}

/// Lowers `remaining` of every allocated grant in one statement (negative amounts give
/// credits back). The `remaining >= amount` guard (and the table's CHECKs) make a stale plan
/// fail loudly instead of going negative.
pub async fn take_from_grants(
    txn: &impl ConnectionTrait,
    allocations: &[Allocation],
) -> Result<()> {
    if allocations.is_empty() {
        return Ok(());
    }
    let mut new_remaining = CaseStatement::new();
    let mut enough_left = Expr::val(false);
    for allocation in allocations {
        let is_this_grant = Expr::col(grant::Column::Id).eq(allocation.grant_id);
        new_remaining = new_remaining.case(
            is_this_grant.clone(),
            Expr::col(grant::Column::Remaining).sub(allocation.amount),
        );
        enough_left = enough_left
            .or(is_this_grant.and(Expr::col(grant::Column::Remaining).gte(allocation.amount)));
    }
    let updated = grant::Entity::update_many()
        .col_expr(
            grant::Column::Remaining,
            new_remaining
                .finally(Expr::col(grant::Column::Remaining))
                .into(),
        )
        .filter(enough_left)
        .exec(txn)
        .await?;
    if updated.rows_affected != allocations.len() as u64 {
        return Err(Error::Internal(format!(
            "burn-down plan was stale: {} of {} grants updated",
            updated.rows_affected,
            allocations.len()
        )));
    }
    Ok(())
}

pub async fn insert_grant(txn: &impl ConnectionTrait, grant: &Grant) -> Result<()> {
    grant::Entity::insert(grant_row(grant))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// A grant as a row to insert.
pub fn grant_row(grant: &Grant) -> grant::ActiveModel {
    grant::ActiveModel {
        id: Set(grant.id),
        end_user_id: Set(grant.end_user_id.to_string()),
        amount: Set(grant.amount),
        remaining: Set(grant.remaining),
        source: Set(grant.source.as_str().to_owned()),
        effective_at: Set(grant.effective_at),
        expires_at: Set(grant.expires_at),
        priority: Set(grant.priority),
        description: Set(grant.description.clone()),
        metadata: Set(grant.metadata.clone()),
        created_at: Set(grant.created_at),
        voided_at: Set(grant.voided_at),
        held: Set(grant.held),
        cycle_id: Set(grant.cycle_id),
        reference: Set(grant.payment.as_ref().map(|p| p.reference.clone())),
        payment_reference: Set(grant
            .payment
            .as_ref()
            .and_then(|p| p.payment_reference.clone())),
        paid_amount: Set(grant.payment.as_ref().and_then(|p| p.amount)),
        paid_currency: Set(grant.payment.as_ref().and_then(|p| p.currency.clone())),
    }
}

pub async fn find_grant(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Grant>> {
    grant::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(Grant::from_model)
        .transpose()
}

/// Changes `held` of several grants by the given amounts, in one statement.
pub async fn change_held(txn: &impl ConnectionTrait, changes: &[Allocation]) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut new_held = CaseStatement::new();
    for change in changes {
        new_held = new_held.case(
            Expr::col(grant::Column::Id).eq(change.grant_id),
            Expr::col(grant::Column::Held).add(change.amount),
        );
    }
    let updated = grant::Entity::update_many()
        .col_expr(
            grant::Column::Held,
            new_held.finally(Expr::col(grant::Column::Held)).into(),
        )
        .filter(grant::Column::Id.is_in(changes.iter().map(|c| c.grant_id)))
        .exec(txn)
        .await?;
    if updated.rows_affected != changes.len() as u64 {
        return Err(Error::Internal("a held grant is missing".into()));
    }
    Ok(())
}

pub async fn mark_voided(
    txn: &impl ConnectionTrait,
    grant_id: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    grant::Entity::update_many()
        .col_expr(grant::Column::VoidedAt, Expr::val(now))
        .filter(grant::Column::Id.eq(grant_id))
        .filter(grant::Column::VoidedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

pub async fn find_grant_by_reference(
    conn: &impl ConnectionTrait,
    reference: &str,
) -> Result<Option<Grant>> {
    grant::Entity::find()
        .filter(grant::Column::Reference.eq(reference))
        .one(conn)
        .await?
        .map(Grant::from_model)
        .transpose()
}

pub async fn find_grant_by_payment_reference(
    conn: &impl ConnectionTrait,
    payment_reference: &str,
) -> Result<Option<Grant>> {
    grant::Entity::find()
        .filter(grant::Column::PaymentReference.eq(payment_reference))
        .order_by_asc(grant::Column::CreatedAt)
        .order_by_asc(grant::Column::Id)
        .one(conn)
        .await?
        .map(Grant::from_model)
        .transpose()
}
