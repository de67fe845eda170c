//! Outbound webhooks (README, "Webhooks"), black-box: a real HTTP receiver in the test checks
//! every delivery's Standard Webhooks signature with the `standardwebhooks` crate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::helpers::receiver::{Answer, Receiver, assert_all_signed};
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases_with!(
    setup;
    each_event_type_is_delivered_signed_with_its_payload,
    a_failing_receiver_gets_the_same_webhook_id_until_it_answers,
    a_dead_receiver_does_not_slow_debits,
    refused_and_replayed_writes_emit_nothing,
    concurrent_debits_on_two_processes_fire_each_alert_once,
    a_rotated_secret_and_the_old_one_both_sign_during_the_grace,
    bad_endpoint_input_is_refused_and_writes_nothing,
    only_secret_keys_manage_webhooks,
    old_events_are_deleted_unless_still_being_sent,
);

const WAIT: Duration = Duration::from_secs(20);

/// Fast retries and polls, and `http://127.0.0.1` endpoints allowed.
async fn setup(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, Arc::new(fast_webhooks)).await
}

fn fast_webhooks(config: &mut tally::Config) {
    config.webhooks.allow_http_loopback = true;
    config.webhooks.retry_base = Duration::from_millis(20);
    config.webhooks.poll_interval = Duration::from_millis(50);
    config.webhooks.timeout = Duration::from_millis(1_000);
}

const CREATE_ENDPOINT: &str = "mutation($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) { secret endpoint { id url description eventTypes enabled } } }";

const DELIVERIES: &str =
    "query($id: UUID!, $first: Int, $after: String, $status: WebhookDeliveryStatus) {
    webhookDeliveries(endpointId: $id, first: $first, after: $after, status: $status) {
      edges { cursor node { id eventId eventType endUserId payload status attempts nextAttemptAt
        lastAttemptAt lastStatusCode lastLatencyMs lastError deliveredAt
        history { number attemptedAt statusCode latencyMs error } } }
      pageInfo { hasNextPage endCursor } } }";

const SET_ALERTS: &str = "mutation($input: SetBalanceAlertsInput!) {
    setBalanceAlerts(input: $input) { endUserId thresholds usesDefault } }";

const ALL_TYPES: [&str; 11] = [
    "credits.granted",
    "credits.debited",
    "credits.expired",
    "credits.voided",
    "credits.reversed",
    "hold.expired",
    "purchase.completed",
    "purchase.refunded",
    "balance.low",
    "balance.depleted",
    "balance.recovered",
];

/// Registers an endpoint for `types` at the receiver and tells the receiver its secret.
async fn subscribe(app: &TestApp, receiver: &Receiver, types: &[&str]) -> String {
    let created = receiver.subscribe(app, types).await;
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{created}");
    created["endpoint"]["id"].as_str().unwrap().to_owned()
}

async fn set_alerts(app: &TestApp, user: &str, thresholds: &[i64]) {
    let set = app
        .ok(
            SET_ALERTS,
            json!({ "input": { "endUserId": user, "thresholds": thresholds } }),
        )
        .await;
    assert_eq!(set["usesDefault"], false);
}

/// Every delivery of the endpoint, newest first, following the cursors.
async fn deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    app.all_nodes(DELIVERIES, json!({ "id": endpoint })).await
}

/// Waits until every event in the outbox has been fanned out to its deliveries and none of the
/// endpoint's deliveries is pending, and returns them. Events are written in the ledger
/// write's own transaction, so once a write has answered, this sees everything it emitted.
async fn settled_deliveries(app: &TestApp, endpoint: &str) -> Vec<Value> {
    eventually(WAIT, "the outbox to be fanned out and sent", || async {
        if app.outbox_events(false).await > 0 {
            return None;
        }
        let all = deliveries(app, endpoint).await;
        all.iter().all(|d| d["status"] != "PENDING").then_some(all)
    })
    .await
}

fn types_of(received: &[crate::helpers::receiver::Received]) -> Vec<String> {
    let mut types: Vec<String> = received.iter().map(|r| r.event_type.clone()).collect();
    types.sort();
    types
}

