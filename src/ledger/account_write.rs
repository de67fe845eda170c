//! The shape every write to one end user's credits takes.
//!
//! `Ledger::begin_write` opens a transaction and locks the account (see `store`); `load` reads
//! the open grants, holds and cycle and first settles what fell due (holds past their deadline
//! are released, grants past their expiry expire, a cycle past its period end renews), so every
//! entry a write appends comes after the events that preceded it; `commit` fixes the account's
//! sequence, announces the change (inside the transaction on PostgreSQL) and commits.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};

use super::burn_down::{Allocation, active_balance};
use super::capture_plan::{CaptureSplit, split_capture};
use super::clock::Clock;
use super::entry::Entry;
use super::expiry_plan::plan_expiries;
use super::grant::Grant;
use super::holds::Hold;
use super::notifier::Notifier;
use super::outbound::{self, EventType, Outbound, Source};
use super::types::{EndUserId, EntryKind};
use super::{Ledger, store};
use crate::error::{Error, Result};

pub struct AccountWrite {
    pub txn: DatabaseTransaction,
    pub end_user_id: EndUserId,
    /// The open grants (not voided, something remaining), as this write changes them.
    pub grants: Vec<Grant>,
    /// The write's clock, read after the lock was granted.
    pub now: DateTime<Utc>,
    next_seq: i64,
    reserved_through: i64,
    last_entry_at: Option<DateTime<Utc>>,
    /// What this write appended, counted in the metrics once it commits.
    appended: Vec<(EntryKind, i64)>,
    /// What may make outbound events, recorded in the outbox before the commit.
    outbound_sources: Vec<Source>,
    outbound: Arc<Outbound>,
    clock: Clock,
}

impl Ledger {
    pub(super) async fn begin_write(&self, end_user_id: &EndUserId) -> Result<AccountWrite> {
        let txn = begin_on_a_live_connection(&self.db).await?;
        let reserved =
            store::lock_account_and_reserve_seq(&txn, end_user_id, self.clock.now()).await?;
        Ok(AccountWrite {
            txn,
            end_user_id: end_user_id.clone(),
            grants: Vec::new(),
            now: self.clock.now(),
            next_seq: reserved,
            reserved_through: reserved,
            last_entry_at: None,
            appended: Vec::new(),
            outbound_sources: Vec::new(),
            outbound: self.outbound.clone(),
            clock: self.clock.clone(),
        })
    }
}

/// Most pooled connections one write tries before it reports the failure: the pool's default
/// size and one more.
const MAX_BEGIN_ATTEMPTS: usize = 17;

