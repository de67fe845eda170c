//! Purchases and refunds: a grant for a paid purchase (at most one per reference), and
//! claw-backs when its payment is refunded.
//!
//! Both writes carry a `Receipt`: the record of whatever asked for them (a Stripe event). It is
//! looked up under the write's lock and stored in the write's transaction, so a redelivery finds
//! it and changes nothing, and a receipt never exists without its effect (or the reverse).
//!
//! **Claw-back rule.** A refund takes back `floor(credits × refunded ÷ paid)` credits in total,
//! where `refunded` is everything refunded of the payment so far and `paid` what the purchase
//! cost (a full refund: all the credits). What earlier claw-backs took is subtracted, and never
//! more than what remains of the purchase's grant is taken: credits already spent or expired
//! stay spent or expired.
//!
//! **Order.** A refund may arrive before its purchase. It is then recorded against the payment
//! and taken back in the same transaction as the purchase's grant when that lands. The payment
//! row (`store::lock_payment`) orders the two: a purchase locks the account, then the payment;
//! a refund whose purchase is unknown locks only the payment and looks again.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use super::account_write::AccountWrite;
use super::aggregates;
use super::balance::Balance;
use super::entry::Entry;
use super::grant::{Grant, Payment};
use super::outbound::{self, EventType};
use super::store::{self, RefundReport};
use super::types::{Amount, EndUserId, EntryKind, GrantSource, MAX_CREDITS, MAX_VALIDITY_DAYS};
use super::{Ledger, burn_down::Allocation, retry_once_on_unique_violation};
use crate::error::{Error, Result};

/// The record of what asked for a purchase or refund write, stored with it.
#[async_trait]
pub trait Receipt: Send + Sync {
    /// Looked up under the write's lock, before anything is written: true when this request
    /// was already carried out, so the write must change nothing.
    async fn already_processed(&self, txn: &DatabaseTransaction) -> Result<bool>;

    /// Stored in the write's transaction: it commits with the write's entries, or not at all.
    async fn record(&self, txn: &DatabaseTransaction, recorded: &Recorded) -> Result<()>;
}

/// What a purchase or refund write did, for its receipt.
// One short-lived value per webhook delivery: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Recorded {
    /// The purchase's grant, and the claw-back of refunds that arrived before it.
    Granted {
        grant: Grant,
        entry: Entry,
        clawback: Option<Entry>,
        /// Refunds of the payment were already known when the purchase landed.
        had_early_refunds: bool,
    },
    /// The reference already has its grant (an earlier event granted it).
    AlreadyGranted { grant: Grant },
    /// Credits were taken back from the purchase's grant.
    ClawedBack { grant: Grant, entry: Entry },
    /// The refund is recorded, but there was nothing (more) to take.
    NothingToClawBack {
        grant: Grant,
        /// The refunds were already clawed back in full (a refund reported twice).
        already_clawed_back: bool,
    },
    /// No grant for this payment yet: the refund is taken back when the purchase lands.
    RefundWaiting { payment_reference: String },
}

/// A purchase to grant.
#[derive(Clone, Debug)]
pub struct PurchaseRequest {
    pub end_user_id: EndUserId,
    pub credits: i64,
    /// From now; `None`: never expires.
    pub validity_days: Option<i64>,
    pub payment: Payment,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
}

#[derive(Clone, Debug)]
pub enum PurchaseOutcome {
    /// The receipt was already stored: nothing changed.
    Duplicate,
    Done(Box<Recorded>),
}

/// A refund of a payment, as reported.
#[derive(Clone, Debug)]
pub struct RefundRequest {
    pub payment_reference: String,
    pub currency: String,
    /// Individual refunds `(id, amount in minor units)`, each counted once per id.
    pub refunds: Vec<(String, i64)>,
    /// The payment's cumulative refunded amount, when the report gives it.
    pub cumulative: Option<i64>,
    /// Who reported it (a Stripe event id).
    pub reported_by: String,
}

/// Credits to take back in total when `refunded` of `paid` minor units were refunded.
pub fn clawback_target(credits: i64, paid: Option<i64>, refunded: i64) -> i64 {
    if refunded <= 0 {
        return 0;
    }
    match paid {
        Some(paid) if paid > 0 && refunded < paid => {
            (i128::from(credits) * i128::from(refunded) / i128::from(paid)) as i64
        }
        // Refunded in full, or a payment of unknown (or no) amount refunded at all.
        _ => credits,
    }
}

