//! An internal error (here a real one: a table renamed away under the running app) is answered
//! on every surface with the redacted message and code, and never with its detail: no table
//! name, no database or SQL words. GraphQL (queries by POST and GET, mutations, subscriptions
//! and queries over both WebSocket protocols), REST, the Stripe webhook, and the credential
//! check that runs before any of them.

use std::time::Duration;

use crate::helpers::stripe::{StripeEnv, paid_session, stripe_env};
use crate::helpers::ws::{BALANCE_CHANGED, Event, Protocol, Socket};
use crate::helpers::*;
use reqwest::Method;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

on_both_databases!(
    graphql_queries_and_mutations_are_redacted,
    graphql_over_websockets_is_redacted,
    rest_is_redacted,
    a_failed_credential_check_is_redacted,
    a_batch_whose_later_table_broke_is_redacted_and_the_writer_recovers,
);

mod stripe_webhook {
    use super::*;

    on_both_databases_with!(stripe_env; a_failed_purchase_is_redacted, a_failed_record_is_redacted);
}

/// Renames `table` away, as if the schema broke under the running app.
async fn break_table(app: &TestApp, table: &str) {
    let db = Database::connect(&app.database_url).await.unwrap();
    db.execute_unprepared(&format!("ALTER TABLE {table} RENAME TO broken_{table}"))
        .await
        .expect("rename the table");
    db.close().await.unwrap();
}

/// An end user with credits, whose grants can no longer be read or written.
async fn user_with_broken_grants(app: &TestApp) -> String {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    break_table(app, "grants").await;
    user
}

/// What a caller was told holds none of the failure's detail.
fn assert_no_detail(answer: &str, table: &str) {
    let lower = answer.to_lowercase();
    for word in [
        table,
        "broken_",
        "database",
        "sql",
        "relation",
        "no such table",
        "does not exist",
        "execution error",
        "query error",
        "internal error:",
    ] {
        assert!(!lower.contains(word), "{word:?} leaked in {answer}");
    }
}

/// One GraphQL error, redacted: the message and code only (no `field`, no amounts).
fn assert_redacted_graphql_error(error: &Value) {
    assert_eq!(error["message"], "internal server error", "{error}");
    assert_eq!(
        error["extensions"],
        json!({ "code": "INTERNAL_SERVER_ERROR" }),
        "{error}"
    );
}

/// A GraphQL answer whose only error is the redacted internal one.
fn assert_redacted_graphql(body: &Value, table: &str) {
    let errors = body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{body}");
    assert_redacted_graphql_error(&errors[0]);
    assert_no_detail(&body.to_string(), table);
}

