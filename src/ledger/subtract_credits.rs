//! Spending credits: a `debit` entry drawing on the active grants in burn-down order.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::balance::Balance;
use super::burn_down::{Allocation, Shortfall, plan_debit};
use super::entry::Entry;
use super::idempotency::{self, Keyed, Start};
use super::pipeline::{Decision, Write};
use super::types::{Amount, Description, EndUserId, EntryKind, IdempotencyKey, Metadata};
use super::{Ledger, retry_once_on_unique_violation};
use crate::error::{Error, Result};

pub(super) const OPERATION: &str = "subtract_credits";

#[derive(Clone, Debug, Serialize)]
pub struct SubtractCreditsRequest {
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

pub struct SubtractCreditsOutcome {
    /// The debit, with its allocations in the order the grants were drawn on.
    pub entry: Entry,
    /// The balance now (for a replay too: the current one).
    pub balance: Balance,
    pub replayed: bool,
}

/// A validated request.
pub(super) struct SubtractCredits {
    pub end_user_id: EndUserId,
    pub amount: Amount,
    pub description: Option<Description>,
    pub metadata: Option<Metadata>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// What the idempotency key is bound to (empty without a key: nothing to compare).
    pub request_hash: String,
}

impl SubtractCredits {
    pub(super) fn parse(request: SubtractCreditsRequest) -> Result<Self> {
        let request_hash = match &request.idempotency_key {
            Some(_) => idempotency::request_hash(OPERATION, &request)?,
            None => String::new(),
        };
        Ok(Self {
            end_user_id: request.end_user_id,
            amount: Amount::parse("amount", request.amount)?,
            description: Description::parse(request.description)?,
            metadata: Metadata::parse(request.metadata)?,
            idempotency_key: IdempotencyKey::parse(request.idempotency_key)?,
            request_hash,
        })
    }
}

impl SubtractCredits {
    /// The `DEBIT` entry for this request, `available` being the balance right after it.
    pub(super) fn debit_entry(
        &self,
        seq: i64,
        available: i64,
        now: DateTime<Utc>,
        allocations: Vec<Allocation>,
    ) -> Entry {
        let mut entry = Entry::new(
            EntryKind::Debit,
            self.end_user_id.clone(),
            seq,
            self.amount.get(),
            available,
            now,
        );
        entry.description = self.description.as_ref().map(|d| d.as_str().to_owned());
        entry.metadata = self.metadata.as_ref().map(|m| m.as_json().clone());
        entry.idempotency_key = self.idempotency_key.as_ref().map(|k| k.as_str().to_owned());
        entry.allocations = allocations;
        entry
    }
}

impl Ledger {
    pub async fn subtract_credits(
        &self,
        request: SubtractCreditsRequest,
    ) -> Result<SubtractCreditsOutcome> {
        let subtract = Arc::new(SubtractCredits::parse(request)?);
        let user = &subtract.end_user_id;
        match self
            .pipeline
            .submit(Write::Subtract(subtract.clone()))
            .await?
        {
            Decision::Subtracted { entry, balance } => Ok(SubtractCreditsOutcome {
                entry,
                balance,
                replayed: false,
            }),
            Decision::Replay { entry_id } => self.replay_debit(user, entry_id).await,
            Decision::Refused(error) => Err(error),
            Decision::Added { .. } => {
                Err(Error::Internal("a debit was answered as a grant".into()))
            }
            Decision::Deferred => {
                retry_once_on_unique_violation(|| self.try_subtract_credits(&subtract)).await
            }
        }
    }

    async fn try_subtract_credits(
        &self,
        subtract: &SubtractCredits,
    ) -> Result<SubtractCreditsOutcome> {
        let user = &subtract.end_user_id;
        let keyed = Keyed::new(
            subtract.idempotency_key.as_ref(),
            OPERATION,
            &subtract.request_hash,
        );
        let mut write = match self.begin_keyed_write(user, keyed).await? {
            Start::Write(write) => write,
            Start::Replay(entry_id) => return self.replay_debit(user, entry_id).await,
        };
        let expired = write.load().await?;
        let now = write.now;
        let allocations = match plan_debit(&write.grants, subtract.amount.get(), now) {
            Ok(allocations) => allocations,
            Err(Shortfall {
                available,
                requested,
            }) => {
                // Expiries found on the way are still recorded; the debit is not.
                if expired > 0 {
                    write.commit(&self.events).await?;
                }
                return Err(Error::InsufficientCredits {
                    available,
                    requested,
                });
            }
        };
        write.take(&allocations).await?;
        let balance = Balance::from_grants(user.clone(), &write.grants, now);
        let seq = write.take_seq();
        let entry = subtract.debit_entry(seq, balance.available, now, allocations);
        write.insert_entry(&entry).await?;
        keyed.record(&write, entry.id).await?;
        write.commit(&self.events).await?;
        Ok(SubtractCreditsOutcome {
            entry,
            balance,
            replayed: false,
        })
    }

    async fn replay_debit(
        &self,
        user: &EndUserId,
        entry_id: Uuid,
    ) -> Result<SubtractCreditsOutcome> {
        let entry = idempotency::replayed_entry(&self.db, entry_id).await?;
        Ok(SubtractCreditsOutcome {
            entry,
            balance: self.balance(user.clone()).await?,
            replayed: true,
        })
    }
}
