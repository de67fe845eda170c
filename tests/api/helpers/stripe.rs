//! Stripe for tests: event bodies built from Stripe's own objects (`tests/fixtures/stripe/`, real
//! API objects; its README says where they come from), signatures made the way Stripe's libraries
//! make them, and a local stand-in for Stripe's API that records what it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{Backend, Configure, TestApp, unchanged};

pub const WEBHOOK_SECRET: &str = "whsec_test_tally_webhook_secret_0123456789";
/// A second secret, as during a rotation.
pub const OLD_WEBHOOK_SECRET: &str = "whsec_test_tally_previous_secret_9876543210";
pub const STRIPE_SECRET_KEY: &str = "sk_test_tally_stand_in_0123456789";

/// A Stripe object fixture.
pub fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/stripe/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// An event envelope (from `event.json`) of `event_type` carrying `object`.
pub fn event(event_type: &str, object: Value) -> Value {
    let mut event = fixture("event");
    event["id"] = json!(unique("evt_test_"));
    event["type"] = json!(event_type);
    event["created"] = json!(chrono::Utc::now().timestamp());
    event["data"]["object"] = object;
    event
}

/// A paid Checkout Session (from `checkout_session.json`) that Tally created for `bundle`
/// (as `bundles` answers it) and `end_user`.
pub fn paid_session(bundle: &Value, end_user: &str) -> Value {
    let mut session = fixture("checkout_session");
    session["id"] = json!(unique("cs_test_"));
    session["payment_intent"] = json!(unique("pi_test_"));
    session["payment_status"] = json!("paid");
    session["status"] = json!("complete");
    session["mode"] = json!("payment");
    session["client_reference_id"] = json!(end_user);
    session["metadata"] = json!({
        "tally_bundle_id": bundle["id"],
        "tally_end_user_id": end_user,
    });
    session["amount_subtotal"] = bundle["priceAmount"].clone();
    session["amount_total"] = bundle["priceAmount"].clone();
    session["currency"] = bundle["currency"].clone();
    session
}

/// A Charge (from `charge.json`) of `amount` on `payment_intent`, `amount_refunded` of it
/// refunded so far.
pub fn charge(payment_intent: &str, amount: i64, amount_refunded: i64) -> Value {
    let mut charge = fixture("charge");
    charge["id"] = json!(unique("ch_test_"));
    charge["payment_intent"] = json!(payment_intent);
    charge["amount"] = json!(amount);
    charge["amount_captured"] = json!(amount);
    charge["captured"] = json!(true);
    charge["amount_refunded"] = json!(amount_refunded);
    charge["refunded"] = json!(amount_refunded >= amount);
    charge["currency"] = json!("usd");
    charge
}

/// A Refund (from `refund.json`) of `amount` on `payment_intent`.
pub fn refund(payment_intent: &str, refund_id: &str, amount: i64, status: &str) -> Value {
    let mut refund = fixture("refund");
    refund["id"] = json!(refund_id);
    refund["payment_intent"] = json!(payment_intent);
    refund["amount"] = json!(amount);
    refund["currency"] = json!("usd");
    refund["status"] = json!(status);
    refund
}

/// The `v1` signature, as Stripe's libraries compute it: HMAC-SHA256 keyed with the whole
/// signing secret over `"{timestamp}.{body}"`, hex.
pub fn v1_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A `Stripe-Signature` header for `body` signed now with `secret`.
pub fn signature_header(secret: &str, body: &[u8]) -> String {
    let t = chrono::Utc::now().timestamp();
    format!("t={t},v1={}", v1_signature(secret, t, body))
}

pub struct WebhookResponse {
    pub status: u16,
    pub body: Value,
}

impl TestApp {
    /// POSTs raw bytes to the webhook with the given `Stripe-Signature` (or none).
    pub async fn post_webhook(&self, body: &[u8], signature: Option<&str>) -> WebhookResponse {
        let mut request = self
            .client
            .post(format!("{}/webhooks/stripe", self.address))
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("Stripe-Signature", signature);
        }
        let response = request.send().await.expect("webhook request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        WebhookResponse { status, body }
    }

    /// Delivers `event` as Stripe would: serialized once, signed now with the webhook secret.
    pub async fn deliver(&self, event: &Value) -> WebhookResponse {
        let body = serde_json::to_vec(event).unwrap();
        let header = signature_header(WEBHOOK_SECRET, &body);
        self.post_webhook(&body, Some(&header)).await
    }

    /// Buys `bundle` for `end_user`: delivers its paid Checkout Session, which must be applied.
    /// Answers the session.
    pub async fn buy(&self, bundle: &Value, end_user: &str) -> Value {
        let session = paid_session(bundle, end_user);
        self.deliver_ok(
            &event("checkout.session.completed", session.clone()),
            "applied",
        )
        .await;
        session
    }

