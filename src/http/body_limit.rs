//! Bodies over `TALLY_MAX_BODY_BYTES` are answered 413, and the client gets to read that answer.
//!
//! tower-http's `RequestBodyLimitLayer` answers 413 without reading the body. hyper then closes
//! the connection with the rest of the body unread, the kernel answers the bytes still arriving
//! with a TCP reset, and a client still sending sees "connection reset" or "broken pipe" instead
//! of the 413 (often, when several such requests arrive at once). So this layer reads the body
//! itself: within the limit it hands the bytes on; past it, it goes on reading and dropping the
//! rest (at most `DRAIN_LIMIT` bytes, for at most `DRAIN_TIMEOUT`) and only then answers 413, with
//! `Connection: close`. A client that asked `Expect: 100-continue` has sent nothing yet: it is
//! answered at once, and sends nothing.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, EXPECT};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

/// Most bytes of an oversized body read (and dropped) before answering; past it the connection
/// is closed as it is.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;
/// Longest time spent reading an oversized body before answering.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The middleware: `State` is the limit in bytes.
pub async fn limit(State(max_bytes): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let expects_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|length| length > max_bytes as u64) {
        if !expects_continue {
            drain(&mut stream).await;
        }
        return too_large(max_bytes);
    }
    let mut buffered = Vec::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return (
                StatusCode::BAD_REQUEST,
                "the request body could not be read",
            )
                .into_response();
        };
        if buffered.len() + chunk.len() > max_bytes {
            drain(&mut stream).await;
            return too_large(max_bytes);
        }
        buffered.extend_from_slice(&chunk);
    }
    next.run(Request::from_parts(
        parts,
        Body::from(Bytes::from(buffered)),
    ))
    .await
}

/// Reads and drops the rest of a body, within `DRAIN_LIMIT` and `DRAIN_TIMEOUT`.
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let reading = async {
        let mut read = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, reading).await;
}

fn too_large(max_bytes: usize) -> Response {
    let body = serde_json::json!({
        "error": format!("the request body is larger than {max_bytes} bytes (TALLY_MAX_BODY_BYTES)"),
    });
    let mut response = (StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
