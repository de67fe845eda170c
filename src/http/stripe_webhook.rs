//! `POST /webhooks/stripe`: hands the raw body and the `Stripe-Signature` header to
//! `stripe::Stripe::receive_webhook` and turns its answer into a status and a JSON body.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use crate::observability::metrics;
use crate::stripe::WebhookAnswer;

pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // A header that is not text cannot be a valid signature: treat it as malformed.
    let signature = headers
        .get("stripe-signature")
        .map(|value| value.to_str().unwrap_or(""));
    let answer = state.stripe.receive_webhook(signature, &body).await;
    metrics::stripe_event(match &answer {
        WebhookAnswer::Processed {
            duplicate: true, ..
        } => "duplicate",
        WebhookAnswer::Processed { outcome, .. } => outcome.as_str(),
        WebhookAnswer::Rejected { .. } => "rejected",
        WebhookAnswer::Failed { .. } => "failed",
        WebhookAnswer::NotConfigured => "not_configured",
    });
    match answer {
        WebhookAnswer::Processed {
            event_id,
            outcome,
            reason,
            duplicate,
        } => (
            StatusCode::OK,
            Json(json!({
                "received": true,
                "eventId": event_id,
                "outcome": outcome.as_str(),
                "reason": reason,
                "duplicate": duplicate,
            })),
        )
            .into_response(),
        WebhookAnswer::Rejected { error, event_id } => {
            let mut body = json!({ "error": error });
            if let Some(event_id) = event_id {
                body["eventId"] = event_id.into();
            }
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        WebhookAnswer::Failed { event_id, error } => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": error, "eventId": event_id, "retry": true })),
        )
            .into_response(),
        WebhookAnswer::NotConfigured => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "error": "the Stripe webhook is not configured (STRIPE_WEBHOOK_SECRET)" }),
            ),
        )
            .into_response(),
    }
}
