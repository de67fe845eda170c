use async_graphql::connection::{Connection, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};

use crate::graphql::context::ledger_for_reader;
use crate::graphql::paging::Page;
use crate::graphql::scalars::end_user_id as parse_end_user_id;
use crate::graphql::types::{EntryKind, LedgerEntry};
use crate::ledger::history::EntryFilter;
use crate::ledger::types::Instant;

/// Cursors are the entry's sequence number, opaque to clients.
type EntryCursor = OpaqueCursor<i64>;

#[derive(Default)]
pub struct TransactionsQuery;

// One Rust argument per GraphQL argument.
#[allow(clippy::too_many_arguments)]
#[Object]
impl TransactionsQuery {
    /// An end user's ledger entries, newest first (a Relay connection).
    /// Secret keys, or that end user's own token.
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        end_user_id: ID,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last entry of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only entries of these kinds.")] kinds: Option<Vec<EntryKind>>,
        #[graphql(desc = "Only entries made at or after this instant.")] from: Option<
            DateTime<Utc>,
        >,
        #[graphql(desc = "Only entries made before this instant.")] to: Option<DateTime<Utc>>,
    ) -> Result<Connection<EntryCursor, LedgerEntry, EmptyFields, EmptyFields>> {
        let user = parse_end_user_id(&end_user_id)?;
        let ledger = ledger_for_reader(ctx, &user)?;
        let page = Page::<i64>::parse(first, after)?;
        let filter = EntryFilter {
            kinds: kinds
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            from: Instant::parse_optional("from", from)?.map(Instant::get),
            to: Instant::parse_optional("to", to)?.map(Instant::get),
        };
        let entries = ledger
            .history(user, &filter, page.after, page.fetch_limit())
            .await?;
        Ok(page.connection(entries, |entry| entry.seq, LedgerEntry::from))
    }
}