async fn each_event_type_is_delivered_signed_with_its_payload(app: TestApp) {
    let receiver = Receiver::start(Answer::Ok).await;
    let endpoint = subscribe(&app, &receiver, &ALL_TYPES).await;
    let user = new_user();
    set_alerts(&app, &user, &[50, 20]).await;

    // credits.granted
    let granted = app
        .add_credits(json!({ "endUserId": user, "amount": 100, "description": "welcome" }))
        .await;
    let grant_id = granted["grant"]["id"].as_str().unwrap().to_owned();
    // credits.debited and balance.low (50): 100 → 40
    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 60 }))
        .await;
    let debit_id = debit["entry"]["id"].as_str().unwrap().to_owned();
    // credits.reversed: 40 → 50 (not above 50: no recovery)
    app.ok(
        "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) { replayed } }",
        json!({ "input": { "entryId": debit_id, "amount": 10 } }),
    )
    .await;
    // credits.voided, balance.low (20), balance.depleted: 50 → 0
    app.ok(
        "mutation($input: VoidGrantInput!) { voidGrant(input: $input) { replayed } }",
        json!({ "input": { "grantId": grant_id, "reason": "test" } }),
    )
    .await;
    // credits.granted and balance.recovered: 0 → 500
    app.add_credits(json!({ "endUserId": user, "amount": 500 }))
        .await;
    // hold.expired: a one-second hold, then a write that settles it.
    app.ok(
        "mutation($input: CreateHoldInput!) { createHold(input: $input) { replayed } }",
        json!({ "input": { "endUserId": user, "amount": 30, "ttlSeconds": 1 } }),
    )
    .await;
    // credits.expired: a grant that expires in a minute; the clock moves past it (and past
    // the hold's deadline).
    let soon = (app.now() + chrono::Duration::minutes(1)).to_rfc3339();
    app.add_credits(json!({ "endUserId": user, "amount": 7, "expiresAt": soon }))
        .await;
    // Everything sent first: a clock that jumps ahead also ends the lease of a delivery in
    // flight, which is then sent again (at least once, as after a crash).
    settled_deliveries(&app, &endpoint).await;
    app.advance_clock(chrono::Duration::minutes(2));
    app.subtract_credits(json!({ "endUserId": user, "amount": 1 }))
        .await;

    let expected = [
        "balance.depleted",
        "balance.low",
        "balance.low",
        "balance.recovered",
        "credits.debited",
        "credits.debited",
        "credits.expired",
        "credits.granted",
        "credits.granted",
        "credits.granted",
        "credits.reversed",
        "credits.voided",
        "hold.expired",
    ];
    let received = receiver
        .wait_until(WAIT, "every event", |r| r.len() >= expected.len())
        .await;
    assert_all_signed(&received);
    assert_eq!(types_of(&received), expected);

    let by_type = |t: &str| {
        received
            .iter()
            .filter(|r| r.event_type == t)
            .map(|r| r.body.clone())
            .collect::<Vec<_>>()
    };
    for r in &received {
        // The Standard Webhooks envelope, and the id every attempt carries.
        assert_eq!(r.body["id"], r.webhook_id);
        assert!(r.body["timestamp"].is_string());
        assert_eq!(r.body["data"]["endUserId"], user, "{}", r.body);
        assert!(r.body["data"]["balanceAfter"].is_i64(), "{}", r.body);
    }
    let lows: HashMap<i64, Value> = by_type("balance.low")
        .into_iter()
        .map(|b| (b["data"]["threshold"].as_i64().unwrap(), b))
        .collect();
    assert_eq!(lows[&50]["data"]["balanceAfter"], 40);
    assert_eq!(lows[&20]["data"]["balanceAfter"], 0);
    assert_eq!(lows[&50]["data"]["entryKind"], "DEBIT");
    assert_eq!(by_type("balance.depleted")[0]["data"]["balanceAfter"], 0);
    assert_eq!(by_type("balance.recovered")[0]["data"]["balanceAfter"], 500);
    let first_grant = by_type("credits.granted")
        .into_iter()
        .find(|b| b["data"]["grantId"] == grant_id.as_str())
        .expect("the first grant's event");
    assert_eq!(first_grant["data"]["amount"], 100);
    assert_eq!(first_grant["data"]["source"], "manual");
    assert_eq!(first_grant["data"]["description"], "welcome");
    assert_eq!(first_grant["data"]["balanceAfter"], 100);
    let debited = by_type("credits.debited");
    assert!(
        debited
            .iter()
            .any(|b| b["data"]["amount"] == 60 && b["data"]["balanceAfter"] == 40)
    );
    let reversed = &by_type("credits.reversed")[0]["data"];
    assert_eq!(
        (
            reversed["amount"].as_i64(),
            reversed["balanceAfter"].as_i64()
        ),
        (Some(10), Some(50))
    );
    assert_eq!(reversed["reversedEntryId"], debit_id.as_str());
    let voided = &by_type("credits.voided")[0]["data"];
    assert_eq!(
        (voided["amount"].as_i64(), voided["balanceAfter"].as_i64()),
        (Some(50), Some(0))
    );
    let hold = &by_type("hold.expired")[0]["data"];
    assert_eq!(
        (hold["amount"].as_i64(), hold["released"].as_i64()),
        (Some(30), Some(30))
    );
    let expired = &by_type("credits.expired")[0]["data"];
    assert_eq!(expired["amount"], 7);

    // Each is recorded as delivered, with the id it was sent under.
    let recorded = settled_deliveries(&app, &endpoint).await;
    assert_eq!(recorded.len(), expected.len());
    let ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    for delivery in &recorded {
        assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
        assert_eq!(delivery["attempts"], 1);
        assert_eq!(delivery["lastStatusCode"], 200);
        assert!(delivery["lastLatencyMs"].is_i64());
        assert!(ids.contains(delivery["eventId"].as_str().unwrap()));
    }

    // A test event goes to the endpoint whatever it subscribes to.
    let test = app
        .ok(
            "mutation($id: UUID!) { sendTestWebhookEvent(endpointId: $id) { eventId eventType status } }",
            json!({ "id": endpoint }),
        )
        .await;
    assert_eq!(test["eventType"], "test");
    let received = receiver
        .wait_until(WAIT, "the test event", |r| {
            r.iter().any(|r| r.event_type == "test")
        })
        .await;
    assert_all_signed(&received);
    // And an event can be sent again, under its own id.
    let first = &recorded[0];
    app.ok(
        "mutation($input: RedeliverWebhookEventInput!) { redeliverWebhookEvent(input: $input) { status } }",
        json!({ "input": { "eventId": first["eventId"], "endpointId": endpoint } }),
    )
    .await;
    let event_id = first["eventId"].as_str().unwrap().to_owned();
    receiver
        .wait_until(WAIT, "the redelivery", |r| {
            r.iter().filter(|r| r.webhook_id == event_id).count() == 2
        })
        .await;
    assert_verify_clean(&app);
}

