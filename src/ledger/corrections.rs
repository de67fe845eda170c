//! Voids and reversals: corrections that leave their own ledger entries.
//!
//! `void_grant` takes what remains of a grant (a VOID entry) and marks it voided. A grant with
//! credits earmarked by open holds cannot be voided until those holds close.
//!
//! `reverse_debit` gives back up to what a debit (or a capture) took, to the grants it took
//! from, latest-drawn first; partial reversals may not add up to more than the debit took.
//! Credits given back to a grant that has expired (or been voided) since are recorded, then
//! leave again at once through an EXPIRY (or VOID) entry: a reversal never revives a grant.

use serde::Serialize;
use uuid::Uuid;

use super::account_write::AccountWrite;
use super::burn_down::Allocation;
use super::entry::Entry;
use super::grant::Grant;
use super::idempotency::{self, Keyed, Start};
use super::reversal_plan::{NotReversible, plan_reversal};
use super::types::{Description, EndUserId, EntryKind, IdempotencyKey};
use super::{Balance, Ledger, retry_once_on_unique_violation, store};
use crate::error::{Error, Result};

#[derive(Clone, Debug, Serialize)]
pub struct VoidGrantRequest {
    pub grant_id: Uuid,
    pub reason: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ReverseDebitRequest {
    pub entry_id: Uuid,
    /// All that is left to reverse when `None`.
    pub amount: Option<i64>,
    pub reason: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

pub struct CorrectionOutcome {
    pub entry: Entry,
    pub balance: Balance,
    pub replayed: bool,
}

const VOID: &str = "void_grant";
const REVERSE: &str = "reverse_debit";

impl Ledger {
    pub async fn void_grant(&self, request: VoidGrantRequest) -> Result<CorrectionOutcome> {
        let hash = idempotency::request_hash(VOID, &request)?;
        let reason = Description::parse_as("reason", request.reason.clone())?;
        let key = IdempotencyKey::parse(request.idempotency_key.clone())?;
        let user = store::find_grant(&self.db, request.grant_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no grant with id {}", request.grant_id)))?
            .end_user_id;
        retry_once_on_unique_violation(|| async {
            let keyed = Keyed::new(key.as_ref(), VOID, &hash);
            let mut write = match self.begin_keyed_write(&user, keyed).await? {
                Start::Write(write) => write,
                Start::Replay(entry_id) => return self.correction_replay(&user, entry_id).await,
            };
            write.load().await?;
            let Some(grant) = store::find_grant(&write.txn, request.grant_id).await? else {
                let refusal = Error::NotFound("grant vanished".into());
                return write.refuse(&self.events, refusal).await;
            };
            if grant.voided_at.is_some() {
                let refusal = Error::bad_input("grantId", "the grant is already voided");
                return write.refuse(&self.events, refusal).await;
            }
            if grant.held > 0 {
                let refusal = Error::bad_input(
                    "grantId",
                    format!(
                        "{} of its credits are held by open holds: capture or release them first",
                        grant.held
                    ),
                );
                return write.refuse(&self.events, refusal).await;
            }
            let entry =
                record_void(&mut write, &grant, reason.as_ref(), key.as_ref(), None).await?;
            self.commit_correction(write, &keyed, entry).await
        })
        .await
    }

    pub async fn reverse_debit(&self, request: ReverseDebitRequest) -> Result<CorrectionOutcome> {
        let hash = idempotency::request_hash(REVERSE, &request)?;
        if let Some(amount) = request.amount {
            super::types::Amount::parse("amount", amount)?;
        }
        let reason = Description::parse_as("reason", request.reason.clone())?;
        let key = IdempotencyKey::parse(request.idempotency_key.clone())?;
        let debit = self.reversible_entry(request.entry_id).await?;
        let user = &debit.end_user_id;
        retry_once_on_unique_violation(|| async {
            let keyed = Keyed::new(key.as_ref(), REVERSE, &hash);
            let mut write = match self.begin_keyed_write(user, keyed).await? {
                Start::Write(write) => write,
                Start::Replay(entry_id) => return self.correction_replay(user, entry_id).await,
            };
            write.load().await?;
            // What earlier reversals already gave back, per grant.
            let earlier = super::aggregates::returned_by_reversals(&write.txn, debit.id).await?;
            let returnable = match plan_reversal(&debit.allocations, &earlier, request.amount) {
                Ok(plan) => plan,
                Err(not_reversible) => {
                    let refusal = not_reversible_refusal(&debit, not_reversible);
                    return write.refuse(&self.events, refusal).await;
                }
            };
            let entry = record_reversal(
                &mut write,
                &debit,
                &returnable,
                reason.as_ref(),
                key.as_ref(),
            )
            .await?;
            self.commit_correction(write, &keyed, entry).await
        })
        .await
    }

    /// Records the key, answers with the balance after the correction, and commits.
    async fn commit_correction(
        &self,
        write: AccountWrite,
        keyed: &Keyed<'_>,
        entry: Entry,
    ) -> Result<CorrectionOutcome> {
        keyed.record(&write, entry.id).await?;
        let balance = Balance::from_grants(write.end_user_id.clone(), &write.grants, write.now);
        write.commit(&self.events).await?;
        Ok(CorrectionOutcome {
            entry,
            balance,
            replayed: false,
        })
    }

    /// The entry `entry_id` names, when it is one a reversal may give back (a DEBIT or CAPTURE).
    async fn reversible_entry(&self, entry_id: Uuid) -> Result<Entry> {
        let entry = store::find_entry(&self.db, entry_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no ledger entry with id {entry_id}")))?;
        if !matches!(entry.kind, EntryKind::Debit | EntryKind::Capture) {
            return Err(Error::bad_input(
                "entryId",
                "only DEBIT and CAPTURE entries can be reversed",
            ));
        }
        Ok(entry)
    }

    async fn correction_replay(
        &self,
        user: &EndUserId,
        entry_id: Uuid,
    ) -> Result<CorrectionOutcome> {
        let entry = idempotency::replayed_entry(&self.db, entry_id).await?;
        Ok(CorrectionOutcome {
            entry,
            balance: self.balance(user.clone()).await?,
            replayed: true,
        })
    }
}

/// Takes what remains of `grant` in a VOID entry and marks it voided.
async fn record_void(
    write: &mut AccountWrite,
    grant: &Grant,
    reason: Option<&Description>,
    key: Option<&IdempotencyKey>,
    // The running balance after this entry, when the grant is not an active one.
    balance_after: Option<i64>,
) -> Result<Entry> {
    let taken = Allocation {
        grant_id: grant.id,
        amount: grant.remaining,
    };
    if taken.amount > 0 {
        if write.grant_mut(grant.id).is_none() {
            write.grants.push(grant.clone());
        }
        write.take(&[taken]).await?;
    }
    store::mark_voided(&write.txn, grant.id, write.now).await?;
    write.grants.retain(|g| g.id != grant.id);
    let mut entry = Entry::new(
        EntryKind::Void,
        write.end_user_id.clone(),
        write.take_seq(),
        taken.amount,
        balance_after.unwrap_or_else(|| write.available()),
        write.now,
    );
    entry.grant_id = Some(grant.id);
    entry.description = reason.map(|d| d.as_str().to_owned());
    entry.idempotency_key = key.map(|k| k.as_str().to_owned());
    if taken.amount > 0 {
        entry.allocations = vec![taken];
    }
    write.insert_entry(&entry).await?;
    Ok(entry)
}

/// The refusal of a reversal asking for more than `debit` has left to give back.
fn not_reversible_refusal(debit: &Entry, NotReversible { left }: NotReversible) -> Error {
    Error::bad_input(
        "amount",
        format!(
            "only {left} of the {} credits this entry took are left to reverse",
            debit.amount
        ),
    )
}

/// Gives `returnable` back to its grants in a REVERSAL entry of `debit`, then takes away again
/// at once what went to grants that have been voided, have expired, or were bought with a
/// payment since refunded: a reversal never revives a grant.
async fn record_reversal(
    write: &mut AccountWrite,
    debit: &Entry,
    returnable: &[Allocation],
    reason: Option<&Description>,
    key: Option<&IdempotencyKey>,
) -> Result<Entry> {
    debug_assert!(returnable.iter().all(|a| a.amount > 0), "a plan gives back");
    let amount: i64 = returnable.iter().map(|a| a.amount).sum();
    let give_back = given_back(returnable);
    load_used_up_grants(write, returnable).await?;
    // balanceAfter follows the running sum of deltas: the reversal adds all it gives back, even
    // to grants that have expired or been voided since (their EXPIRY or VOID entries below take
    // that part away again).
    let balance_after = write.available() + amount;
    write.take(&give_back).await?;
    let mut entry = Entry::new(
        EntryKind::Reversal,
        write.end_user_id.clone(),
        write.take_seq(),
        amount,
        balance_after,
        write.now,
    );
    entry.reversed_entry_id = Some(debit.id);
    entry.description = reason.map(|d| d.as_str().to_owned());
    entry.idempotency_key = key.map(|k| k.as_str().to_owned());
    entry.allocations = give_back;
    write.insert_entry(&entry).await?;
    void_given_back(write, balance_after).await?;
    write.expire_due().await?;
    // Credits given back to a refunded purchase are clawed back again.
    for allocation in returnable {
        super::purchase::claw_back_refunded(write, allocation.grant_id).await?;
    }
    Ok(entry)
}

/// The allocations of a reversal: what `returnable` names, going back to each grant.
fn given_back(returnable: &[Allocation]) -> Vec<Allocation> {
    returnable
        .iter()
        .map(|a| Allocation {
            grant_id: a.grant_id,
            amount: -a.amount,
        })
        .collect()
}

/// Grants that are used up are not loaded; brings in those `returnable` gives back to.
async fn load_used_up_grants(write: &mut AccountWrite, returnable: &[Allocation]) -> Result<()> {
    for allocation in returnable {
        if write.grant_mut(allocation.grant_id).is_none()
            && let Some(grant) = store::find_grant(&write.txn, allocation.grant_id).await?
        {
            write.grants.push(grant);
        }
    }
    Ok(())
}

/// Credits given back to a voided grant leave again at once, in a VOID entry each;
/// `balance_after` is the running balance before them.
async fn void_given_back(write: &mut AccountWrite, balance_after: i64) -> Result<()> {
    let voided: Vec<Grant> = write
        .grants
        .iter()
        .filter(|g| g.voided_at.is_some() && g.remaining > 0)
        .cloned()
        .collect();
    let mut running = balance_after;
    for grant in &voided {
        running -= grant.remaining;
        record_void(write, grant, None, None, Some(running)).await?;
    }
    Ok(())
}
