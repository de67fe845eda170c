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
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;

use super::AppState;
use crate::auth::{Authenticator, Caller, Lapse};

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

/// What the parts of one socket share.
#[derive(Clone)]
struct Peer {
    /// When the client was last heard from.
    last_heard: Arc<std::sync::Mutex<Instant>>,
    /// Set once `connection_init` accepted a credential.
    initialised: Arc<AtomicBool>,
    /// The caller `connection_init` authenticated, for the credential checks.
    accepted: Arc<std::sync::Mutex<Option<Caller>>>,
}

async fn serve(
    socket: WebSocket,
    state: AppState,
    protocol: WebSocketProtocols,
    header_credential: Option<String>,
) {
    let _open = crate::observability::metrics::GaugeGuard::new("tally_websocket_connections");
    let (sink, stream) = socket.split();
    let peer = Peer {
        last_heard: Arc::new(std::sync::Mutex::new(Instant::now())),
        initialised: Arc::new(AtomicBool::new(false)),
        accepted: Arc::default(),
    };
    let input = client_messages(stream, peer.last_heard.clone());
    let (auth, init_peer) = (state.auth.clone(), peer.clone());
    let on_init = move |payload| accept_connection(payload, header_credential, auth, init_peer);
    let messages = async_graphql::http::WebSocket::new(state.graphql.clone(), input, protocol)
        .on_connection_init(on_init)
        .map(socket_message);
    relay(sink, messages, &state, &peer).await;
}

/// Sends async-graphql's messages to the client until either side closes, and closes the
/// socket itself when `connection_init` is late, the credential lapses, the client stops
/// answering pings, or a send does not finish in time.
async fn relay(
    mut sink: impl Sink<Message> + Unpin,
    messages: impl Stream<Item = Message>,
    state: &AppState,
    peer: &Peer,
) {
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
                if !send_within(&mut sink, message, send_deadline).await || closing {
                    break;
                }
            }
            () = &mut init_deadline, if !peer.initialised.load(Ordering::SeqCst) => {
                let _ = sink.send(close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")).await;
                break;
            }
            _ = credential_check.tick() => {
                let Some(reason) = lapsed(&state.auth, &peer.accepted).await else { continue };
                let _ = sink.send(close(CLOSE_FORBIDDEN, reason)).await;
                break;
            }
            _ = keepalive.tick() => {
                let silent_for = peer.last_heard.lock().expect("last_heard lock").elapsed();
                if silent_for > silence_limit {
                    let _ = sink.send(close(CLOSE_GOING_AWAY, "no answer to pings")).await;
                    break;
                }
                let ping = Message::Ping(Vec::new().into());
                if !send_within(&mut sink, ping, send_deadline).await {
                    break;
                }
            }
        }
    }
}

/// The client's text and binary messages, up to the first read error; any message (a pong
/// too) counts as hearing from the peer.
fn client_messages(
    stream: impl Stream<Item = Result<Message, axum::Error>>,
    last_heard: Arc<std::sync::Mutex<Instant>>,
) -> impl Stream<Item = Vec<u8>> {
    stream
        .take_while(|message| std::future::ready(message.is_ok()))
        .filter_map(move |message| {
            *last_heard.lock().expect("last_heard lock") = Instant::now();
            std::future::ready(match message {
                Ok(Message::Text(text)) => Some(text.as_bytes().to_vec()),
                Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
                _ => None,
            })
        })
}

/// Answers `connection_init`: the payload's credential, else the upgrade request's, must name
/// a caller. The caller accepted is kept for the credential checks.
async fn accept_connection(
    payload: serde_json::Value,
    header_credential: Option<String>,
    auth: Authenticator,
    peer: Peer,
) -> async_graphql::Result<Data> {
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
            *peer.accepted.lock().expect("accepted caller lock") = Some(caller.clone());
            peer.initialised.store(true, Ordering::SeqCst);
            let mut data = Data::default();
            data.insert(caller);
            Ok(data)
        }
    }
}

/// async-graphql's message as a WebSocket frame.
fn socket_message(message: WsMessage) -> Message {
    match message {
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
    }
}

/// Why the credential `connection_init` accepted no longer holds. `None` while it holds,
/// before `connection_init`, and when the database cannot say (the socket is kept and
/// checked again next time).
async fn lapsed(
    auth: &Authenticator,
    accepted: &std::sync::Mutex<Option<Caller>>,
) -> Option<&'static str> {
    let caller = accepted.lock().expect("accepted caller lock").clone()?;
    match auth.lapse(&caller).await {
        Ok(Some(Lapse::Expired)) => Some("credential expired"),
        Ok(Some(Lapse::Revoked)) => Some("credential revoked"),
        Ok(None) | Err(_) => None,
    }
}

/// Sends `message` unless `deadline` passes first; false when it was not sent (a peer that
/// stops reading is let go).
async fn send_within(
    sink: &mut (impl Sink<Message> + Unpin),
    message: Message,
    deadline: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(deadline, sink.send(message)).await,
        Ok(Ok(()))
    )
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

#[cfg(test)]
mod tests {
    use async_graphql::http::WsMessage;
    use axum::extract::ws::Message;

    use super::{CLOSE_FORBIDDEN, socket_message};

    fn close_code(message: Message) -> u16 {
        match message {
            Message::Close(Some(frame)) => frame.code,
            other => panic!("not a close frame: {other:?}"),
        }
    }

    #[test]
    fn a_refused_credential_closes_with_4403_and_other_closes_keep_their_code() {
        let refused = WsMessage::Close(1002, "invalid, expired or revoked credential".into());
        assert_eq!(close_code(socket_message(refused)), CLOSE_FORBIDDEN);
        let malformed = WsMessage::Close(1002, "unexpected message".into());
        assert_eq!(close_code(socket_message(malformed)), 1002);
        let other = WsMessage::Close(4400, "credential".into());
        assert_eq!(close_code(socket_message(other)), 4400);
        assert!(matches!(
            socket_message(WsMessage::Text("{}".into())),
            Message::Text(text) if text.as_str() == "{}"
        ));
    }
}
