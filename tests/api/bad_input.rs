//! Bad input is refused with a clear code and writes nothing; missing or wrong keys are
//! `UNAUTHENTICATED`.

use crate::helpers::*;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

on_both_databases!(
    bad_add_inputs_are_refused_and_write_nothing,
    bad_subtract_inputs_are_refused_and_write_nothing,
    a_grant_that_would_overflow_the_balance_is_refused,
    missing_wrong_and_revoked_keys_are_unauthenticated,
);

/// Sends `input` and expects `BAD_USER_INPUT`.
async fn assert_refused(app: &TestApp, mutation: &str, input: Value) {
    let body = app.graphql(mutation, json!({ "input": input })).await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "input {input} gave {body}"
    );
    assert_eq!(body["data"], Value::Null, "{body}");
}

/// The same, with the amount written into the document rather than sent as a variable.
async fn assert_literal_refused(app: &TestApp, mutation_field: &str, user: &str, amount: &str) {
    let query = format!(
        "mutation {{ {mutation_field}(input: {{ endUserId: \"{user}\", amount: {amount} }}) {{ replayed }} }}"
    );
    let body = app.graphql(&query, json!({})).await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "amount {amount} gave {body}"
    );
}

async fn assert_nothing_written(
    app: &TestApp,
    user: &str,
    expected_entries: usize,
    expected_available: i64,
) {
    assert_eq!(app.all_entries(user).await.len(), expected_entries);
    assert_eq!(app.available(user).await, expected_available);
}

async fn bad_add_inputs_are_refused_and_write_nothing(app: TestApp) {
    let user = new_user();
    let now = Utc::now();
    let long = "x".repeat(1001);
    let big_metadata = json!({ "blob": "y".repeat(5000) });
    for input in [
        json!({ "endUserId": user, "amount": 0 }),
        json!({ "endUserId": user, "amount": -5 }),
        json!({ "endUserId": user, "amount": 1.5 }),
        json!({ "endUserId": user, "amount": "10" }),
        json!({ "endUserId": user, "amount": 9_007_199_254_740_992_i64 }),
        json!({ "endUserId": user, "amount": 1e300 }),
        // End-user ids: 1 to 255 visible characters (tests/api/end_user_ids.rs has the rest).
        json!({ "endUserId": "", "amount": 5 }),
        json!({ "endUserId": " padded", "amount": 5 }),
        json!({ "endUserId": "x".repeat(256), "amount": 5 }),
        json!({ "endUserId": user, "amount": 5, "validityDays": 0 }),
        json!({ "endUserId": user, "amount": 5, "validityDays": -3 }),
        json!({ "endUserId": user, "amount": 5, "validityDays": 36_526 }),
        json!({ "endUserId": user, "amount": 5, "validityDays": 3, "expiresAt": (now + Duration::days(3)).to_rfc3339() }),
        json!({ "endUserId": user, "amount": 5, "expiresAt": (now - Duration::minutes(1)).to_rfc3339() }),
        json!({ "endUserId": user, "amount": 5, "expiresAt": (now + Duration::days(36_600)).to_rfc3339() }),
        json!({ "endUserId": user, "amount": 5, "expiresAt": "tomorrow" }),
        json!({ "endUserId": user, "amount": 5, "description": long }),
        json!({ "endUserId": user, "amount": 5, "metadata": big_metadata }),
        json!({ "endUserId": user, "amount": 5, "metadata": [1, 2, 3] }),
        json!({ "endUserId": user, "amount": 5, "priority": -1 }),
        json!({ "endUserId": user, "amount": 5, "source": "FREE_MONEY" }),
        json!({ "endUserId": user, "amount": 5, "idempotencyKey": "" }),
        json!({ "endUserId": user, "amount": 5, "idempotencyKey": "k".repeat(256) }),
        json!({ "endUserId": user, "amount": 5, "unknownField": true }),
        json!({ "endUserId": user }),
    ] {
        assert_refused(&app, ADD_CREDITS, input).await;
    }
    for amount in ["0", "-1", "2.5", "9007199254740992", "\"7\""] {
        assert_literal_refused(&app, "addCredits", &user, amount).await;
    }
    assert_nothing_written(&app, &user, 0, 0).await;
}

