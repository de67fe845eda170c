//! The money-critical statements, in one place and run on both databases by the tests.
//!
//! Every write to an end user's grants and ledger runs inside one transaction that starts with
//! `lock_account`. That upsert is a write, so it takes PostgreSQL's row lock on the account and
//! SQLite's database write lock before anything is read: writers to one end user queue there,
//! and each sees the committed result of the one before (DESIGN rule 5). Between the lock and the
//! commit a debit makes a fixed handful of round trips: lock, idempotency look-up, grants,
//! one batched update, entry, allocations, idempotency record.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{CaseStatement, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use super::burn_down::Allocation;
use super::cycles::{Cycle, CycleStatus};
use super::entry::Entry;
use super::grant::Grant;
use super::holds::{Hold, HoldStatus};
use super::types::EndUserId;
use crate::entities::{
    account, cycle, grant, hold, hold_allocation, ledger_allocation, ledger_entry, stripe_payment,
    stripe_refund,
};
use crate::error::{Error, Result};

/// Locks the end user's account for the rest of the transaction, creating it on first use, and
/// reserves the sequence number of the first entry this transaction will write (returned).
pub async fn lock_account_and_reserve_seq(
    txn: &impl ConnectionTrait,
    end_user_id: EndUserId,
    now: DateTime<Utc>,
) -> Result<i64> {
    let account = account::Entity::insert(account::ActiveModel {
        end_user_id: Set(end_user_id.0),
        last_seq: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(account::Column::EndUserId)
            .value(
                account::Column::LastSeq,
                Expr::col((account::Entity, account::Column::LastSeq)).add(1),
            )
            .value(account::Column::UpdatedAt, now)
            .to_owned(),
    )
    .exec_with_returning(txn)
    .await?;
    Ok(account.last_seq)
}

/// Records that entries up to `last_seq` exist, when a write appended more than the one entry
/// `lock_account_and_reserve_seq` reserved (due expiries before a debit).
pub async fn set_last_seq(
    txn: &impl ConnectionTrait,
    end_user_id: EndUserId,
    last_seq: i64,
) -> Result<()> {
    account::Entity::update_many()
        .col_expr(account::Column::LastSeq, Expr::val(last_seq))
        .filter(account::Column::EndUserId.eq(end_user_id.0))
        .exec(txn)
        .await?;
    Ok(())
}

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
        .into_tuple::<Uuid>()
        .all(conn)
        .await?;
    Ok(users.into_iter().map(EndUserId).collect())
}

