use async_graphql::{Context, ID, InputObject, Object, Result};
use uuid::Uuid;

use crate::graphql::context::{ledger_for_secret_key, webhooks_for_secret_key};
use crate::graphql::scalars::{Credits, end_user_id};
use crate::graphql::webhook_types::{
    BalanceAlerts, WebhookDelivery, WebhookEndpoint, WebhookEndpointWithSecret,
};
use crate::webhooks::endpoints::EndpointInput;

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// `https://…` (`http://` to loopback only when `TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK`).
    pub url: String,
    pub description: Option<String>,
    /// At least one of: credits.granted, credits.debited, credits.expired, credits.voided,
    /// credits.reversed, hold.expired, purchase.completed, purchase.refunded, balance.low,
    /// balance.depleted, balance.recovered.
    pub event_types: Vec<String>,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub id: Uuid,
    pub url: Option<String>,
    /// An empty string clears it.
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct DisableWebhookEndpointInput {
    pub id: Uuid,
    pub reason: Option<String>,
}

#[derive(InputObject)]
pub struct SetBalanceAlertsInput {
    pub end_user_id: ID,
    /// The end user's own thresholds (at most 20, each from 1); `null`: the default ones.
    pub thresholds: Option<Vec<Credits>>,
}

#[derive(InputObject)]
pub struct RedeliverWebhookEventInput {
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
}

#[derive(Default)]
pub struct WebhooksMutation;

#[Object]
impl WebhooksMutation {
    /// Registers an endpoint. The answer holds its signing secret, shown this once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> Result<WebhookEndpointWithSecret> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks
            .create_endpoint(EndpointInput {
                url: input.url,
                description: input.description,
                event_types: input.event_types,
            })
            .await?
            .into())
    }

    /// Changes an endpoint's URL, description or event types (what is not given stays).
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> Result<WebhookEndpoint> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks
            .update_endpoint(input.id, input.url, input.description, input.event_types)
            .await?
            .into())
    }

    /// Stops sending to an endpoint; its pending deliveries wait until it is enabled again.
    async fn disable_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: DisableWebhookEndpointInput,
    ) -> Result<WebhookEndpoint> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks
            .set_enabled(input.id, false, input.reason)
            .await?
            .into())
    }

    async fn enable_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> Result<WebhookEndpoint> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks.set_enabled(id, true, None).await?.into())
    }

    /// A new signing secret (shown this once). The old one keeps signing beside it for
    /// `TALLY_WEBHOOK_SECRET_GRACE_SECONDS`, so receivers can switch without losing events.
    async fn rotate_webhook_endpoint_secret(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> Result<WebhookEndpointWithSecret> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks.rotate_secret(id).await?.into())
    }

    /// Deletes an endpoint and its deliveries.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> Result<WebhookEndpoint> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks.delete_endpoint(id).await?.into())
    }

    /// Sends an event to an endpoint again, now (with the same `webhook-id`).
    async fn redeliver_webhook_event(
        &self,
        ctx: &Context<'_>,
        input: RedeliverWebhookEventInput,
    ) -> Result<WebhookDelivery> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks
            .redeliver(input.event_id, input.endpoint_id)
            .await?
            .into())
    }

    /// Sends a `test` event to one endpoint.
    async fn send_test_webhook_event(
        &self,
        ctx: &Context<'_>,
        endpoint_id: Uuid,
    ) -> Result<WebhookDelivery> {
        let webhooks = webhooks_for_secret_key(ctx)?;
        Ok(webhooks.send_test_event(endpoint_id).await?.into())
    }

    /// An end user's own low-balance thresholds (`null`: the default ones).
    async fn set_balance_alerts(
        &self,
        ctx: &Context<'_>,
        input: SetBalanceAlertsInput,
    ) -> Result<BalanceAlerts> {
        let ledger = ledger_for_secret_key(ctx)?;
        let thresholds = input
            .thresholds
            .map(|t| t.into_iter().map(|c| c.0).collect());
        Ok(ledger
            .set_balance_alerts(end_user_id(&input.end_user_id)?, thresholds)
            .await?
            .into())
    }
}
