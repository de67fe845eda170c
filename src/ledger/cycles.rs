//! Recurring cycles (subscription credits; Creduse's "recurring cycle").
//!
//! `start_cycle` grants the first period (a SUBSCRIPTION grant expiring at the period's end).
//! When a period ends, its grant expires as any grant does, and an active cycle renews: a fresh
//! grant of `amount` for the next period (a RENEWAL entry), plus, when `rollover_max > 0`, a
//! second grant carrying over up to `rollover_max` of what the old period's grant lost to expiry.
//! `stop_cycle` cancels renewal; the current period's credits stay usable until it ends.
//!
//! Renewal is done by the expiry scheduler on time (and by any write that finds it due first),
//! under the account lock, so two processes renew a period once. After downtime a cycle resumes
//! at the period containing now: missed periods are not granted, and rollover comes from the
//! last period that was granted.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::account_write::AccountWrite;
use super::entry::Entry;
use super::grant::Grant;
use super::idempotency::{self, Keyed, Start};
use super::renewal_plan::{period_containing, rollover};
use super::types::{Amount, EndUserId, EntryKind, GrantSource, IdempotencyKey, MAX_VALIDITY_DAYS};
use super::{Balance, Ledger, retry_once_on_unique_violation, store};
use crate::entities::cycle;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CycleStatus {
    Active,
    Canceled,
}

impl CycleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Canceled => "canceled",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Cycle {
    pub id: Uuid,
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub validity_days: i32,
    pub rollover_max: i64,
    pub status: CycleStatus,
    pub current_period_start: DateTime<Utc>,
    pub current_period_end: DateTime<Utc>,
    pub current_grant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
}

impl Cycle {
    pub fn from_model(model: cycle::Model) -> Result<Self> {
        let status = match model.status.as_str() {
            "active" => CycleStatus::Active,
            "canceled" => CycleStatus::Canceled,
            other => return Err(Error::Internal(format!("unknown cycle status '{other}'"))),
        };
        Ok(Self {
            id: model.id,
            end_user_id: EndUserId::from_stored(model.end_user_id),
            amount: model.amount,
            validity_days: model.validity_days,
            rollover_max: model.rollover_max,
            status,
            current_period_start: model.current_period_start,
            current_period_end: model.current_period_end,
            current_grant_id: model.current_grant_id,
            created_at: model.created_at,
            canceled_at: model.canceled_at,
        })
    }