/// Begins a transaction on a pooled connection. A connection the database cut while it sat in
/// the pool (a PostgreSQL restart, a proxy's idle timeout) fails at its first statement,
/// `BEGIN`, which changes nothing: the write begins again on another, so that no client sees the
/// cut. (sqlx tests each connection on its way back to the pool and drops one that fails, so
/// the next try takes another.)
async fn begin_on_a_live_connection(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    let mut attempts = 1;
    loop {
        match db.begin().await {
            Ok(txn) => return Ok(txn),
            Err(error)
                if attempts < MAX_BEGIN_ATTEMPTS && crate::error::is_cut_connection(&error) =>
            {
                tracing::debug!(error = %error, attempts, "a pooled connection was cut; beginning on another");
                attempts += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

impl AccountWrite {
    /// Loads the open grants and settles everything due. Returns how many entries that wrote.
    pub async fn load(&mut self) -> Result<usize> {
        self.load_settling(false).await
    }

    /// `load`, for the scheduler: it looks for due holds and renewals even where the grants
    /// give no hint of any.
    pub async fn load_settling_all(&mut self) -> Result<usize> {
        self.load_settling(true).await
    }

    async fn load_settling(&mut self, everything: bool) -> Result<usize> {
        self.grants = store::load_open_grants(&self.txn, &self.end_user_id).await?;
        self.now = self.clock.now();
        let before = self.next_seq;
        // Open holds always earmark credits on open grants, and an active cycle's current
        // grant is open until used up: without either, skip the look-ups (no round trips a
        // plain debit does not need while it holds the lock). A cycle whose current grant is
        // used up renews by the scheduler, on time, rather than by this write.
        if everything || self.grants.iter().any(|g| g.held > 0) {
            for hold in store::due_holds(&self.txn, &self.end_user_id, self.now).await? {
                self.close_hold(&hold, 0, super::holds::HoldStatus::Expired)
                    .await?;
            }
        }
        self.expire_due().await?;
        if everything || self.grants.iter().any(|g| g.cycle_id.is_some()) {
            super::cycles::renew_due(self).await?;
        }
        Ok((self.next_seq - before) as usize)
    }

    /// The available balance now, as this write has changed it.
    pub fn available(&self) -> i64 {
        active_balance(&self.grants, self.now)
    }

    pub fn grant_mut(&mut self, grant_id: uuid::Uuid) -> Option<&mut Grant> {
        self.grants.iter_mut().find(|g| g.id == grant_id)
    }

    /// Records an `EXPIRY` entry for every grant whose expiry has passed with spendable credits
    /// left (see `expiry_plan`).
    pub async fn expire_due(&mut self) -> Result<usize> {
        let plan = plan_expiries(&self.grants, self.now, self.last_entry_at);
        if plan.is_empty() {
            return Ok(0);
        }
        let allocations: Vec<Allocation> = plan.iter().map(|p| p.allocation).collect();
        self.take(&allocations).await?;
        for expiry in &plan {
            let mut entry = Entry::new(
                EntryKind::Expiry,
                self.end_user_id.clone(),
                self.take_seq(),
                expiry.allocation.amount,
                expiry.balance_after,
                expiry.happened_at,
            );
            entry.grant_id = Some(expiry.allocation.grant_id);
            entry.allocations = vec![expiry.allocation];
            self.insert_entry(&entry).await?;
        }
        Ok(plan.len())
    }

    /// Takes (or with negative amounts gives back) credits from grants, here and in the database.
    pub async fn take(&mut self, allocations: &[Allocation]) -> Result<()> {
        self.apply(allocations, |grant, amount| grant.remaining -= amount)?;
        store::take_from_grants(&self.txn, allocations).await
    }

    /// Changes what holds earmark on grants, here and in the database.
    pub async fn change_held(&mut self, changes: &[Allocation]) -> Result<()> {
        self.apply(changes, |grant, amount| grant.held += amount)?;
        store::change_held(&self.txn, changes).await
    }

    /// Applies allocations to the loaded grants, before the database sees them. An allocation
    /// naming a grant this write did not load, or leaving a grant outside
    /// 0 ≤ held ≤ remaining ≤ amount, is a bug in a plan: the write fails (and rolls back)
    /// rather than record it.
    fn apply(
        &mut self,
        allocations: &[Allocation],
        change: impl Fn(&mut Grant, i64),
    ) -> Result<()> {
        for allocation in allocations {
            let grant = self.grant_mut(allocation.grant_id).ok_or_else(|| {
                Error::Internal(format!(
                    "an allocation names grant {}, which this write did not load",
                    allocation.grant_id
                ))
            })?;
            change(grant, allocation.amount);
            if !(0 <= grant.held
                && grant.held <= grant.remaining
                && grant.remaining <= grant.amount)
            {
                return Err(Error::Internal(format!(
                    "grant {} would hold {} of {} remaining of {}",
                    grant.id, grant.held, grant.remaining, grant.amount
                )));
            }
        }
        Ok(())
    }

    /// Closes an open hold: spends `capture` of it (from the grants it earmarked, in order),
    /// makes the rest available again, and expires whatever that frees on expired grants.
    pub async fn close_hold(
        &mut self,
        hold: &Hold,
        capture: i64,
        status: super::holds::HoldStatus,
    ) -> Result<(Option<Entry>, Option<Entry>)> {
        debug_assert!((0..=hold.amount).contains(&capture));
        // balanceAfter follows the running sum of deltas: the capture moves nothing available,
        // the release adds what it frees, even onto a grant that has expired meanwhile (its
        // EXPIRY entry then takes it away again).
        let available_before = self.available();
        let earmarks: Vec<Allocation> = store::hold_allocations(&self.txn, hold.id)
            .await?
            .iter()
            .map(|earmark| Allocation {
                grant_id: earmark.grant_id,
                amount: earmark.amount,
            })
            .collect();
        let CaptureSplit {
            captured,
            unearmarked,
            released,
        } = split_capture(&earmarks, capture);
        debug_assert_eq!(released, hold.amount - capture, "the earmarks are the hold");
        self.change_held(&unearmarked).await?;
        self.take(&captured).await?;
        store::close_hold(&self.txn, hold.id, status, capture, self.now).await?;

        let mut capture_entry = None;
        if capture > 0 {
            let mut entry = Entry::new(
                EntryKind::Capture,
                self.end_user_id.clone(),
                self.take_seq(),
                capture,
                0,
                self.now,
            );
            entry.hold_id = Some(hold.id);
            entry.description = hold.description.clone();
            entry.allocations = captured;
            capture_entry = Some(entry);
        }
        let release_entry = (released > 0).then(|| {
            let mut entry = Entry::new(
                EntryKind::Release,
                self.end_user_id.clone(),
                0,
                released,
                0,
                self.now,
            );
            entry.hold_id = Some(hold.id);
            entry
        });
        if let Some(entry) = capture_entry.as_mut() {
            entry.balance_after = available_before;
            self.insert_entry(entry).await?;
        }
        let release_entry = match release_entry {
            Some(mut entry) => {
                entry.seq = self.take_seq();
                entry.balance_after = available_before + released;
                self.insert_entry(&entry).await?;
                Some(entry)
            }
            None => None,
        };
        if status == super::holds::HoldStatus::Expired {
            self.emit(
                EventType::HoldExpired,
                serde_json::json!({
                    "endUserId": outbound::end_user_text(&self.end_user_id),
                    "holdId": hold.id,
                    "amount": hold.amount,
                    "released": released,
                    "description": hold.description,
                    "expiresAt": hold.expires_at,
                    "balanceAfter": available_before + released,
                }),
            );
        }
        self.expire_due().await?;
        Ok((capture_entry, release_entry))
    }

    /// Appends an entry (entries are only ever inserted).
    pub async fn insert_entry(&mut self, entry: &Entry) -> Result<()> {
        store::insert_entry(&self.txn, entry).await?;
        if entry.kind == EntryKind::Expiry {
            super::metrics::expiry_recorded(entry.created_at, self.now);
        }
        self.appended.push((entry.kind, entry.amount));
        self.note_entry(entry);
        self.last_entry_at = Some(
            self.last_entry_at
                .map_or(entry.created_at, |at| at.max(entry.created_at)),
        );
        Ok(())
    }

    /// Counts an entry written without `insert_entry` for the outbound events.
    pub fn note_entry(&mut self, entry: &Entry) {
        self.outbound_sources.push(Source::Entry(entry.clone()));
    }

    /// An outbound event that is not one entry's own (a hold that timed out, a refund).
    pub fn emit(&mut self, event_type: EventType, data: serde_json::Value) {
        self.outbound_sources
            .push(Source::Event { event_type, data });
    }

    /// Writes the outbound events of what this write did, in its transaction.
    async fn record_outbound(&mut self) -> Result<usize> {
        let sources = std::mem::take(&mut self.outbound_sources);
        outbound::record(
            &self.txn,
            self.end_user_id.clone(),
            &sources,
            &self.grants,
            &self.outbound,
            self.now,
        )
        .await
    }

    pub fn last_entry_at(&self) -> Option<DateTime<Utc>> {
        self.last_entry_at
    }

    /// The sequence number for the next entry this write appends.
    pub fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Commits even when no entry was appended (a write that only records something beside the
    /// ledger, such as a Stripe event): the sequence number reserved by the lock is given back.
    pub async fn commit_even_if_empty(mut self, events: &dyn Notifier) -> Result<()> {
        let last_used = self.next_seq - 1;
        if last_used < self.reserved_through {
            store::set_last_seq(&self.txn, &self.end_user_id, last_used).await?;
            let recorded = self.record_outbound().await?;
            self.txn.commit().await?;
            if recorded > 0 {
                self.outbound.committed.notify_one();
            }
            return Ok(());
        }
        self.commit(events).await
    }

    /// Ends a write refused after `load` (bad state, a rule broken under the lock): what `load`
    /// settled (expiries, hold deadlines, renewals that fell due) is committed, as every refused
    /// write does, and nothing of the request itself. Returns the refusal.
    pub async fn refuse<T>(self, events: &dyn Notifier, refusal: crate::error::Error) -> Result<T> {
        self.commit(events).await?;
        Err(refusal)
    }

    /// Commits what was written. A write that appended nothing rolls back instead.
    pub async fn commit(mut self, events: &dyn Notifier) -> Result<()> {
        let last_used = self.next_seq - 1;
        if last_used < self.reserved_through {
            self.txn.rollback().await?;
            return Ok(());
        }
        if last_used > self.reserved_through {
            store::set_last_seq(&self.txn, &self.end_user_id, last_used).await?;
        }
        let recorded = self.record_outbound().await?;
        self.txn.commit().await?;
        if recorded > 0 {
            self.outbound.committed.notify_one();
        }
        super::metrics::entries_committed(self.appended.iter().copied());
        events.announce_committed(std::slice::from_ref(&self.end_user_id));
        Ok(())
    }
}
