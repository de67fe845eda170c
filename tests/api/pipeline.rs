//! The write pipeline (batched transactions) keeps every rule of the ledger: writes queued
//! together answer as a serial run would, mixed concurrent writers over two instances conserve
//! credits, and a process killed mid-batch loses no acknowledged write and applies none twice.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::process::Process;
use crate::helpers::*;
use crate::metrics::scrape;
use futures::future::join_all;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::{Value, json};
use tally::entities::account;

on_both_databases!(
    writes_queued_behind_a_lock_answer_as_a_serial_run,
    mixed_writers_on_two_instances_conserve_credits,
    a_killed_process_loses_no_acknowledged_write,
    last_active_at_is_the_time_of_the_latest_write,
);

/// How long a test waits for a write to reach the queue.
const WAIT: Duration = Duration::from_secs(10);

const CREATE_HOLD: &str =
    "mutation($input: CreateHoldInput!) { createHold(input: $input) { hold { id } } }";
const RELEASE_HOLD: &str = "mutation($input: ReleaseHoldInput!) { releaseHold(input: $input) { hold { capturedAmount } } }";
const CAPTURE_HOLD: &str = "mutation($input: CaptureHoldInput!) { captureHold(input: $input) { hold { capturedAmount } } }";

fn debit(user: &str, amount: i64, key: Option<&str>) -> (&'static str, Value) {
    let mut input = json!({ "endUserId": user, "amount": amount });
    if let Some(key) = key {
        input["idempotencyKey"] = json!(key);
    }
    (SUBTRACT_CREDITS, json!({ "input": input }))
}

/// While the test holds the end user's account lock, the write in flight waits for it and the
/// writes sent after it queue up behind, in the order sent; released, they are decided together.
/// Each must answer exactly what it would have answered had it run alone, one after another.
/// The writes go to a `tally serve` process of the test's own, whose `tally_writes_pending`
/// gauge (the metrics recorder is process-wide) shows when each has reached the queue.
async fn writes_queued_behind_a_lock_answer_as_a_serial_run(app: TestApp) {
    let process = Process::start(&app.database_url).await;
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10, "validityDays": 30 }))
        .await;

    let db = app.db().await;
    let lock = db.begin().await.unwrap();
    account::Entity::update_many()
        .col_expr(
            account::Column::UpdatedAt,
            Expr::col(account::Column::UpdatedAt),
        )
        .filter(account::Column::EndUserId.eq(user.as_str()))
        .exec(&lock)
        .await
        .unwrap();

    let requests = vec![
        debit(&user, 1, None),             // 9 left (waits for the lock)
        debit(&user, 6, Some("serial-a")), // 3 left
        debit(&user, 6, None),             // refused: 3 available
        debit(&user, 6, Some("serial-a")), // a replay of the second
        debit(&user, 7, Some("serial-a")), // the key with another request: conflict
        (
            ADD_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 20, "validityDays": 60 } }),
        ), // 23
        debit(&user, 3, None),             // 20
        debit(&user, 20, Some("serial-b")), // 0
        debit(&user, 1, None),             // refused: 0 available
    ];
    let mut answers = Vec::new();
    for (sent, (query, variables)) in requests.into_iter().enumerate() {
        let app_address = process.address.clone();
        let client = app.client.clone();
        answers.push(tokio::spawn(async move {
            client
                .post(format!("{app_address}/graphql"))
                .bearer_auth(ADMIN_KEY)
                .json(&json!({ "query": query, "variables": variables }))
                .send()
                .await
                .expect("answered")
                .json::<Value>()
                .await
                .expect("JSON")
        }));
        // The next is sent once this one has reached the queue: they queue in this order.
        let reached = sent as f64 + 1.0;
        eventually(WAIT, "the write to reach the queue", || async {
            let pending = scrape(&process.address)
                .await
                .get("tally_writes_pending", &[]);
            (pending == reached).then_some(())
        })
        .await;
    }
    lock.rollback().await.unwrap();
    let answers: Vec<Value> = join_all(answers)
        .await
        .into_iter()
        .map(|a| a.unwrap())
        .collect();

    let debited = |i: usize| answers[i]["data"]["subtractCredits"].clone();
    assert_eq!(debited(0)["balance"]["available"], 9, "{}", answers[0]);
    assert_eq!(debited(1)["balance"]["available"], 3, "{}", answers[1]);
    assert_eq!(debited(1)["replayed"], false);
    assert_eq!(error_code(&answers[2]), "INSUFFICIENT_CREDITS");
    assert_eq!(answers[2]["errors"][0]["extensions"]["available"], 3);
    assert_eq!(debited(3)["replayed"], true, "{}", answers[3]);
    assert_eq!(debited(3)["entry"]["id"], debited(1)["entry"]["id"]);
    assert_eq!(error_code(&answers[4]), "IDEMPOTENCY_CONFLICT");
    assert_eq!(
        answers[5]["data"]["addCredits"]["balance"]["available"], 23,
        "{}",
        answers[5]
    );
    assert_eq!(debited(6)["balance"]["available"], 20);
    assert_eq!(debited(7)["balance"]["available"], 0);
    assert_eq!(error_code(&answers[8]), "INSUFFICIENT_CREDITS");

    let sequences: Vec<i64> = [0, 1, 6, 7]
        .iter()
        .map(|&i| debited(i)["entry"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [2, 3, 5, 6], "gapless, in arrival order");
    assert_eq!(app.available(&user).await, 0);
    assert_eq!(assert_ledger_replays(&app, &user).await, 0);
    assert_verify_clean(&app);
}

