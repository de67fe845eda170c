//! Sums over an end user's history, computed by the database.
//!
//! A heavy end user has hundreds of thousands of entries. Loading them to add them up in Rust
//! costs memory and time that grow with the history, and sending their ids back as an `IN` list
//! fails outright past the bind-parameter limit (32,766 on SQLite, 65,535 on PostgreSQL). So
//! every sum here is one statement with `SUM … GROUP BY`, over indexed columns (see migration
//! `m20261201_000005_history_sums`), whose answer is one row per grant at most.
//!
//! `SUM` of a `BIGINT` is `NUMERIC` on PostgreSQL: every total is cast back to `BIGINT`, so both
//! databases answer the same type.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Cond, Expr, ExprTrait, Func, JoinType, Query, SelectStatement};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::balance::Balance;
use super::grant::Grant;
use super::types::{EndUserId, EntryKind};
use crate::entities::{
    grant, hold, hold_allocation, ledger_allocation, ledger_entry, stripe_payment, stripe_refund,
};
use crate::error::{Error, Result};

/// `CAST(COALESCE(SUM(expr), 0) AS BIGINT)`.
fn total(expr: impl Into<Expr>) -> Expr {
    Func::cast_as(
        Func::coalesce([Expr::from(Func::sum(expr)), Expr::val(0i64)]),
        Alias::new("BIGINT"),
    )
    .into()
}

