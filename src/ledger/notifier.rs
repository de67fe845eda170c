//! How the ledger tells the rest of the service that balances changed, without knowing who
//! listens: the ledger owns this trait, `events` implements it (PostgreSQL NOTIFY or an
//! in-process bus).

use super::types::EndUserId;

pub trait Notifier: Send + Sync + 'static {
    /// Right after a commit that changed these end users' balances (never for a rollback).
    /// Never blocks and never fails: the announcement is sent on by the implementation.
    fn announce_committed(&self, end_user_ids: &[EndUserId]);
}

/// The ledger keeps its notifier behind an `Arc`; writes pass `&self.events` as it is.
impl Notifier for std::sync::Arc<dyn Notifier> {
    fn announce_committed(&self, end_user_ids: &[EndUserId]) {
        (**self).announce_committed(end_user_ids);
    }
}
