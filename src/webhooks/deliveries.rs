//! What was sent where (`webhookDeliveries`), sending an event again, and test events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::json;
use uuid::Uuid;

use super::Webhooks;
use super::sql::{self, DELIVERED, FAILED, PENDING};
use crate::entities::{webhook_attempt, webhook_delivery, webhook_event};
use crate::error::{Error, Result};
use crate::ledger::outbound::{EventType, OutboundEvent, insert_events};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => PENDING,
            Self::Delivered => DELIVERED,
            Self::Failed => FAILED,
        }
    }

    fn from_stored(value: &str) -> Self {
        match value {
            DELIVERED => Self::Delivered,
            FAILED => Self::Failed,
            _ => Self::Pending,
        }
    }
}

/// One attempt at a delivery.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub number: i32,
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// One event's delivery to one endpoint, with its attempts.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub endpoint_id: Uuid,
    pub end_user_id: Option<String>,
    pub payload: serde_json::Value,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// When it is tried next (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every attempt, first to last.
    pub history: Vec<Attempt>,
}

impl Delivery {
    fn new(
        model: webhook_delivery::Model,
        event: &webhook_event::Model,
        history: Vec<Attempt>,
    ) -> Self {
        let status = DeliveryStatus::from_stored(&model.status);
        Self {
            id: model.id,
            event_id: model.event_id,
            event_type: event.event_type.clone(),
            endpoint_id: model.endpoint_id,
            end_user_id: event.end_user_id.clone(),
            payload: event.payload.clone(),
            status,
            attempts: model.attempts,
            next_attempt_at: (status == DeliveryStatus::Pending).then_some(model.next_attempt_at),
            last_attempt_at: model.last_attempt_at,
            last_status_code: model.last_status_code,
            last_latency_ms: model.last_latency_ms,
            last_error: model.last_error,
            delivered_at: model.delivered_at,
            created_at: model.created_at,
            history,
        }
    }
}

impl Webhooks {
    /// An endpoint's deliveries, newest first, after the delivery `after` (a cursor).
    pub async fn deliveries(
        &self,
        endpoint_id: Uuid,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Delivery>> {
        self.find(endpoint_id).await?;
        let mut query = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
            .order_by_desc(webhook_delivery::Column::Id)
            .limit(limit);
        if let Some(status) = status {
            query = query.filter(webhook_delivery::Column::Status.eq(status.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(webhook_delivery::Column::Id.lt(after));
        }
        let deliveries = query.all(&self.db).await?;
        let ids: Vec<Uuid> = deliveries.iter().map(|d| d.event_id).collect();
        let events = webhook_event::Entity::find()
            .filter(webhook_event::Column::Id.is_in(ids))
            .all(&self.db)
            .await?;
        let mut histories = self
            .histories(deliveries.iter().map(|d| d.id).collect())
            .await?;
        Ok(deliveries
            .into_iter()
            .filter_map(|d| {
                let event = events.iter().find(|e| e.id == d.event_id)?;
                let history = histories.remove(&d.id).unwrap_or_default();
                Some(Delivery::new(d, event, history))
            })
            .collect())
    }

    /// The attempts of these deliveries, first to last, in one query.
    async fn histories(&self, deliveries: Vec<Uuid>) -> Result<HashMap<Uuid, Vec<Attempt>>> {
        let mut histories: HashMap<Uuid, Vec<Attempt>> = HashMap::new();
        if deliveries.is_empty() {
            return Ok(histories);
        }
        let attempts = webhook_attempt::Entity::find()
            .filter(webhook_attempt::Column::DeliveryId.is_in(deliveries))
            .order_by_asc(webhook_attempt::Column::DeliveryId)
            .order_by_asc(webhook_attempt::Column::Number)
            .order_by_asc(webhook_attempt::Column::Id)
            .all(&self.db)
            .await?;
        for attempt in attempts {
            histories
                .entry(attempt.delivery_id)
                .or_default()
                .push(Attempt {
                    number: attempt.number,
                    attempted_at: attempt.attempted_at,
                    status_code: attempt.status_code,
                    latency_ms: attempt.latency_ms,
                    error: attempt.error,
                });
        }
        Ok(histories)
    }

    /// Sends an event to an endpoint again (or for the first time), now.
    pub async fn redeliver(&self, event_id: Uuid, endpoint_id: Uuid) -> Result<Delivery> {
        let event = webhook_event::Entity::find_by_id(event_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no webhook event {event_id}")))?;
        self.find(endpoint_id).await?;
        let now = self.clock.now();
        let mut row = sql::new_delivery(event_id, endpoint_id, now);
        // Another full retry window from now.
        row.created_at = Set(now);
        webhook_delivery::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    webhook_delivery::Column::EventId,
                    webhook_delivery::Column::EndpointId,
                ])
                .update_columns([
                    webhook_delivery::Column::Status,
                    webhook_delivery::Column::NextAttemptAt,
                    webhook_delivery::Column::ClaimedUntil,
                    webhook_delivery::Column::CreatedAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        self.outbound.committed.notify_one();
        let delivery = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::EventId.eq(event_id))
            .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::Internal("a redelivery vanished".into()))?;
        let history = self
            .histories(vec![delivery.id])
            .await?
            .remove(&delivery.id)
            .unwrap_or_default();
        Ok(Delivery::new(delivery, &event, history))
    }

    /// Queues a `test` event for one endpoint (whatever it subscribes to).
    pub async fn send_test_event(&self, endpoint_id: Uuid) -> Result<Delivery> {
        let endpoint = self.find(endpoint_id).await?;
        let now = self.clock.now();
        let event = OutboundEvent::new(
            EventType::Test,
            None,
            json!({ "endpointId": endpoint.id, "message": "a test event from Tally" }),
            now,
        );
        let txn = sea_orm::TransactionTrait::begin(&self.db).await?;
        insert_events(&txn, std::slice::from_ref(&event)).await?;
        // Fanned out already: it goes to this endpoint only.
        webhook_event::Entity::update_many()
            .col_expr(
                webhook_event::Column::FannedOut,
                sea_orm::sea_query::Expr::value(true),
            )
            .filter(webhook_event::Column::Id.eq(event.id))
            .exec(&txn)
            .await?;
        let delivery = sql::new_delivery(event.id, endpoint.id, now)
            .insert(&txn)
            .await?;
        txn.commit().await?;
        self.outbound.committed.notify_one();
        let event = webhook_event::Entity::find_by_id(event.id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::Internal("a test event vanished".into()))?;
        Ok(Delivery::new(delivery, &event, Vec::new()))
    }
}