impl Ledger {
    /// Grants a purchase once per `payment.reference`: a second request for the same
    /// reference (another event about the same Checkout Session) records `AlreadyGranted`.
    pub async fn grant_purchase(
        &self,
        request: &PurchaseRequest,
        receipt: &dyn Receipt,
    ) -> Result<PurchaseOutcome> {
        let credits = Amount::parse("credits", request.credits)?;
        if let Some(days) = request.validity_days
            && !(1..=MAX_VALIDITY_DAYS).contains(&days)
        {
            return Err(Error::bad_input(
                "validityDays",
                format!("must be from 1 to {MAX_VALIDITY_DAYS}"),
            ));
        }
        retry_once_on_unique_violation(|| self.try_grant_purchase(request, credits, receipt)).await
    }

    async fn try_grant_purchase(
        &self,
        request: &PurchaseRequest,
        credits: Amount,
        receipt: &dyn Receipt,
    ) -> Result<PurchaseOutcome> {
        let user = &request.end_user_id;
        let mut write = self.begin_write(user).await?;
        if receipt.already_processed(&write.txn).await? {
            write.txn.rollback().await?;
            return Ok(PurchaseOutcome::Duplicate);
        }
        if let Some(grant) =
            store::find_grant_by_reference(&write.txn, &request.payment.reference).await?
        {
            let recorded = Recorded::AlreadyGranted { grant };
            receipt.record(&write.txn, &recorded).await?;
            write.commit_even_if_empty(&self.events).await?;
            return Ok(PurchaseOutcome::Done(Box::new(recorded)));
        }
        if let Some(payment_reference) = &request.payment.payment_reference {
            store::lock_payment(&write.txn, payment_reference, self.clock.now()).await?;
        }
        write.load().await?;
        if let Err(refusal) = check_credits_cap(&write.grants, credits) {
            return write.refuse(&self.events, refusal).await;
        }
        let grant = purchase_grant(request, credits, write.now);
        write.grants.push(grant.clone());
        let balance_after = Balance::from_grants(user.clone(), &write.grants, write.now).available;
        let entry = purchase_entry(&grant, write.take_seq(), balance_after);
        store::insert_grant(&write.txn, &grant).await?;
        store::insert_entry(&write.txn, &entry).await?;
        write.note_entry(&entry);

        let (clawback, had_early_refunds) =
            claw_back_early_refunds(&mut write, grant.id, &request.payment).await?;
        let grant = write
            .grants
            .iter()
            .find(|g| g.id == grant.id)
            .cloned()
            .expect("the new grant is loaded");
        let expires_at = grant.expires_at;
        let recorded = Recorded::Granted {
            grant,
            entry,
            clawback,
            had_early_refunds,
        };
        receipt.record(&write.txn, &recorded).await?;
        write.commit(&self.events).await?;
        if let Some(expires_at) = expires_at {
            self.expiry_alarm.falls_due(expires_at);
        }
        Ok(PurchaseOutcome::Done(Box::new(recorded)))
    }

    /// Records a refund and takes back the credits it refunds from the purchase's grant, once
    /// per refund id; before the purchase is known, records it to be taken back then.
    pub async fn refund_purchase(
        &self,
        request: &RefundRequest,
        receipt: &dyn Receipt,
    ) -> Result<PurchaseOutcome> {
        if request.refunds.iter().any(|(_, amount)| *amount < 0)
            || request.cumulative.is_some_and(|amount| amount < 0)
        {
            return Err(Error::bad_input("amount", "refunds cannot be negative"));
        }
        retry_once_on_unique_violation(|| self.try_refund_purchase(request, receipt)).await
    }

    async fn try_refund_purchase(
        &self,
        request: &RefundRequest,
        receipt: &dyn Receipt,
    ) -> Result<PurchaseOutcome> {
        let report = RefundReport {
            payment_reference: &request.payment_reference,
            currency: &request.currency,
            refunds: &request.refunds,
            cumulative: request.cumulative,
            reported_by: &request.reported_by,
        };
        // Twice at most: a purchase may land between the first look and the payment lock.
        for _ in 0..2 {
            if let Some(grant) =
                store::find_grant_by_payment_reference(&self.db, &request.payment_reference).await?
            {
                return self.claw_back_refund(grant, &report, receipt).await;
            }
            let txn = self.db.begin().await?;
            let now = self.clock.now();
            store::lock_payment(&txn, &request.payment_reference, now).await?;
            if store::find_grant_by_payment_reference(&txn, &request.payment_reference)
                .await?
                .is_some()
            {
                txn.rollback().await?;
                continue;
            }
            if receipt.already_processed(&txn).await? {
                txn.rollback().await?;
                return Ok(PurchaseOutcome::Duplicate);
            }
            store::record_refunds(&txn, &report, now).await?;
            let recorded = Recorded::RefundWaiting {
                payment_reference: request.payment_reference.clone(),
            };
            receipt.record(&txn, &recorded).await?;
            txn.commit().await?;
            return Ok(PurchaseOutcome::Done(Box::new(recorded)));
        }
        Err(Error::Internal(format!(
            "the purchase of payment {} kept changing under a refund",
            request.payment_reference
        )))
    }

