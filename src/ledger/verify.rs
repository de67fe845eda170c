//! `tally verify`: replays the ledger against the stored grants, holds and accounts, and lists
//! every difference (ledger rule 4 in docs/ledger.md: a check that anyone can run proves the ledger).
//!
//! It reads everything into memory: run it against a replica or off-peak on large ledgers.

use std::collections::{HashMap, HashSet};

use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

use super::holds::HoldStatus;
use super::types::EntryKind;
use crate::entities::{account, grant, hold, hold_allocation, ledger_allocation, ledger_entry};
use crate::error::Result;

/// Every difference found; empty when the ledger and the stored state agree.
pub async fn verify(db: &DatabaseConnection) -> Result<Vec<String>> {
    let stored = Stored {
        grants: grant::Entity::find().all(db).await?,
        entries: ledger_entry::Entity::find().all(db).await?,
        allocations: ledger_allocation::Entity::find().all(db).await?,
        accounts: account::Entity::find().all(db).await?,
        holds: hold::Entity::find().all(db).await?,
        earmarks: hold_allocation::Entity::find().all(db).await?,
    };
    Ok(problems_in(&stored))
}

/// Every row `verify` compares.
struct Stored {
    grants: Vec<grant::Model>,
    entries: Vec<ledger_entry::Model>,
    allocations: Vec<ledger_allocation::Model>,
    accounts: Vec<account::Model>,
    holds: Vec<hold::Model>,
    earmarks: Vec<hold_allocation::Model>,
}

/// Credits per grant, entry or hold id.
type CreditsBy = HashMap<Uuid, i64>;

fn problems_in(stored: &Stored) -> Vec<String> {
    let (taken_from, allocated_by_entry) = allocation_sums(&stored.allocations);
    let open_holds: HashMap<Uuid, &hold::Model> = stored
        .holds
        .iter()
        .filter(|h| h.status == HoldStatus::Open.as_str())
        .map(|h| (h.id, h))
        .collect();
    let (held_on, earmarked_by_hold) = open_earmark_sums(&stored.earmarks, &open_holds);
    let mut problems = grant_problems(&stored.grants, &taken_from, &held_on);
    problems.extend(hold_problems(&open_holds, &earmarked_by_hold));
    problems.extend(entry_problems(&stored.entries, &allocated_by_entry));
    problems.extend(orphan_allocations(
        &stored.grants,
        &stored.entries,
        &taken_from,
        &allocated_by_entry,
    ));
    problems.extend(sequence_problems(&stored.entries, &stored.accounts));
    problems
}

/// What the allocations took, per grant and per entry.
fn allocation_sums(allocations: &[ledger_allocation::Model]) -> (CreditsBy, CreditsBy) {
    let mut taken_from = CreditsBy::new();
    let mut allocated_by_entry = CreditsBy::new();
    for allocation in allocations {
        *taken_from.entry(allocation.grant_id).or_default() += allocation.amount;
        *allocated_by_entry.entry(allocation.entry_id).or_default() += allocation.amount;
    }
    (taken_from, allocated_by_entry)
}

/// What open holds earmark, per grant and per hold.
fn open_earmark_sums(
    earmarks: &[hold_allocation::Model],
    open_holds: &HashMap<Uuid, &hold::Model>,
) -> (CreditsBy, CreditsBy) {
    let mut held_on = CreditsBy::new();
    let mut earmarked_by_hold = CreditsBy::new();
    for earmark in earmarks
        .iter()
        .filter(|e| open_holds.contains_key(&e.hold_id))
    {
        *held_on.entry(earmark.grant_id).or_default() += earmark.amount;
        *earmarked_by_hold.entry(earmark.hold_id).or_default() += earmark.amount;
    }
    (held_on, earmarked_by_hold)
}