    /// Delivers `event` and asserts a 200 with the given outcome.
    pub async fn deliver_ok(&self, event: &Value, outcome: &str) -> Value {
        let response = self.deliver(event).await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(response.body["outcome"], outcome, "{}", response.body);
        assert_eq!(response.body["eventId"], event["id"]);
        response.body
    }

    /// Every stored Stripe event, newest first, following the cursors.
    pub async fn stripe_events(&self) -> Vec<Value> {
        self.all_nodes(STRIPE_EVENTS, json!({})).await
    }

    /// The stored record of one event.
    pub async fn stripe_event(&self, id: &Value) -> Value {
        self.stripe_events()
            .await
            .into_iter()
            .find(|event| &event["id"] == id)
            .unwrap_or_else(|| panic!("event {id} is not stored"))
    }

    /// Creates a bundle with the secret key; answers it as `bundles` lists it.
    pub async fn create_bundle(&self, input: Value) -> Value {
        self.ok(CREATE_BUNDLE, json!({ "input": input })).await["bundle"].clone()
    }

    /// The seed's first bundle (100 credits for $9.99, 365 days) at a fresh price id.
    pub async fn starter_bundle(&self) -> Value {
        self.create_bundle(json!({
            "name": "100 credits", "credits": 100, "validityDays": 365,
            "priceAmount": 999, "currency": "usd", "stripePriceId": unique("price_test_"),
        }))
        .await
    }

    /// Every grant of the end user, newest first, as its GRANT entries name them.
    pub async fn purchase_grants(&self, end_user_id: &str) -> Vec<Value> {
        let entries = self.all_entries(end_user_id).await;
        entries
            .into_iter()
            .filter(|e| e["kind"] == "GRANT")
            .collect()
    }
}

pub const CREATE_BUNDLE: &str = "mutation($input: CreateBundleInput!) { createBundle(input: $input) {
    bundle { id name credits validityDays priceAmount currency stripePriceId active createdAt updatedAt } } }";

pub const BUNDLES: &str = "query($all: Boolean! = false) { bundles(includeArchived: $all) {
    id name credits validityDays priceAmount currency stripePriceId active } }";

pub const STRIPE_EVENTS: &str = "query($first: Int, $after: String) {
    stripeEvents(first: $first, after: $after) {
      edges { cursor node { id type livemode objectId paymentIntentId outcome reason endUserId
        entryId attempts receivedAt updatedAt } }
      pageInfo { hasNextPage hasPreviousPage endCursor } } }";

pub const PURCHASE_BALANCE: &str = "query($id: ID!) { balance(endUserId: $id) {
    available grants { id amount remaining source expiresAt createdAt description metadata
      reference paymentReference paidAmount paidCurrency } } }";

/// One request the stand-in received.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub stripe_version: Option<String>,
    /// The form body, decoded, in order.
    pub form: Vec<(String, String)>,
}

impl ReceivedRequest {
    /// The value of one form field; panics when it is missing or repeated.
    pub fn field(&self, name: &str) -> &str {
        let values: Vec<&str> = self
            .form
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(values.len(), 1, "form field {name} in {:?}", self.form);
        values[0]
    }
}

#[derive(Default)]
struct StandInState {
    requests: Mutex<Vec<ReceivedRequest>>,
    /// Line items per Checkout Session id: `(price id, quantity)`.
    line_items: Mutex<HashMap<String, Vec<(String, u64)>>>,
    /// When set, creating a session answers this Stripe error.
    create_error: Mutex<Option<(u16, String)>>,
}

/// A local stand-in for Stripe's API: creates Checkout Sessions (answering a session built from
/// `checkout_session.json`) and lists their line items. It refuses any request without
/// `Authorization: Bearer STRIPE_SECRET_KEY`, as Stripe would.
#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    state: Arc<StandInState>,
}

impl StandIn {
    pub async fn start() -> Self {
        let state = Arc::new(StandInState::default());
        let router = Router::new()
            .route("/v1/checkout/sessions", post(create_session))
            .route(
                "/v1/checkout/sessions/{id}/line_items",
                get(list_line_items),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, state }
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// What `GET /v1/checkout/sessions/{session}/line_items` answers.
    pub fn set_line_items(&self, session_id: &str, items: Vec<(String, u64)>) {
        self.state
            .line_items
            .lock()
            .unwrap()
            .insert(session_id.to_owned(), items);
    }

    pub fn fail_session_creation(&self, status: u16, message: &str) {
        *self.state.create_error.lock().unwrap() = Some((status, message.to_owned()));
    }
}

fn stripe_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "message": message, "type": "invalid_request_error" } })),
    )
        .into_response()
}