    async fn claw_back_refund(
        &self,
        grant: Grant,
        report: &RefundReport<'_>,
        receipt: &dyn Receipt,
    ) -> Result<PurchaseOutcome> {
        let mut write = self.begin_write(&grant.end_user_id).await?;
        if receipt.already_processed(&write.txn).await? {
            write.txn.rollback().await?;
            return Ok(PurchaseOutcome::Duplicate);
        }
        store::lock_payment(&write.txn, report.payment_reference, self.clock.now()).await?;
        if let Some(paid_currency) = grant.payment.as_ref().and_then(|p| p.currency.as_deref())
            && !paid_currency.eq_ignore_ascii_case(report.currency)
        {
            return Err(Error::bad_input(
                "currency",
                format!(
                    "the refund is in {} but the purchase was paid in {paid_currency}",
                    report.currency
                ),
            ));
        }
        let refunded_before =
            aggregates::refunded_total(&write.txn, report.payment_reference).await?;
        store::record_refunds(&write.txn, report, self.clock.now()).await?;
        write.load().await?;
        let refunded = aggregates::refunded_total(&write.txn, report.payment_reference).await?;
        let before = aggregates::clawed_back(&write.txn, grant.id).await?;
        let entry = claw_back(&mut write, grant.id, report.payment_reference, refunded).await?;
        let grant = write
            .grants
            .iter()
            .find(|g| g.id == grant.id)
            .cloned()
            .unwrap_or(Grant {
                remaining: 0,
                ..grant
            });
        // Once per refund: another report of refunds already counted emits nothing.
        if entry.is_some() || refunded > refunded_before {
            write.emit(
                EventType::PurchaseRefunded,
                serde_json::json!({
                    "endUserId": outbound::end_user_text(&grant.end_user_id),
                    "grantId": grant.id,
                    "reference": grant.payment.as_ref().map(|p| &p.reference),
                    "paymentReference": report.payment_reference,
                    "refundedAmount": refunded,
                    "currency": report.currency,
                    "clawedBack": entry.as_ref().map_or(0, |e| e.amount),
                    "clawedBackTotal": before + entry.as_ref().map_or(0, |e| e.amount),
                    "entryId": entry.as_ref().map(|e| e.id),
                    "balanceAfter": write.available(),
                }),
            );
        }
        let recorded = match entry {
            Some(entry) => Recorded::ClawedBack { grant, entry },
            None => {
                let target = clawback_target(
                    grant.amount,
                    grant.payment.as_ref().and_then(|p| p.amount),
                    refunded,
                );
                Recorded::NothingToClawBack {
                    grant,
                    already_clawed_back: target <= before,
                }
            }
        };
        receipt.record(&write.txn, &recorded).await?;
        write.commit_even_if_empty(&self.events).await?;
        Ok(PurchaseOutcome::Done(Box::new(recorded)))
    }
}

/// Refuses a purchase that would take what the end user holds past `MAX_CREDITS`.
fn check_credits_cap(grants: &[Grant], credits: Amount) -> Result<()> {
    let outstanding: i64 = grants.iter().map(|g| g.remaining.max(0)).sum();
    if outstanding
        .checked_add(credits.get())
        .is_none_or(|total| total > MAX_CREDITS)
    {
        return Err(Error::bad_input(
            "credits",
            format!("would take the end user's credits to more than {MAX_CREDITS}"),
        ));
    }
    Ok(())
}

/// The grant of a purchase, effective `now`, expiring `validity_days` (× 24 h) later if given.
fn purchase_grant(request: &PurchaseRequest, credits: Amount, now: DateTime<Utc>) -> Grant {
    Grant {
        id: Uuid::now_v7(),
        end_user_id: request.end_user_id.clone(),
        amount: credits.get(),
        remaining: credits.get(),
        source: GrantSource::Purchase,
        effective_at: now,
        expires_at: request.validity_days.map(|days| now + Duration::days(days)),
        priority: None,
        description: request.description.clone(),
        metadata: request.metadata.clone(),
        created_at: now,
        voided_at: None,
        held: 0,
        cycle_id: None,
        payment: Some(request.payment.clone()),
    }
}

