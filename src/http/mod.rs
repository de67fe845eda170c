//! The axum side: routes, limits and the thin adapters to GraphQL and health checks.

mod graphql;
mod health;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::DatabaseConnection;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::graphql::TallySchema;

#[derive(Clone)]
pub struct AppState {
    pub schema: TallySchema,
    pub db: DatabaseConnection,
}

pub fn router(state: AppState, request_timeout: Duration, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/graphql", get(graphql::graphiql).post(graphql::execute))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(RequestBodyLimitLayer::new(max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
