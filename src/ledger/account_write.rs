//! The shape every write to one end user's credits takes.
//!
//! `Ledger::begin_write` opens a transaction and locks the account (see `store`); `load` reads
//! the open grants and first records the expiries that are due, so every entry a write appends
//! comes after the expiries that preceded it; `commit` fixes the account's sequence, announces
//! the change (inside the transaction on PostgreSQL) and commits.

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseTransaction, TransactionTrait};

use super::burn_down::{Allocation, active_balance};
use super::entry::Entry;
use super::grant::Grant;
use super::types::{EndUserId, EntryKind};
use super::{Ledger, clock, store};
use crate::error::Result;

pub struct AccountWrite {
    pub txn: DatabaseTransaction,
    pub end_user_id: EndUserId,
    /// The open grants (not voided, something remaining), as this write changes them.
    pub grants: Vec<Grant>,
    /// The write's clock, read after the lock was granted.
    pub now: DateTime<Utc>,
    next_seq: i64,
    reserved_through: i64,
    announced: bool,
}

impl Ledger {
    pub(super) async fn begin_write(&self, end_user_id: EndUserId) -> Result<AccountWrite> {
        let txn = self.db.begin().await?;
        let reserved = store::lock_account_and_reserve_seq(&txn, end_user_id, clock::now()).await?;
        Ok(AccountWrite {
            txn,
            end_user_id,
            grants: Vec::new(),
            now: clock::now(),
            next_seq: reserved,
            reserved_through: reserved,
            announced: false,
        })
    }
}

impl AccountWrite {
    /// Loads the open grants and records every expiry that is due. Returns how many.
    pub async fn load(&mut self, events: &crate::events::BalanceEvents) -> Result<usize> {
        self.grants = store::load_open_grants(&self.txn, self.end_user_id).await?;
        self.now = clock::now();
        let mut due: Vec<&Grant> = self
            .grants
            .iter()
            .filter(|g| g.voided_at.is_none() && g.remaining > 0)
            .filter(|g| g.expires_at.is_some_and(|at| at <= self.now))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        due.sort_by_key(|g| (g.expires_at, g.id));
        let expiring: Vec<(Allocation, DateTime<Utc>)> = due
            .iter()
            .map(|g| {
                let allocation = Allocation {
                    grant_id: g.id,
                    amount: g.remaining,
                };
                (allocation, g.expires_at.expect("due grants expire"))
            })
            .collect();
        let allocations: Vec<Allocation> = expiring.iter().map(|(a, _)| *a).collect();
        store::take_from_grants(&self.txn, &allocations).await?;

        // Entries in expiry order; each balanceAfter counts the grants that expire after it.
        let still_active = active_balance(&self.grants, self.now);
        let mut expiring_later: i64 = allocations.iter().map(|a| a.amount).sum();
        for (allocation, expired_at) in &expiring {
            expiring_later -= allocation.amount;
            let entry = Entry {
                id: uuid::Uuid::now_v7(),
                end_user_id: self.end_user_id,
                seq: self.take_seq(),
                kind: EntryKind::Expiry,
                amount: allocation.amount,
                balance_after: still_active + expiring_later,
                grant_id: Some(allocation.grant_id),
                description: None,
                metadata: None,
                idempotency_key: None,
                // When it happened, not when it was noticed.
                created_at: *expired_at,
                allocations: vec![*allocation],
            };
            store::insert_entry(&self.txn, &entry).await?;
        }
        for grant in &mut self.grants {
            if allocations.iter().any(|a| a.grant_id == grant.id) {
                grant.remaining = 0;
            }
        }
        self.announce(events).await?;
        Ok(expiring.len())
    }

    /// The sequence number for the next entry this write appends.
    pub fn take_seq(&mut self) -> i64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    pub async fn announce(&mut self, events: &crate::events::BalanceEvents) -> Result<()> {
        if !self.announced {
            events
                .announce_in_transaction(&self.txn, self.end_user_id)
                .await?;
            self.announced = true;
        }
        Ok(())
    }

    /// Commits even when no entry was appended (a write that only records something beside the
    /// ledger, such as a Stripe event): the sequence number reserved by the lock is given back.
    pub async fn commit_even_if_empty(self, events: &crate::events::BalanceEvents) -> Result<()> {
        let last_used = self.next_seq - 1;
        if last_used < self.reserved_through {
            store::set_last_seq(&self.txn, self.end_user_id, last_used).await?;
            self.txn.commit().await?;
            return Ok(());
        }
        self.commit(events).await
    }

    /// Commits what was written. A write that appended nothing rolls back instead.
    pub async fn commit(mut self, events: &crate::events::BalanceEvents) -> Result<()> {
        let last_used = self.next_seq - 1;
        if last_used < self.reserved_through {
            self.txn.rollback().await?;
            return Ok(());
        }
        if last_used > self.reserved_through {
            store::set_last_seq(&self.txn, self.end_user_id, last_used).await?;
        }
        self.announce(events).await?;
        self.txn.commit().await?;
        events.announce_committed(self.end_user_id);
        Ok(())
    }
}