/// Grants whose `remaining` or `held` disagree with the allocations and open holds.
fn grant_problems(
    grants: &[grant::Model],
    taken_from: &CreditsBy,
    held_on: &CreditsBy,
) -> Vec<String> {
    let mut problems = Vec::new();
    for grant in grants {
        let taken = taken_from.get(&grant.id).copied().unwrap_or(0);
        if grant.remaining != grant.amount - taken {
            problems.push(format!(
                "grant {}: remaining {} but amount {} less allocations {} is {}",
                grant.id,
                grant.remaining,
                grant.amount,
                taken,
                grant.amount - taken
            ));
        }
        let held = held_on.get(&grant.id).copied().unwrap_or(0);
        if grant.held != held {
            problems.push(format!(
                "grant {}: held {} but open holds earmark {}",
                grant.id, grant.held, held
            ));
        }
        if grant.held < 0 || grant.held > grant.remaining {
            problems.push(format!(
                "grant {}: held {} outside 0..=remaining {}",
                grant.id, grant.held, grant.remaining
            ));
        }
    }
    problems
}

/// Open holds whose earmarks do not add up to their amount.
fn hold_problems(
    open_holds: &HashMap<Uuid, &hold::Model>,
    earmarked_by_hold: &CreditsBy,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (hold_id, hold) in open_holds {
        let earmarked = earmarked_by_hold.get(hold_id).copied().unwrap_or(0);
        if earmarked != hold.amount {
            problems.push(format!(
                "hold {hold_id}: amount {} but earmarks {earmarked}",
                hold.amount
            ));
        }
    }
    problems
}

/// Entries of an unknown kind, or whose allocations do not add up to what their kind takes.
fn entry_problems(entries: &[ledger_entry::Model], allocated_by_entry: &CreditsBy) -> Vec<String> {
    let mut problems = Vec::new();
    for entry in entries {
        let Ok(kind) = EntryKind::from_stored(&entry.kind) else {
            problems.push(format!("entry {}: unknown kind '{}'", entry.id, entry.kind));
            continue;
        };
        let allocated = allocated_by_entry.get(&entry.id).copied().unwrap_or(0);
        if allocated != allocated_credits(kind, entry.amount) {
            problems.push(format!(
                "entry {} ({}): amount {} but allocations add up to {allocated}",
                entry.id, entry.kind, entry.amount
            ));
        }
    }
    problems
}

/// Allocations whose grant or entry does not exist. (On PostgreSQL no foreign key stops them:
/// see the migration `m20261206_000010_lean_ledger_appends`.)
fn orphan_allocations(
    grants: &[grant::Model],
    entries: &[ledger_entry::Model],
    taken_from: &CreditsBy,
    allocated_by_entry: &CreditsBy,
) -> Vec<String> {
    let grant_ids: HashSet<Uuid> = grants.iter().map(|g| g.id).collect();
    let entry_ids: HashSet<Uuid> = entries.iter().map(|e| e.id).collect();
    let mut problems: Vec<String> = taken_from
        .iter()
        .filter(|(id, _)| !grant_ids.contains(id))
        .map(|(id, amount)| {
            format!("grant {id}: allocations take {amount} from a grant that does not exist")
        })
        .collect();
    problems.extend(
        allocated_by_entry
            .iter()
            .filter(|(id, _)| !entry_ids.contains(id))
            .map(|(id, amount)| {
                format!("entry {id}: allocations of {amount} for an entry that does not exist")
            }),
    );
    problems.sort_unstable();
    problems
}

/// What an entry of `kind` moving `amount` credits allocates in all: what it takes from
/// grants, negative for what it gives back; holds and grants allocate nothing.
fn allocated_credits(kind: EntryKind, amount: i64) -> i64 {
    match kind {
        EntryKind::Debit
        | EntryKind::Capture
        | EntryKind::Expiry
        | EntryKind::Void
        | EntryKind::Clawback => amount,
        EntryKind::Reversal => -amount,
        EntryKind::Grant | EntryKind::Renewal | EntryKind::Hold | EntryKind::Release => 0,
    }
}

