use async_graphql::connection::{Connection, EmptyFields, OpaqueCursor};
use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::graphql::context::stripe_for_secret_key;
use crate::graphql::paging::Page;
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
        let page = Page::<EventPosition>::parse(first, after)?;
        let before = page
            .after
            .as_ref()
            .map(|position| (position.received_at, position.id.clone()));
        let events = stripe.events(before, page.fetch_limit()).await?;
        Ok(page.connection(
            events,
            |event| EventPosition {
                received_at: event.received_at,
                id: event.id.clone(),
            },
            StripeEvent::from,
        ))
    }
}