async fn graphql_queries_and_mutations_are_redacted(app: TestApp) {
    let user = user_with_broken_grants(&app).await;

    let query = app.graphql(BALANCE, json!({ "id": user })).await;
    assert_redacted_graphql(&query, "grants");
    assert_eq!(query["errors"][0]["path"], json!(["balance"]));

    let add = app
        .graphql(
            ADD_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 5 } }),
        )
        .await;
    assert_redacted_graphql(&add, "grants");
    let subtract = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 5 } }),
        )
        .await;
    assert_redacted_graphql(&subtract, "grants");

    // A query by GET runs through the same schema.
    let response = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[
            ("query", BALANCE),
            ("variables", &json!({ "id": user }).to_string()),
        ])
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_redacted_graphql(&response.json().await.unwrap(), "grants");

    // Batches are not taken, so they are no way around the redaction either.
    let response = app
        .client
        .post(format!("{}/graphql", app.address))
        .bearer_auth(ADMIN_KEY)
        .json(&json!([{ "query": BALANCE, "variables": { "id": user } }]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_no_detail(&response.text().await.unwrap(), "grants");
}

async fn graphql_over_websockets_is_redacted(app: TestApp) {
    let user = user_with_broken_grants(&app).await;
    for protocol in Protocol::BOTH {
        let mut socket = Socket::connect(&app.address, protocol, ADMIN_KEY).await;
        // A subscription: its first event fails to read the balance.
        socket
            .subscribe("live", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        match socket.next_event(Duration::from_secs(10)).await {
            Some(Event::Errors(errors)) => {
                assert_eq!(errors.as_array().unwrap().len(), 1, "{errors}");
                assert_redacted_graphql_error(&errors[0]);
                assert_no_detail(&errors.to_string(), "grants");
            }
            other => panic!("{protocol:?}: expected the redacted error, got {other:?}"),
        }
        // A query sent over the socket answers through the same stream.
        socket
            .subscribe("once", BALANCE, json!({ "id": user }))
            .await;
        match socket.next_event(Duration::from_secs(10)).await {
            Some(Event::Errors(errors)) => {
                assert_redacted_graphql_error(&errors[0]);
                assert_no_detail(&errors.to_string(), "grants");
            }
            other => panic!("{protocol:?}: expected the redacted error, got {other:?}"),
        }
    }
}

async fn rest_call(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, String) {
    let response = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(ADMIN_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A Creduse error body for an internal error.
fn assert_redacted_rest((status, body): &(u16, String), table: &str) {
    assert_eq!(*status, 500, "{body}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["error_code"], "INTERNAL_SERVER_ERROR", "{body}");
    assert_eq!(body["message"], "internal server error", "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    assert_no_detail(&body.to_string(), table);
}

async fn rest_is_redacted(app: TestApp) {
    let user = user_with_broken_grants(&app).await;
    let add = rest_call(
        &app,
        Method::POST,
        "/add",
        json!({ "end_user_id": user, "amount": 5, "validity_days": 31 }),
    )
    .await;
    assert_redacted_rest(&add, "grants");
    let subtract = rest_call(
        &app,
        Method::POST,
        "/subtract",
        json!({ "end_user_id": user, "amount": 5 }),
    )
    .await;
    assert_redacted_rest(&subtract, "grants");
    let balance = rest_call(
        &app,
        Method::GET,
        "/get-active-balance",
        json!({ "end_user_id": user }),
    )
    .await;
    assert_redacted_rest(&balance, "grants");
}

/// The secret keys cannot be read: the in-memory set goes stale (it is trusted for a second
/// after its last reload) and every credential check asks the database, which fails. That
/// error is raised before the schema runs, and is redacted all the same.
async fn a_failed_credential_check_is_redacted(app: TestApp) {
    break_table(&app, "api_keys").await;
    // Once the in-memory set is a second old, the check asks the database and fails.
    let body = eventually(Duration::from_secs(10), "the key check to fail", || async {
        let body = app.graphql(BALANCE, json!({ "id": new_user() })).await;
        body.get("errors").is_some().then_some(body)
    })
    .await;
    assert_redacted_graphql(&body, "api_keys");

    let rest = rest_call(
        &app,
        Method::GET,
        "/get-active-balance",
        json!({ "end_user_id": new_user() }),
    )
    .await;
    assert_redacted_rest(&rest, "api_keys");

    for protocol in Protocol::BOTH {
        let mut socket = Socket::open(&app.address, protocol, None).await;
        socket
            .send(json!({
                "type": "connection_init",
                "payload": { "Authorization": format!("Bearer {ADMIN_KEY}") },
            }))
            .await;
        match socket.next_event(Duration::from_secs(5)).await {
            Some(Event::Closed(_, reason)) => {
                assert!(reason.contains("internal server error"), "{reason}");
                assert_no_detail(&reason, "api_keys");
            }
            other => panic!("{protocol:?}: expected the socket refused, got {other:?}"),
        }
    }
}

/// The Stripe webhook's answer (500, retry) to an event it could not finish.
fn assert_redacted_webhook(status: u16, body: &Value, event: &Value, table: &str) {
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        *body,
        json!({
            "error": "internal error (see the server log)",
            "eventId": event["id"],
            "retry": true,
        })
    );
    assert_no_detail(&body.to_string(), table);
}

/// Delivers a paid session for a new bundle once `table` is broken, checks the answer is the
/// redacted 500, and returns the event.
async fn deliver_with_broken(app: &TestApp, table: &str) -> Value {
    let bundle = app.starter_bundle().await;
    break_table(app, table).await;
    let event = crate::helpers::stripe::event(
        "checkout.session.completed",
        paid_session(&bundle, &new_user()),
    );
    let response = app.deliver(&event).await;
    assert_redacted_webhook(response.status, &response.body, &event, table);
    event
}

/// The grant fails: the event is recorded `failed` with the redacted reason, and answered so.
async fn a_failed_purchase_is_redacted(env: StripeEnv) {
    let event = deliver_with_broken(&env.app, "grants").await;
    let stored = env.app.stripe_event(&event["id"]).await;
    assert_eq!(stored["outcome"], "FAILED", "{stored}");
    assert_eq!(stored["reason"], "internal error (see the server log)");
    assert_no_detail(&stored.to_string(), "grants");
}

/// The event cannot even be looked up or recorded: answered the same way.
async fn a_failed_record_is_redacted(env: StripeEnv) {
    deliver_with_broken(&env.app, "stripe_events").await;
}

/// A table that a write batch reads after its lock breaks once the batch's statements were
/// prepared and kept: the next debit is answered promptly with the redacted error, and once the
/// table is back the same writer debits again. (The tests above, with `grants` broken, are the
/// ones that hung when SQLite kept a failing text of several statements.)
async fn a_batch_whose_later_table_broke_is_redacted_and_the_writer_recovers(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    app.subtract_credits(json!({ "endUserId": user, "amount": 5 }))
        .await;
    break_table(&app, "balance_alerts").await;

    let debit = json!({ "input": { "endUserId": user, "amount": 5 } });
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        app.graphql(SUBTRACT_CREDITS, debit.clone()),
    )
    .await
    .expect("the debit is answered, not left hanging");
    assert_redacted_graphql(&refused, "balance_alerts");

    let db = Database::connect(&app.database_url).await.unwrap();
    db.execute_unprepared("ALTER TABLE broken_balance_alerts RENAME TO balance_alerts")
        .await
        .expect("rename the table back");
    db.close().await.unwrap();
    let debited = tokio::time::timeout(
        Duration::from_secs(10),
        app.graphql(SUBTRACT_CREDITS, debit),
    )
    .await
    .expect("the debit is answered");
    assert_eq!(
        debited["data"]["subtractCredits"]["entry"]["balanceAfter"],
        json!(90),
        "{debited}"
    );
}