/// End users whose entries are not numbered 1, 2, 3… up to their account's last sequence
/// number, and entries without an account.
fn sequence_problems(entries: &[ledger_entry::Model], accounts: &[account::Model]) -> Vec<String> {
    let mut seqs: HashMap<&str, Vec<i64>> = HashMap::new();
    for entry in entries {
        seqs.entry(entry.end_user_id.as_str())
            .or_default()
            .push(entry.seq);
    }
    let mut problems = Vec::new();
    for account in accounts {
        let mut own = seqs
            .remove(account.end_user_id.as_str())
            .unwrap_or_default();
        own.sort_unstable();
        let expected: Vec<i64> = (1..=account.last_seq).collect();
        if own != expected {
            problems.push(format!(
                "end user {}: entries numbered {:?}… but the account says 1..={}",
                account.end_user_id,
                own.iter().take(10).collect::<Vec<_>>(),
                account.last_seq
            ));
        }
    }
    for (end_user_id, _) in seqs {
        problems.push(format!(
            "end user {end_user_id}: entries without an account"
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::{Stored, problems_in};
    use crate::entities::{account, grant, ledger_allocation, ledger_entry};

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("a valid instant")
    }

    fn grant(amount: i64, remaining: i64) -> grant::Model {
        grant::Model {
            id: Uuid::now_v7(),
            end_user_id: "u".into(),
            amount,
            remaining,
            source: "manual".into(),
            effective_at: at(),
            expires_at: None,
            priority: None,
            description: None,
            metadata: None,
            created_at: at(),
            voided_at: None,
            held: 0,
            cycle_id: None,
            reference: None,
            payment_reference: None,
            paid_amount: None,
            paid_currency: None,
        }
    }

    fn entry(seq: i64, kind: &str, amount: i64) -> ledger_entry::Model {
        ledger_entry::Model {
            id: Uuid::now_v7(),
            end_user_id: "u".into(),
            seq,
            kind: kind.into(),
            amount,
            balance_after: 0,
            grant_id: None,
            description: None,
            metadata: None,
            idempotency_key: None,
            created_at: at(),
            hold_id: None,
            reversed_entry_id: None,
        }
    }

    /// A grant of 10, a debit of 3 from it and a reversal of 1: what a ledger that agrees with
    /// its stored state looks like.
    fn consistent() -> Stored {
        let grant = grant(10, 8);
        let granted = entry(1, "grant", 10);
        let debit = entry(2, "debit", 3);
        let reversal = entry(3, "reversal", 1);
        let allocation = |entry: &ledger_entry::Model, amount, position| ledger_allocation::Model {
            entry_id: entry.id,
            grant_id: grant.id,
            amount,
            position,
        };
        Stored {
            allocations: vec![allocation(&debit, 3, 0), allocation(&reversal, -1, 0)],
            grants: vec![grant],
            entries: vec![granted, debit, reversal],
            accounts: vec![account::Model {
                end_user_id: "u".into(),
                last_seq: 3,
                created_at: at(),
                updated_at: at(),
            }],
            holds: Vec::new(),
            earmarks: Vec::new(),
        }
    }

    #[test]
    fn a_consistent_ledger_has_no_problems() {
        assert_eq!(problems_in(&consistent()), Vec::<String>::new());
    }

    #[test]
    fn each_difference_is_one_problem() {
        let mut stored = consistent();
        stored.grants[0].remaining = 9;
        let problems = problems_in(&stored);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("remaining 9 but amount 10 less allocations 2 is 8"));

        let mut stored = consistent();
        stored.entries[1].amount = 4;
        let problems = problems_in(&stored);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("amount 4 but allocations add up to 3"));

        let mut stored = consistent();
        stored.accounts[0].last_seq = 4;
        let problems = problems_in(&stored);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("entries numbered [1, 2, 3]… but the account says 1..=4"));

        let mut stored = consistent();
        stored.accounts.clear();
        assert_eq!(
            problems_in(&stored),
            vec!["end user u: entries without an account".to_owned()]
        );

        let mut stored = consistent();
        let missing_grant = stored.grants.remove(0).id;
        let problems = problems_in(&stored);
        assert_eq!(
            problems,
            vec![format!(
                "grant {missing_grant}: allocations take 2 from a grant that does not exist"
            )]
        );

        let mut stored = consistent();
        let missing_entry = stored.entries.remove(2).id;
        stored.accounts[0].last_seq = 2;
        let problems = problems_in(&stored);
        assert_eq!(
            problems,
            vec![format!(
                "entry {missing_entry}: allocations of -1 for an entry that does not exist"
            )]
        );

        let mut stored = consistent();
        stored.entries[0].kind = "gift".into();
        let problems = problems_in(&stored);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("unknown kind 'gift'"));
    }
}
