//! GraphQL types of webhook endpoints, deliveries and balance alerts.

use async_graphql::{Enum, ID, Json, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::graphql::scalars::Credits;
use crate::ledger::outbound::thresholds;
use crate::webhooks::{deliveries, endpoints};

/// Where Tally POSTs events, signed per the Standard Webhooks specification.
#[derive(SimpleObject)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    /// The event types it receives.
    pub event_types: Vec<String>,
    /// Disabled endpoints receive nothing; their pending deliveries wait.
    pub enabled: bool,
    /// Why it is disabled (by a call, or automatically after failing for days).
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs (beside the new one).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Since when every attempt to it has failed.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<endpoints::Endpoint> for WebhookEndpoint {
    fn from(e: endpoints::Endpoint) -> Self {
        Self {
            id: e.id,
            url: e.url,
            description: e.description,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            previous_secret_expires_at: e.previous_secret_expires_at,
            failing_since: e.failing_since,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret: shown here only, never again.
#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecret {
    pub endpoint: WebhookEndpoint,
    /// `whsec_` + base64: give it to a Standard Webhooks library to verify deliveries.
    pub secret: String,
}

impl From<endpoints::WithSecret> for WebhookEndpointWithSecret {
    fn from(w: endpoints::WithSecret) -> Self {
        Self {
            endpoint: w.endpoint.into(),
            secret: w.secret,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum WebhookDeliveryStatus {
    /// Not delivered yet: tried again at `nextAttemptAt`.
    Pending,
    /// An attempt got a 2xx answer.
    Delivered,
    /// Retried for the whole retry window without a 2xx answer.
    Failed,
}

impl From<WebhookDeliveryStatus> for deliveries::DeliveryStatus {
    fn from(status: WebhookDeliveryStatus) -> Self {
        match status {
            WebhookDeliveryStatus::Pending => Self::Pending,
            WebhookDeliveryStatus::Delivered => Self::Delivered,
            WebhookDeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<deliveries::DeliveryStatus> for WebhookDeliveryStatus {
    fn from(status: deliveries::DeliveryStatus) -> Self {
        match status {
            deliveries::DeliveryStatus::Pending => Self::Pending,
            deliveries::DeliveryStatus::Delivered => Self::Delivered,
            deliveries::DeliveryStatus::Failed => Self::Failed,
        }
    }
}

/// One attempt at a delivery.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    /// 1 for the first attempt.
    pub number: i32,
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status answered; null when there was no answer.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// Why it failed (null when it succeeded).
    pub error: Option<String>,
}

impl From<deliveries::Attempt> for WebhookAttempt {
    fn from(a: deliveries::Attempt) -> Self {
        Self {
            number: a.number,
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
        }
    }
}

/// One event's delivery to one endpoint: its state, its last attempt and every attempt.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    pub id: Uuid,
    /// Also the `webhook-id` header of every attempt.
    pub event_id: Uuid,
    pub event_type: String,
    pub endpoint_id: Uuid,
    pub end_user_id: Option<String>,
    /// The event's `data`.
    pub payload: Json<serde_json::Value>,
    pub status: WebhookDeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer (none when there was no answer).
    pub last_status_code: Option<i32>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every attempt, first to last.
    pub history: Vec<WebhookAttempt>,
}

impl From<deliveries::Delivery> for WebhookDelivery {
    fn from(d: deliveries::Delivery) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            event_type: d.event_type,
            endpoint_id: d.endpoint_id,
            end_user_id: d.end_user_id,
            payload: Json(d.payload),
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status_code: d.last_status_code,
            last_latency_ms: d.last_latency_ms,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
            history: d.history.into_iter().map(WebhookAttempt::from).collect(),
        }
    }
}

/// The low-balance thresholds that apply to an end user.
#[derive(SimpleObject)]
pub struct BalanceAlerts {
    pub end_user_id: ID,
    /// Highest first: `balance.low` fires when the available balance falls below one.
    pub thresholds: Vec<Credits>,
    /// Whether these are the default thresholds (`TALLY_BALANCE_ALERT_THRESHOLDS`).
    pub uses_default: bool,
}

impl From<thresholds::BalanceAlerts> for BalanceAlerts {
    fn from(a: thresholds::BalanceAlerts) -> Self {
        Self {
            end_user_id: ID::from(a.end_user_id.as_str()),
            thresholds: a.thresholds.into_iter().map(Credits).collect(),
            uses_default: a.uses_default,
        }
    }
}
