use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use crate::error::Error;
use crate::graphql::context::{ledger_for_secret_key, webhooks_for_secret_key};
use crate::graphql::query::transactions::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::graphql::scalars::end_user_id as parse_end_user_id;
use crate::graphql::webhook_types::{
    BalanceAlerts, WebhookDelivery, WebhookDeliveryStatus, WebhookEndpoint,
};

/// Cursors are the delivery's id, opaque to clients.
type DeliveryCursor = OpaqueCursor<Uuid>;

#[derive(Default)]
pub struct WebhooksQuery;

#[Object]
impl WebhooksQuery {
    /// Every webhook endpoint, oldest first. Secret keys only.
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> Result<Vec<WebhookEndpoint>> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks
            .endpoints()
            .await?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// An endpoint's deliveries, newest first (a Relay connection). Secret keys only.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Uuid,
        status: Option<WebhookDeliveryStatus>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last delivery of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<DeliveryCursor, WebhookDelivery, EmptyFields, EmptyFields>> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(
                Error::bad_input("first", format!("must be from 0 to {MAX_PAGE_SIZE}")).into(),
            );
        }
        let after = after
            .map(|cursor| {
                DeliveryCursor::decode_cursor(&cursor)
                    .map(|c| c.0)
                    .map_err(|_| Error::bad_input("after", "is not a cursor this API returned"))
            })
            .transpose()?;
        let mut deliveries = webhooks
            .deliveries(endpoint_id, status.map(Into::into), after, first as u64 + 1)
            .await?;
        let has_next_page = deliveries.len() > first as usize;
        deliveries.truncate(first as usize);
        let mut connection = Connection::new(after.is_some(), has_next_page);
        connection.edges.extend(
            deliveries
                .into_iter()
                .map(|d| Edge::new(OpaqueCursor(d.id), WebhookDelivery::from(d))),
        );
        Ok(connection)
    }

    /// The low-balance thresholds that apply to an end user. Secret keys only.
    async fn balance_alerts(&self, ctx: &Context<'_>, end_user_id: ID) -> Result<BalanceAlerts> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .balance_alerts(parse_end_user_id(&end_user_id)?)
            .await?
            .into())
    }
}
