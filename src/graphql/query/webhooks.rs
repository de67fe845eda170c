use async_graphql::connection::{Connection, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use uuid::Uuid;

use crate::graphql::context::{ledger_for_secret_key, webhooks_for_secret_key};
use crate::graphql::paging::Page;
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
        let page = Page::<Uuid>::parse(first, after)?;
        let deliveries = webhooks
            .deliveries(
                endpoint_id,
                status.map(Into::into),
                page.after,
                page.fetch_limit(),
            )
            .await?;
        Ok(page.connection(deliveries, |d| d.id, WebhookDelivery::from))
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
