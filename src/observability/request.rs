//! Per-request tracing: a request id (the caller's `x-request-id` when it is sensible, else a
//! new UUID) returned in the response and carried by a span that every log line the request
//! causes sits in, with the operation and end user filled in once known; plus HTTP metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Span;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a caller; anything longer (or with other characters than
/// letters, digits and `-_.:`) is replaced, so logs and headers never carry arbitrary text.
const MAX_REQUEST_ID_CHARS: usize = 128;

fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_REQUEST_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Outermost layer: fixes the request's id before anything else sees the request.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| acceptable(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let value = HeaderValue::from_str(&id).expect("request ids are visible ASCII");
    request.headers_mut().insert(REQUEST_ID, value.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert(REQUEST_ID, value);
    response
}

/// The span a request runs in (see `TraceLayer::make_span_with`). `operation` and `end_user`
/// are recorded later by whoever learns them (the GraphQL extension).
pub fn span(request: &Request) -> Span {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = id,
        method = %request.method(),
        path = request.uri().path(),
        operation = tracing::field::Empty,
        end_user = tracing::field::Empty,
    )
}

/// Notes the operation and end user on the current request's span.
pub fn record_operation(operation: &str, end_user: Option<&str>) {
    let span = Span::current();
    span.record("operation", operation);
    if let Some(end_user) = end_user {
        span.record("end_user", end_user);
    }
}

/// Counts every answer by route (the pattern, never the raw path) and status, with latency.
pub async fn http_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tally_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("tally_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::acceptable;

    #[test]
    fn request_ids_from_callers_are_short_plain_tokens() {
        assert!(acceptable("7f3c-abc_1.2:3"));
        assert!(!acceptable(""));
        assert!(!acceptable("a b"));
        assert!(!acceptable("é"));
        assert!(!acceptable(&"a".repeat(129)));
    }
}
