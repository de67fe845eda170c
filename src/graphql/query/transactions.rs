use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::graphql::context::ledger_for_reader;
use crate::graphql::scalars::end_user_id as parse_end_user_id;
use crate::graphql::types::{EntryKind, LedgerEntry};
use crate::ledger::history::EntryFilter;
use crate::ledger::types::Instant;

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

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
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(
                Error::bad_input("first", format!("must be from 0 to {MAX_PAGE_SIZE}")).into(),
            );
        }
        let before_seq = after
            .map(|cursor| {
                EntryCursor::decode_cursor(&cursor)
                    .map(|c| c.0)
                    .map_err(|_| Error::bad_input("after", "is not a cursor this API returned"))
            })
            .transpose()?;
        // One more than asked tells whether there is a next page.
        let filter = EntryFilter {
            kinds: kinds
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            from: Instant::parse_optional("from", from)?.map(Instant::get),
            to: Instant::parse_optional("to", to)?.map(Instant::get),
        };
        let mut entries = ledger
            .history(user, &filter, before_seq, first as u64 + 1)
            .await?;
        let has_next_page = entries.len() > first as usize;
        entries.truncate(first as usize);
        let mut connection = Connection::new(before_seq.is_some(), has_next_page);
        connection.edges.extend(
            entries
                .into_iter()
                .map(|entry| Edge::new(OpaqueCursor(entry.seq), LedgerEntry(entry))),
        );
        Ok(connection)
    }
}
