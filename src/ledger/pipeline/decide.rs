//! Deciding a batch of writes in memory: pure, no I/O.
//!
//! The batch's accounts are locked and their open grants loaded before this runs. Each request
//! is then decided in arrival order against the state the requests before it left, exactly as
//! if they had run one after another: a debit sees the grants the previous debit drew on, a
//! second use of an idempotency key sees the first. A refusal changes nothing but its own answer.
//! What the batch must write comes out at the end as one `Changes`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::add_credits::{self, AddCredits};
use super::super::balance::Balance;
use super::super::burn_down::{Allocation, Shortfall, plan_debit};
use super::super::entry::Entry;
use super::super::expiry_plan::plan_expiries;
use super::super::grant::Grant;
use super::super::subtract_credits::{self, SubtractCredits};
use super::super::types::{EndUserId, EntryKind, IdempotencyKey, MAX_CREDITS};
use crate::error::Error;

/// A write the pipeline carries.
pub(in crate::ledger) enum Write {
    Add(Arc<AddCredits>),
    Subtract(Arc<SubtractCredits>),
}

impl Write {
    pub fn end_user_id(&self) -> EndUserId {
        match self {
            Write::Add(add) => add.end_user_id,
            Write::Subtract(subtract) => subtract.end_user_id,
        }
    }

    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            Write::Add(add) => add.idempotency_key.as_ref(),
            Write::Subtract(subtract) => subtract.idempotency_key.as_ref(),
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Write::Add(_) => add_credits::OPERATION,
            Write::Subtract(_) => subtract_credits::OPERATION,
        }
    }

    fn request_hash(&self) -> &str {
        match self {
            Write::Add(add) => &add.request_hash,
            Write::Subtract(subtract) => &subtract.request_hash,
        }
    }
}

/// The answer to one write of the batch.
pub(in crate::ledger) enum Decision {
    Added {
        grant: Box<Grant>,
        entry: Entry,
        balance: Balance,
    },
    Subtracted {
        entry: Entry,
        balance: Balance,
    },
    /// The same request ran before under this key: answer from its entry.
    Replay {
        entry_id: Uuid,
    },
    Refused(Error),
    /// Not decided in the batch: run this write the per-request way (see `pipeline`).
    Deferred,
}

/// An idempotency key as recorded: by an earlier write, or by one earlier in this batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: String,
    pub operation: &'static str,
    pub request_hash: String,
    pub end_user_id: EndUserId,
    pub entry_id: Uuid,
}

/// An idempotency key already in the database.
#[derive(Clone, Debug)]
pub struct StoredKey {
    pub operation: String,
    pub request_hash: String,
    pub entry_id: Uuid,
}

/// One locked account as loaded: its open grants and the sequence number of its newest entry.
pub struct LoadedAccount {
    pub end_user_id: EndUserId,
    pub last_seq: i64,
    pub grants: Vec<Grant>,
}

struct AccountState {
    grants: Vec<Grant>,
    next_seq: i64,
    /// Grants this batch creates: inserted with their final state rather than updated.
    created: Vec<Uuid>,
}

/// Everything a batch writes, for set-based statements.
#[derive(Default)]
pub struct Changes {
    /// In the order they were decided (per end user: sequence order).
    pub entries: Vec<Entry>,
    /// Grants this batch creates, as the batch left them.
    pub new_grants: Vec<Grant>,
    /// Credits taken from grants that existed before the batch (negative: given back).
    pub taken: BTreeMap<Uuid, i64>,
    pub keys: Vec<KeyRecord>,
    /// Each end user with new entries, and the sequence number of the newest.
    pub last_seqs: Vec<(EndUserId, i64)>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub struct Batch {
    now: DateTime<Utc>,
    accounts: HashMap<EndUserId, AccountState>,
    /// Keys seen so far: those stored before the batch, and those this batch records.
    keys: HashMap<String, StoredKey>,
    changes: Changes,
}

impl Batch {
    /// Starts a batch over locked accounts, recording the expiries that fell due on each first:
    /// they happened whatever the requests turn out to be, so they are written even when every
    /// request of the account is refused.
    pub fn new(
        accounts: Vec<LoadedAccount>,
        stored_keys: HashMap<String, StoredKey>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut batch = Self {
            now,
            accounts: HashMap::with_capacity(accounts.len()),
            keys: stored_keys,
            changes: Changes::default(),
        };
        for account in accounts {
            let mut state = AccountState {
                grants: account.grants,
                next_seq: account.last_seq + 1,
                created: Vec::new(),
            };
            for expiry in plan_expiries(&state.grants, now, None) {
                take(&mut state, &[expiry.allocation]);
                let mut entry = Entry::new(
                    EntryKind::Expiry,
                    account.end_user_id,
                    state.next_seq,
                    expiry.allocation.amount,
                    expiry.balance_after,
                    expiry.happened_at,
                );
                entry.grant_id = Some(expiry.allocation.grant_id);
                entry.allocations = vec![expiry.allocation];
                batch.record(&mut state, entry);
            }
            batch.accounts.insert(account.end_user_id, state);
        }
        batch
    }