async fn bad_subtract_inputs_are_refused_and_write_nothing(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    for input in [
        json!({ "endUserId": user, "amount": 0 }),
        json!({ "endUserId": user, "amount": -1 }),
        json!({ "endUserId": user, "amount": 0.5 }),
        json!({ "endUserId": user, "amount": 9_007_199_254_740_992_i64 }),
        json!({ "endUserId": user, "amount": 18_446_744_073_709_551_615_u64 }),
        json!({ "endUserId": "line\nbreak", "amount": 1 }),
        json!({ "endUserId": user, "amount": 1, "description": "d".repeat(1001) }),
        json!({ "endUserId": user, "amount": 1, "metadata": { "blob": "y".repeat(5000) } }),
        json!({ "endUserId": user, "amount": 1, "metadata": "text" }),
    ] {
        assert_refused(&app, SUBTRACT_CREDITS, input).await;
    }
    for amount in ["0", "-1", "0.5", "99999999999999999999"] {
        assert_literal_refused(&app, "subtractCredits", &user, amount).await;
    }
    assert_nothing_written(&app, &user, 1, 100).await;
}

async fn a_grant_that_would_overflow_the_balance_is_refused(app: TestApp) {
    let user = new_user();
    let max: i64 = 9_007_199_254_740_991;
    app.add_credits(json!({ "endUserId": user, "amount": max - 10 }))
        .await;
    assert_refused(
        &app,
        ADD_CREDITS,
        json!({ "endUserId": user, "amount": 11 }),
    )
    .await;
    // Credits not yet in effect count too: they will be in the balance later.
    let later = (Utc::now() + Duration::days(1)).to_rfc3339();
    assert_refused(
        &app,
        ADD_CREDITS,
        json!({ "endUserId": user, "amount": 20, "effectiveAt": later }),
    )
    .await;
    assert_nothing_written(&app, &user, 1, max - 10).await;
    let topped = app
        .add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    assert_eq!(topped["balance"]["available"], max);
}

async fn missing_wrong_and_revoked_keys_are_unauthenticated(app: TestApp) {
    let user = new_user();
    let add = json!({ "input": { "endUserId": user, "amount": 5 } });
    for key in [None, Some("tally_sk_wrong"), Some("")] {
        for (query, variables) in [
            (ADD_CREDITS, add.clone()),
            (SUBTRACT_CREDITS, add.clone()),
            (BALANCE, json!({ "id": user })),
            (TRANSACTIONS, json!({ "id": user })),
        ] {
            let body = app.graphql_with_key(key, query, variables).await;
            assert_eq!(error_code(&body), "UNAUTHENTICATED", "key {key:?}: {body}");
        }
    }
    // A header that is not a bearer token is no better.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .header("Authorization", format!("Basic {ADMIN_KEY}"))
        .json(&json!({ "query": BALANCE, "variables": { "id": user } }))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    // Introspection stays open.
    let body = app
        .graphql_with_key(None, "{ __schema { queryType { name } } }", json!({}))
        .await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    // A key made and then revoked with the CLI works, then does not.
    let key = tally_cli(&app, &["keys", "create", "--name", "billing backend"]);
    let key = key.trim();
    assert!(key.starts_with("tally_sk_"), "{key}");
    let body = app
        .graphql_with_key(Some(key), BALANCE, json!({ "id": user }))
        .await;
    assert_eq!(body["data"]["balance"]["available"], 0, "{body}");
    let listing = tally_cli(&app, &["keys", "list"]);
    let line = listing
        .lines()
        .find(|l| l.ends_with("billing backend"))
        .expect("listed");
    assert!(!listing.contains(key), "the list never shows a whole key");
    let id = line.split_whitespace().next().unwrap();
    tally_cli(&app, &["keys", "revoke", id]);
    // Keys are checked from memory, reloaded twice a second: refused within one second.
    let body = eventually(
        std::time::Duration::from_secs(1),
        "the revoked key to be refused",
        || async {
            let body = app
                .graphql_with_key(Some(key), BALANCE, json!({ "id": user }))
                .await;
            body.get("errors").is_some().then_some(body)
        },
    )
    .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
    assert_nothing_written(&app, &user, 0, 0).await;
}
