//! `tally verify`: replays the ledger against the stored grants, holds and accounts, and lists
//! every difference (ledger rule 4 in docs/ledger.md: a check that anyone can run proves the ledger).
//!
//! It reads everything into memory: run it against a replica or off-peak on large ledgers.

use std::collections::HashMap;

use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

use super::holds::HoldStatus;
use super::types::EntryKind;
use crate::entities::{account, grant, hold, hold_allocation, ledger_allocation, ledger_entry};
use crate::error::Result;

/// Every difference found; empty when the ledger and the stored state agree.
pub async fn verify(db: &DatabaseConnection) -> Result<Vec<String>> {
    let grants = grant::Entity::find().all(db).await?;
    let entries = ledger_entry::Entity::find().all(db).await?;
    let allocations = ledger_allocation::Entity::find().all(db).await?;
    let accounts = account::Entity::find().all(db).await?;
    let holds = hold::Entity::find().all(db).await?;
    let earmarks = hold_allocation::Entity::find().all(db).await?;
    let mut problems = Vec::new();

    let mut taken_from: HashMap<Uuid, i64> = HashMap::new();
    let mut allocated_by_entry: HashMap<Uuid, i64> = HashMap::new();
    for allocation in &allocations {
        *taken_from.entry(allocation.grant_id).or_default() += allocation.amount;
        *allocated_by_entry.entry(allocation.entry_id).or_default() += allocation.amount;
    }
    let open_holds: HashMap<Uuid, &hold::Model> = holds
        .iter()
        .filter(|h| h.status == HoldStatus::Open.as_str())
        .map(|h| (h.id, h))
        .collect();
    let mut held_on: HashMap<Uuid, i64> = HashMap::new();
    let mut earmarked_by_hold: HashMap<Uuid, i64> = HashMap::new();
    for earmark in earmarks
        .iter()
        .filter(|e| open_holds.contains_key(&e.hold_id))
    {
        *held_on.entry(earmark.grant_id).or_default() += earmark.amount;
        *earmarked_by_hold.entry(earmark.hold_id).or_default() += earmark.amount;
    }

    for grant in &grants {
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

    for (hold_id, hold) in &open_holds {
        let earmarked = earmarked_by_hold.get(hold_id).copied().unwrap_or(0);
        if earmarked != hold.amount {
            problems.push(format!(
                "hold {hold_id}: amount {} but earmarks {earmarked}",
                hold.amount
            ));
        }
    }

    let mut seqs: HashMap<String, Vec<i64>> = HashMap::new();
    for entry in &entries {
        seqs.entry(entry.end_user_id.clone())
            .or_default()
            .push(entry.seq);
        let allocated = allocated_by_entry.get(&entry.id).copied().unwrap_or(0);
        let expected = match EntryKind::from_stored(&entry.kind) {
            Ok(
                EntryKind::Debit
                | EntryKind::Capture
                | EntryKind::Expiry
                | EntryKind::Void
                | EntryKind::Clawback,
            ) => Some(entry.amount),
            Ok(EntryKind::Reversal) => Some(-entry.amount),
            Ok(EntryKind::Grant | EntryKind::Renewal | EntryKind::Hold | EntryKind::Release) => {
                Some(0)
            }
            Err(_) => {
                problems.push(format!("entry {}: unknown kind '{}'", entry.id, entry.kind));
                None
            }
        };
        if let Some(expected) = expected
            && allocated != expected
        {
            problems.push(format!(
                "entry {} ({}): amount {} but allocations add up to {allocated}",
                entry.id, entry.kind, entry.amount
            ));
        }
    }
    for account in &accounts {
        let mut own = seqs.remove(&account.end_user_id).unwrap_or_default();
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
    Ok(problems)
}
