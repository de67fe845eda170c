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
    pub fn end_user_id(&self) -> &EndUserId {
        match self {
            Write::Add(add) => &add.end_user_id,
            Write::Subtract(subtract) => &subtract.end_user_id,
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
                    account.end_user_id.clone(),
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
            .remove(user)
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
                end_user_id: user.clone(),
                entry_id,
            });
        }
        self.accounts.insert(user.clone(), state);
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
        let balance = Balance::from_grants(subtract.end_user_id.clone(), &state.grants, now);
        let entry = subtract.debit_entry(state.next_seq, balance.available, now, allocations);
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
        let balance = Balance::from_grants(add.end_user_id.clone(), &state.grants, now);
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
        let mut newest_seq: BTreeMap<&EndUserId, i64> = BTreeMap::new();
        for entry in &self.changes.entries {
            debug_assert!(entry.balance_after >= 0, "no balance goes below zero");
            debug_assert!(entry.balance_after <= MAX_CREDITS);
            let newest = newest_seq.entry(&entry.end_user_id).or_insert(entry.seq);
            *newest = (*newest).max(entry.seq);
        }
        self.changes.last_seqs = newest_seq
            .into_iter()
            .map(|(user, seq)| (user.clone(), seq))
            .collect();
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

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::ledger::add_credits::AddCreditsRequest;
    use crate::ledger::subtract_credits::SubtractCreditsRequest;
    use crate::ledger::types::GrantSource;

    fn user() -> EndUserId {
        EndUserId::from_stored(Uuid::new_v4().to_string())
    }

    fn grant(user: &EndUserId, remaining: i64, expires_in: Duration, now: DateTime<Utc>) -> Grant {
        Grant {
            id: Uuid::now_v7(),
            end_user_id: user.clone(),
            amount: remaining,
            remaining,
            source: GrantSource::Manual,
            effective_at: now - Duration::days(1),
            expires_at: Some(now + expires_in),
            priority: None,
            description: None,
            metadata: None,
            created_at: now - Duration::days(1),
            voided_at: None,
            held: 0,
            cycle_id: None,
            payment: None,
        }
    }

    fn debit(user: &EndUserId, amount: i64, key: Option<&str>) -> Write {
        Write::Subtract(Arc::new(
            SubtractCredits::parse(SubtractCreditsRequest {
                end_user_id: user.clone(),
                amount,
                description: None,
                metadata: None,
                idempotency_key: key.map(str::to_owned),
            })
            .unwrap(),
        ))
    }

    fn add(user: &EndUserId, amount: i64, now: DateTime<Utc>) -> Write {
        Write::Add(Arc::new(
            AddCredits::parse(
                AddCreditsRequest {
                    end_user_id: user.clone(),
                    amount,
                    validity_days: Some(30),
                    expires_at: None,
                    effective_at: None,
                    source: GrantSource::Promotion,
                    priority: None,
                    description: None,
                    metadata: None,
                    idempotency_key: None,
                },
                now,
            )
            .unwrap(),
        ))
    }

    fn account(user: &EndUserId, last_seq: i64, grants: Vec<Grant>) -> LoadedAccount {
        LoadedAccount {
            end_user_id: user.clone(),
            last_seq,
            grants,
        }
    }

    #[test]
    fn writes_of_one_end_user_see_each_other_in_arrival_order() {
        let now = Utc::now();
        let alice = user();
        let mut batch = Batch::new(
            vec![account(
                &alice,
                4,
                vec![grant(&alice, 10, Duration::days(5), now)],
            )],
            HashMap::new(),
            now,
        );
        let first = batch.decide(&debit(&alice, 6, None));
        let refused = batch.decide(&debit(&alice, 6, None));
        let granted = batch.decide(&add(&alice, 20, now));
        let after_grant = batch.decide(&debit(&alice, 6, None));
        assert!(
            matches!(&first, Decision::Subtracted { entry, balance } if entry.seq == 5 && balance.available == 4)
        );
        assert!(matches!(
            refused,
            Decision::Refused(Error::InsufficientCredits {
                available: 4,
                requested: 6
            })
        ));
        assert!(
            matches!(&granted, Decision::Added { entry, balance, .. } if entry.seq == 6 && balance.available == 24)
        );
        // The soonest-expiring grant first: 4 from the old one, 2 from the new one.
        let Decision::Subtracted { entry, balance } = after_grant else {
            panic!("the last debit fits");
        };
        assert_eq!((entry.seq, balance.available), (7, 18));
        assert_eq!(
            entry
                .allocations
                .iter()
                .map(|a| a.amount)
                .collect::<Vec<_>>(),
            [4, 2]
        );

        let changes = batch.finish();
        assert_eq!(changes.entries.len(), 3, "the refusal wrote nothing");
        assert_eq!(changes.last_seqs, vec![(alice, 7)]);
        assert_eq!(changes.new_grants.len(), 1);
        assert_eq!(
            changes.new_grants[0].remaining, 18,
            "a new grant is inserted as the batch left it"
        );
        assert_eq!(
            changes.taken.values().copied().collect::<Vec<_>>(),
            [10],
            "the old grant is updated by what was taken"
        );
    }

    #[test]
    fn a_key_used_twice_in_one_batch_replays_or_conflicts() {
        let now = Utc::now();
        let (alice, bob) = (user(), user());
        let mut batch = Batch::new(
            vec![
                account(&alice, 0, vec![grant(&alice, 100, Duration::days(5), now)]),
                account(&bob, 0, vec![grant(&bob, 100, Duration::days(5), now)]),
            ],
            HashMap::new(),
            now,
        );
        let Decision::Subtracted { entry, .. } = batch.decide(&debit(&alice, 5, Some("k1"))) else {
            panic!("the first use applies");
        };
        assert!(
            matches!(batch.decide(&debit(&alice, 5, Some("k1"))), Decision::Replay { entry_id } if entry_id == entry.id)
        );
        assert!(matches!(
            batch.decide(&debit(&alice, 6, Some("k1"))),
            Decision::Refused(Error::IdempotencyConflict { .. })
        ));
        assert!(matches!(
            batch.decide(&debit(&bob, 5, Some("k1"))),
            Decision::Refused(Error::IdempotencyConflict { .. })
        ));
        let changes = batch.finish();
        assert_eq!(changes.entries.len(), 1);
        assert_eq!(changes.keys.len(), 1, "the key is recorded once");
    }

    #[test]
    fn a_key_stored_before_the_batch_replays() {
        let now = Utc::now();
        let alice = user();
        let first = debit(&alice, 5, Some("k2"));
        let Write::Subtract(request) = &first else {
            unreachable!()
        };
        let earlier_entry = Uuid::now_v7();
        let stored = HashMap::from([(
            "k2".to_owned(),
            StoredKey {
                operation: subtract_credits::OPERATION.to_owned(),
                request_hash: request.request_hash.clone(),
                entry_id: earlier_entry,
            },
        )]);
        let mut batch = Batch::new(
            vec![account(
                &alice,
                1,
                vec![grant(&alice, 100, Duration::days(5), now)],
            )],
            stored,
            now,
        );
        assert!(
            matches!(batch.decide(&first), Decision::Replay { entry_id } if entry_id == earlier_entry)
        );
        assert!(batch.finish().is_empty());
    }

    #[test]
    fn expiries_are_recorded_before_the_writes_even_when_they_are_refused() {
        let now = Utc::now();
        let alice = user();
        let expired = grant(&alice, 30, -Duration::hours(1), now);
        let live = grant(&alice, 10, Duration::days(5), now);
        let mut batch = Batch::new(
            vec![account(&alice, 2, vec![expired.clone(), live])],
            HashMap::new(),
            now,
        );
        assert!(matches!(
            batch.decide(&debit(&alice, 11, None)),
            Decision::Refused(Error::InsufficientCredits { available: 10, .. })
        ));
        let changes = batch.finish();
        assert_eq!(changes.entries.len(), 1);
        let expiry = &changes.entries[0];
        assert_eq!(
            (expiry.kind, expiry.seq, expiry.amount, expiry.balance_after),
            (EntryKind::Expiry, 3, 30, 10)
        );
        assert_eq!(changes.taken.get(&expired.id), Some(&30));
        assert_eq!(changes.last_seqs, vec![(alice, 3)]);
    }

    #[test]
    fn end_users_in_one_batch_do_not_touch_each_other() {
        let now = Utc::now();
        let (alice, bob) = (user(), user());
        let mut batch = Batch::new(
            vec![
                account(&alice, 0, vec![grant(&alice, 3, Duration::days(5), now)]),
                account(&bob, 9, vec![grant(&bob, 50, Duration::days(5), now)]),
            ],
            HashMap::new(),
            now,
        );
        assert!(matches!(
            batch.decide(&debit(&alice, 4, None)),
            Decision::Refused(_)
        ));
        assert!(
            matches!(batch.decide(&debit(&bob, 4, None)), Decision::Subtracted { ref entry, .. } if entry.seq == 10)
        );
        let changes = batch.finish();
        assert_eq!(changes.last_seqs, vec![(bob.clone(), 10)]);
        assert!(changes.entries.iter().all(|e| e.end_user_id == bob));
    }
}
