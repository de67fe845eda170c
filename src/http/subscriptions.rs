//! GraphQL subscriptions over WebSocket, both `graphql-transport-ws` and the legacy `graphql-ws`.
//!
//! async-graphql speaks the protocols; this adapter adds what a long-lived socket needs:
//! the credential (from `connection_init`'s payload, or the upgrade request's `Authorization`
//! header), a deadline for `connection_init`, WebSocket pings with a reaper for peers that stop
//! answering, a send deadline so a peer that stops reading is eventually let go, and a check every
//! second that the credential still holds: a socket whose end-user token expires, or whose key
//! (or the key that minted its token) is revoked, is closed with `4403`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols, WsMessage};
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::http::HeaderMap;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::time::Instant;

use super::AppState;
use crate::auth::{Caller, Lapse};

/// How often an initialised socket checks that its credential still holds.
const CREDENTIAL_CHECK: Duration = Duration::from_secs(1);

/// graphql-transport-ws: "Connection initialisation timeout".
const CLOSE_INIT_TIMEOUT: u16 = 4408;
/// graphql-transport-ws: "Forbidden" (no or bad credential).
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_GOING_AWAY: u16 = 1001;
/// Socket buffers per connection. tungstenite's defaults (128 KiB each way) would cost
/// ~150 KiB per idle subscriber; client messages are small and updates are flushed one by one.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Largest message a client may send (a subscribe with its query).
const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

pub fn upgrade(state: AppState, headers: &HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    let Some(protocol) = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .and_then(|protocols| {
            protocols
                .split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        })
    else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let header_credential = super::authorization_header(headers).map(str::to_owned);
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(socket, state, protocol, header_credential))
}

/// The `authorization` entry of a `connection_init` payload, whatever its case.
fn payload_credential(payload: &serde_json::Value) -> Option<String> {
    payload.as_object()?.iter().find_map(|(key, value)| {
        key.eq_ignore_ascii_case("authorization")
            .then(|| value.as_str().map(str::to_owned))
            .flatten()
    })
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    header_credential: Option<String>,
) {
    let _open = crate::observability::metrics::GaugeGuard::new("tally_websocket_connections");
    let (mut sink, stream) = socket.split();
    let last_heard = Arc::new(std::sync::Mutex::new(Instant::now()));
    let initialised = Arc::new(AtomicBool::new(false));
    // The caller `connection_init` authenticated, for the credential checks.
    let accepted: Arc<std::sync::Mutex<Option<Caller>>> = Arc::default();

    let heard = last_heard.clone();
    let input = stream
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(move |message| {
            *heard.lock().expect("last_heard lock") = Instant::now();
            std::future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        });

    let auth = state.auth.clone();
    let init_done = initialised.clone();
    let accepted_caller = accepted.clone();
    let on_init = move |payload: serde_json::Value| async move {
        let credential = payload_credential(&payload).or(header_credential);
        let caller = auth
            .identify(credential.as_deref())
            .await
            .map_err(|error| async_graphql::Error::new(error.public().message))?;
        match caller {
            Caller::Anonymous => Err(async_graphql::Error::new(
                "missing credential: send {\"authorization\": \"Bearer …\"} in connection_init",
            )),
            Caller::Invalid => Err(async_graphql::Error::new(
                "invalid, expired or revoked credential",
            )),
            caller => {
                *accepted_caller.lock().expect("accepted caller lock") = Some(caller.clone());
                init_done.store(true, Ordering::SeqCst);
                let mut data = Data::default();
                data.insert(caller);
                Ok(data)
            }
        }
    };

    let messages = async_graphql::http::WebSocket::new(state.schema.clone(), input, protocol)
        .on_connection_init(on_init)
        .map(|message| match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => {
                // A refused credential: the code graphql-transport-ws clients understand.
                let code = if code == 1002 && !reason.is_empty() && reason.contains("credential") {
                    CLOSE_FORBIDDEN
                } else {
                    code
                };
                Message::Close(Some(CloseFrame {
                    code,
                    reason: reason.into(),
                }))
            }
        });
    futures::pin_mut!(messages);

    let settings = state.websocket;
    let init_deadline = tokio::time::sleep(settings.init_timeout);
    tokio::pin!(init_deadline);
    let mut keepalive = tokio::time::interval(settings.keepalive_interval);
    keepalive.tick().await;
    let mut credential_check = tokio::time::interval(CREDENTIAL_CHECK);
    credential_check.tick().await;
    let silence_limit = settings.keepalive_interval * 3;
    let send_deadline = silence_limit.max(Duration::from_secs(10));

    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { break };
                let closing = matches!(message, Message::Close(_));
                match tokio::time::timeout(send_deadline, sink.send(message)).await {
                    Ok(Ok(())) if !closing => {}
                    _ => break,
                }
            }
            () = &mut init_deadline, if !initialised.load(Ordering::SeqCst) => {
                let _ = sink.send(close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")).await;
                break;
            }
            _ = credential_check.tick() => {
                let caller = accepted.lock().expect("accepted caller lock").clone();
                let Some(caller) = caller else { continue };
                let reason = match state.auth.lapse(&caller).await {
                    Ok(None) => continue,
                    Ok(Some(Lapse::Expired)) => "credential expired",
                    Ok(Some(Lapse::Revoked)) => "credential revoked",
                    // The database cannot say: keep the socket, check again next time.
                    Err(_) => continue,
                };
                let _ = sink.send(close(CLOSE_FORBIDDEN, reason)).await;
                break;
            }
            _ = keepalive.tick() => {
                let silent_for = last_heard.lock().expect("last_heard lock").elapsed();
                if silent_for > silence_limit {
                    let _ = sink.send(close(CLOSE_GOING_AWAY, "no answer to pings")).await;
                    break;
                }
                let ping = tokio::time::timeout(send_deadline, sink.send(Message::Ping(Vec::new().into())));
                if !matches!(ping.await, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
