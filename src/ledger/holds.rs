//! Holds: authorize, then capture (credits reserved for work in progress; docs/ledger.md).
//!
//! A hold earmarks credits on specific grants, chosen in burn-down order when it is made
//! (`grants.held`, `hold_allocations`). Earmarked credits are not available to debits or other
//! holds, and they stay on their grant even if it expires or its other credits are spent: so a
//! capture within an open hold's amount never fails for lack of credits. When the hold closes
//! (captured, released, or past its deadline), what is not captured becomes available again;
//! on a grant that has expired meanwhile it expires at that moment (an EXPIRY entry).

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::burn_down::{Shortfall, plan_debit};
use super::entry::Entry;
use super::idempotency::{self, Keyed, Start};
use super::types::{Amount, Description, EndUserId, EntryKind, IdempotencyKey};
use super::{Balance, Ledger, retry_once_on_unique_violation, store};
use crate::entities::hold;
use crate::error::{Error, Result};

pub const MAX_HOLD_TTL_SECONDS: i64 = 30 * 24 * 60 * 60;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldStatus {
    Open,
    Captured,
    Released,
    /// Passed its deadline and was released by itself.
    Expired,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Captured => "captured",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    fn from_stored(value: &str) -> Result<Self> {
        [Self::Open, Self::Captured, Self::Released, Self::Expired]
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| Error::Internal(format!("unknown hold status '{value}'")))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    pub id: Uuid,
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub captured_amount: i64,
    pub status: HoldStatus,
    pub description: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
}

