//! Ledger rule 5 (docs/ledger.md): concurrent writers on one end user, spread over two Tally instances sharing
//! one database, give the result of some serial order.

use std::collections::HashSet;

use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    concurrent_debits_never_overdraw,
    one_idempotency_key_sent_concurrently_applies_once,
    one_key_raced_across_end_users_applies_once,
    concurrent_grants_and_debits_replay_to_the_balance,
);

const WRITERS: usize = 40;

async fn concurrent_debits_never_overdraw(app: TestApp) {
    let addresses = app.two_instances().await;
    let user = new_user();
    for (amount, days) in [(30, Some(1)), (30, Some(10)), (40, None)] {
        app.add_credits(json!({ "endUserId": user, "amount": amount, "validityDays": days }))
            .await;
    }
    let answers = app
        .concurrently(&addresses, WRITERS, |_| {
            (
                SUBTRACT_CREDITS,
                json!({ "input": { "endUserId": user, "amount": 7 } }),
            )
        })
        .await;
    let mut succeeded = 0;
    for body in &answers {
        if body["data"]["subtractCredits"].is_object() {
            succeeded += 1;
        } else {
            assert_eq!(
                error_code(body),
                "INSUFFICIENT_CREDITS",
                "a definite answer: {body}"
            );
            assert!(
                body["errors"][0]["extensions"]["available"]
                    .as_i64()
                    .unwrap()
                    < 7
            );
        }
    }
    // Serially, 14 debits of 7 fit in 100 and the 15th does not.
    assert_eq!(succeeded, 14);
    assert_eq!(app.available(&user).await, 2);
    assert_eq!(assert_ledger_replays(&app, &user).await, 2);
}

async fn one_idempotency_key_sent_concurrently_applies_once(app: TestApp) {
    let addresses = app.two_instances().await;
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 1000 }))
        .await;
    let answers = app
        .concurrently(&addresses, WRITERS, |_| {
            (
                SUBTRACT_CREDITS,
                json!({ "input": { "endUserId": user, "amount": 10, "idempotencyKey": "once" } }),
            )
        })
        .await;
    let payloads: Vec<&Value> = answers
        .iter()
        .map(|body| {
            assert!(body.get("errors").is_none(), "{body}");
            &body["data"]["subtractCredits"]
        })
        .collect();
    let entry_ids: HashSet<&str> = payloads
        .iter()
        .map(|p| p["entry"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(entry_ids.len(), 1, "every caller sees the one entry");
    assert_eq!(
        payloads.iter().filter(|p| p["replayed"] == false).count(),
        1
    );
    assert_eq!(app.available(&user).await, 990);
    assert_eq!(app.all_entries(&user).await.len(), 2);

    // The same for grants.
    let answers = app
        .concurrently(&addresses, WRITERS, |_| {
            (
                ADD_CREDITS,
                json!({ "input": { "endUserId": user, "amount": 5, "idempotencyKey": "grant-once" } }),
            )
        })
        .await;
    let fresh = answers
        .iter()
        .filter(|body| body["data"]["addCredits"]["replayed"] == false)
        .count();
    assert_eq!(fresh, 1, "{answers:?}");
    assert_eq!(app.available(&user).await, 995);
    assert_ledger_replays(&app, &user).await;
}

async fn one_key_raced_across_end_users_applies_once(app: TestApp) {
    let addresses = app.two_instances().await;
    let users: Vec<String> = (0..8).map(|_| new_user()).collect();
    let answers = app
        .concurrently(&addresses, users.len(), |i| {
            (
                ADD_CREDITS,
                json!({ "input": { "endUserId": users[i], "amount": 3, "idempotencyKey": "shared" } }),
            )
        })
        .await;
    let applied = answers
        .iter()
        .filter(|b| b["data"]["addCredits"]["replayed"] == false)
        .count();
    let conflicts = answers
        .iter()
        .filter(|b| b.get("errors").is_some() && error_code(b) == "IDEMPOTENCY_CONFLICT")
        .count();
    assert_eq!((applied, conflicts), (1, users.len() - 1), "{answers:?}");
    let mut total = 0;
    for user in &users {
        total += app.available(user).await;
    }
    assert_eq!(total, 3);
}

async fn concurrent_grants_and_debits_replay_to_the_balance(app: TestApp) {
    let addresses = app.two_instances().await;
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 50, "validityDays": 3 }))
        .await;
    let answers = app
        .concurrently(&addresses, WRITERS, |i| {
            let (query, input) = if i % 3 == 0 {
                (
                    ADD_CREDITS,
                    json!({ "endUserId": user, "amount": 9, "validityDays": 1 + i }),
                )
            } else {
                (
                    SUBTRACT_CREDITS,
                    json!({ "endUserId": user, "amount": 4 + i % 5 }),
                )
            };
            (query, json!({ "input": input }))
        })
        .await;
    let mut expected = 50;
    for body in &answers {
        if let Some(added) = body["data"]["addCredits"].as_object() {
            expected += added["grant"]["amount"].as_i64().unwrap();
        } else if let Some(spent) = body["data"]["subtractCredits"].as_object() {
            expected -= spent["entry"]["amount"].as_i64().unwrap();
        } else {
            assert_eq!(error_code(body), "INSUFFICIENT_CREDITS", "{body}");
        }
    }
    assert_eq!(assert_ledger_replays(&app, &user).await, expected);
}
