//! A process killed (SIGKILL) while it delivers an event loses nothing: its claim runs out and
//! another process delivers the event, under the same `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::process::Process;
use crate::helpers::receiver::{Answer, Receiver, assert_all_signed};
use crate::helpers::*;
use serde_json::json;

on_both_databases_with!(setup; a_killed_process_loses_no_event);

/// The harness's own instance polls rarely, so the processes below do the delivering (it
/// only makes the database).
async fn setup(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(
        backend,
        Arc::new(|config: &mut tally::Config| {
            config.webhooks.poll_interval = Duration::from_secs(60);
        }),
    )
    .await
}

const SETTINGS: [(&str, &str); 4] = [
    ("TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK", "true"),
    ("TALLY_WEBHOOK_TIMEOUT_MS", "1000"),
    ("TALLY_WEBHOOK_RETRY_BASE_MS", "20"),
    ("TALLY_WEBHOOK_POLL_MS", "50"),
];

async fn a_killed_process_loses_no_event(app: TestApp) {
    // The first attempt never gets an answer: the process is killed while it waits.
    let receiver = Receiver::start(Answer::NeverFirst(1)).await;
    let mut first = Process::start_with_env(&app.database_url, &SETTINGS).await;
    let created = receiver
        .subscribe(
            &TestApp::client_for(&app, &first.address),
            &["credits.granted"],
        )
        .await;
    let endpoint = created["endpoint"]["id"].as_str().unwrap().to_owned();
    let granted = post_to(
        &app,
        &first.address,
        ADD_CREDITS,
        json!({ "input": { "endUserId": new_user(), "amount": 5 } }),
    )
    .await;
    assert!(granted["data"]["addCredits"].is_object(), "{granted}");
    receiver
        .wait_until(Duration::from_secs(10), "the first attempt", |r| {
            !r.is_empty()
        })
        .await;
    first.kill();

    let second = Process::start_with_env(&app.database_url, &SETTINGS).await;
    let received = receiver
        .wait_until(Duration::from_secs(20), "the attempt after restart", |r| {
            r.len() >= 2
        })
        .await;
    assert_all_signed(&received);
    assert_eq!(received[0].webhook_id, received[1].webhook_id);
    assert_eq!(received[1].event_type, "credits.granted");
    let node = eventually(Duration::from_secs(10), "the delivery to be recorded", || async {
        let page = post_to(
            &app,
            &second.address,
            "query($id: UUID!) { webhookDeliveries(endpointId: $id) { edges { node { status attempts eventId } } } }",
            json!({ "id": endpoint }),
        )
        .await;
        let node = page["data"]["webhookDeliveries"]["edges"][0]["node"].clone();
        (node["status"] == "DELIVERED").then_some(node)
    })
    .await;
    assert_eq!(node["eventId"], received[0].webhook_id.as_str());
}
