//! The Creduse-compatible REST API, with request bodies exactly as the Creduse Python SDK
//! (`creduse` 0.1.10) sends them: pydantic `model_dump(mode="json")` of its request models,
//! posted as JSON; `get_balance` is a GET with a JSON body.

use crate::helpers::*;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

on_both_databases!(
    add_subtract_and_read_the_active_balance,
    cycles_start_and_stop_with_their_error_codes,
    every_error_answers_the_creduse_error_body,
);

fn assert_no_nulls(value: &Value) {
    match value {
        Value::Null => panic!("the Creduse SDK rejects nulls"),
        Value::Object(map) => map.values().for_each(assert_no_nulls),
        Value::Array(items) => items.iter().for_each(assert_no_nulls),
        _ => {}
    }
}

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error_code"], code, "{answer:?}");
    assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    answer.1["timestamp"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .expect("an ISO 8601 timestamp");
}

async fn add_subtract_and_read_the_active_balance(app: TestApp) {
    let user = new_user();
    // CreduseClient.add(end_user_id, amount) sends validity_days=31 by default.
    let added = app
        .rest_post(
            "/add",
            json!({ "end_user_id": user, "amount": 100, "validity_days": 31 }),
        )
        .await;
    assert_eq!(
        added,
        (
            200,
            json!({ "end_user_id": user, "amount": 100, "validity_days": 31 })
        )
    );
    let added = app
        .rest_post(
            "/add",
            json!({ "end_user_id": user, "amount": 50, "validity_days": 5 }),
        )
        .await;
    assert_eq!(added.1["validity_days"], 5);
    // Absent or null validity: Creduse's default of 31 days.
    let added = app
        .rest_post(
            "/add",
            json!({ "end_user_id": user, "amount": 1, "validity_days": null }),
        )
        .await;
    assert_eq!(added.1["validity_days"], 31);

    let (status, balance) = app.rest_balance(&user).await;
    assert_eq!(status, 200);
    assert_no_nulls(&balance);
    assert_eq!(balance["end_user_id"], user);
    assert_eq!(balance["active_balance"], 151);
    let cycles = balance["active_balance_by_cycle"].as_array().unwrap();
    assert_eq!(cycles.len(), 3);
    // Soonest expiry first, as debits take them.
    assert_eq!(cycles[0]["amount"], 50);
    assert_eq!(cycles[0]["starting_amount"], 50);
    assert_eq!(cycles[0]["cycle_type"], "one-time");
    assert_eq!(cycles[0]["status"], "active");
    let start: DateTime<Utc> = cycles[0]["cycle_start"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = cycles[0]["cycle_end"].as_str().unwrap().parse().unwrap();
    assert_eq!(end - start, chrono::Duration::days(5));

    let spent = app
        .rest_post("/subtract", json!({ "end_user_id": user, "amount": 60 }))
        .await;
    assert_eq!(spent, (200, json!({ "end_user_id": user, "amount": 60 })));
    let (_, balance) = app.rest_balance(&user).await;
    assert_eq!(balance["active_balance"], 91);
    let remaining: Vec<_> = balance["active_balance_by_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["amount"].clone())
        .collect();
    assert_eq!(
        remaining,
        vec![json!(90), json!(1)],
        "the 5-day grant is used up, 10 taken from the next"
    );
    // `?end_user_id=` answers the same.
    let (status, by_query) = app
        .rest(
            Method::GET,
            &format!("/get-active-balance?end_user_id={user}"),
            None,
            Some(ADMIN_KEY),
        )
        .await;
    assert_eq!((status, by_query), (200, balance));

    // Too much: INSUFFICIENT_FUNDS and nothing changes.
    let refused = app
        .rest_post("/subtract", json!({ "end_user_id": user, "amount": 92 }))
        .await;
    assert_error(&refused, 402, "INSUFFICIENT_FUNDS");
    assert_eq!(app.rest_balance(&user).await.1["active_balance"], 91);
    // The same ledger as GraphQL.
    assert_eq!(app.available(&user).await, 91);
    assert_ledger_replays(&app, &user).await;
}

async fn cycles_start_and_stop_with_their_error_codes(app: TestApp) {
    let user = new_user();
    let (status, cycle) = app
        .rest_post(
            "/start-cycle",
            json!({ "end_user_id": user, "amount": 200, "validity_days": 31 }),
        )
        .await;
    assert_eq!(status, 200, "{cycle}");
    assert_no_nulls(&cycle);
    assert_eq!(cycle["end_user_id"], user);
    assert_eq!(cycle["amount"], 200);
    assert_eq!(cycle["cycle_type"], "recurring");
    assert_eq!(cycle["status"], "active");
    let start: DateTime<Utc> = cycle["current_cycle_start"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: DateTime<Utc> = cycle["current_cycle_end"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(end - start, chrono::Duration::days(31));
    cycle["created_at"]
        .as_str()
        .unwrap()
        .parse::<DateTime<Utc>>()
        .unwrap();

    let again = app
        .rest_post(
            "/start-cycle",
            json!({ "end_user_id": user, "amount": 5, "validity_days": 31 }),
        )
        .await;
    assert_error(&again, 409, "ACTIVE_CYCLE_EXISTS");

    app.rest_post(
        "/add",
        json!({ "end_user_id": user, "amount": 10, "validity_days": 31 }),
    )
    .await;
    let (_, balance) = app.rest_balance(&user).await;
    assert_eq!(balance["active_balance"], 210);
    let types: Vec<_> = balance["active_balance_by_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cycle_type"].clone())
        .collect();
    assert!(
        types.contains(&json!("recurring")) && types.contains(&json!("one-time")),
        "{balance}"
    );

    let (status, stopped) = app
        .rest_post("/stop-cycle", json!({ "end_user_id": user }))
        .await;
    assert_eq!(status, 200);
    assert_no_nulls(&stopped);
    assert_eq!(stopped["status"], "canceled");
    assert_eq!(stopped["current_cycle_end"], cycle["current_cycle_end"]);
    // Canceled credits stay usable until the period ends.
    let (_, balance) = app.rest_balance(&user).await;
    assert_eq!(balance["active_balance"], 210);
    let recurring = balance["active_balance_by_cycle"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cycle_type"] == "recurring")
        .unwrap()
        .clone();
    assert_eq!(recurring["status"], "canceled");

    let again = app
        .rest_post("/stop-cycle", json!({ "end_user_id": user }))
        .await;
    assert_error(&again, 409, "NO_ACTIVE_CYCLE");
    // A new cycle may start once the old one is canceled.
    let (status, _) = app
        .rest_post("/start-cycle", json!({ "end_user_id": user, "amount": 1 }))
        .await;
    assert_eq!(status, 200);
}

async fn every_error_answers_the_creduse_error_body(app: TestApp) {
    let user = new_user();
    let stranger = new_user();
    app.rest_post(
        "/add",
        json!({ "end_user_id": user, "amount": 10, "validity_days": 31 }),
    )
    .await;

    for (path, body) in [
        (
            "/add",
            json!({ "end_user_id": user, "amount": 0, "validity_days": 31 }),
        ),
        (
            "/add",
            json!({ "end_user_id": user, "amount": -5, "validity_days": 31 }),
        ),
        ("/subtract", json!({ "end_user_id": user, "amount": -1 })),
        (
            "/start-cycle",
            json!({ "end_user_id": user, "amount": 0, "validity_days": 31 }),
        ),
    ] {
        assert_error(&app.rest_post(path, body).await, 422, "AMOUNT_NEGATIVE");
    }
    for (path, body) in [
        (
            "/add",
            json!({ "end_user_id": user, "amount": 1.5, "validity_days": 31 }),
        ),
        ("/add", json!({ "end_user_id": user, "amount": "10" })),
        ("/add", json!({ "end_user_id": user })),
        ("/add", json!({ "end_user_id": "not-a-uuid", "amount": 5 })),
        (
            "/add",
            json!({ "end_user_id": user, "amount": 5, "validity_days": 0 }),
        ),
        (
            "/add",
            json!({ "end_user_id": user, "amount": 9_007_199_254_740_992_i64 }),
        ),
        ("/subtract", json!({ "amount": 5 })),
        (
            "/start-cycle",
            json!({ "end_user_id": user, "amount": 5, "validity_days": -1 }),
        ),
        ("/add", json!([1, 2])),
    ] {
        assert_error(&app.rest_post(path, body).await, 422, "VALIDATION_ERROR");
    }
    let malformed = app.post_raw("/add", "{ nope").await;
    let status = malformed.status().as_u16();
    assert_error(
        &(status, malformed.json().await.unwrap()),
        422,
        "VALIDATION_ERROR",
    );

    assert_error(
        &app.rest_post("/subtract", json!({ "end_user_id": stranger, "amount": 1 }))
            .await,
        404,
        "USER_DOES_NOT_EXIST",
    );
    assert_error(
        &app.rest_balance(&stranger).await,
        404,
        "USER_DOES_NOT_EXIST",
    );
    assert_error(
        &app.rest_post("/stop-cycle", json!({ "end_user_id": stranger }))
            .await,
        404,
        "USER_DOES_NOT_EXIST",
    );
    assert_error(
        &app.rest_post("/stop-cycle", json!({ "end_user_id": user }))
            .await,
        409,
        "NO_ACTIVE_CYCLE",
    );

    // Credentials: none or wrong is 401; an end-user token is 403 (REST is for backends).
    for key in [None, Some("tally_sk_wrong")] {
        let answer = app
            .rest(
                Method::POST,
                "/add",
                Some(json!({ "end_user_id": user, "amount": 1 })),
                key,
            )
            .await;
        assert_error(&answer, 401, "UNAUTHENTICATED");
    }
    let token = app.end_user_token(&user, None).await;
    let answer = app
        .rest(
            Method::GET,
            "/get-active-balance",
            Some(json!({ "end_user_id": user })),
            Some(&token),
        )
        .await;
    assert_error(&answer, 403, "FORBIDDEN");

    // Nothing above was written.
    assert_eq!(app.all_entries(&user).await.len(), 1);
    assert_eq!(app.rest_balance(&user).await.1["active_balance"], 10);
}
