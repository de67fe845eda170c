//! How the ledger tells the rest of the service that balances changed, without knowing who
//! listens: the ledger owns this trait, `events` implements it (PostgreSQL NOTIFY or an
//! in-process bus).

use async_trait::async_trait;
use sea_orm::DatabaseTransaction;

use super::types::EndUserId;
use crate::error::Result;

#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Inside the writing transaction, so that only committed changes are announced (on
    /// PostgreSQL the announcement travels with the commit).
    async fn announce_in_transaction(
        &self,
        txn: &DatabaseTransaction,
        end_user_ids: &[EndUserId],
    ) -> Result<()>;

    /// Right after the commit.
    fn announce_committed(&self, end_user_id: &EndUserId);
}

/// The ledger keeps its notifier behind an `Arc`; writes pass `&self.events` as it is.
#[async_trait]
impl Notifier for std::sync::Arc<dyn Notifier> {
    async fn announce_in_transaction(
        &self,
        txn: &DatabaseTransaction,
        end_user_ids: &[EndUserId],
    ) -> Result<()> {
        (**self).announce_in_transaction(txn, end_user_ids).await
    }

    fn announce_committed(&self, end_user_id: &EndUserId) {
        (**self).announce_committed(end_user_id);
    }
}
