//! The credits ledger: the domain. It knows nothing of HTTP or GraphQL.
//!
//! `Ledger` is the service the interfaces call. Every write follows the same shape (see
//! `account_write` and `store`): lock the account, check the idempotency key, read the grants
//! and record due expiries, plan, write the entry, record the key, announce, commit.

mod account_write;
mod add_credits;
mod aggregates;
pub mod balance;
pub mod burn_down;
pub mod capture_plan;
pub mod clock;
pub mod corrections;
pub mod cycles;
mod direct;
pub mod end_users;
pub mod entry;
mod expiry;
mod expiry_alarm;
pub mod expiry_plan;
pub mod grant;
pub mod history;
pub mod holds;
mod idempotency;
pub mod metrics;
pub mod notifier;
pub mod outbound;
pub mod pipeline;
pub mod purchase;
mod readers;
pub mod renewal_plan;
pub mod reversal_plan;
mod store;
mod subtract_credits;
pub mod types;
pub mod verify;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use add_credits::{AddCreditsOutcome, AddCreditsRequest};
pub use balance::Balance;
pub use direct::DirectOptions;
pub use entry::Entry;
pub use expiry::run_expiry_scheduler;
pub use grant::{Grant, Payment};
pub use pipeline::WriterOptions;
pub use purchase::{
    PurchaseOutcome, PurchaseRequest, Receipt, Recorded, RefundRequest, clawback_target,
};
pub use readers::Readers;
pub use subtract_credits::{SubtractCreditsOutcome, SubtractCreditsRequest};
pub use types::{EndUserId, EntryKind, GrantSource, MAX_CREDITS};

use crate::error::{Result, is_unique_violation};
use clock::Clock;
use expiry_alarm::ExpiryAlarm;
use notifier::Notifier;
use outbound::Outbound;
use pipeline::{PipelineSettings, WritePipeline};

#[derive(Clone)]
pub struct Ledger {
    db: DatabaseConnection,
    /// Every instant the ledger stores or compares is read here.
    clock: Clock,
    /// Told of every committed change.
    events: Arc<dyn Notifier>,
    /// Wakes the expiry scheduler when a write adds something due before its next pass.
    expiry_alarm: Arc<ExpiryAlarm>,
    /// Where debits and grants go: batched transactions (see `pipeline`).
    pipeline: WritePipeline,
    /// Where balances are read (see `readers`).
    readers: Arc<Readers>,
    /// What writes need to generate outbound events (see `outbound`).
    outbound: Arc<Outbound>,
}

impl Ledger {
    /// Starts the write pipeline's lanes, each writing through a connection of its own opened
    /// with `writer` (see `crate::db::writer_options`): call on the runtime that serves
    /// requests.
    pub fn new(
        db: DatabaseConnection,
        writer: WriterOptions,
        readers: Readers,
        events: Arc<dyn Notifier>,
        pipeline: PipelineSettings,
        outbound: Arc<Outbound>,
        clock: Clock,
    ) -> Self {
        let expiry_alarm = Arc::new(ExpiryAlarm::default());
        let pipeline = WritePipeline::start(
            writer,
            clock.clone(),
            events.clone(),
            expiry_alarm.clone(),
            outbound.clone(),
            pipeline,
        );
        Self {
            db,
            clock,
            events,
            expiry_alarm,
            pipeline,
            readers: Arc::new(readers),
            outbound,
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Whether the end user has ever been written to.
    pub async fn end_user_exists(&self, end_user_id: EndUserId) -> Result<bool> {
        store::account_exists(&self.db, &end_user_id).await
    }

    /// The balance now. An end user never seen has a balance of zero.
    pub async fn balance(&self, end_user_id: EndUserId) -> Result<Balance> {
        let grants = self.readers.open_grants(&end_user_id).await?;
        Ok(Balance::from_grants(end_user_id, &grants, self.clock.now()))
    }
}

/// Runs a write, and once more if it lost a race on a unique index (two writers with one
/// idempotency key): the second attempt sees the winner's record and replays or conflicts.
async fn retry_once_on_unique_violation<T, F: Future<Output = Result<T>>>(
    mut attempt: impl FnMut() -> F,
) -> Result<T> {
    match attempt().await {
        Err(error) if is_unique_violation(&error) => attempt().await,
        other => other,
    }
}