async fn one_total(conn: &impl ConnectionTrait, select: &SelectStatement) -> Result<i64> {
    let row = conn
        .query_one(select)
        .await?
        .ok_or_else(|| Error::Internal("a SUM answered no row".into()))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// Rows of `(grant id, total)`.
async fn totals_by_grant(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<HashMap<Uuid, i64>> {
    let rows = conn.query_all(select).await?;
    rows.into_iter()
        .map(|row| {
            Ok((
                row.try_get_by_index::<Uuid>(0)?,
                row.try_get_by_index::<i64>(1)?,
            ))
        })
        .collect()
}

/// What entries of `kind` naming `grant_id` took from it (expiries, claw-backs).
async fn taken_by_kind(
    conn: &impl ConnectionTrait,
    grant_id: Uuid,
    kind: EntryKind,
) -> Result<i64> {
    let select = Query::select()
        .expr(total(Expr::col(ledger_entry::Column::Amount)))
        .from(ledger_entry::Entity)
        .and_where(Expr::col(ledger_entry::Column::GrantId).eq(grant_id))
        .and_where(Expr::col(ledger_entry::Column::Kind).eq(kind.as_str()))
        .to_owned();
    one_total(conn, &select).await
}

/// What expiries took from a grant.
pub async fn expired_amount(conn: &impl ConnectionTrait, grant_id: Uuid) -> Result<i64> {
    taken_by_kind(conn, grant_id, EntryKind::Expiry).await
}

/// What claw-backs took from a purchase's grant.
pub async fn clawed_back(conn: &impl ConnectionTrait, grant_id: Uuid) -> Result<i64> {
    taken_by_kind(conn, grant_id, EntryKind::Clawback).await
}

/// How much of a payment has been refunded: the larger of the cumulative amount a charge
/// reported and the sum of the distinct refunds seen.
pub async fn refunded_total(conn: &impl ConnectionTrait, payment_reference: &str) -> Result<i64> {
    let charge = stripe_payment::Entity::find_by_id(payment_reference.to_owned())
        .one(conn)
        .await?
        .map_or(0, |payment| payment.charge_refunded);
    let select = Query::select()
        .expr(total(Expr::col(stripe_refund::Column::Amount)))
        .from(stripe_refund::Entity)
        .and_where(Expr::col(stripe_refund::Column::PaymentIntentId).eq(payment_reference))
        .to_owned();
    Ok(std::cmp::max(one_total(conn, &select).await?, charge))
}

/// What the reversals of `debit_id` gave back so far, per grant (as positive amounts).
pub async fn returned_by_reversals(
    conn: &impl ConnectionTrait,
    debit_id: Uuid,
) -> Result<HashMap<Uuid, i64>> {
    let select = allocations_with_their_entries()
        .column((
            ledger_allocation::Entity,
            ledger_allocation::Column::GrantId,
        ))
        .expr(total(
            Expr::col((ledger_allocation::Entity, ledger_allocation::Column::Amount)).mul(-1),
        ))
        .and_where(
            Expr::col((ledger_entry::Entity, ledger_entry::Column::ReversedEntryId)).eq(debit_id),
        )
        .group_by_col((
            ledger_allocation::Entity,
            ledger_allocation::Column::GrantId,
        ))
        .to_owned();
    totals_by_grant(conn, &select).await
}

/// Allocations joined to the entries that made them, to select from.
fn allocations_with_their_entries() -> SelectStatement {
    Query::select()
        .from(ledger_allocation::Entity)
        .join(
            JoinType::InnerJoin,
            ledger_entry::Entity,
            Expr::col((ledger_entry::Entity, ledger_entry::Column::Id)).equals((
                ledger_allocation::Entity,
                ledger_allocation::Column::EntryId,
            )),
        )
        .to_owned()
}

/// Grants in effect at `at`: made by then, started, not yet expired, not voided by then.
/// (Whether anything remained of each is known once what was taken is.)
fn in_effect_at(at: DateTime<Utc>) -> Cond {
    Cond::all()
        .add(Expr::col((grant::Entity, grant::Column::CreatedAt)).lte(at))
        .add(Expr::col((grant::Entity, grant::Column::EffectiveAt)).lte(at))
        .add(
            Cond::any()
                .add(Expr::col((grant::Entity, grant::Column::ExpiresAt)).is_null())
                .add(Expr::col((grant::Entity, grant::Column::ExpiresAt)).gt(at)),
        )
        .add(
            Cond::any()
                .add(Expr::col((grant::Entity, grant::Column::VoidedAt)).is_null())
                .add(Expr::col((grant::Entity, grant::Column::VoidedAt)).gt(at)),
        )
}

/// The balance as it was at `at`, replayed from the ledger: each grant in effect at `at` holds
/// its amount less what entries made up to `at` took from it; what holds open at `at` had
/// earmarked is held. Three statements, whatever the length of the history.
pub async fn balance_at(
    conn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
    at: DateTime<Utc>,
) -> Result<Balance> {
    let mut grants = grant::Entity::find()
        .filter(grant::Column::EndUserId.eq(end_user_id.as_str()))
        .filter(in_effect_at(at))
        .all(conn)
        .await?
        .into_iter()
        .map(Grant::from_model)
        .collect::<Result<Vec<_>>>()?;

    let taken = allocations_with_their_entries()
        .column((
            ledger_allocation::Entity,
            ledger_allocation::Column::GrantId,
        ))
        .expr(total(Expr::col((
            ledger_allocation::Entity,
            ledger_allocation::Column::Amount,
        ))))
        .join(
            JoinType::InnerJoin,
            grant::Entity,
            Expr::col((grant::Entity, grant::Column::Id)).equals((
                ledger_allocation::Entity,
                ledger_allocation::Column::GrantId,
            )),
        )
        .and_where(Expr::col((grant::Entity, grant::Column::EndUserId)).eq(end_user_id.as_str()))
        .cond_where(in_effect_at(at))
        .and_where(Expr::col((ledger_entry::Entity, ledger_entry::Column::CreatedAt)).lte(at))
        .group_by_col((
            ledger_allocation::Entity,
            ledger_allocation::Column::GrantId,
        ))
        .to_owned();
    let taken = totals_by_grant(conn, &taken).await?;

    let held = Query::select()
        .column((hold_allocation::Entity, hold_allocation::Column::GrantId))
        .expr(total(Expr::col((
            hold_allocation::Entity,
            hold_allocation::Column::Amount,
        ))))
        .from(hold_allocation::Entity)
        .join(
            JoinType::InnerJoin,
            hold::Entity,
            Expr::col((hold::Entity, hold::Column::Id))
                .equals((hold_allocation::Entity, hold_allocation::Column::HoldId)),
        )
        .and_where(Expr::col((hold::Entity, hold::Column::EndUserId)).eq(end_user_id.as_str()))
        .and_where(Expr::col((hold::Entity, hold::Column::CreatedAt)).lte(at))
        .cond_where(
            Cond::any()
                .add(Expr::col((hold::Entity, hold::Column::ClosedAt)).is_null())
                .add(Expr::col((hold::Entity, hold::Column::ClosedAt)).gt(at)),
        )
        .group_by_col((hold_allocation::Entity, hold_allocation::Column::GrantId))
        .to_owned();
    let held = totals_by_grant(conn, &held).await?;

    for grant in &mut grants {
        grant.remaining = grant.amount - taken.get(&grant.id).copied().unwrap_or(0);
        grant.held = held.get(&grant.id).copied().unwrap_or(0);
        grant.voided_at = None;
    }
    let mut balance = Balance::from_grants(end_user_id.clone(), &grants, at);
    // Holds open at `at` may earmark grants that had expired by then: they count as held too.
    balance.held = held.values().sum();
    Ok(balance)
}