async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers(app: TestApp) {
    let receiver = Receiver::start(Answer::FailFirst(2)).await;
    let endpoint = subscribe(&app, &receiver, &["credits.granted"]).await;
    app.add_credits(json!({ "endUserId": new_user(), "amount": 5 }))
        .await;
    let received = receiver
        .wait_until(WAIT, "three attempts", |r| r.len() >= 3)
        .await;
    assert_all_signed(&received);
    let ids: HashSet<&str> = received.iter().map(|r| r.webhook_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt carries the event's id: {received:?}"
    );
    let recorded = settled_deliveries(&app, &endpoint).await;
    assert_eq!(recorded.len(), 1);
    let delivery = &recorded[0];
    assert_eq!(delivery["status"], "DELIVERED");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["lastStatusCode"], 200);
    assert_eq!(delivery["eventId"], received[0].webhook_id.as_str());
    // Every attempt is on record, first to last.
    let history = delivery["history"].as_array().unwrap();
    let numbers: Vec<i64> = history
        .iter()
        .map(|a| a["number"].as_i64().unwrap())
        .collect();
    let codes: Vec<i64> = history
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!((numbers, codes), (vec![1, 2, 3], vec![500, 500, 200]));
    assert_eq!(history[0]["error"], "HTTP 500 Internal Server Error");
    assert_eq!(history[2]["error"], Value::Null);
    assert!(
        history
            .iter()
            .all(|a| a["latencyMs"].is_i64() && a["attemptedAt"].is_string())
    );
    // Delivered is final: the worker never picks it up again.
    assert_eq!(delivery["nextAttemptAt"], Value::Null, "{delivery}");
    assert_eq!(receiver.received().len(), 3, "nothing is sent after a 2xx");
}

/// The mean time of `count` sequential debits.
async fn mean_debit(app: &TestApp, user: &str, count: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..count {
        app.subtract_credits(json!({ "endUserId": user, "amount": 1 }))
            .await;
    }
    started.elapsed() / count
}

