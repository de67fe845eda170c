//! Adding credits: a new grant and its `grant` entry.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::balance::Balance;
use super::entry::Entry;
use super::grant::Grant;
use super::idempotency::{self, Keyed, Start};
use super::pipeline::{Decision, Write};
use super::types::{
    Amount, Description, EndUserId, EntryKind, GrantSource, IdempotencyKey, MAX_CREDITS, Metadata,
    Validity,
};
use super::{Ledger, retry_once_on_unique_violation, store};
use crate::error::{Error, Result};

pub(super) const OPERATION: &str = "add_credits";
/// Priorities run from 0 (spent first) to this.
pub const MAX_PRIORITY: i32 = 1_000;

/// The request as the caller sent it. Its JSON form (less the key) is what an idempotency key
/// is bound to, so a retry hours later still matches although `validityDays` counts from "now".
#[derive(Clone, Debug, Serialize)]
pub struct AddCreditsRequest {
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub validity_days: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub effective_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "serialize_source")]
    pub source: GrantSource,
    pub priority: Option<i32>,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

fn serialize_source<S: serde::Serializer>(source: &GrantSource, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(source.as_str())
}

pub struct AddCreditsOutcome {
    pub grant: Grant,
    pub entry: Entry,
    /// The balance now (for a replay too: the current one, not the one at the first call).
    pub balance: Balance,
    pub replayed: bool,
}

/// A validated request.
pub(super) struct AddCredits {
    pub end_user_id: EndUserId,
    pub amount: Amount,
    pub validity: Validity,
    pub source: GrantSource,
    pub priority: Option<i32>,
    pub description: Option<Description>,
    pub metadata: Option<Metadata>,
    pub idempotency_key: Option<IdempotencyKey>,
    /// What the idempotency key is bound to (empty without a key: nothing to compare).
    pub request_hash: String,
}

impl AddCredits {
    pub(super) fn parse(request: AddCreditsRequest, now: DateTime<Utc>) -> Result<Self> {
        let request_hash = match &request.idempotency_key {
            Some(_) => idempotency::request_hash(OPERATION, &request)?,
            None => String::new(),
        };
        if let Some(priority) = request.priority
            && !(0..=MAX_PRIORITY).contains(&priority)
        {
            return Err(Error::bad_input(
                "priority",
                format!("must be from 0 to {MAX_PRIORITY}"),
            ));
        }
        Ok(Self {
            end_user_id: request.end_user_id,
            amount: Amount::parse("amount", request.amount)?,
            validity: Validity::parse(
                request.validity_days,
                request.expires_at,
                request.effective_at,
                now,
            )?,
            source: request.source,
            priority: request.priority,
            description: Description::parse(request.description)?,
            metadata: Metadata::parse(request.metadata)?,
            idempotency_key: IdempotencyKey::parse(request.idempotency_key)?,
            request_hash,
        })
    }
}

