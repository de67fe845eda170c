//! `/metrics` after a known workload: counters move by exactly the workload, histograms get
//! exactly one observation per request; request ids; `/metrics` on its own listener; the
//! console's routes; the admin queries. The recorder is process-wide: every Tally started in
//! the test process records into it, whatever test started it. So the tests that read
//! differences between two scrapes send their workload to, and scrape, a `tally serve` process
//! of their own (on the test's database), whose recorder counts nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::process::Process;
use crate::helpers::ws::{Protocol, Socket};
use crate::helpers::{ADMIN_KEY, Backend, TestApp, eventually, new_user};
use serde_json::json;

on_both_databases!(
    counters_and_histograms_move_by_exactly_the_workload,
    live_subscriptions_and_websockets_are_gauged,
    request_ids_are_kept_or_made_and_returned,
    metrics_can_have_their_own_listener,
    the_console_is_served_and_root_redirects_to_it,
    end_users_are_listed_most_recently_active_first,
    the_sqlite_log_is_checkpointed_beside_the_writer,
);

/// One scrape: every sample by metric name and label set.
pub(crate) struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            samples.push((name.to_owned(), labels, value.parse().expect("a number")));
        }
        Scrape(samples)
    }

    /// The sample named `name` whose labels include `labels` (0 when absent: never counted).
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
            })
            .map(|(_, _, value)| *value)
            .sum()
    }
}

pub(crate) async fn scrape(address: &str) -> Scrape {
    let response = reqwest::get(format!("{address}/metrics"))
        .await
        .expect("scrape");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    Scrape::parse(&response.text().await.expect("text"))
}

fn delta(before: &Scrape, after: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

/// A `tally serve` process on the test's database, and a handle that talks to it: its metrics
/// count only what the test sends it.
async fn own_process(app: &TestApp) -> (Process, TestApp) {
    let process = Process::start(&app.database_url).await;
    let via = TestApp::client_for(app, &process.address);
    (process, via)
}

async fn counters_and_histograms_move_by_exactly_the_workload(harness: TestApp) {
    let (_process, app) = own_process(&harness).await;
    let user = uuid::Uuid::new_v4().to_string();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;

    let before = scrape(&app.address).await;
    for _ in 0..7 {
        app.subtract_credits(json!({ "endUserId": user, "amount": 3 }))
            .await;
    }
    let after_debits = scrape(&app.address).await;
    let refused = app
        .graphql(
            crate::helpers::SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1000 } }),
        )
        .await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"],
        "INSUFFICIENT_CREDITS"
    );
    let after = scrape(&app.address).await;

    let ok = [("operation", "subtractCredits"), ("outcome", "ok")];
    assert_eq!(
        delta(&before, &after_debits, "tally_graphql_requests_total", &ok),
        7.0
    );
    let debit = [("kind", "debit")];
    assert_eq!(
        delta(&before, &after_debits, "tally_ledger_entries_total", &debit),
        7.0
    );
    assert_eq!(
        delta(&before, &after_debits, "tally_ledger_credits_total", &debit),
        21.0
    );
    assert_eq!(
        delta(&before, &after_debits, "tally_write_batches_total", &[]),
        7.0
    );
    // One write per batch: the debits were sent one after another.
    assert_eq!(
        delta(&before, &after_debits, "tally_write_batch_size_count", &[]),
        7.0
    );
    assert_eq!(
        delta(&before, &after_debits, "tally_write_batch_size_sum", &[]),
        7.0
    );
    let op = [("operation", "subtractCredits")];
    assert_eq!(
        delta(
            &before,
            &after_debits,
            "tally_graphql_request_duration_seconds_count",
            &op
        ),
        7.0
    );
    let bucket = [("operation", "subtractCredits"), ("le", "+Inf")];
    assert_eq!(
        delta(
            &before,
            &after_debits,
            "tally_graphql_request_duration_seconds_bucket",
            &bucket
        ),
        7.0
    );
    let http = [("route", "/graphql"), ("status", "200")];
    assert_eq!(
        delta(&before, &after_debits, "tally_http_requests_total", &http),
        7.0
    );

    // The refusal is counted under its code, and wrote (and batched) nothing.
    let refused = [
        ("operation", "subtractCredits"),
        ("outcome", "INSUFFICIENT_CREDITS"),
    ];
    assert_eq!(
        delta(
            &after_debits,
            &after,
            "tally_graphql_requests_total",
            &refused
        ),
        1.0
    );
    assert_eq!(
        delta(&after_debits, &after, "tally_ledger_entries_total", &debit),
        0.0
    );
    assert_eq!(
        delta(&after_debits, &after, "tally_write_batches_total", &[]),
        0.0
    );

    // Documents the schema never ran count as `invalid`, under their code: field names from
    // a document that did not validate never become labels.
    let broken = app.graphql("{ balance(", json!({})).await;
    assert_eq!(
        broken["errors"][0]["extensions"]["code"],
        "GRAPHQL_PARSE_FAILED"
    );
    let unknown = app.graphql("{ noSuchField }", json!({})).await;
    let code = &unknown["errors"][0]["extensions"]["code"];
    assert_eq!(code, "GRAPHQL_VALIDATION_FAILED", "{unknown}");
    let after_invalid = scrape(&app.address).await;
    for outcome in ["GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"] {
        let invalid = [("operation", "invalid"), ("outcome", outcome)];
        assert_eq!(
            delta(
                &after,
                &after_invalid,
                "tally_graphql_requests_total",
                &invalid
            ),
            1.0,
            "{outcome}"
        );
    }
    let named = [("operation", "noSuchField")];
    assert_eq!(
        after_invalid.get("tally_graphql_request_duration_seconds_count", &named),
        0.0
    );

    assert!(after.get("tally_db_pool_max_connections", &[]) >= 1.0);
    assert!(after.get("tally_db_pool_connections", &[("state", "idle")]) >= 0.0);
}

