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
use super::entry::Entry;
use super::grant::Grant;
use super::types::EndUserId;
use crate::entities::{
    account, grant, ledger_allocation, ledger_entry, stripe_payment, stripe_refund,
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
        .filter(grant::Column::Remaining.gt(0))
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
        .filter(grant::Column::Remaining.gt(0))
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

/// Lowers `remaining` of every allocated grant in one statement. The `remaining >= amount`
/// guard (and the table's CHECK) make a stale plan fail loudly instead of going negative.
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
    grant::Entity::insert(grant::ActiveModel {
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
        reference: Set(grant.payment.as_ref().map(|p| p.reference.clone())),
        payment_reference: Set(grant
            .payment
            .as_ref()
            .and_then(|p| p.payment_reference.clone())),
        paid_amount: Set(grant.payment.as_ref().and_then(|p| p.amount)),
        paid_currency: Set(grant.payment.as_ref().and_then(|p| p.currency.clone())),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Appends an entry and its allocations. Entries are only ever inserted.
pub async fn insert_entry(txn: &impl ConnectionTrait, entry: &Entry) -> Result<()> {
    ledger_entry::Entity::insert(ledger_entry::ActiveModel {
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
    })
    .exec_without_returning(txn)
    .await?;
    if !entry.allocations.is_empty() {
        ledger_allocation::Entity::insert_many(entry.allocations.iter().zip(0..).map(
            |(allocation, position)| ledger_allocation::ActiveModel {
                entry_id: Set(entry.id),
                grant_id: Set(allocation.grant_id),
                amount: Set(allocation.amount),
                position: Set(position),
            },
        ))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
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

/// Newest first, entries with `seq < before_seq` (all when `None`), at most `limit`.
pub async fn entries_before(
    conn: &impl ConnectionTrait,
    end_user_id: EndUserId,
    before_seq: Option<i64>,
    limit: u64,
) -> Result<Vec<Entry>> {
    use sea_orm::QuerySelect;
    let mut query = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::EndUserId.eq(end_user_id.0))
        .order_by_desc(ledger_entry::Column::Seq)
        .limit(limit);
    if let Some(before_seq) = before_seq {
        query = query.filter(ledger_entry::Column::Seq.lt(before_seq));
    }
    let models = query.all(conn).await?;
    attach_allocations(conn, models).await
}

/// Loads the allocations of many entries in one query.
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

/// The grant made for `reference` (a Checkout Session), if any.
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

/// The (oldest) grant bought with the payment `payment_reference` (a PaymentIntent), if any.
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

/// Locks the payment's row for the rest of the transaction, creating it on first use. Purchases
/// take it after the account lock; a refund whose purchase is not known yet takes only this
/// one, so the two always meet in one order.
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

/// Records what a refund report adds; call with the payment locked.
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

/// How much of the payment is known to be refunded: every report is a lower bound of the true
/// total, so the total is the larger of the cumulative amount a charge reported and the sum of
/// the distinct refunds seen.
pub async fn refunded_total(conn: &impl ConnectionTrait, payment_reference: &str) -> Result<i64> {
    let charge = stripe_payment::Entity::find_by_id(payment_reference.to_owned())
        .one(conn)
        .await?
        .map_or(0, |p| p.charge_refunded);
    let refunds: i64 = stripe_refund::Entity::find()
        .filter(stripe_refund::Column::PaymentIntentId.eq(payment_reference))
        .all(conn)
        .await?
        .iter()
        .map(|r| r.amount)
        .sum();
    Ok(std::cmp::max(refunds, charge))
}

/// Credits already clawed back from a grant.
pub async fn clawed_back(conn: &impl ConnectionTrait, grant_id: Uuid) -> Result<i64> {
    let entries = ledger_entry::Entity::find()
        .filter(ledger_entry::Column::GrantId.eq(grant_id))
        .filter(ledger_entry::Column::Kind.eq(super::EntryKind::Clawback.as_str()))
        .all(conn)
        .await?;
    Ok(entries.iter().map(|e| e.amount).sum())
}
