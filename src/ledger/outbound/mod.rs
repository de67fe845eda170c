//! Outbound events (README, "Webhooks"): what a ledger change tells the application.
//!
//! Every write collects what it appended (`Source`s) and, before it commits, turns them into
//! events (`plan`) and writes them to the outbox table in its own transaction (`store`): a
//! write that rolls back or is refused emits nothing, and one that commits emits its events
//! exactly once. Balance alerts are decided here too, from each entry's balance after, against
//! the end user's alert state read and written under the account lock the write holds, so
//! concurrent writers on any process never fire one twice or miss one. Delivering the events
//! is not the ledger's business (see `webhooks`).

pub mod alerts;
pub mod events;
mod store;
pub mod thresholds;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

pub use events::{EventType, OutboundEvent, Source};
pub use store::{
    BatchEvents, StoredAlerts, alert_state_statements, event_statements, insert_events, plan_batch,
    record,
};

/// What writes need to know to generate events, shared by the ledger and the delivery worker.
pub struct Outbound {
    /// Thresholds for end users without their own (`TALLY_BALANCE_ALERT_THRESHOLDS`).
    default_thresholds: Vec<i64>,
    /// Whether some enabled endpoint subscribes to `credits.debited` (one event per debit is
    /// a lot of rows: it is only generated while someone listens). The delivery worker keeps
    /// it current; endpoint changes on this process set it at once.
    debits_wanted: AtomicBool,
    /// Told when events were committed, so the delivery worker does not wait for its next poll.
    pub committed: Notify,
}

impl Outbound {
    pub fn new(default_thresholds: Vec<i64>) -> Self {
        Self {
            default_thresholds,
            debits_wanted: AtomicBool::new(false),
            committed: Notify::new(),
        }
    }

    pub fn default_thresholds(&self) -> &[i64] {
        &self.default_thresholds
    }

    pub fn debits_wanted(&self) -> bool {
        self.debits_wanted.load(Ordering::Relaxed)
    }

    pub fn set_debits_wanted(&self, wanted: bool) {
        self.debits_wanted.store(wanted, Ordering::Relaxed);
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

/// How the events name an end user: the application's own id, as text.
pub fn end_user_text(end_user_id: &super::EndUserId) -> String {
    end_user_id.to_string()
}
