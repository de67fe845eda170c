//! The process-wide Prometheus recorder behind the `metrics` facade, and `/metrics`.
//!
//! The recorder is global (the `metrics` crate has one per process), so every `Application` in
//! a process shares it: tests that start several apps read differences, never absolute values.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sea_orm::{DatabaseBackend, DatabaseConnection};

/// Request latencies, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Writes per batch, up to the largest TALLY_MAX_BATCH allows.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 10000.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process. `None` when another recorder was installed first
/// (an embedder's own): then `/metrics` says so rather than answering empty.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("tally_write_batch_size".into()),
                        BATCH_SIZE_BUCKETS,
                    )
                })
                .and_then(|builder| builder.install_recorder());
            match recorder {
                Ok(handle) => {
                    describe();
                    // Histograms and idle series are maintained by upkeep; a thread (not a
                    // task) so it outlives any one runtime.
                    let upkeep = handle.clone();
                    std::thread::spawn(move || {
                        loop {
                            std::thread::sleep(Duration::from_secs(5));
                            upkeep.run_upkeep();
                        }
                    });
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics answers 503");
                    None
                }
            }
        })
        .as_ref()
}

/// `GET /metrics`: the Prometheus text format, with the pool gauges read now.
pub async fn render(db: &DatabaseConnection) -> Response {
    let Some(handle) = install() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder unavailable",
        )
            .into_response();
    };
    record_pool(db);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// sqlx tells the pool's size and idle count but not how many tasks wait for a connection:
/// requests wait whenever `in_use` has reached the maximum.
fn record_pool(db: &DatabaseConnection) {
    let (size, idle, max) = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        DatabaseBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            )
        }
        _ => return,
    };
    let in_use = (size as usize).saturating_sub(idle);
    metrics::gauge!("tally_db_pool_connections", "state" => "in_use").set(in_use as f64);
    metrics::gauge!("tally_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("tally_db_pool_max_connections").set(f64::from(max));
}

/// One GraphQL request answered: its operation (the root field, `multiple`, or `invalid`),
/// its outcome (`ok` or the first error's `extensions.code`) and how long it took.
pub fn graphql_request(operation: &str, outcome: &str, elapsed: Duration) {
    let (operation, outcome) = (operation.to_owned(), outcome.to_owned());
    metrics::counter!("tally_graphql_requests_total", "operation" => operation.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("tally_graphql_request_duration_seconds", "operation" => operation)
        .record(elapsed.as_secs_f64());
}

/// A Stripe webhook delivery answered: `applied`, `ignored`, `pending`, `failed`,
/// `duplicate`, `rejected` (bad signature or body) or `not_configured`.
pub fn stripe_event(outcome: &'static str) {
    metrics::counter!("tally_stripe_events_total", "outcome" => outcome).increment(1);
}

/// Adds one to a gauge while alive (an open WebSocket, a live subscription).
pub struct GaugeGuard(&'static str);

impl GaugeGuard {
    pub fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        Self(name)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tally_http_requests_total",
        "HTTP requests answered, by route and status"
    );
    describe_histogram!(
        "tally_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by route"
    );
    describe_counter!(
        "tally_graphql_requests_total",
        "GraphQL requests, by operation (root field) and outcome (ok or error code)"
    );
    describe_histogram!(
        "tally_graphql_request_duration_seconds",
        Unit::Seconds,
        "GraphQL request latency, by operation"
    );
    describe_counter!(
        "tally_ledger_entries_total",
        "Committed ledger entries, by kind"
    );
    describe_counter!(
        "tally_ledger_credits_total",
        "Credits moved by committed ledger entries, by kind (grant, debit, expiry…)"
    );
    describe_counter!("tally_write_batches_total", "Write batches committed");
    describe_histogram!("tally_write_batch_size", "Writes per committed write batch");
    describe_gauge!(
        "tally_writes_pending",
        "Debits and grants queued for the write pipeline or in a batch, not yet answered"
    );
    describe_gauge!(
        "tally_db_pool_connections",
        "Database connections, by state (in_use, idle)"
    );
    describe_gauge!(
        "tally_db_pool_max_connections",
        "Most database connections the pool opens"
    );
    describe_gauge!(
        "tally_websocket_connections",
        "Open GraphQL WebSocket connections"
    );
    describe_gauge!(
        "tally_live_subscriptions",
        "Live balanceChanged subscriptions"
    );
    describe_counter!(
        "tally_stripe_events_total",
        "Stripe webhook deliveries, by outcome"
    );
    describe_gauge!(
        "tally_scheduler_lag_seconds",
        Unit::Seconds,
        "How late the last expiry was recorded after the grant expired"
    );
}