async fn live_subscriptions_and_websockets_are_gauged(harness: TestApp) {
    let (_process, app) = own_process(&harness).await;
    let before = scrape(&app.address).await;
    let mut socket = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
    socket
        .subscribe(
            "1",
            "subscription($u: ID!) { balanceChanged(endUserId: $u) { available } }",
            json!({ "u": uuid::Uuid::new_v4() }),
        )
        .await;
    socket.next_data(Duration::from_secs(5)).await;
    let during = scrape(&app.address).await;
    assert_eq!(
        delta(&before, &during, "tally_websocket_connections", &[]),
        1.0
    );
    assert_eq!(
        delta(&before, &during, "tally_live_subscriptions", &[]),
        1.0
    );
    drop(socket);
    // The server notices the closed socket on its next read.
    let after = eventually(
        Duration::from_secs(5),
        "the socket to be counted out",
        || async {
            let after = scrape(&app.address).await;
            (delta(&before, &after, "tally_websocket_connections", &[]) == 0.0).then_some(after)
        },
    )
    .await;
    assert_eq!(delta(&before, &after, "tally_live_subscriptions", &[]), 0.0);
}

async fn request_ids_are_kept_or_made_and_returned(app: TestApp) {
    let client = reqwest::Client::new();
    let kept = client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "checkout-7f3a.2")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "checkout-7f3a.2");
    let made = client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "a generated id: {id}");
    // Unreasonable ids (too long, odd characters) are replaced, never echoed.
    let replaced = client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "a".repeat(500))
        .send()
        .await
        .unwrap();
    let id = replaced.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
}

async fn metrics_can_have_their_own_listener(app: TestApp) {
    let configure: crate::helpers::Configure = Arc::new(|config: &mut tally::Config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    });
    let config = TestApp::config(&app.database_url, &configure);
    let instance = tally::Application::build(config).await.expect("starts");
    let main = format!("http://127.0.0.1:{}", instance.port());
    let metrics = format!(
        "http://127.0.0.1:{}",
        instance.metrics_port().expect("a port")
    );
    tokio::spawn(instance.run_until(std::future::pending()));
    let on_main = reqwest::get(format!("{main}/metrics")).await.unwrap();
    assert_eq!(
        on_main.status(),
        404,
        "not beside the API when it has its own listener"
    );
    scrape(&metrics).await;
    let api_on_metrics = reqwest::get(format!("{metrics}/graphql")).await.unwrap();
    assert_eq!(
        api_on_metrics.status(),
        404,
        "only /metrics on the metrics listener"
    );
}