/// The end user's grants that may still hold credits: not voided, something remaining.
/// Whether each is active is decided in `burn_down` against the transaction's clock.
pub async fn load_open_grants(
    conn: &impl ConnectionTrait,
    end_user_id: EndUserId,
) -> Result<Vec<Grant>> {
    grant::Entity::find()
        .filter(grant::Column::EndUserId.eq(end_user_id.0))
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
        end_user_id: Set(grant.end_user_id.0),
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

/// Appends an entry and its allocations. Entries are only ever inserted.
pub async fn insert_entry(txn: &impl ConnectionTrait, entry: &Entry) -> Result<()> {
    ledger_entry::Entity::insert(entry_row(entry))
        .exec_without_returning(txn)
        .await?;
    if !entry.allocations.is_empty() {
        ledger_allocation::Entity::insert_many(allocation_rows(entry))
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// An entry as a row to insert (its allocations are rows of their own).
pub fn entry_row(entry: &Entry) -> ledger_entry::ActiveModel {
    ledger_entry::ActiveModel {
        id: Set(entry.id),
        end_user_id: Set(entry.end_user_id.0),
        seq: Set(entry.seq),
        kind: Set(entry.kind.as_str().to_owned()),
        amount: Set(entry.amount),
        balance_after: Set(entry.balance_after),
        grant_id: Set(entry.grant_id),
        description: Set(entry.description.clone()),
        metadata: Set(entry.metadata.clone()),
        idempotency_key: Set(entry.idempotency_key.clone()),
        created_at: Set(entry.created_at),
        hold_id: Set(entry.hold_id),
        reversed_entry_id: Set(entry.reversed_entry_id),
    }
}

/// An entry's allocations as rows, numbered in the order the grants were drawn on.
pub fn allocation_rows(entry: &Entry) -> impl Iterator<Item = ledger_allocation::ActiveModel> {
    entry
        .allocations
        .iter()
        .zip(0..)
        .map(|(allocation, position)| ledger_allocation::ActiveModel {
            entry_id: Set(entry.id),
            grant_id: Set(allocation.grant_id),
            amount: Set(allocation.amount),
            position: Set(position),
        })
}

pub async fn find_grant(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Grant>> {
    grant::Entity::find_by_id(id)
        .one(conn)
        .await?
        .map(Grant::from_model)
        .transpose()
}

pub async fn find_entry(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Entry>> {
    let Some(model) = ledger_entry::Entity::find_by_id(id).one(conn).await? else {
        return Ok(None);
    };
    let mut entries = attach_allocations(conn, vec![model]).await?;
    Ok(entries.pop())
}

/// Loads the allocations of many entries in one query.
pub async fn entries_with_allocations(
    conn: &impl ConnectionTrait,
    models: Vec<ledger_entry::Model>,
) -> Result<Vec<Entry>> {
    attach_allocations(conn, models).await
}

async fn attach_allocations(
    conn: &impl ConnectionTrait,
    models: Vec<ledger_entry::Model>,
) -> Result<Vec<Entry>> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let allocations = ledger_allocation::Entity::find()
        .filter(ledger_allocation::Column::EntryId.is_in(models.iter().map(|m| m.id)))
        .all(conn)
        .await?;
    models
        .into_iter()
        .map(|model| {
            let mut own: Vec<&ledger_allocation::Model> = allocations
                .iter()
                .filter(|a| a.entry_id == model.id)
                .collect();
            own.sort_by_key(|a| a.position);
            let own = own
                .into_iter()
                .map(|a| Allocation {
                    grant_id: a.grant_id,
                    amount: a.amount,
                })
                .collect();
            Entry::from_model(model, own)
        })
        .collect()
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

pub async fn insert_hold(
    txn: &impl ConnectionTrait,
    hold: &Hold,
    earmarks: &[Allocation],
) -> Result<()> {
    hold::Entity::insert(hold::ActiveModel {
        id: Set(hold.id),
        end_user_id: Set(hold.end_user_id.0),
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
    end_user_id: EndUserId,
    now: DateTime<Utc>,
) -> Result<Vec<Hold>> {
    hold::Entity::find()
        .filter(hold::Column::EndUserId.eq(end_user_id.0))
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
        .into_tuple::<Uuid>()
        .all(conn)
        .await?;
    Ok(users.into_iter().map(EndUserId).collect())
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

fn cycle_model(cycle: &Cycle) -> cycle::ActiveModel {
    cycle::ActiveModel {
        id: Set(cycle.id),
        end_user_id: Set(cycle.end_user_id.0),
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
    end_user_id: EndUserId,
) -> Result<Option<Cycle>> {
    cycle::Entity::find()
        .filter(cycle::Column::EndUserId.eq(end_user_id.0))
        .filter(cycle::Column::Status.eq(CycleStatus::Active.as_str()))
        .one(conn)
        .await?
        .map(Cycle::from_model)
        .transpose()
}

pub async fn latest_cycle(
    conn: &impl ConnectionTrait,
    end_user_id: EndUserId,
) -> Result<Option<Cycle>> {
    cycle::Entity::find()
        .filter(cycle::Column::EndUserId.eq(end_user_id.0))
        .order_by_desc(cycle::Column::CreatedAt)
        .one(conn)
        .await?
        .map(Cycle::from_model)
        .transpose()
}

/// All cycles of an end user (for Creduse's per-cycle balances).
pub async fn cycles_of(conn: &impl ConnectionTrait, end_user_id: EndUserId) -> Result<Vec<Cycle>> {
    cycle::Entity::find()
        .filter(cycle::Column::EndUserId.eq(end_user_id.0))
        .all(conn)
        .await?
        .into_iter()
        .map(Cycle::from_model)
        .collect()
}

/// The cycle a grant belongs to.
pub async fn cycle_granting(conn: &impl ConnectionTrait, grant_id: Uuid) -> Result<Option<Cycle>> {
    let Some(grant) = find_grant(conn, grant_id).await? else {
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
        .into_tuple::<Uuid>()
        .all(conn)
        .await?;
    Ok(users.into_iter().map(EndUserId).collect())
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

/// Whether the end user has a ledger entry. (A batch that locks a new end user's account and
/// then refuses every write leaves the account row behind with `last_seq` 0.)
pub async fn account_exists(conn: &impl ConnectionTrait, end_user_id: EndUserId) -> Result<bool> {
    Ok(account::Entity::find_by_id(end_user_id.0)
        .one(conn)
        .await?
        .is_some_and(|account| account.last_seq > 0))
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

pub async fn lock_payment(
    txn: &impl ConnectionTrait,
    payment_reference: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    stripe_payment::Entity::insert(stripe_payment::ActiveModel {
        payment_intent_id: Set(payment_reference.to_owned()),
        charge_refunded: Set(0),
        currency: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(stripe_payment::Column::PaymentIntentId)
            .value(stripe_payment::Column::UpdatedAt, now)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// A refunded amount as a payment reports it, under `lock_payment`.
pub struct RefundReport<'a> {
    pub payment_reference: &'a str,
    pub currency: &'a str,
    /// Individual refunds `(id, amount)`; each id counts once, however often it is reported.
    pub refunds: &'a [(String, i64)],
    /// The payment's cumulative refunded amount (Stripe's `charge.amount_refunded`).
    pub cumulative: Option<i64>,
    /// Who reported it (a Stripe event id), kept with each refund.
    pub reported_by: &'a str,
}

pub async fn record_refunds(
    txn: &impl ConnectionTrait,
    report: &RefundReport<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    if let Some(cumulative) = report.cumulative {
        stripe_payment::Entity::update_many()
            .col_expr(
                stripe_payment::Column::ChargeRefunded,
                Expr::val(cumulative),
            )
            .col_expr(stripe_payment::Column::Currency, Expr::val(report.currency))
            .filter(stripe_payment::Column::PaymentIntentId.eq(report.payment_reference))
            .filter(stripe_payment::Column::ChargeRefunded.lt(cumulative))
            .exec(txn)
            .await?;
    }
    for (refund_id, amount) in report.refunds {
        stripe_refund::Entity::insert(stripe_refund::ActiveModel {
            refund_id: Set(refund_id.clone()),
            payment_intent_id: Set(report.payment_reference.to_owned()),
            amount: Set(*amount),
            currency: Set(report.currency.to_owned()),
            event_id: Set(report.reported_by.to_owned()),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(stripe_refund::Column::RefundId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// When the end user's newest entry was made.
pub async fn latest_entry_at(
    conn: &impl ConnectionTrait,
    end_user_id: EndUserId,
) -> Result<Option<DateTime<Utc>>> {
    use sea_orm::QuerySelect;
    Ok(ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::CreatedAt)
        .filter(ledger_entry::Column::EndUserId.eq(end_user_id.0))
        .order_by_desc(ledger_entry::Column::Seq)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?)
}