async fn a_dead_receiver_does_not_slow_debits(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10_000 }))
        .await;
    set_alerts(&app, &user, &[9_990, 9_980, 9_970, 9_960]).await;
    mean_debit(&app, &user, 5).await; // warm up
    let without = mean_debit(&app, &user, 40).await;

    let dead = Receiver::start(Answer::Never).await;
    let endpoint = subscribe(&app, &dead, &["credits.debited", "balance.low"]).await;
    let with = mean_debit(&app, &user, 40).await;
    let received = dead
        .wait_until(WAIT, "attempts at the dead endpoint", |r| !r.is_empty())
        .await;
    assert_all_signed(&received);
    assert!(
        with < without * 3 + Duration::from_millis(20),
        "debits took {with:?} each with a dead endpoint, {without:?} without"
    );
    // The attempts time out (after the 1 s the test allows) and are retried, never delivered.
    let recorded = eventually(WAIT, "an attempt to time out", || async {
        let recorded = deliveries(&app, &endpoint).await;
        let timed_out = recorded.iter().any(|d| {
            d["lastError"]
                .as_str()
                .is_some_and(|e| e.contains("no answer"))
        });
        timed_out.then_some(recorded)
    })
    .await;
    assert!(recorded.iter().all(|d| d["status"] == "PENDING"));
}

async fn refused_and_replayed_writes_emit_nothing(app: TestApp) {
    let receiver = Receiver::start(Answer::Ok).await;
    let endpoint = subscribe(&app, &receiver, &ALL_TYPES).await;
    let user = new_user();
    set_alerts(&app, &user, &[50]).await;
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    // Refused: more than available, and a key reused for another request.
    let refused = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 101 } }),
        )
        .await;
    assert_eq!(error_code(&refused), "INSUFFICIENT_CREDITS");
    let debit = json!({ "input": { "endUserId": user, "amount": 60, "idempotencyKey": "once" } });
    app.ok(SUBTRACT_CREDITS, debit.clone()).await;
    let replay = app.ok(SUBTRACT_CREDITS, debit).await;
    assert_eq!(replay["replayed"], true);
    let conflict = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1, "idempotencyKey": "once" } }),
        )
        .await;
    assert_eq!(error_code(&conflict), "IDEMPOTENCY_CONFLICT");
    let refused_grant = app
        .graphql(
            ADD_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 0 } }),
        )
        .await;
    assert_eq!(error_code(&refused_grant), "BAD_USER_INPUT");

    let recorded = settled_deliveries(&app, &endpoint).await;
    let received = receiver.received();
    assert_all_signed(&received);
    assert_eq!(
        types_of(&received),
        ["balance.low", "credits.debited", "credits.granted"],
        "one event per applied change"
    );
    assert_eq!(recorded.len(), 3);
}

async fn concurrent_debits_on_two_processes_fire_each_alert_once(app: TestApp) {
    let addresses = app.two_instances().await;
    let receiver = Receiver::start(Answer::Ok).await;
    let endpoint = subscribe(
        &app,
        &receiver,
        &["balance.low", "balance.depleted", "balance.recovered"],
    )
    .await;
    let user = new_user();
    set_alerts(&app, &user, &[300, 200, 100, 50]).await;
    app.add_credits(json!({ "endUserId": user, "amount": 320 }))
        .await;
    let answers = app
        .concurrently(&addresses, 32, |_| {
            (
                SUBTRACT_CREDITS,
                json!({ "input": { "endUserId": user, "amount": 10 } }),
            )
        })
        .await;
    for body in &answers {
        assert!(body["data"]["subtractCredits"].is_object(), "{body}");
    }
    assert_eq!(app.available(&user).await, 0);
    let received = receiver
        .wait_until(WAIT, "four lows and depleted", |r| r.len() >= 5)
        .await;
    assert_all_signed(&received);
    // A grant on the other process recovers it.
    post_to(
        &app,
        &addresses[1],
        ADD_CREDITS,
        json!({ "input": { "endUserId": user, "amount": 1_000 } }),
    )
    .await;
    receiver
        .wait_until(WAIT, "the recovery", |r| {
            r.iter().any(|r| r.event_type == "balance.recovered")
        })
        .await;
    // Everything the writes emitted is delivered: a duplicate would be received by now.
    let recorded = settled_deliveries(&app, &endpoint).await;
    assert!(recorded.iter().all(|d| d["status"] == "DELIVERED"));
    let received = receiver.received();
    let distinct: HashMap<&str, &crate::helpers::receiver::Received> = received
        .iter()
        .map(|r| (r.webhook_id.as_str(), r))
        .collect();
    assert_eq!(distinct.len(), received.len(), "no event was sent twice");
    let mut thresholds: Vec<i64> = received
        .iter()
        .filter(|r| r.event_type == "balance.low")
        .map(|r| r.body["data"]["threshold"].as_i64().unwrap())
        .collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, [50, 100, 200, 300], "each threshold once");
    for r in received.iter().filter(|r| r.event_type == "balance.low") {
        let threshold = r.body["data"]["threshold"].as_i64().unwrap();
        let after = r.body["data"]["balanceAfter"].as_i64().unwrap();
        assert!(after < threshold && after >= threshold - 10, "{}", r.body);
    }
    assert_eq!(receiver.of_type("balance.depleted").len(), 1);
    assert_eq!(receiver.of_type("balance.recovered").len(), 1);
    assert_eq!(received.len(), 6);
}

