//! Reading the past: filtered history and the balance at a past instant, both from the ledger.

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::balance::Balance;
use super::entry::Entry;
use super::types::{EndUserId, EntryKind, Instant};
use super::{Ledger, store};
use crate::entities::ledger_entry;
use crate::error::Result;

/// Which entries a history page shows.
#[derive(Clone, Debug, Default)]
pub struct EntryFilter {
    /// Only these kinds (all when empty).
    pub kinds: Vec<EntryKind>,
    /// Entries at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Entries before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl Ledger {
    /// Newest first: at most `limit` entries older than `before_seq` that pass `filter`.
    pub async fn history(
        &self,
        end_user_id: EndUserId,
        filter: &EntryFilter,
        before_seq: Option<i64>,
        limit: u64,
    ) -> Result<Vec<Entry>> {
        let mut query = ledger_entry::Entity::find()
            .filter(ledger_entry::Column::EndUserId.eq(end_user_id.as_str()))
            .order_by_desc(ledger_entry::Column::Seq)
            .limit(limit);
        if let Some(before_seq) = before_seq {
            query = query.filter(ledger_entry::Column::Seq.lt(before_seq));
        }
        if !filter.kinds.is_empty() {
            query = query
                .filter(ledger_entry::Column::Kind.is_in(filter.kinds.iter().map(|k| k.as_str())));
        }
        if let Some(from) = filter.from {
            query = query.filter(ledger_entry::Column::CreatedAt.gte(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(ledger_entry::Column::CreatedAt.lt(to));
        }
        let models = query.all(&self.db).await?;
        store::entries_with_allocations(&self.db, models).await
    }

    /// The balance as it was at `at`, replayed from the ledger (see `aggregates::balance_at`).
    pub async fn balance_at(&self, end_user_id: EndUserId, at: Instant) -> Result<Balance> {
        super::aggregates::balance_at(&self.db, &end_user_id, at.get()).await
    }
}
