//! Reading the past: filtered history and the balance at a past instant, both from the ledger.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::balance::Balance;
use super::entry::Entry;
use super::types::{EndUserId, EntryKind, Instant};
use super::{Ledger, store};
use crate::entities::{hold, ledger_allocation, ledger_entry};
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
            .filter(ledger_entry::Column::EndUserId.eq(end_user_id.0))
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

    /// The balance as it was at `at`, replayed from the ledger: each grant's amount less what
    /// entries up to `at` took from it, counted if the grant was in effect at `at`; less the
    /// credits holds had reserved at `at`.
    pub async fn balance_at(&self, end_user_id: EndUserId, at: Instant) -> Result<Balance> {
        let at = at.get();
        let mut grants = store::all_grants(&self.db, end_user_id).await?;
        grants.retain(|g| g.created_at <= at);
        let entries_until: Vec<(Uuid, DateTime<Utc>)> = ledger_entry::Entity::find()
            .select_only()
            .column(ledger_entry::Column::Id)
            .column(ledger_entry::Column::CreatedAt)
            .filter(ledger_entry::Column::EndUserId.eq(end_user_id.0))
            .filter(ledger_entry::Column::CreatedAt.lte(at))
            .into_tuple()
            .all(&self.db)
            .await?;
        let taken_by_grant: HashMap<Uuid, i64> = if entries_until.is_empty() {
            HashMap::new()
        } else {
            let allocations = ledger_allocation::Entity::find()
                .filter(
                    ledger_allocation::Column::EntryId
                        .is_in(entries_until.iter().map(|(id, _)| *id)),
                )
                .all(&self.db)
                .await?;
            let mut taken = HashMap::new();
            for allocation in allocations {
                *taken.entry(allocation.grant_id).or_insert(0) += allocation.amount;
            }
            taken
        };
        for grant in &mut grants {
            grant.remaining = grant.amount - taken_by_grant.get(&grant.id).copied().unwrap_or(0);
            grant.held = 0;
            if grant.voided_at.is_some_and(|voided_at| voided_at > at) {
                grant.voided_at = None;
            }
        }
        // Holds open at `at`: spread what they reserved over the grants they earmarked.
        let holds = hold::Entity::find()
            .filter(hold::Column::EndUserId.eq(end_user_id.0))
            .filter(hold::Column::CreatedAt.lte(at))
            .all(&self.db)
            .await?;
        for open in holds
            .iter()
            .filter(|h| h.closed_at.is_none_or(|closed_at| closed_at > at))
        {
            for earmark in store::hold_allocations(&self.db, open.id).await? {
                if let Some(grant) = grants.iter_mut().find(|g| g.id == earmark.grant_id) {
                    grant.held += earmark.amount;
                }
            }
        }
        Ok(Balance::from_grants(end_user_id, &grants, at))
    }
}
