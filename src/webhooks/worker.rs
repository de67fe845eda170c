//! The delivery worker, one per process: fans new events out into deliveries, claims the due
//! ones with a lease and POSTs them, at most `TALLY_WEBHOOK_CONCURRENCY` at once, each bounded
//! by `TALLY_WEBHOOK_TIMEOUT_MS`. It runs beside the ledger, never inside a write: a slow or
//! dead endpoint holds up only its own deliveries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng as _;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, TransactionTrait,
};
use serde_json::json;
use tokio::sync::Semaphore;

use super::Webhooks;
use super::retry::{Schedule, next_attempt};
use super::signing::signature_header;
use super::sql::{self, DELIVERED, FAILED, PENDING};
use crate::entities::{webhook_attempt, webhook_delivery, webhook_endpoint, webhook_event};
use crate::error::{Error, Result};

/// How often old events are deleted (and once at start).
const CLEAN_UP_EVERY: Duration = Duration::from_secs(3600);
/// Fan-out batches per round of the worker.
const MAX_FAN_OUT_ROUNDS: usize = 10;
/// Longest error text kept for an attempt.
const MAX_ERROR_CHARS: usize = 500;

/// Runs forever: spawn it once per process.
pub async fn run_delivery_worker(webhooks: Webhooks) {
    let client = match reqwest::Client::builder()
        .timeout(webhooks.settings.timeout)
        .connect_timeout(webhooks.settings.timeout)
        // A webhook answer is the endpoint's; following redirects would send the signed event
        // somewhere nobody registered.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Tally-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "webhook delivery disabled: no HTTP client");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(webhooks.settings.concurrency));
    let mut refreshed_at: Option<Instant> = None;
    let mut cleaned_at: Option<Instant> = None;
    // A move of the clock (tests) may make retries due: look at once.
    let mut clock_moved = webhooks.clock.alarm();
    loop {
        if cleaned_at.is_none_or(|at| at.elapsed() >= CLEAN_UP_EVERY) {
            cleaned_at = Some(Instant::now());
            if let Err(error) = webhooks.clean_up().await {
                tracing::warn!(error = error.detail(), "deleting old webhook events");
            }
        }
        if refreshed_at.is_none_or(|at| at.elapsed() >= webhooks.settings.poll_interval) {
            match webhooks.refresh_debits_wanted().await {
                Ok(()) => refreshed_at = Some(Instant::now()),
                Err(error) => tracing::warn!(error = error.detail(), "reading webhook endpoints"),
            }
        }
        if let Err(error) = webhooks.dispatch(&client, &permits).await {
            tracing::warn!(error = error.detail(), "webhook worker");
        }
        tokio::select! {
            () = webhooks.outbound.committed.notified() => {}
            () = clock_moved.sleep(webhooks.settings.poll_interval) => {}
        }
    }
}

impl Webhooks {
    /// One round: fan out what is new, then start what is due, as far as permits allow.
    async fn dispatch(&self, client: &reqwest::Client, permits: &Arc<Semaphore>) -> Result<()> {
        // A few full batches at most, so a flood of new events never starves the retries.
        for _ in 0..MAX_FAN_OUT_ROUNDS {
            if sql::fan_out(&self.db, self.clock.now()).await? < sql::FAN_OUT_BATCH {
                break;
            }
        }
        let free = permits.available_permits();
        if free == 0 {
            return Ok(());
        }
        let now = self.clock.now();
        let claimed = sql::claim_due(&self.db, now, now + self.lease(), free).await?;
        for delivery in claimed {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (webhooks, client) = (self.clone(), client.clone());
            tokio::spawn(async move {
                if let Err(error) = webhooks.attempt(&client, &delivery).await {
                    tracing::warn!(
                        delivery = %delivery.id,
                        error = error.detail(),
                        "webhook delivery attempt not recorded; retried when its claim runs out"
                    );
                }
                drop(permit);
            });
        }
        Ok(())
    }

    /// Deletes the events past `TALLY_WEBHOOK_RETENTION_DAYS` that have nothing left to send.
    async fn clean_up(&self) -> Result<()> {
        let retention = chrono::Duration::from_std(self.settings.retention)
            .map_err(|_| Error::Internal("retention out of range".into()))?;
        let before = self.clock.now() - retention;
        let mut deleted = 0;
        loop {
            let batch = sql::delete_old_events(&self.db, before).await?;
            deleted += batch;
            if batch < sql::FAN_OUT_BATCH {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "old webhook events deleted");
        }
        Ok(())
    }

