//! The axum side: routes, limits and the thin adapters to GraphQL and health checks.

mod admin;
mod body_limit;
mod graphql;
mod health;
mod stripe_webhook;
mod subscriptions;
pub mod unique_keys;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use sea_orm::DatabaseConnection;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::graphql::GraphqlExecutor;
use crate::ledger::Ledger;
use crate::observability;
use crate::stripe::Stripe;

/// What every handler reaches. Cloned for each request (axum's `State`), so it is one shared
/// pointer: cloning every service's handles took 2% of a balance read's CPU.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    /// The GraphQL schema, behind the checks and answers around it.
    pub graphql: GraphqlExecutor,
    pub db: DatabaseConnection,
    pub auth: Authenticator,
    pub ledger: Ledger,
    pub websocket: WebSocketSettings,
    pub stripe: Stripe,
}

#[derive(Clone, Copy, Debug)]
pub struct WebSocketSettings {
    pub init_timeout: Duration,
    pub keepalive_interval: Duration,
}

pub struct Limits {
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
}

/// Where `/metrics` is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsRoute {
    /// On the main listener, beside the API.
    Main,
    /// Only on its own listener (`TALLY_METRICS_LISTEN`); the main one answers 404.
    Separate,
}

pub fn router(state: AppState, limits: Limits, metrics: MetricsRoute) -> Router {
    let mut router = Router::new();
    if metrics == MetricsRoute::Main {
        router = router.route("/metrics", get(serve_metrics));
    }
    router
        .route("/graphql", get(graphql::get).post(graphql::execute))
        .merge(admin::routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .merge(crate::rest::routes())
        .route("/webhooks/stripe", post(stripe_webhook::receive))
        // Bodies above TALLY_MAX_BODY_BYTES are refused (413) before the handler runs, after
        // reading them (see body_limit); the handlers then find the body already read.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limits.max_body_bytes,
            body_limit::limit,
        ))
        // Applies to answering the request; an upgraded WebSocket lives on past it.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(observability::request::http_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(observability::request::span))
        // Outermost: the id exists before the span that logs it.
        .layer(middleware::from_fn(observability::request::request_id))
        .with_state(state)
}

/// `/metrics` alone, for `TALLY_METRICS_LISTEN`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(state)
}

async fn serve_metrics(State(state): State<AppState>) -> axum::response::Response {
    observability::metrics::render(&state.db).await
}

/// The request's `Authorization` value. One that is not visible ASCII is still a credential
/// (an invalid one), never the absence of one.
pub fn authorization_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or(""))
}
