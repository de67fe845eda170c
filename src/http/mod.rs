//! The axum side: routes, limits and the thin adapters to GraphQL and health checks.

mod body_limit;
mod graphql;
mod health;
mod stripe_webhook;
mod subscriptions;
pub mod unique_keys;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use sea_orm::DatabaseConnection;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
use crate::graphql::TallySchema;
use crate::ledger::Ledger;
use crate::stripe::Stripe;

#[derive(Clone)]
pub struct AppState {
    pub schema: TallySchema,
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

pub fn router(state: AppState, limits: Limits) -> Router {
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::execute))
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
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The request's `Authorization` value. One that is not visible ASCII is still a credential
/// (an invalid one), never the absence of one.
pub fn authorization_header(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|value| value.to_str().unwrap_or(""))
}