    fn period(&self) -> Duration {
        Duration::days(i64::from(self.validity_days))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StartCycleRequest {
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub validity_days: i64,
    pub rollover_max: i64,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

pub struct CycleOutcome {
    pub cycle: Cycle,
    pub balance: Balance,
    pub replayed: bool,
}

const START: &str = "start_cycle";

impl Ledger {
    pub async fn start_cycle(&self, request: StartCycleRequest) -> Result<CycleOutcome> {
        let hash = idempotency::request_hash(START, &request)?;
        let user = &request.end_user_id;
        let amount = Amount::parse("amount", request.amount)?;
        if !(1..=MAX_VALIDITY_DAYS).contains(&request.validity_days) {
            return Err(Error::bad_input(
                "validityDays",
                format!("must be from 1 to {MAX_VALIDITY_DAYS}"),
            ));
        }
        if !(0..=super::MAX_CREDITS).contains(&request.rollover_max) {
            return Err(Error::bad_input("rolloverMax", "must be 0 or more"));
        }
        let key = IdempotencyKey::parse(request.idempotency_key.clone())?;
        retry_once_on_unique_violation(|| async {
            let keyed = Keyed::new(key.as_ref(), START, &hash);
            let mut write = match self.begin_keyed_write(user, keyed).await? {
                Start::Write(write) => write,
                Start::Replay(entry_id) => {
                    let entry = idempotency::replayed_entry(&self.db, entry_id).await?;
                    let cycle = match entry.grant_id {
                        Some(grant_id) => store::cycle_granting(&self.db, grant_id).await?,
                        None => None,
                    }
                    .ok_or_else(|| Error::Internal("replayed cycle missing".into()))?;
                    return Ok(CycleOutcome {
                        cycle,
                        balance: self.balance(user.clone()).await?,
                        replayed: true,
                    });
                }
            };
            write.load().await?;
            if store::active_cycle(&write.txn, user).await?.is_some() {
                return write.refuse(&self.events, Error::ActiveCycleExists).await;
            }
            let outstanding: i64 = write.grants.iter().map(|g| g.remaining).sum();
            if outstanding
                .checked_add(amount.get())
                .is_none_or(|total| total > super::MAX_CREDITS)
            {
                let refusal = Error::bad_input(
                    "amount",
                    "would take the end user's credits to more than 2^53 - 1",
                );
                return write.refuse(&self.events, refusal).await;
            }
            let now = write.now;
            let cycle_id = Uuid::now_v7();
            let end = now + Duration::days(request.validity_days);
            let grant = cycle_grant(user, cycle_id, amount.get(), now, end, None);
            let entry = grant_period(&mut write, &grant, EntryKind::Grant, None).await?;
            keyed.record(&write, entry.id).await?;
            let cycle = Cycle {
                id: cycle_id,
                end_user_id: user.clone(),
                amount: amount.get(),
                validity_days: request.validity_days as i32,
                rollover_max: request.rollover_max,
                status: CycleStatus::Active,
                current_period_start: now,
                current_period_end: end,
                current_grant_id: grant.id,
                created_at: now,
                canceled_at: None,
            };
            store::insert_cycle(&write.txn, &cycle).await?;
            let balance = Balance::from_grants(user.clone(), &write.grants, now);
            write.commit(&self.events).await?;
            self.expiry_alarm.falls_due(cycle.current_period_end);
            Ok(CycleOutcome {
                cycle,
                balance,
                replayed: false,
            })
        })
        .await
    }

    /// Cancels renewal of the end user's active cycle; its current period runs out as usual.
    pub async fn stop_cycle(&self, end_user_id: EndUserId) -> Result<Cycle> {
        let mut write = self.begin_write(&end_user_id).await?;
        write.load().await?;
        let Some(mut cycle) = store::active_cycle(&write.txn, &end_user_id).await? else {
            return write.refuse(&self.events, Error::NoActiveCycle).await;
        };
        cycle.status = CycleStatus::Canceled;
        cycle.canceled_at = Some(write.now);
        store::update_cycle(&write.txn, &cycle).await?;
        // No ledger entry: the balance does not change. Commit even so.
        write.commit_even_if_empty(&self.events).await?;
        Ok(cycle)
    }

    /// All the end user's cycles.
    pub async fn cycles(&self, end_user_id: EndUserId) -> Result<Vec<Cycle>> {
        store::cycles_of(&self.db, &end_user_id).await
    }

    /// The end user's most recent cycle, active or not.
    pub async fn cycle(&self, end_user_id: EndUserId) -> Result<Option<Cycle>> {
        store::latest_cycle(&self.db, &end_user_id).await
    }
}

fn cycle_grant(
    user: &EndUserId,
    cycle_id: Uuid,
    amount: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    description: Option<&str>,
) -> Grant {
    Grant {
        id: Uuid::now_v7(),
        end_user_id: user.clone(),
        amount,
        remaining: amount,
        source: GrantSource::Subscription,
        effective_at: start,
        expires_at: Some(end),
        priority: None,
        description: description.map(str::to_owned),
        metadata: None,
        created_at: start,
        voided_at: None,
        held: 0,
        cycle_id: Some(cycle_id),
        payment: None,
    }
}

async fn grant_period(
    write: &mut AccountWrite,
    grant: &Grant,
    kind: EntryKind,
    not_before: Option<DateTime<Utc>>,
) -> Result<Entry> {
    store::insert_grant(&write.txn, grant).await?;
    write.grants.push(grant.clone());
    // A renewal happened at the period boundary; but never before entries already written.
    let at = [write.last_entry_at(), not_before]
        .into_iter()
        .flatten()
        .fold(grant.created_at, DateTime::max);
    let mut entry = Entry::new(
        kind,
        write.end_user_id.clone(),
        write.take_seq(),
        grant.amount,
        write.available(),
        at,
    );
    entry.grant_id = Some(grant.id);
    entry.description = grant.description.clone();
    write.insert_entry(&entry).await?;
    Ok(entry)
}

/// Renews the end user's active cycle if its period has ended. Called by `AccountWrite::load`
/// after due expiries are recorded, so the old period's expiry precedes the renewal.
pub async fn renew_due(write: &mut AccountWrite) -> Result<()> {
    let now = write.now;
    let Some(mut cycle) = store::active_cycle(&write.txn, &write.end_user_id).await? else {
        return Ok(());
    };
    if cycle.current_period_end > now {
        return Ok(());
    }
    let (start, end) = period_containing(cycle.current_period_end, cycle.period(), now);
    let expired = super::aggregates::expired_amount(&write.txn, cycle.current_grant_id).await?;
    let rollover = rollover(expired, cycle.rollover_max);

    let grant = cycle_grant(&write.end_user_id, cycle.id, cycle.amount, start, end, None);
    // A renewal the scheduler makes late (the period's grant was used up, so no write did it)
    // is dated after every entry already in the ledger.
    let latest = store::latest_entry_at(&write.txn, &write.end_user_id).await?;
    grant_period(write, &grant, EntryKind::Renewal, latest).await?;
    if rollover > 0 {
        let carried = cycle_grant(
            &write.end_user_id,
            cycle.id,
            rollover,
            start,
            end,
            Some("rollover from the previous period"),
        );
        grant_period(write, &carried, EntryKind::Renewal, latest).await?;
    }
    cycle.current_period_start = start;
    cycle.current_period_end = end;
    cycle.current_grant_id = grant.id;
    store::update_cycle(&write.txn, &cycle).await?;
    Ok(())
}