    /// How long a claim lasts: longer than any attempt takes, short enough that a killed
    /// process's deliveries are soon taken up by another.
    fn lease(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.timeout * 2 + Duration::from_secs(1))
            .unwrap_or(chrono::Duration::seconds(60))
    }

    /// Sends one delivery once and records what happened.
    async fn attempt(
        &self,
        client: &reqwest::Client,
        delivery: &webhook_delivery::Model,
    ) -> Result<()> {
        let event = webhook_event::Entity::find_by_id(delivery.event_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::Internal("a delivery's event is gone".into()))?;
        let endpoint = self.find(delivery.endpoint_id).await?;
        let body = serde_json::to_vec(&json!({
            "id": event.id,
            "type": event.event_type,
            "timestamp": event.created_at,
            "data": event.payload,
        }))
        .map_err(|e| Error::Internal(format!("serializing an event: {e}")))?;
        let now = self.clock.now();
        let mut secrets = vec![endpoint.secret.as_str()];
        if let (Some(previous), Some(until)) = (
            endpoint.previous_secret.as_deref(),
            endpoint.previous_secret_expires_at,
        ) && until > now
        {
            secrets.push(previous);
        }
        let message_id = event.id.to_string();
        let timestamp = now.timestamp();
        let signature = signature_header(&secrets, &message_id, timestamp, &body)?;
        let started = Instant::now();
        let sent = client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let latency_ms = started.elapsed().as_millis() as i64;
        let outcome = match sent {
            Ok(response) if response.status().is_success() => Ok(response.status().as_u16()),
            Ok(response) => Err((
                Some(response.status().as_u16()),
                format!("HTTP {}", response.status()),
            )),
            Err(error) => Err((None, describe(&error, self.settings.timeout))),
        };
        self.record(delivery, &endpoint, outcome, latency_ms).await
    }

    async fn record(
        &self,
        delivery: &webhook_delivery::Model,
        endpoint: &webhook_endpoint::Model,
        outcome: std::result::Result<u16, (Option<u16>, String)>,
        latency_ms: i64,
    ) -> Result<()> {
        let now = self.clock.now();
        let attempts = delivery.attempts + 1;
        let mut update = webhook_delivery::Entity::update_many()
            .col_expr(webhook_delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(webhook_delivery::Column::LastAttemptAt, Expr::value(now))
            .col_expr(
                webhook_delivery::Column::LastLatencyMs,
                Expr::value(latency_ms),
            )
            .col_expr(
                webhook_delivery::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
        let succeeded = outcome.is_ok();
        let (status_code, attempt_error) = match &outcome {
            Ok(code) => (Some(i32::from(*code)), None),
            Err((code, error)) => (
                code.map(i32::from),
                Some(error.chars().take(MAX_ERROR_CHARS).collect::<String>()),
            ),
        };
        match outcome {
            Ok(code) => {
                update = update
                    .col_expr(webhook_delivery::Column::Status, Expr::value(DELIVERED))
                    .col_expr(
                        webhook_delivery::Column::LastStatusCode,
                        Expr::value(i32::from(code)),
                    )
                    .col_expr(
                        webhook_delivery::Column::LastError,
                        Expr::value(Option::<String>::None),
                    )
                    .col_expr(webhook_delivery::Column::DeliveredAt, Expr::value(now));
            }
            Err((code, error)) => {
                let schedule = Schedule {
                    base: self.settings.retry_base,
                    max_delay: self.settings.retry_max_delay,
                    window: self.settings.retry_window,
                };
                let jitter = rand::rng().random::<f64>();
                let next =
                    next_attempt(&schedule, attempts as u32, delivery.created_at, now, jitter);
                let error: String = error.chars().take(MAX_ERROR_CHARS).collect();
                update = update
                    .col_expr(
                        webhook_delivery::Column::Status,
                        Expr::value(if next.is_some() { PENDING } else { FAILED }),
                    )
                    .col_expr(
                        webhook_delivery::Column::LastStatusCode,
                        Expr::value(code.map(i32::from)),
                    )
                    .col_expr(webhook_delivery::Column::LastError, Expr::value(error))
                    .col_expr(
                        webhook_delivery::Column::NextAttemptAt,
                        Expr::value(next.unwrap_or(now)),
                    );
            }
        }
        // The delivery's new state and the attempt's record, together.
        let txn = self.db.begin().await?;
        let updated = update
            .filter(webhook_delivery::Column::Id.eq(delivery.id))
            .filter(webhook_delivery::Column::Status.eq(PENDING))
            .exec(&txn)
            .await?;
        if updated.rows_affected > 0 {
            webhook_attempt::ActiveModel {
                id: Set(uuid::Uuid::now_v7()),
                delivery_id: Set(delivery.id),
                number: Set(attempts),
                attempted_at: Set(now),
                status_code: Set(status_code),
                latency_ms: Set(latency_ms),
                error: Set(attempt_error),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        self.note_endpoint_health(endpoint, succeeded, now).await
    }

    /// Remembers since when an endpoint fails; one failing for `disable_after` is disabled.
    async fn note_endpoint_health(
        &self,
        endpoint: &webhook_endpoint::Model,
        succeeded: bool,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let update = webhook_endpoint::Entity::update_many()
            .filter(webhook_endpoint::Column::Id.eq(endpoint.id));
        if succeeded {
            if endpoint.failing_since.is_some() {
                update
                    .col_expr(
                        webhook_endpoint::Column::FailingSince,
                        Expr::value(Option::<DateTime<Utc>>::None),
                    )
                    .exec(&self.db)
                    .await?;
            }
            return Ok(());
        }
        let Some(since) = endpoint.failing_since else {
            update
                .col_expr(webhook_endpoint::Column::FailingSince, Expr::value(now))
                .filter(webhook_endpoint::Column::FailingSince.is_null())
                .exec(&self.db)
                .await?;
            return Ok(());
        };
        let limit = chrono::Duration::from_std(self.settings.disable_after)
            .unwrap_or(chrono::Duration::days(5));
        if now - since >= limit && endpoint.enabled {
            let reason = format!(
                "disabled automatically: every delivery failed since {}",
                since.to_rfc3339()
            );
            tracing::warn!(endpoint = %endpoint.id, %reason, "webhook endpoint disabled");
            update
                .col_expr(webhook_endpoint::Column::Enabled, Expr::value(false))
                .col_expr(
                    webhook_endpoint::Column::DisabledReason,
                    Expr::value(reason),
                )
                .col_expr(webhook_endpoint::Column::UpdatedAt, Expr::value(now))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }
}

/// What went wrong, in words safe to show the application (no internals of this process).
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_redirect() {
        "answered with a redirect (not followed)".to_owned()
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}
