//! A real HTTP server standing in for the application's webhook endpoint: it records every
//! request and checks its signature with the `standardwebhooks` crate against the secrets the
//! test gives it. How it answers is up to the test (`Answer`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use standardwebhooks::Webhook;

use super::TestApp;

/// How the receiver answers the n-th request (counting from 0).
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Ok,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// Accepts the connection and never answers.
    Never,
    /// Never answers the first `n` requests, then 200.
    NeverFirst(usize),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub webhook_id: String,
    pub event_type: String,
    pub body: Value,
    /// Which of the receiver's secrets verified the signature (none: a forgery).
    pub verified_by: Vec<usize>,
}

#[derive(Clone)]
struct Shared {
    answer: Answer,
    secrets: Arc<Mutex<Vec<String>>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// How many requests arrived: `wait_until` wakes on each one instead of polling.
    arrivals: Arc<tokio::sync::watch::Sender<usize>>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
}

impl Receiver {
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let shared = Shared {
            answer,
            secrets: Arc::default(),
            received: Arc::default(),
            arrivals: Arc::new(tokio::sync::watch::Sender::new(0)),
        };
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(receive))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{address}/hooks"),
            shared,
        }
    }

    /// A secret deliveries must be signed with (the endpoint's, once it is created).
    pub fn trust(&self, secret: &str) {
        self.shared.secrets.lock().unwrap().push(secret.to_owned());
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// What was received of `event_type`.
    pub fn of_type(&self, event_type: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.event_type == event_type)
            .collect()
    }

    /// Waits until `done` holds for what was received, or panics after `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut arrivals = self.shared.arrivals.subscribe();
        loop {
            arrivals.borrow_and_update();
            let received = self.received();
            if done(&received) {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrivals.changed())
                .await
                .is_err()
            {
                let types: Vec<&str> = received.iter().map(|r| r.event_type.as_str()).collect();
                panic!("timed out waiting for {what}; received {types:?}");
            }
        }
    }

    /// Registers an endpoint for `event_types` at this receiver on `app`, and trusts its
    /// secret. Answers what `createWebhookEndpoint` answered (`secret`, `endpoint { id }`).
    pub async fn subscribe(&self, app: &TestApp, event_types: &[&str]) -> Value {
        let created = app
            .ok(
                "mutation($input: CreateWebhookEndpointInput!) {
                    createWebhookEndpoint(input: $input) { secret endpoint { id } } }",
                json!({ "input": { "url": self.url, "eventTypes": event_types } }),
            )
            .await;
        self.trust(created["secret"].as_str().unwrap());
        created
    }
}

async fn receive(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let verified_by = shared
        .secrets
        .lock()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(_, secret)| {
            Webhook::new(secret)
                .and_then(|w| w.verify(&body, &headers))
                .is_ok()
        })
        .map(|(index, _)| index)
        .collect();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = {
        let mut received = shared.received.lock().unwrap();
        received.push(Received {
            webhook_id: headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            event_type: parsed["type"].as_str().unwrap_or_default().to_owned(),
            body: parsed,
            verified_by,
        });
        received.len() - 1
    };
    shared.arrivals.send_modify(|count| *count += 1);
    let hang = match shared.answer {
        Answer::Ok => false,
        Answer::FailFirst(failures) if n < failures => return StatusCode::INTERNAL_SERVER_ERROR,
        Answer::FailFirst(_) => false,
        Answer::Never => true,
        Answer::NeverFirst(count) => n < count,
    };
    if hang {
        std::future::pending::<()>().await;
    }
    StatusCode::OK
}

/// Every delivery received was signed with a secret the receiver trusts.
pub fn assert_all_signed(received: &[Received]) {
    for r in received {
        assert!(
            !r.verified_by.is_empty(),
            "a delivery failed standardwebhooks verification: {:?}",
            r.body
        );
    }
}
