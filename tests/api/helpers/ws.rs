//! A small GraphQL-over-WebSocket client speaking both sub-protocols, for tests.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`, the `graphql-ws` library's protocol.
    TransportWs,
    /// `graphql-ws`, the legacy subscriptions-transport-ws protocol.
    LegacyWs,
}

impl Protocol {
    pub const BOTH: [Protocol; 2] = [Protocol::TransportWs, Protocol::LegacyWs];

    fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }
}

pub struct Socket {
    pub protocol: Protocol,
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What the server said about a subscription.
#[derive(Debug)]
pub enum Event {
    Data(Value),
    Errors(Value),
    Complete,
    Closed(Option<u16>, String),
}

impl Socket {
    /// Opens a socket; `header` is sent as the upgrade request's `Authorization`.
    pub async fn open(http_address: &str, protocol: Protocol, header: Option<&str>) -> Self {
        let url = format!("{}/graphql", http_address.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(protocol.name()),
        );
        if let Some(header) = header {
            request
                .headers_mut()
                .insert("Authorization", HeaderValue::from_str(header).unwrap());
        }
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket connects");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            protocol.name(),
            "the server agrees on the sub-protocol"
        );
        Self { protocol, stream }
    }

    pub async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends `connection_init` and returns whether the server acknowledged it.
    pub async fn init(&mut self, payload: Value) -> bool {
        self.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            match self.next_message(Duration::from_secs(5)).await {
                Some(message) => match message["type"].as_str() {
                    Some("connection_ack") => return true,
                    Some("ka") => continue,
                    _ => return false,
                },
                None => return false,
            }
        }
    }

    /// Connects, sends `connection_init` with `Authorization: Bearer <credential>` and expects an ack.
    pub async fn connect(http_address: &str, protocol: Protocol, credential: &str) -> Self {
        let mut socket = Self::open(http_address, protocol, None).await;
        assert!(
            socket
                .init(json!({ "Authorization": format!("Bearer {credential}") }))
                .await,
            "connection_init acknowledged"
        );
        socket
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        let kind = match self.protocol {
            Protocol::TransportWs => "subscribe",
            Protocol::LegacyWs => "start",
        };
        self.send(json!({ "id": id, "type": kind, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next text message as JSON (skipping pings), or `None` when closed or on timeout.
    async fn next_message(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match next {
                Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// The next event of any subscription on this socket, or `None` on timeout.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let next = match tokio::time::timeout(remaining, self.stream.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            let message = match next {
                None | Some(Err(_)) => return Some(Event::Closed(None, String::new())),
                Some(Ok(Message::Close(frame))) => {
                    return Some(match frame {
                        Some(frame) => {
                            Event::Closed(Some(frame.code.into()), frame.reason.to_string())
                        }
                        None => Event::Closed(None, String::new()),
                    });
                }
                Some(Ok(Message::Text(text))) => serde_json::from_str::<Value>(&text).unwrap(),
                Some(Ok(_)) => continue,
            };
            match message["type"].as_str().unwrap_or_default() {
                "next" | "data" => {
                    let payload = &message["payload"];
                    if payload.get("errors").is_some_and(|e| !e.is_null()) {
                        return Some(Event::Errors(payload["errors"].clone()));
                    }
                    return Some(Event::Data(payload["data"].clone()));
                }
                "error" => return Some(Event::Errors(message["payload"].clone())),
                "connection_error" => {
                    return Some(Event::Closed(None, message["payload"].to_string()));
                }
                "complete" => return Some(Event::Complete),
                _ => continue,
            }
        }
    }

    /// The next data payload; panics on anything else.
    pub async fn next_data(&mut self, timeout: Duration) -> Value {
        match self.next_event(timeout).await {
            Some(Event::Data(data)) => data,
            other => panic!("expected data, got {other:?}"),
        }
    }
}

pub const BALANCE_CHANGED: &str = "subscription($id: ID!) { balanceChanged(endUserId: $id) { endUserId available grants { id remaining } } }";
