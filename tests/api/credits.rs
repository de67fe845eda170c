//! Adding, spending and reading credits through the GraphQL API.

use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

on_both_databases!(
    an_unknown_end_user_has_a_zero_balance,
    added_credits_are_spent_soonest_expiry_first,
    a_debit_larger_than_the_balance_changes_nothing,
    credits_not_yet_effective_do_not_count,
    idempotent_add_replays_and_conflicts,
    idempotent_subtract_replays_and_conflicts,
    transactions_page_newest_first_with_allocations,
    exact_amounts_up_to_the_javascript_limit,
);

async fn an_unknown_end_user_has_a_zero_balance(app: TestApp) {
    let user = new_user();
    let balance = app.balance(&user).await;
    assert_eq!(balance["endUserId"], user);
    assert_eq!(balance["available"], 0);
    assert_eq!(balance["grants"], json!([]));
    assert_eq!(balance["nextExpiry"], json!(null));
    assert!(app.all_entries(&user).await.is_empty());
}

async fn added_credits_are_spent_soonest_expiry_first(app: TestApp) {
    let user = new_user();
    let never = app
        .add_credits(json!({ "endUserId": user, "amount": 50, "source": "PROMOTION" }))
        .await;
    let late = app
        .add_credits(json!({ "endUserId": user, "amount": 30, "validityDays": 30 }))
        .await;
    let soon = app
        .add_credits(json!({ "endUserId": user, "amount": 20, "validityDays": 2,
            "description": "trial", "metadata": { "campaign": "welcome" } }))
        .await;
    assert_eq!(soon["balance"]["available"], 100);
    assert_eq!(soon["replayed"], false);
    assert_eq!(soon["grant"]["description"], "trial");
    assert_eq!(soon["grant"]["metadata"], json!({ "campaign": "welcome" }));
    assert_eq!(soon["entry"]["kind"], "GRANT");
    assert_eq!(soon["entry"]["delta"], 20);
    assert_eq!(soon["entry"]["grantId"], soon["grant"]["id"]);
    assert_eq!(never["grant"]["source"], "PROMOTION");
    assert_eq!(never["grant"]["expiresAt"], json!(null));

    // validityDays: N means N × 24 h from now.
    let expires: DateTime<Utc> = late["grant"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let created: DateTime<Utc> = late["grant"]["createdAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let drift = (expires - created - Duration::days(30)).num_seconds().abs();
    assert!(
        drift <= 1,
        "validityDays counts 24 h days from now (drift {drift}s)"
    );

    let balance = app.balance(&user).await;
    let order: Vec<_> = balance["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].clone())
        .collect();
    assert_eq!(
        order,
        vec![
            soon["grant"]["id"].clone(),
            late["grant"]["id"].clone(),
            never["grant"]["id"].clone()
        ]
    );
    assert_eq!(balance["nextExpiry"], soon["grant"]["expiresAt"]);

    let spent = app
        .subtract_credits(json!({ "endUserId": user, "amount": 45, "description": "report" }))
        .await;
    assert_eq!(
        spent["allocations"],
        json!([
            { "grantId": soon["grant"]["id"], "amount": 20 },
            { "grantId": late["grant"]["id"], "amount": 25 },
        ])
    );
    assert_eq!(spent["entry"]["allocations"], spent["allocations"]);
    assert_eq!(spent["entry"]["kind"], "DEBIT");
    assert_eq!(spent["entry"]["delta"], -45);
    assert_eq!(spent["entry"]["balanceAfter"], 55);
    assert_eq!(spent["balance"]["available"], 55);
    // The emptied grant is no longer active; the rest are in burn-down order.
    assert_eq!(
        spent["balance"]["grants"],
        json!([
            { "id": late["grant"]["id"], "remaining": 5 },
            { "id": never["grant"]["id"], "remaining": 50 },
        ])
    );

    let spent = app
        .subtract_credits(json!({ "endUserId": user, "amount": 55 }))
        .await;
    assert_eq!(spent["balance"]["available"], 0);
    assert_eq!(app.available(&user).await, 0);
}

async fn a_debit_larger_than_the_balance_changes_nothing(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10, "validityDays": 1 }))
        .await;
    app.add_credits(json!({ "endUserId": user, "amount": 5 }))
        .await;
    let body = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 16 } }),
        )
        .await;
    assert_eq!(error_code(&body), "INSUFFICIENT_CREDITS");
    assert_eq!(body["errors"][0]["extensions"]["available"], 15);
    assert_eq!(body["errors"][0]["extensions"]["requested"], 16);
    assert_eq!(body["data"], json!(null));
    assert_eq!(app.available(&user).await, 15);
    assert_eq!(
        app.all_entries(&user).await.len(),
        2,
        "no entry for the refused debit"
    );
    // Exactly the balance is fine.
    let spent = app
        .subtract_credits(json!({ "endUserId": user, "amount": 15 }))
        .await;
    assert_eq!(spent["balance"]["available"], 0);
}

async fn credits_not_yet_effective_do_not_count(app: TestApp) {
    let user = new_user();
    let start = (Utc::now() + Duration::hours(2)).to_rfc3339();
    let future = app
        .add_credits(
            json!({ "endUserId": user, "amount": 40, "effectiveAt": start, "validityDays": 10 }),
        )
        .await;
    assert_eq!(future["balance"]["available"], 0);
    assert_eq!(future["entry"]["balanceAfter"], 0);
    // Validity counts from when the grant takes effect.
    let effective: DateTime<Utc> = future["grant"]["effectiveAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expires: DateTime<Utc> = future["grant"]["expiresAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires - effective, Duration::days(10));
    let body = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1 } }),
        )
        .await;
    assert_eq!(error_code(&body), "INSUFFICIENT_CREDITS");
    assert_eq!(body["errors"][0]["extensions"]["available"], 0);
}

