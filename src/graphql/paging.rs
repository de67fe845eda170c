//! Relay paging, written once for every connection (`transactions`, `endUsers`,
//! `stripeEvents`, `webhookDeliveries`): `first` (0 to `MAX_PAGE_SIZE`, default
//! `DEFAULT_PAGE_SIZE`) and `after` (an opaque cursor this API returned) in, a `Connection`
//! out. A page fetches one row more than it shows: that row says whether another page follows.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, OpaqueCursor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// A page asked for: its size and the position it starts after (`P`: what the cursor holds).
pub struct Page<P> {
    size: usize,
    pub after: Option<P>,
}

impl<P: Serialize + DeserializeOwned + Send + Sync> Page<P> {
    pub fn parse(first: Option<i32>, after: Option<String>) -> Result<Self> {
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(Error::bad_input(
                "first",
                format!("must be from 0 to {MAX_PAGE_SIZE}"),
            ));
        }
        let after = after
            .map(|cursor| {
                OpaqueCursor::<P>::decode_cursor(&cursor)
                    .map(|cursor| cursor.0)
                    .map_err(|_| Error::bad_input("after", "is not a cursor this API returned"))
            })
            .transpose()?;
        Ok(Self {
            size: first as usize,
            after,
        })
    }

    /// How many rows to fetch: one more than the page shows.
    pub fn fetch_limit(&self) -> u64 {
        self.size as u64 + 1
    }

    /// The page made of `rows` (fetched with `fetch_limit`): each row's cursor holds
    /// `position(row)`, and its node is `node(row)`.
    pub fn connection<R, N: OutputType>(
        &self,
        mut rows: Vec<R>,
        position: impl Fn(&R) -> P,
        node: impl Fn(R) -> N,
    ) -> Connection<OpaqueCursor<P>, N, EmptyFields, EmptyFields> {
        let has_next_page = rows.len() > self.size;
        rows.truncate(self.size);
        let mut connection = Connection::new(self.after.is_some(), has_next_page);
        connection.edges.extend(
            rows.into_iter()
                .map(|row| Edge::new(OpaqueCursor(position(&row)), node(row))),
        );
        connection
    }
}