/// The `GRANT` entry recording a purchase's `grant`, number `seq` in the end user's ledger.
fn purchase_entry(grant: &Grant, seq: i64, balance_after: i64) -> Entry {
    Entry {
        id: Uuid::now_v7(),
        end_user_id: grant.end_user_id.clone(),
        seq,
        kind: EntryKind::Grant,
        amount: grant.amount,
        balance_after,
        grant_id: Some(grant.id),
        description: grant.description.clone(),
        metadata: grant.metadata.clone(),
        idempotency_key: None,
        created_at: grant.created_at,
        hold_id: None,
        reversed_entry_id: None,
        allocations: Vec::new(),
    }
}

/// Refunds that arrived before the purchase are taken back from its new grant at once.
/// Returns the claw-back entry, if any, and whether such refunds were known.
async fn claw_back_early_refunds(
    write: &mut AccountWrite,
    grant_id: Uuid,
    payment: &Payment,
) -> Result<(Option<Entry>, bool)> {
    let Some(payment_reference) = &payment.payment_reference else {
        return Ok((None, false));
    };
    let refunded = aggregates::refunded_total(&write.txn, payment_reference).await?;
    let clawback = claw_back(write, grant_id, payment_reference, refunded).await?;
    Ok((clawback, refunded > 0))
}

/// After credits went back to `grant_id` (a reversed debit), claws back again what its
/// payment's refunds call for: a refunded purchase never regains credits.
pub async fn claw_back_refunded(write: &mut AccountWrite, grant_id: Uuid) -> Result<()> {
    let Some(payment_reference) = write
        .grants
        .iter()
        .find(|g| g.id == grant_id)
        .and_then(|g| g.payment.as_ref())
        .and_then(|p| p.payment_reference.clone())
    else {
        return Ok(());
    };
    let refunded = aggregates::refunded_total(&write.txn, &payment_reference).await?;
    claw_back(write, grant_id, &payment_reference, refunded).await?;
    Ok(())
}

/// Appends the claw-back entry that brings what was taken from `grant_id` up to what
/// `refunded` calls for, capped by what remains of the grant. `None` when nothing is to take.
async fn claw_back(
    write: &mut AccountWrite,
    grant_id: Uuid,
    payment_reference: &str,
    refunded: i64,
) -> Result<Option<Entry>> {
    if refunded <= 0 {
        return Ok(None);
    }
    // Grants used up (or expired, which `load` just recorded) are not among the open ones.
    let Some(grant) = write.grants.iter().find(|g| g.id == grant_id).cloned() else {
        return Ok(None);
    };
    let paid = grant.payment.as_ref().and_then(|p| p.amount);
    let target = clawback_target(grant.amount, paid, refunded);
    let before = aggregates::clawed_back(&write.txn, grant_id).await?;
    // Credits an open hold reserved stay for its capture (a capture within a hold never
    // fails); the claw-back takes only what is spendable.
    let take = (target - before).min(grant.spendable());
    if take <= 0 {
        return Ok(None);
    }
    let allocation = Allocation {
        grant_id,
        amount: take,
    };
    write.take(&[allocation]).await?;
    let now = write.now;
    let currency = grant.payment.as_ref().and_then(|p| p.currency.clone());
    let entry = Entry {
        id: Uuid::now_v7(),
        end_user_id: write.end_user_id.clone(),
        seq: write.take_seq(),
        kind: EntryKind::Clawback,
        amount: take,
        balance_after: Balance::from_grants(write.end_user_id.clone(), &write.grants, now)
            .available,
        grant_id: Some(grant_id),
        description: Some(format!("refund of payment {payment_reference}")),
        metadata: Some(serde_json::json!({
            "paymentReference": payment_reference,
            "refundedAmount": refunded,
            "paidAmount": paid,
            "currency": currency,
        })),
        idempotency_key: None,
        created_at: now,
        hold_id: None,
        reversed_entry_id: None,
        allocations: vec![allocation],
    };
    write.insert_entry(&entry).await?;
    Ok(Some(entry))
}

#[cfg(test)]
mod tests {
    use super::clawback_target;

    #[test]
    fn claw_backs_are_proportional_and_rounded_down() {
        assert_eq!(clawback_target(100, Some(999), 999), 100);
        assert_eq!(clawback_target(100, Some(999), 5_000), 100);
        assert_eq!(clawback_target(100, Some(999), 500), 50);
        assert_eq!(clawback_target(100, Some(999), 9), 0);
        assert_eq!(clawback_target(1000, Some(1999), 1), 0);
        assert_eq!(clawback_target(1000, Some(1999), 2), 1);
        assert_eq!(clawback_target(100, Some(999), 0), 0);
        assert_eq!(clawback_target(100, None, 1), 100);
        assert_eq!(clawback_target(100, Some(0), 1), 100);
        let max = super::MAX_CREDITS;
        assert_eq!(clawback_target(max, Some(i64::MAX), i64::MAX - 1), max - 1);
    }
}