fn record(
    state: &StandInState,
    method: &str,
    path: String,
    query: String,
    headers: &HeaderMap,
    body: &str,
) -> Option<Response> {
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let authorization = header("authorization");
    state.requests.lock().unwrap().push(ReceivedRequest {
        method: method.to_owned(),
        path,
        query,
        authorization: authorization.clone(),
        stripe_version: header("stripe-version"),
        form: serde_urlencoded::from_str(body).expect("a form body"),
    });
    if authorization.as_deref() != Some(&format!("Bearer {STRIPE_SECRET_KEY}")) {
        return Some(stripe_error(
            StatusCode::UNAUTHORIZED,
            "Invalid API Key provided",
        ));
    }
    None
}

async fn create_session(
    State(state): State<Arc<StandInState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refused) = record(
        &state,
        "POST",
        "/v1/checkout/sessions".into(),
        String::new(),
        &headers,
        &body,
    ) {
        return refused;
    }
    if let Some((status, message)) = state.create_error.lock().unwrap().clone() {
        return stripe_error(StatusCode::from_u16(status).unwrap(), &message);
    }
    let form: HashMap<String, String> = serde_urlencoded::from_str(&body).unwrap();
    let mut session = fixture("checkout_session");
    let id = unique("cs_test_");
    session["id"] = json!(id);
    session["url"] = json!(format!("https://checkout.stripe.com/c/pay/{id}"));
    session["mode"] = json!(form.get("mode"));
    session["client_reference_id"] = json!(form.get("client_reference_id"));
    session["success_url"] = json!(form.get("success_url"));
    session["cancel_url"] = json!(form.get("cancel_url"));
    session["payment_intent"] = Value::Null;
    session["payment_status"] = json!("unpaid");
    session["status"] = json!("open");
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(key, value)| {
            let name = key.strip_prefix("metadata[")?.strip_suffix(']')?;
            Some((name.to_owned(), json!(value)))
        })
        .collect();
    session["metadata"] = Value::Object(metadata);
    axum::Json(session).into_response()
}

async fn list_line_items(
    State(state): State<Arc<StandInState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let path = format!("/v1/checkout/sessions/{id}/line_items");
    let query = uri.query().unwrap_or("").to_owned();
    if let Some(refused) = record(&state, "GET", path.clone(), query, &headers, "") {
        return refused;
    }
    let Some(items) = state.line_items.lock().unwrap().get(&id).cloned() else {
        return stripe_error(
            StatusCode::NOT_FOUND,
            &format!("No such checkout.session: '{id}'"),
        );
    };
    let data: Vec<Value> = items
        .iter()
        .map(|(price, quantity)| line_item(price, *quantity))
        .collect();
    axum::Json(json!({ "object": "list", "data": data, "has_more": false, "url": path }))
        .into_response()
}

/// A Checkout Session line item as Stripe's API returns it.
fn line_item(price_id: &str, quantity: u64) -> Value {
    json!({
        "id": unique("li_"),
        "object": "item",
        "amount_discount": 0,
        "amount_subtotal": 999 * quantity,
        "amount_tax": 0,
        "amount_total": 999 * quantity,
        "currency": "usd",
        "description": "Credits",
        "price": {
            "id": price_id,
            "object": "price",
            "active": true,
            "billing_scheme": "per_unit",
            "created": 1_679_431_181,
            "currency": "usd",
            "custom_unit_amount": null,
            "livemode": false,
            "lookup_key": null,
            "metadata": {},
            "nickname": null,
            "product": "prod_NZKdYqrwEYx6iK",
            "recurring": null,
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": "one_time",
            "unit_amount": 999,
            "unit_amount_decimal": "999"
        },
        "quantity": quantity
    })
}

/// A test's Tally, configured for Stripe against its own stand-in.
pub struct StripeEnv {
    pub app: TestApp,
    pub stripe: StandIn,
}

/// Tally with both webhook secrets (current and previous), the Stripe key, and the stand-in.
pub async fn stripe_env(backend: Backend) -> Option<StripeEnv> {
    stripe_env_with(backend, unchanged()).await
}

/// `stripe_env`, with `more` applied to the configuration too.
pub async fn stripe_env_with(backend: Backend, more: Configure) -> Option<StripeEnv> {
    let stand_in = StandIn::start().await;
    let base = stand_in.url.clone();
    let configure: Configure = Arc::new(move |config| {
        config.stripe.secret_key = Some(STRIPE_SECRET_KEY.to_owned());
        config.stripe.webhook_secrets =
            vec![WEBHOOK_SECRET.to_owned(), OLD_WEBHOOK_SECRET.to_owned()];
        config.stripe.api_base = Some(base.clone());
        more(config);
    });
    let app = TestApp::spawn_with(backend, configure).await?;
    Some(StripeEnv {
        app,
        stripe: stand_in,
    })
}
