use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::transactions::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::Error;
use crate::graphql::context::stripe_for_secret_key;
use crate::graphql::types::StripeEvent;

/// Position of an event in the newest-first order, opaque to clients.
#[derive(Clone, Serialize, Deserialize)]
pub struct EventPosition {
    received_at: DateTime<Utc>,
    id: String,
}

type EventCursor = OpaqueCursor<EventPosition>;

#[derive(Default)]
pub struct StripeEventsQuery;

#[Object]
impl StripeEventsQuery {
    /// Every Stripe event received, newest first (a Relay connection), with what Tally made of
    /// it. Secret keys only.
    async fn stripe_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last event of the previous page.")] after: Option<String>,
    ) -> Result<Connection<EventCursor, StripeEvent, EmptyFields, EmptyFields>> {
        let stripe = stripe_for_secret_key(ctx)?;
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(
                Error::bad_input("first", format!("must be from 0 to {MAX_PAGE_SIZE}")).into(),
            );
        }
        let before = after
            .map(|cursor| {
                EventCursor::decode_cursor(&cursor)
                    .map(|c| (c.0.received_at, c.0.id))
                    .map_err(|_| Error::bad_input("after", "is not a cursor this API returned"))
            })
            .transpose()?;
        let has_previous_page = before.is_some();
        let mut events = stripe.events(before, first as u64 + 1).await?;
        let has_next_page = events.len() > first as usize;
        events.truncate(first as usize);
        let mut connection = Connection::new(has_previous_page, has_next_page);
        connection.edges.extend(events.into_iter().map(|event| {
            let cursor = OpaqueCursor(EventPosition {
                received_at: event.received_at,
                id: event.id.clone(),
            });
            Edge::new(cursor, StripeEvent(event))
        }));
        Ok(connection)
    }
}