async fn a_rotated_secret_and_the_old_one_both_sign_during_the_grace(app: TestApp) {
    let receiver = Receiver::start(Answer::Ok).await;
    let endpoint = subscribe(&app, &receiver, &["credits.granted"]).await;
    let rotated = app
        .ok(
            "mutation($id: UUID!) { rotateWebhookEndpointSecret(id: $id) { secret endpoint { previousSecretExpiresAt } } }",
            json!({ "id": endpoint }),
        )
        .await;
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(rotated["endpoint"]["previousSecretExpiresAt"].is_string());
    receiver.trust(new_secret);
    app.add_credits(json!({ "endUserId": new_user(), "amount": 5 }))
        .await;
    let received = receiver
        .wait_until(WAIT, "a delivery", |r| !r.is_empty())
        .await;
    assert_eq!(
        received[0].verified_by,
        [0, 1],
        "the old secret (0) and the new one (1) both verify"
    );
}

async fn bad_endpoint_input_is_refused_and_writes_nothing(app: TestApp) {
    let long = "a".repeat(5_000);
    let inputs = [
        json!({ "url": "http://example.com/hooks", "eventTypes": ["balance.low"] }),
        json!({ "url": "http://10.1.2.3/hooks", "eventTypes": ["balance.low"] }),
        json!({ "url": "not a url", "eventTypes": ["balance.low"] }),
        json!({ "url": "ftp://example.com/", "eventTypes": ["balance.low"] }),
        json!({ "url": format!("https://example.com/{long}"), "eventTypes": ["balance.low"] }),
        json!({ "url": "https://exa\u{0}mple.com/", "eventTypes": ["balance.low"] }),
        json!({ "url": "https://example.com/", "eventTypes": [] }),
        json!({ "url": "https://example.com/", "eventTypes": ["balance.lo"] }),
        json!({ "url": "https://example.com/", "eventTypes": ["test"] }),
        json!({ "url": "https://example.com/", "eventTypes": ["balance.low"], "description": "a\u{0}b" }),
        json!({ "url": "https://example.com/", "eventTypes": ["balance.low"], "description": long }),
    ];
    for input in inputs {
        let body = app
            .graphql(CREATE_ENDPOINT, json!({ "input": input }))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}: {body}");
    }
    let user = new_user();
    for thresholds in [
        json!([0]),
        json!([-5]),
        json!((1..=21).collect::<Vec<i64>>()),
    ] {
        let body = app
            .graphql(
                SET_ALERTS,
                json!({ "input": { "endUserId": user, "thresholds": thresholds } }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{thresholds}: {body}");
    }
    let listed = app.ok("{ webhookEndpoints { id } }", json!({})).await;
    assert_eq!(listed, json!([]), "nothing was written");
    let missing = uuid::Uuid::new_v4();
    let body = app
        .graphql(
            "mutation($id: UUID!) { deleteWebhookEndpoint(id: $id) { id } }",
            json!({ "id": missing }),
        )
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let body = app
        .graphql(DELIVERIES, json!({ "id": missing, "first": 500 }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");

    // A valid endpoint: update, disable (with a reason), enable, delete.
    let receiver = Receiver::start(Answer::Ok).await;
    let id = subscribe(&app, &receiver, &["balance.low"]).await;
    let updated = app
        .ok(
            "mutation($input: UpdateWebhookEndpointInput!) { updateWebhookEndpoint(input: $input) { eventTypes description } }",
            json!({ "input": { "id": id, "eventTypes": ["balance.low", "balance.depleted"], "description": "" } }),
        )
        .await;
    assert_eq!(
        updated["eventTypes"],
        json!(["balance.low", "balance.depleted"])
    );
    assert_eq!(updated["description"], Value::Null);
    let disabled = app
        .ok(
            "mutation($input: DisableWebhookEndpointInput!) { disableWebhookEndpoint(input: $input) { enabled disabledReason } }",
            json!({ "input": { "id": id, "reason": "maintenance" } }),
        )
        .await;
    assert_eq!(
        disabled,
        json!({ "enabled": false, "disabledReason": "maintenance" })
    );
    let enabled = app
        .ok(
            "mutation($id: UUID!) { enableWebhookEndpoint(id: $id) { enabled disabledReason } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(enabled, json!({ "enabled": true, "disabledReason": null }));
    app.ok(
        "mutation($id: UUID!) { deleteWebhookEndpoint(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await;
    let listed = app.ok("{ webhookEndpoints { id } }", json!({})).await;
    assert_eq!(listed, json!([]));
}

async fn only_secret_keys_manage_webhooks(app: TestApp) {
    let user = new_user();
    let token = app.end_user_token(&user, Some(600)).await;
    let token = token.as_str();
    let attempts = [
        (
            CREATE_ENDPOINT,
            json!({ "input": { "url": "https://example.com/", "eventTypes": ["balance.low"] } }),
        ),
        ("{ webhookEndpoints { id } }", json!({})),
        (
            SET_ALERTS,
            json!({ "input": { "endUserId": user, "thresholds": [10] } }),
        ),
        (DELIVERIES, json!({ "id": uuid::Uuid::new_v4() })),
    ];
    for (query, variables) in &attempts {
        let body = app
            .graphql_with_key(Some(token), query, variables.clone())
            .await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{query}: {body}");
        let body = app.graphql_with_key(None, query, variables.clone()).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED", "{query}: {body}");
    }
}

/// Moves every stored event `days` into the past, as if it had happened then.
async fn age_events(app: &TestApp, days: i64) {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let db = app.db().await;
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => "UPDATE webhook_events SET created_at = $1",
        _ => "UPDATE webhook_events SET created_at = ?",
    };
    let then = chrono::Utc::now() - chrono::Duration::days(days);
    db.execute_raw(Statement::from_sql_and_values(backend, sql, [then.into()]))
        .await
        .unwrap();
    db.close().await.unwrap();
}

async fn old_events_are_deleted_unless_still_being_sent(app: TestApp) {
    let receiver = Receiver::start(Answer::Ok).await;
    let answering = subscribe(&app, &receiver, &["credits.granted"]).await;
    app.add_credits(json!({ "endUserId": new_user(), "amount": 1 }))
        .await;
    receiver
        .wait_until(WAIT, "the first event", |r| r.len() == 1)
        .await;
    // The second event is also for an endpoint that keeps failing: it stays pending there.
    let failing = Receiver::start(Answer::FailFirst(usize::MAX)).await;
    let retrying = subscribe(&app, &failing, &["credits.granted"]).await;
    app.add_credits(json!({ "endUserId": new_user(), "amount": 2 }))
        .await;
    receiver
        .wait_until(WAIT, "the second event", |r| r.len() == 2)
        .await;
    failing
        .wait_until(WAIT, "an attempt", |r| !r.is_empty())
        .await;
    assert_eq!(deliveries(&app, &answering).await.len(), 2);

    // 31 days later (past the default retention of 30), a process starting deletes what is
    // done with, and keeps the event still being retried.
    age_events(&app, 31).await;
    app.start_another().await;
    let left = eventually(WAIT, "the old event to be deleted", || async {
        let left = deliveries(&app, &answering).await;
        (left.len() == 1).then_some(left)
    })
    .await;
    assert_eq!(left[0]["payload"]["amount"], 2, "{left:?}");
    let still = deliveries(&app, &retrying).await;
    assert_eq!(still.len(), 1);
    assert_eq!(still[0]["status"], "PENDING");
}
