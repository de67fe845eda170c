//! Deliveries that never succeed: retried with back-off until the retry window ends, then
//! failed; an endpoint failing for longer than `TALLY_WEBHOOK_DISABLE_AFTER_SECONDS` is
//! disabled and says why. (Both limits are shortened to a second here.)

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::receiver::{Answer, Receiver, assert_all_signed};
use crate::helpers::*;
use serde_json::json;

on_both_databases_with!(setup; a_delivery_failing_past_its_window_fails_and_disables_the_endpoint);

/// How long the test waits for a failure or a disabling, asking every `EVERY`.
const WAIT: Duration = Duration::from_secs(15);

async fn setup(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(
        backend,
        Arc::new(|config: &mut tally::Config| {
            config.webhooks.allow_http_loopback = true;
            config.webhooks.poll_interval = Duration::from_millis(50);
            config.webhooks.retry_base = Duration::from_millis(100);
            config.webhooks.retry_window = Duration::from_secs(1);
            config.webhooks.disable_after = Duration::from_secs(1);
        }),
    )
    .await
}

async fn a_delivery_failing_past_its_window_fails_and_disables_the_endpoint(app: TestApp) {
    let receiver = Receiver::start(Answer::FailFirst(usize::MAX)).await;
    let created = receiver.subscribe(&app, &["credits.granted"]).await;
    let endpoint = created["endpoint"]["id"].as_str().unwrap().to_owned();
    app.add_credits(json!({ "endUserId": new_user(), "amount": 5 }))
        .await;

    let delivery = eventually(WAIT, "the delivery to fail", || async {
        let page = app
            .ok(
                "query($id: UUID!) { webhookDeliveries(endpointId: $id, status: FAILED) { edges { node { status attempts lastStatusCode lastError nextAttemptAt history { statusCode } } } } }",
                json!({ "id": endpoint }),
            )
            .await;
        page["edges"].as_array().unwrap().first().map(|edge| edge["node"].clone())
    })
    .await;
    assert_eq!(delivery["status"], "FAILED");
    assert_eq!(delivery["lastStatusCode"], 500);
    assert_eq!(delivery["lastError"], "HTTP 500 Internal Server Error");
    assert_eq!(delivery["nextAttemptAt"], serde_json::Value::Null);
    let attempts = delivery["attempts"].as_i64().unwrap();
    // 100 ms, then 200, 400, … (± 25%) within one second: a handful of attempts.
    assert!((2..=6).contains(&attempts), "{attempts} attempts");
    assert_eq!(
        delivery["history"].as_array().unwrap().len() as i64,
        attempts
    );
    let received = receiver.received();
    assert_eq!(received.len() as i64, attempts);
    assert_all_signed(&received);
    assert!(
        received
            .iter()
            .all(|r| r.webhook_id == received[0].webhook_id)
    );

    // The next event's attempt finds the endpoint failing for more than a second: disabled,
    // with the reason.
    app.add_credits(json!({ "endUserId": new_user(), "amount": 5 }))
        .await;
    let listed = eventually(WAIT, "the endpoint to be disabled", || async {
        let listed = app
            .ok(
                "{ webhookEndpoints { id enabled disabledReason failingSince } }",
                json!({}),
            )
            .await;
        (listed[0]["enabled"] == false).then_some(listed)
    })
    .await;
    assert!(
        listed[0]["disabledReason"]
            .as_str()
            .unwrap()
            .contains("every delivery failed since"),
        "{listed}"
    );
    // Disabled: nothing more is sent to it, or queued for it.
    let deliveries = || async {
        app.ok(
            "query($id: UUID!) { webhookDeliveries(endpointId: $id) { edges { node { id } } } }",
            json!({ "id": endpoint }),
        )
        .await["edges"]
            .as_array()
            .unwrap()
            .len()
    };
    let queued = deliveries().await;
    let sent = receiver.received().len();
    app.add_credits(json!({ "endUserId": new_user(), "amount": 5 }))
        .await;
    eventually(WAIT, "the event to be fanned out", || async {
        (app.outbox_events(false).await == 0).then_some(())
    })
    .await;
    assert_eq!(deliveries().await, queued);
    assert_eq!(receiver.received().len(), sent);
    assert_all_signed(&receiver.received());
}