/// 64 clients over two instances on one database mix grants, debits (some too large), holds
/// captured or released, and replays, on a handful of end users: every credit is accounted for.
async fn mixed_writers_on_two_instances_conserve_credits(app: TestApp) {
    const CLIENTS: usize = 64;
    const ROUNDS: usize = 6;
    let addresses = app.two_instances().await;
    let users: Vec<String> = (0..4).map(|_| new_user()).collect();
    for user in &users {
        app.add_credits(json!({ "endUserId": user, "amount": 200, "validityDays": 30 }))
            .await;
    }
    // What each user was granted, spent and still holds, as the answers report it.
    let granted: Arc<Mutex<HashMap<String, i64>>> =
        Arc::new(Mutex::new(users.iter().map(|u| (u.clone(), 200)).collect()));
    let spent: Arc<Mutex<HashMap<String, i64>>> = Arc::default();

    join_all((0..CLIENTS).map(|client| {
        let (app, addresses, users) = (&app, &addresses, &users);
        let (granted, spent) = (granted.clone(), spent.clone());
        async move {
            let address = &addresses[client % 2];
            let user = &users[client % users.len()];
            for round in 0..ROUNDS {
                let key = format!("mixed-{client}-{round}");
                match (client + round) % 4 {
                    0 => {
                        // A grant, sent twice with one key: granted once.
                        let input = json!({ "input": { "endUserId": user, "amount": 5, "validityDays": 10, "idempotencyKey": key } });
                        let first = post_to(app, address, ADD_CREDITS, input.clone()).await;
                        let again = post_to(app, address, ADD_CREDITS, input).await;
                        assert_eq!(first["data"]["addCredits"]["entry"]["id"], again["data"]["addCredits"]["entry"]["id"], "{first} {again}");
                        *granted.lock().unwrap().get_mut(user).unwrap() += 5;
                    }
                    1 | 2 => {
                        // Debits, some of them far too large.
                        let amount = if round % 3 == 2 { 10_000 } else { 3 };
                        let (query, variables) = debit(user, amount, Some(&key));
                        let answer = post_to(app, address, query, variables.clone()).await;
                        if answer["data"]["subtractCredits"].is_object() {
                            let replay = post_to(app, address, query, variables).await;
                            assert_eq!(replay["data"]["subtractCredits"]["replayed"], true, "{replay}");
                            *spent.lock().unwrap().entry(user.clone()).or_default() += amount;
                        } else {
                            assert_eq!(error_code(&answer), "INSUFFICIENT_CREDITS", "{answer}");
                        }
                    }
                    _ => {
                        // A hold of 4, captured (2) or released.
                        let hold = post_to(app, address, CREATE_HOLD, json!({ "input": { "endUserId": user, "amount": 4, "ttlSeconds": 600 } })).await;
                        let Some(hold_id) = hold["data"]["createHold"]["hold"]["id"].as_str() else {
                            assert_eq!(error_code(&hold), "INSUFFICIENT_CREDITS", "{hold}");
                            continue;
                        };
                        let capture = if round % 2 == 0 { 2 } else { 0 };
                        let closed = if capture > 0 {
                            let input = json!({ "input": { "holdId": hold_id, "amount": capture } });
                            post_to(app, address, CAPTURE_HOLD, input).await
                        } else {
                            let input = json!({ "input": { "holdId": hold_id } });
                            post_to(app, address, RELEASE_HOLD, input).await
                        };
                        assert!(closed.get("errors").is_none(), "{closed}");
                        *spent.lock().unwrap().entry(user.clone()).or_default() += capture;
                    }
                }
            }
        }
    }))
    .await;

    for user in &users {
        let balance = app.balance(user).await;
        let expected =
            granted.lock().unwrap()[user] - spent.lock().unwrap().get(user).copied().unwrap_or(0);
        assert_eq!(
            balance["available"].as_i64().unwrap(),
            expected,
            "credits of {user} conserved"
        );
    }
    assert_verify_clean(&app);
}