impl Hold {
    pub fn from_model(model: hold::Model) -> Result<Self> {
        Ok(Self {
            id: model.id,
            end_user_id: EndUserId::from_stored(model.end_user_id),
            amount: model.amount,
            captured_amount: model.captured_amount,
            status: HoldStatus::from_stored(&model.status)?,
            description: model.description,
            expires_at: model.expires_at,
            created_at: model.created_at,
            closed_at: model.closed_at,
        })
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CreateHoldRequest {
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub ttl_seconds: i64,
    pub description: Option<String>,
    #[serde(skip)]
    pub idempotency_key: Option<String>,
}

pub struct HoldOutcome {
    pub hold: Hold,
    /// The HOLD, CAPTURE or RELEASE entry the call recorded.
    pub entry: Option<Entry>,
    pub balance: Balance,
    pub replayed: bool,
}

const CREATE: &str = "create_hold";
const CAPTURE: &str = "capture_hold";
const RELEASE: &str = "release_hold";

impl Ledger {
    pub async fn create_hold(&self, request: CreateHoldRequest) -> Result<HoldOutcome> {
        let hash = idempotency::request_hash(CREATE, &request)?;
        let user = &request.end_user_id;
        let amount = Amount::parse("amount", request.amount)?;
        if !(1..=MAX_HOLD_TTL_SECONDS).contains(&request.ttl_seconds) {
            return Err(Error::bad_input(
                "ttlSeconds",
                format!("must be from 1 to {MAX_HOLD_TTL_SECONDS}"),
            ));
        }
        let description = Description::parse(request.description.clone())?;
        let key = IdempotencyKey::parse(request.idempotency_key.clone())?;
        retry_once_on_unique_violation(|| async {
            let keyed = Keyed::new(key.as_ref(), CREATE, &hash);
            let mut write = match self.begin_keyed_write(user, keyed).await? {
                Start::Write(write) => write,
                Start::Replay(entry_id) => return self.hold_replay(entry_id).await,
            };
            write.load().await?;
            let now = write.now;
            let earmarks = match plan_debit(&write.grants, amount.get(), now) {
                Ok(earmarks) => earmarks,
                Err(Shortfall {
                    available,
                    requested,
                }) => {
                    let refusal = Error::InsufficientCredits {
                        available,
                        requested,
                    };
                    return write.refuse(&self.events, refusal).await;
                }
            };
            write.change_held(&earmarks).await?;
            let hold = Hold {
                id: Uuid::now_v7(),
                end_user_id: user.clone(),
                amount: amount.get(),
                captured_amount: 0,
                status: HoldStatus::Open,
                description: description.as_ref().map(|d| d.as_str().to_owned()),
                expires_at: now + Duration::seconds(request.ttl_seconds),
                created_at: now,
                closed_at: None,
            };
            store::insert_hold(&write.txn, &hold, &earmarks).await?;
            let mut entry = Entry::new(
                EntryKind::Hold,
                user.clone(),
                write.take_seq(),
                hold.amount,
                write.available(),
                now,
            );
            entry.hold_id = Some(hold.id);
            entry.description = hold.description.clone();
            entry.idempotency_key = key.as_ref().map(|k| k.as_str().to_owned());
            write.insert_entry(&entry).await?;
            keyed.record(&write, entry.id).await?;
            let balance = Balance::from_grants(user.clone(), &write.grants, now);
            write.commit(&self.events).await?;
            self.expiry_alarm.falls_due(hold.expires_at);
            Ok(HoldOutcome {
                hold,
                entry: Some(entry),
                balance,
                replayed: false,
            })
        })
        .await
    }

    /// Spends `amount` of an open hold (all of it when `None`) and releases the rest.
    pub async fn capture_hold(
        &self,
        hold_id: Uuid,
        amount: Option<i64>,
        idempotency_key: Option<String>,
    ) -> Result<HoldOutcome> {
        if let Some(amount) = amount
            && amount < 0
        {
            return Err(Error::bad_input("amount", "must not be negative"));
        }
        self.close_hold(hold_id, amount, HoldStatus::Captured, idempotency_key)
            .await
    }

    pub async fn release_hold(
        &self,
        hold_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<HoldOutcome> {
        self.close_hold(hold_id, Some(0), HoldStatus::Released, idempotency_key)
            .await
    }

    async fn close_hold(
        &self,
        hold_id: Uuid,
        capture: Option<i64>,
        status: HoldStatus,
        idempotency_key: Option<String>,
    ) -> Result<HoldOutcome> {
        let operation = match status {
            HoldStatus::Released => RELEASE,
            _ => CAPTURE,
        };
        let hash = idempotency::request_hash(
            operation,
            &serde_json::json!({ "hold_id": hold_id, "amount": capture }),
        )?;
        let key = IdempotencyKey::parse(idempotency_key)?;
        let user = store::find_hold(&self.db, hold_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no hold with id {hold_id}")))?
            .end_user_id;
        let keyed = Keyed {
            key: key.as_ref(),
            operation,
            hash: &hash,
        };
        retry_once_on_unique_violation(|| {
            self.try_close_hold(hold_id, capture, status, keyed, &user)
        })
        .await
    }

    async fn try_close_hold(
        &self,
        hold_id: Uuid,
        capture: Option<i64>,
        status: HoldStatus,
        keyed: Keyed<'_>,
        user: &EndUserId,
    ) -> Result<HoldOutcome> {
        let mut write = match self.begin_keyed_write(user, keyed).await? {
            Start::Write(write) => write,
            Start::Replay(entry_id) => return self.hold_replay(entry_id).await,
        };
        write.load().await?;
        // Re-read under the lock: it may have closed (or passed its deadline) meanwhile.
        let Some(hold) = store::find_hold(&write.txn, hold_id).await? else {
            let refusal = Error::NotFound(format!("no hold with id {hold_id}"));
            return write.refuse(&self.events, refusal).await;
        };
        if hold.status != HoldStatus::Open {
            let refusal = Error::bad_input(
                "holdId",
                format!("the hold is {}, not open", hold.status.as_str()),
            );
            return write.refuse(&self.events, refusal).await;
        }
        let capture = capture.unwrap_or(hold.amount);
        if capture > hold.amount {
            let refusal = Error::bad_input(
                "amount",
                format!("the hold is for {}; cannot capture {capture}", hold.amount),
            );
            return write.refuse(&self.events, refusal).await;
        }
        let (capture_entry, release_entry) = write.close_hold(&hold, capture, status).await?;
        let now = write.now;
        let first = capture_entry
            .as_ref()
            .or(release_entry.as_ref())
            .ok_or_else(|| Error::Internal("closing a hold wrote no entry".into()))?;
        keyed.record(&write, first.id).await?;
        let entry = capture_entry;
        let balance = Balance::from_grants(user.clone(), &write.grants, now);
        write.commit(&self.events).await?;
        let hold = store::find_hold(&self.db, hold_id)
            .await?
            .ok_or_else(|| Error::Internal("hold vanished".into()))?;
        Ok(HoldOutcome {
            hold,
            entry,
            balance,
            replayed: false,
        })
    }

    async fn hold_replay(&self, entry_id: Uuid) -> Result<HoldOutcome> {
        let entry = idempotency::replayed_entry(&self.db, entry_id).await?;
        let hold_id = entry
            .hold_id
            .ok_or_else(|| Error::Internal(format!("entry {entry_id} names no hold")))?;
        let hold = store::find_hold(&self.db, hold_id)
            .await?
            .ok_or_else(|| Error::Internal(format!("missing hold {hold_id}")))?;
        // A release answers no entry (as when it first ran).
        let entry = (entry.kind != EntryKind::Release).then_some(entry);
        Ok(HoldOutcome {
            balance: self.balance(hold.end_user_id.clone()).await?,
            hold,
            entry,
            replayed: true,
        })
    }

    pub async fn hold(&self, hold_id: Uuid) -> Result<Option<Hold>> {
        store::find_hold(&self.db, hold_id).await
    }
}