async fn idempotent_add_replays_and_conflicts(app: TestApp) {
    let user = new_user();
    let input = json!({ "endUserId": user, "amount": 25, "validityDays": 7,
        "metadata": { "a": 1, "b": 2 }, "idempotencyKey": "grant-1" });
    let first = app.add_credits(input.clone()).await;
    assert_eq!(first["replayed"], false);
    // Same request, fields in another order: the same request.
    let again = app
        .add_credits(
            json!({ "idempotencyKey": "grant-1", "metadata": { "b": 2, "a": 1 },
            "validityDays": 7, "amount": 25, "endUserId": user }),
        )
        .await;
    assert_eq!(again["replayed"], true);
    assert_eq!(again["grant"], first["grant"]);
    assert_eq!(again["entry"], first["entry"]);
    assert_eq!(app.available(&user).await, 25, "a replay grants nothing");

    for different in [
        json!({ "endUserId": user, "amount": 26, "validityDays": 7, "metadata": { "a": 1, "b": 2 }, "idempotencyKey": "grant-1" }),
        json!({ "endUserId": new_user(), "amount": 25, "validityDays": 7, "metadata": { "a": 1, "b": 2 }, "idempotencyKey": "grant-1" }),
    ] {
        let body = app
            .graphql(ADD_CREDITS, json!({ "input": different }))
            .await;
        assert_eq!(error_code(&body), "IDEMPOTENCY_CONFLICT");
    }
    // A key used by one operation conflicts with another operation.
    let body = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 25, "idempotencyKey": "grant-1" } }),
        )
        .await;
    assert_eq!(error_code(&body), "IDEMPOTENCY_CONFLICT");
    assert_eq!(app.available(&user).await, 25);
    assert_eq!(app.all_entries(&user).await.len(), 1);
}

async fn idempotent_subtract_replays_and_conflicts(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    let input = json!({ "endUserId": user, "amount": 30, "idempotencyKey": "spend-1" });
    let first = app.subtract_credits(input.clone()).await;
    let again = app.subtract_credits(input.clone()).await;
    assert_eq!(first["replayed"], false);
    assert_eq!(again["replayed"], true);
    assert_eq!(again["entry"], first["entry"]);
    assert_eq!(again["allocations"], first["allocations"]);
    assert_eq!(again["balance"]["available"], 70);

    let body = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 31, "idempotencyKey": "spend-1" } }),
        )
        .await;
    assert_eq!(error_code(&body), "IDEMPOTENCY_CONFLICT");
    assert_eq!(app.available(&user).await, 70);

    // A refused debit records nothing under its key: after a top-up the same key works.
    let body = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 500, "idempotencyKey": "spend-2" } }),
        )
        .await;
    assert_eq!(error_code(&body), "INSUFFICIENT_CREDITS");
    app.add_credits(json!({ "endUserId": user, "amount": 430 }))
        .await;
    let later = app
        .subtract_credits(json!({ "endUserId": user, "amount": 500, "idempotencyKey": "spend-2" }))
        .await;
    assert_eq!(later["replayed"], false);
    assert_eq!(later["balance"]["available"], 0);
}

async fn transactions_page_newest_first_with_allocations(app: TestApp) {
    let user = new_user();
    let grant = app
        .add_credits(json!({ "endUserId": user, "amount": 1000 }))
        .await;
    for i in 1..=5 {
        app.subtract_credits(
            json!({ "endUserId": user, "amount": i, "idempotencyKey": format!("t-{user}-{i}") }),
        )
        .await;
    }
    let first = app
        .ok(TRANSACTIONS, json!({ "id": user, "first": 2 }))
        .await;
    let edges = first["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["sequence"], 6);
    assert_eq!(edges[0]["node"]["amount"], 5);
    assert_eq!(edges[0]["node"]["balanceAfter"], 1000 - 15);
    assert_eq!(
        edges[0]["node"]["allocations"],
        json!([{ "grantId": grant["grant"]["id"], "amount": 5 }])
    );
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);

    let second = app
        .ok(
            TRANSACTIONS,
            json!({ "id": user, "first": 2, "after": first["pageInfo"]["endCursor"] }),
        )
        .await;
    let sequences: Vec<_> = second["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, vec![4, 3]);
    assert_eq!(second["pageInfo"]["hasPreviousPage"], true);

    let all = app.all_entries(&user).await;
    let sequences: Vec<_> = all
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, vec![6, 5, 4, 3, 2, 1]);
    assert_eq!(all.last().unwrap()["kind"], "GRANT");

    for (first, after) in [
        (json!(-1), json!(null)),
        (json!(101), json!(null)),
        (json!(5), json!("bogus")),
    ] {
        let body = app
            .graphql(
                TRANSACTIONS,
                json!({ "id": user, "first": first, "after": after }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    }
}

async fn exact_amounts_up_to_the_javascript_limit(app: TestApp) {
    let user = new_user();
    let max: i64 = 9_007_199_254_740_991;
    let added = app
        .add_credits(json!({ "endUserId": user, "amount": max }))
        .await;
    assert_eq!(added["balance"]["available"], max);
    let spent = app
        .subtract_credits(json!({ "endUserId": user, "amount": max - 1 }))
        .await;
    assert_eq!(spent["balance"]["available"], 1);
}