async fn the_console_is_served_and_root_redirects_to_it(app: TestApp) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let root = client
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 303);
    assert_eq!(root.headers()["location"], "/admin");
    let page = client
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("'self'")
    );
    assert!(page.text().await.unwrap().contains("/admin/app.js"));
    for file in [
        "app.js",
        "api.js",
        "dom.js",
        "live.js",
        "pages.js",
        "chart.js",
        "console.css",
    ] {
        let asset = client
            .get(format!("{}/admin/{file}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(asset.status(), 200, "{file}");
    }
    let missing = client
        .get(format!("{}/admin/..%2Fsecret", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

async fn end_users_are_listed_most_recently_active_first(app: TestApp) {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    app.add_credits(json!({ "endUserId": a, "amount": 10 }))
        .await;
    app.add_credits(json!({ "endUserId": b, "amount": 20 }))
        .await;
    let hold = app
        .ok(
            "mutation($u: ID!) { createHold(input: {endUserId: $u, amount: 4, ttlSeconds: 600}) { hold { id } } }",
            json!({ "u": a }),
        )
        .await;
    let query = "query($id: ID, $first: Int, $after: String) { endUsers(endUserId: $id, first: $first, after: $after) {
        pageInfo { hasNextPage endCursor } edges { node { endUserId lastActiveAt balance { available held } } } } }";
    let page = app.ok(query, json!({ "first": 1 })).await;
    assert_eq!(
        page["edges"][0]["node"]["endUserId"],
        a.to_string(),
        "a held last"
    );
    assert_eq!(page["edges"][0]["node"]["balance"]["available"], 6);
    assert_eq!(page["edges"][0]["node"]["balance"]["held"], 4);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let next = app
        .ok(
            query,
            json!({ "first": 1, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(next["edges"][0]["node"]["endUserId"], b.to_string());
    assert_eq!(next["pageInfo"]["hasNextPage"], false);
    let found = app.ok(query, json!({ "id": b })).await;
    assert_eq!(found["edges"].as_array().unwrap().len(), 1);
    let unknown = app.ok(query, json!({ "id": uuid::Uuid::new_v4() })).await;
    assert_eq!(unknown["edges"].as_array().unwrap().len(), 0);
    let bad = app.graphql(query, json!({ "first": 101 })).await;
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    let bad = app.graphql(query, json!({ "after": "nonsense" })).await;
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    let holds = app
        .ok(
            "query($u: ID!) { openHolds(endUserId: $u) { id amount } }",
            json!({ "u": a }),
        )
        .await;
    assert_eq!(holds[0]["id"], hold["hold"]["id"]);
    assert_eq!(holds[0]["amount"], 4);

    // Secret keys only: an end user's own token may not list anyone.
    let token = app.end_user_token(&a.to_string(), None).await;
    let refused = app.graphql_with_key(Some(&token), query, json!({})).await;
    assert_eq!(refused["errors"][0]["extensions"]["code"], "FORBIDDEN");
}

/// SQLite: after the write pipeline commits, a task of its own checkpoints the write-ahead log
/// (the lane's connection would only do it past a high backstop). PostgreSQL has no such log
/// to copy back.
async fn the_sqlite_log_is_checkpointed_beside_the_writer(harness: TestApp) {
    let (_process, app) = own_process(&harness).await;
    let before = scrape(&app.address).await;
    assert_eq!(before.get("tally_sqlite_wal_checkpoints_total", &[]), 0.0);
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    app.subtract_credits(json!({ "endUserId": user, "amount": 3 }))
        .await;
    match app.backend {
        Backend::Sqlite => {
            let after = eventually(Duration::from_secs(5), "a checkpoint", || async {
                let after = scrape(&app.address).await;
                (after.get("tally_sqlite_wal_checkpoints_total", &[]) >= 1.0).then_some(after)
            })
            .await;
            // The log held the batches' pages when it was copied back.
            assert!(after.get("tally_sqlite_wal_frames", &[]) >= 1.0);
        }
        Backend::Postgres => {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let after = scrape(&app.address).await;
            assert_eq!(after.get("tally_sqlite_wal_checkpoints_total", &[]), 0.0);
        }
    }
}