/// Clients spend with idempotency keys against a real `tally` process that is killed with
/// SIGKILL in the middle of its batches, then restarted; every client retries what got no
/// answer with the same key. Each key is applied exactly once.
async fn a_killed_process_loses_no_acknowledged_write(app: TestApp) {
    const CLIENTS: usize = 16;
    const KEYS_PER_CLIENT: usize = 25;
    let users: Vec<String> = (0..4).map(|_| new_user()).collect();
    for user in &users {
        app.add_credits(json!({ "endUserId": user, "amount": 1_000_000 }))
            .await;
    }
    let mut process = Process::start(&app.database_url).await;
    let address = Arc::new(Mutex::new(process.address.clone()));
    let acknowledged: Arc<Mutex<BTreeSet<String>>> = Arc::default();

    let clients = (0..CLIENTS).map(|client| {
        let address = address.clone();
        let acknowledged = acknowledged.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let user = users[client % users.len()].clone();
        tokio::spawn(async move {
            for i in 0..KEYS_PER_CLIENT {
                let key = format!("kill-{client}-{i}");
                let (query, variables) = debit(&user, 3, Some(&key));
                // Retry with the same key until the write is acknowledged.
                loop {
                    let target = address.lock().unwrap().clone();
                    let answer = http
                        .post(format!("{target}/graphql"))
                        .bearer_auth(ADMIN_KEY)
                        .json(&json!({ "query": query, "variables": variables }))
                        .send()
                        .await;
                    if let Ok(response) = answer
                        && let Ok(body) = response.json::<Value>().await
                        && body["data"]["subtractCredits"].is_object()
                    {
                        acknowledged.lock().unwrap().insert(key.clone());
                        break;
                    }
                    // The server is down (killed, not yet back): a client backs off.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    });
    let clients: Vec<_> = clients.collect();

    // Kill it while batches are in flight (once some writes were acknowledged, however loaded
    // the machine), then bring up a fresh process.
    eventually(
        Duration::from_secs(60),
        "writes to be acknowledged",
        || async { (acknowledged.lock().unwrap().len() >= CLIENTS * 2).then_some(()) },
    )
    .await;
    let acknowledged_before_kill = acknowledged.lock().unwrap().len();
    process.kill();
    let restarted = Process::start(&app.database_url).await;
    *address.lock().unwrap() = restarted.address.clone();
    for client in join_all(clients).await {
        client.unwrap();
    }
    assert!(
        acknowledged_before_kill > 0,
        "the kill came after some writes"
    );
    assert!(
        acknowledged_before_kill < CLIENTS * KEYS_PER_CLIENT,
        "the kill came before the end"
    );

    assert_eq!(
        acknowledged.lock().unwrap().len(),
        CLIENTS * KEYS_PER_CLIENT
    );
    let debits_per_user = (CLIENTS / users.len() * KEYS_PER_CLIENT) as i64;
    for user in &users {
        let debits = app
            .all_entries(user)
            .await
            .into_iter()
            .filter(|e| e["kind"] == "DEBIT")
            .count() as i64;
        assert_eq!(debits, debits_per_user, "each key applied once for {user}");
        assert_eq!(app.available(user).await, 1_000_000 - 3 * debits_per_user);
    }
    assert_verify_clean(&app);
}

/// A batch locks an existing account without rewriting it; the account's `lastActiveAt` moves
/// with the entries the batch writes for it, and a refused write leaves it where it was.
async fn last_active_at_is_the_time_of_the_latest_write(app: TestApp) {
    const QUERY: &str =
        "query($u: ID) { endUsers(endUserId: $u, first: 1) { edges { node { lastActiveAt } } } }";
    let last_active_at = |user: String| {
        let app = &app;
        async move {
            let page = app.ok(QUERY, json!({ "u": user })).await;
            let at = page["edges"][0]["node"]["lastActiveAt"].as_str().unwrap();
            chrono::DateTime::parse_from_rfc3339(at).unwrap()
        }
    };
    let user = new_user();
    let before = app.now();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    let granted_at = last_active_at(user.clone()).await;
    assert!(
        before <= granted_at && granted_at <= app.now(),
        "{granted_at}"
    );

    app.advance_clock(chrono::Duration::hours(1));
    let before = app.now();
    app.subtract_credits(json!({ "endUserId": user, "amount": 3 }))
        .await;
    let debited_at = last_active_at(user.clone()).await;
    assert!(
        before <= debited_at && debited_at <= app.now(),
        "{debited_at}"
    );

    app.advance_clock(chrono::Duration::hours(1));
    let (query, variables) = debit(&user, 100, None);
    let refused = app.graphql(query, variables).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "INSUFFICIENT_CREDITS",
        "{refused}"
    );
    assert_eq!(last_active_at(user.clone()).await, debited_at);
}