    /// Decides one write against the state the writes before it left.
    pub fn decide(&mut self, write: &Write) -> Decision {
        let user = write.end_user_id();
        if let Some(key) = write.idempotency_key()
            && let Some(stored) = self.keys.get(key.as_str())
        {
            if stored.operation != write.operation() || stored.request_hash != write.request_hash()
            {
                return Decision::Refused(Error::IdempotencyConflict {
                    key: key.as_str().to_owned(),
                });
            }
            return Decision::Replay {
                entry_id: stored.entry_id,
            };
        }
        let mut state = self
            .accounts
            .remove(&user)
            .expect("every write's account is locked and loaded before deciding");
        let decision = match write {
            Write::Subtract(subtract) => self.subtract(&mut state, subtract),
            Write::Add(add) => self.add(&mut state, add),
        };
        if let (Some(key), Some(entry_id)) = (write.idempotency_key(), decision.entry_id()) {
            self.keys.insert(
                key.as_str().to_owned(),
                StoredKey {
                    operation: write.operation().to_owned(),
                    request_hash: write.request_hash().to_owned(),
                    entry_id,
                },
            );
            self.changes.keys.push(KeyRecord {
                key: key.as_str().to_owned(),
                operation: write.operation(),
                request_hash: write.request_hash().to_owned(),
                end_user_id: user,
                entry_id,
            });
        }
        self.accounts.insert(user, state);
        decision
    }

    fn subtract(&mut self, state: &mut AccountState, subtract: &SubtractCredits) -> Decision {
        let now = self.now;
        let allocations = match plan_debit(&state.grants, subtract.amount.get(), now) {
            Ok(allocations) => allocations,
            Err(Shortfall {
                available,
                requested,
            }) => {
                return Decision::Refused(Error::InsufficientCredits {
                    available,
                    requested,
                });
            }
        };
        take(state, &allocations);
        let balance = Balance::from_grants(subtract.end_user_id, &state.grants, now);
        let mut entry = Entry::new(
            EntryKind::Debit,
            subtract.end_user_id,
            state.next_seq,
            subtract.amount.get(),
            balance.available,
            now,
        );
        entry.description = subtract.description.as_ref().map(|d| d.as_str().to_owned());
        entry.metadata = subtract.metadata.as_ref().map(|m| m.as_json().clone());
        entry.idempotency_key = subtract
            .idempotency_key
            .as_ref()
            .map(|k| k.as_str().to_owned());
        entry.allocations = allocations;
        self.record(state, entry.clone());
        Decision::Subtracted { entry, balance }
    }

    fn add(&mut self, state: &mut AccountState, add: &AddCredits) -> Decision {
        let now = self.now;
        if let Err(error) = add.check_under_lock(&state.grants, now) {
            return Decision::Refused(error);
        }
        let grant = add.new_grant(now);
        state.grants.push(grant.clone());
        state.created.push(grant.id);
        let balance = Balance::from_grants(add.end_user_id, &state.grants, now);
        let entry = add.grant_entry(&grant, state.next_seq, balance.available, now);
        self.record(state, entry.clone());
        Decision::Added {
            grant: Box::new(grant),
            entry,
            balance,
        }
    }

    /// Queues an entry for writing and counts its allocations against the grants they name.
    fn record(&mut self, state: &mut AccountState, entry: Entry) {
        debug_assert_eq!(
            entry.seq, state.next_seq,
            "entries are numbered without gaps"
        );
        for allocation in &entry.allocations {
            if !state.created.contains(&allocation.grant_id) {
                *self.changes.taken.entry(allocation.grant_id).or_default() += allocation.amount;
            }
        }
        state.next_seq += 1;
        self.changes.entries.push(entry);
    }

    /// What the batch must write.
    pub fn finish(mut self) -> Changes {
        let mut newest_seq: BTreeMap<Uuid, (EndUserId, i64)> = BTreeMap::new();
        for entry in &self.changes.entries {
            debug_assert!(entry.balance_after >= 0, "no balance goes below zero");
            debug_assert!(entry.balance_after <= MAX_CREDITS);
            let newest = newest_seq
                .entry(entry.end_user_id.0)
                .or_insert((entry.end_user_id, entry.seq));
            newest.1 = newest.1.max(entry.seq);
        }
        self.changes.last_seqs = newest_seq.into_values().collect();
        for state in self.accounts.into_values() {
            if state.created.is_empty() {
                continue;
            }
            let created = state.created;
            self.changes
                .new_grants
                .extend(state.grants.into_iter().filter(|g| created.contains(&g.id)));
        }
        self.changes
    }
}

/// Takes (or, negative, gives back) credits from the grants in memory.
fn take(state: &mut AccountState, allocations: &[Allocation]) {
    for allocation in allocations {
        let grant = state
            .grants
            .iter_mut()
            .find(|g| g.id == allocation.grant_id)
            .expect("plans only name the account's own grants");
        grant.remaining -= allocation.amount;
        debug_assert!(
            grant.remaining >= grant.held,
            "a debit never takes held credits"
        );
    }
}

impl Decision {
    fn entry_id(&self) -> Option<Uuid> {
        match self {
            Decision::Added { entry, .. } | Decision::Subtracted { entry, .. } => Some(entry.id),
            Decision::Replay { .. } | Decision::Refused(_) | Decision::Deferred => None,
        }
    }
}