impl AddCredits {
    /// The checks that need the account's grants, made under its lock: validity was checked
    /// against the clock before waiting for the lock (a grant must not land already expired),
    /// and everything the user holds or will hold must stay exact in JavaScript.
    pub(super) fn check_under_lock(&self, grants: &[Grant], now: DateTime<Utc>) -> Result<()> {
        if self.validity.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::bad_input("expiresAt", "must be in the future"));
        }
        let outstanding: i64 = grants
            .iter()
            .filter(|g| g.remaining > 0)
            .map(|g| g.remaining)
            .sum();
        if outstanding
            .checked_add(self.amount.get())
            .is_none_or(|total| total > MAX_CREDITS)
        {
            return Err(Error::bad_input(
                "amount",
                format!(
                    "would take the end user's credits to more than {MAX_CREDITS} (2^53 - 1); \
                     they hold {outstanding}"
                ),
            ));
        }
        Ok(())
    }

    pub(super) fn new_grant(&self, now: DateTime<Utc>) -> Grant {
        Grant {
            id: Uuid::now_v7(),
            end_user_id: self.end_user_id.clone(),
            amount: self.amount.get(),
            remaining: self.amount.get(),
            source: self.source,
            effective_at: self.validity.effective_at,
            expires_at: self.validity.expires_at,
            priority: self.priority,
            description: self.description.as_ref().map(|d| d.as_str().to_owned()),
            metadata: self.metadata.as_ref().map(|m| m.as_json().clone()),
            created_at: now,
            voided_at: None,
            held: 0,
            cycle_id: None,
            payment: None,
        }
    }

    /// The `GRANT` entry recording `grant`, `available` being the balance right after it.
    pub(super) fn grant_entry(
        &self,
        grant: &Grant,
        seq: i64,
        available: i64,
        now: DateTime<Utc>,
    ) -> Entry {
        let mut entry = Entry::new(
            EntryKind::Grant,
            self.end_user_id.clone(),
            seq,
            grant.amount,
            available,
            now,
        );
        entry.grant_id = Some(grant.id);
        entry.description = grant.description.clone();
        entry.metadata = grant.metadata.clone();
        entry.idempotency_key = self.idempotency_key.as_ref().map(|k| k.as_str().to_owned());
        entry
    }
}

impl Ledger {
    pub async fn add_credits(&self, request: AddCreditsRequest) -> Result<AddCreditsOutcome> {
        let add = Arc::new(AddCredits::parse(request, self.clock.now())?);
        let user = &add.end_user_id;
        match self.pipeline.submit(Write::Add(add.clone())).await? {
            Decision::Added {
                grant,
                entry,
                balance,
            } => Ok(AddCreditsOutcome {
                grant: *grant,
                entry,
                balance,
                replayed: false,
            }),
            Decision::Replay { entry_id } => self.replay(user, entry_id).await,
            Decision::Refused(error) => Err(error),
            Decision::Subtracted { .. } => {
                Err(Error::Internal("a grant was answered as a debit".into()))
            }
            Decision::Deferred => {
                retry_once_on_unique_violation(|| self.try_add_credits(&add)).await
            }
        }
    }

    async fn try_add_credits(&self, add: &AddCredits) -> Result<AddCreditsOutcome> {
        let user = &add.end_user_id;
        let keyed = Keyed::new(add.idempotency_key.as_ref(), OPERATION, &add.request_hash);
        let mut write = match self.begin_keyed_write(user, keyed).await? {
            Start::Write(write) => write,
            Start::Replay(entry_id) => return self.replay(user, entry_id).await,
        };
        write.load().await?;
        let now = write.now;
        if let Err(refusal) = add.check_under_lock(&write.grants, now) {
            return write.refuse(&self.events, refusal).await;
        }
        let grant = add.new_grant(now);
        write.grants.push(grant.clone());
        let balance = Balance::from_grants(user.clone(), &write.grants, now);
        let seq = write.take_seq();
        let entry = add.grant_entry(&grant, seq, balance.available, now);

        store::insert_grant(&write.txn, &grant).await?;
        write.insert_entry(&entry).await?;
        keyed.record(&write, entry.id).await?;
        write.commit(&self.events).await?;
        if let Some(expires_at) = grant.expires_at {
            self.expiry_alarm.falls_due(expires_at);
        }
        Ok(AddCreditsOutcome {
            grant,
            entry,
            balance,
            replayed: false,
        })
    }

    async fn replay(&self, user: &EndUserId, entry_id: Uuid) -> Result<AddCreditsOutcome> {
        let entry = idempotency::replayed_entry(&self.db, entry_id).await?;
        let grant_id = entry
            .grant_id
            .ok_or_else(|| Error::Internal(format!("grant entry {entry_id} names no grant")))?;
        let grant = store::find_grant(&self.db, grant_id)
            .await?
            .ok_or_else(|| Error::Internal(format!("entry {entry_id} names missing grant")))?;
        Ok(AddCreditsOutcome {
            grant,
            entry,
            balance: self.balance(user.clone()).await?,
            replayed: true,
        })
    }
}
