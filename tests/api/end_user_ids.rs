//! End users are named by the application's own ids: any text of 1 to 255 visible characters,
//! compared exactly. Every surface carries the id unchanged, each id's credits stay its own, and
//! what is not an id is refused with nothing written.

use std::time::Duration;

use crate::helpers::stripe::*;
use crate::helpers::ws::{BALANCE_CHANGED, Protocol, Socket};
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    every_kind_of_id_keeps_its_own_credits,
    an_integer_id_may_be_sent_as_a_number,
    ids_that_are_not_visible_text_are_refused_and_write_nothing,
    uuids_are_one_end_user_however_their_hex_is_cased,
    rest_and_graphql_find_the_same_uuid_end_users,
    tokens_and_subscriptions_carry_application_ids,
);

mod checkout {
    use super::*;
    on_both_databases_with!(stripe_env;
        checkout_and_refunds_carry_application_ids,
    );
}

mod uuid_era {
    use super::*;
    on_both_databases_with!(uuid_era_app;
        a_database_from_the_uuid_era_migrates_with_every_balance_unchanged,
    );
}

fn longest_id() -> String {
    // 255 characters, some of them outside ASCII (510 bytes).
    format!("{}{}", "é".repeat(200), "x".repeat(55))
}

/// The ids the issue names, plus two that differ only in case.
fn application_ids() -> Vec<String> {
    vec![
        "auth0|64f1c2".to_owned(),
        "user_2NqZ".to_owned(),
        "42".to_owned(),
        longest_id(),
        new_user(),
        "josé".to_owned(),
        "ABC".to_owned(),
        "abc".to_owned(),
    ]
}

const CREATE_HOLD: &str = "mutation($u: ID!, $amount: Credits!) {
    createHold(input: {endUserId: $u, amount: $amount, ttlSeconds: 600}) { hold { id endUserId } } }";
const CAPTURE_HOLD: &str = "mutation($h: UUID!, $amount: Credits) {
    captureHold(input: {holdId: $h, amount: $amount}) { hold { status capturedAmount } } }";
const START_CYCLE: &str = "mutation($u: ID!, $amount: Credits!) {
    startCycle(input: {endUserId: $u, amount: $amount, validityDays: 30}) { cycle { endUserId amount } } }";
const CYCLE: &str = "query($u: ID!) { cycle(endUserId: $u) { endUserId amount status } }";
const BALANCE_AT: &str =
    "query($u: ID!, $at: DateTime) { balance(endUserId: $u, at: $at) { endUserId available } }";
const HISTORY: &str = "query($u: ID!) { transactions(endUserId: $u, first: 100) {
    edges { node { kind amount } } } }";
const END_USERS: &str = "query($u: ID) { endUsers(endUserId: $u, first: 100) {
    edges { node { endUserId balance { available held } } } } }";

/// Every id gets a different amount, a debit, a hold partly captured and a cycle; then each
/// id's balance, history, cycle and past balance are its own and name it unchanged.
async fn every_kind_of_id_keeps_its_own_credits(app: TestApp) {
    let ids = application_ids();
    for (index, id) in ids.iter().enumerate() {
        let granted = 1_000 + index as i64 * 10;
        let added = app
            .add_credits(json!({ "endUserId": id, "amount": granted }))
            .await;
        assert_eq!(added["balance"]["available"], granted, "{id}: {added}");
        app.subtract_credits(json!({ "endUserId": id, "amount": 1 }))
            .await;
        let hold = app.ok(CREATE_HOLD, json!({ "u": id, "amount": 5 })).await;
        assert_eq!(hold["hold"]["endUserId"], json!(id));
        app.ok(
            CAPTURE_HOLD,
            json!({ "h": hold["hold"]["id"], "amount": 2 }),
        )
        .await;
        let cycle = app.ok(START_CYCLE, json!({ "u": id, "amount": 7 })).await;
        assert_eq!(cycle["cycle"]["endUserId"], json!(id));
    }
    let before_anything = "2000-01-01T00:00:00Z";
    for (index, id) in ids.iter().enumerate() {
        // Granted, less the debit of 1 and the capture of 2, plus the cycle's 7.
        let expected = 1_000 + index as i64 * 10 - 1 - 2 + 7;
        let balance = app.balance(id).await;
        assert_eq!(balance["endUserId"], json!(id));
        assert_eq!(balance["available"], expected, "{id}: {balance}");
        let history = app.ok(HISTORY, json!({ "u": id })).await;
        let kinds: Vec<&str> = history["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| edge["node"]["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["GRANT", "RELEASE", "CAPTURE", "HOLD", "DEBIT", "GRANT"],
            "{id}: newest first, the cycle's grant on top"
        );
        let cycle = app.ok(CYCLE, json!({ "u": id })).await;
        assert_eq!(cycle["endUserId"], json!(id));
        assert_eq!(cycle["amount"], 7);
        let past = app
            .ok(BALANCE_AT, json!({ "u": id, "at": before_anything }))
            .await;
        assert_eq!(past["available"], 0, "{id}");
        assert_eq!(past["endUserId"], json!(id));
        let now = app
            .ok(
                BALANCE_AT,
                json!({ "u": id, "at": chrono::Utc::now().to_rfc3339() }),
            )
            .await;
        assert_eq!(now["available"], expected, "{id}");
        let listed = app.ok(END_USERS, json!({ "u": id })).await;
        let nodes = listed["edges"].as_array().unwrap();
        assert_eq!(nodes.len(), 1, "{id}: {listed}");
        assert_eq!(nodes[0]["node"]["endUserId"], json!(id));
    }
    let all = app.ok(END_USERS, json!({ "u": null })).await;
    let mut listed: Vec<String> = all["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["endUserId"].as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected, "one account per id, ABC and abc apart");
    // A page cursor carries the id through the opaque cursor and back.
    let page = app
        .ok(
            "{ endUsers(first: 3) { edges { cursor } pageInfo { endCursor } } }",
            json!({}),
        )
        .await;
    let after = page["pageInfo"]["endCursor"].clone();
    let rest = app
        .ok(
            "query($after: String) { endUsers(first: 100, after: $after) { edges { node { endUserId } } } }",
            json!({ "after": after }),
        )
        .await;
    assert_eq!(rest["edges"].as_array().unwrap().len(), ids.len() - 3);
    assert_verify_clean(&app);
}

/// `ID` takes an integer too: an application keyed by integers sends `42` or `"42"`.
async fn an_integer_id_may_be_sent_as_a_number(app: TestApp) {
    let added = app
        .ok(
            "mutation { addCredits(input: {endUserId: 4242, amount: 9}) { balance { endUserId available } } }",
            json!({}),
        )
        .await;
    assert_eq!(added["balance"]["endUserId"], "4242");
    assert_eq!(app.available("4242").await, 9);
    let by_variable = app
        .ok(
            "query($u: ID!) { balance(endUserId: $u) { available } }",
            json!({ "u": 4242 }),
        )
        .await;
    assert_eq!(by_variable["available"], 9);
}

async fn ids_that_are_not_visible_text_are_refused_and_write_nothing(app: TestApp) {
    let invalid = [
        String::new(),
        "x".repeat(256),
        "é".repeat(256),
        "a\u{0}b".to_owned(),
        "a\nb".to_owned(),
        "a\tb".to_owned(),
        "\u{7f}".to_owned(),
        " padded".to_owned(),
        "padded ".to_owned(),
        " ".to_owned(),
    ];
    for id in &invalid {
        let added = app
            .graphql(
                ADD_CREDITS,
                json!({ "input": { "endUserId": id, "amount": 5 } }),
            )
            .await;
        assert_eq!(error_code(&added), "BAD_USER_INPUT", "{id:?}: {added}");
        assert_eq!(added["errors"][0]["extensions"]["field"], "endUserId");
        let read = app
            .graphql(
                "query($u: ID!) { balance(endUserId: $u) { available } }",
                json!({ "u": id }),
            )
            .await;
        assert_eq!(error_code(&read), "BAD_USER_INPUT", "{id:?}: {read}");
        let hold = app
            .graphql(CREATE_HOLD, json!({ "u": id, "amount": 1 }))
            .await;
        assert_eq!(error_code(&hold), "BAD_USER_INPUT", "{id:?}: {hold}");
        let token = app
            .graphql(
                "mutation($u: ID!) { createEndUserToken(input: {endUserId: $u}) { token } }",
                json!({ "u": id }),
            )
            .await;
        assert_eq!(error_code(&token), "BAD_USER_INPUT", "{id:?}: {token}");
    }
    let all = app.ok(END_USERS, json!({ "u": null })).await;
    assert_eq!(all["edges"], json!([]), "nothing was written");
    // A crafted page cursor naming an invalid id is refused like any foreign cursor.
    let cursor =
        base64_json(&json!({ "last_active_at": "2026-01-01T00:00:00Z", "end_user_id": "a\nb" }));
    let paged = app
        .graphql(
            "query($after: String) { endUsers(after: $after) { edges { cursor } } }",
            json!({ "after": cursor }),
        )
        .await;
    assert_eq!(error_code(&paged), "BAD_USER_INPUT", "{paged}");
}

/// A cursor as async-graphql's `OpaqueCursor` writes one: URL-safe base64 of JSON, no padding.
fn base64_json(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Databases from the UUID era hold UUIDs in lower case; a UUID sent in capitals is the same end
/// user, as it was when ids were UUIDs. Other ids are compared exactly (see `ABC` and `abc`).
async fn uuids_are_one_end_user_however_their_hex_is_cased(app: TestApp) {
    let lower = new_user();
    let upper = lower.to_uppercase();
    app.add_credits(json!({ "endUserId": upper, "amount": 30 }))
        .await;
    let balance = app.balance(&lower).await;
    assert_eq!(balance["available"], 30);
    assert_eq!(balance["endUserId"], json!(lower), "stored in lower case");
    assert_eq!(app.available(&upper).await, 30);
    // 32 bare hex digits are an id of their own, not that UUID.
    let bare = lower.replace('-', "");
    assert_eq!(app.available(&bare).await, 0);
}

async fn rest_and_graphql_find_the_same_uuid_end_users(app: TestApp) {
    let through_rest = new_user();
    let added = app
        .rest_post(
            "/add",
            json!({ "end_user_id": through_rest.to_uppercase(), "amount": 40 }),
        )
        .await;
    assert_eq!(added.0, 200, "{}", added.1);
    assert_eq!(added.1["end_user_id"], json!(through_rest));
    assert_eq!(app.available(&through_rest).await, 40);

    let through_graphql = new_user();
    app.add_credits(json!({ "endUserId": through_graphql, "amount": 25, "validityDays": 30 }))
        .await;
    let balance = app.rest_balance(&through_graphql).await;
    assert_eq!(balance.0, 200, "{}", balance.1);
    assert_eq!(balance.1["active_balance"], 25);
    let spent = app
        .rest_post(
            "/subtract",
            json!({ "end_user_id": through_graphql, "amount": 5 }),
        )
        .await;
    assert_eq!(spent.0, 200, "{}", spent.1);
    assert_eq!(app.available(&through_graphql).await, 20);

    // Creduse names end users by UUID: its surface refuses other ids, as Creduse does.
    let refused = app
        .rest_post(
            "/add",
            json!({ "end_user_id": "auth0|64f1c2", "amount": 5 }),
        )
        .await;
    assert_eq!(refused.0, 422, "{}", refused.1);
    assert_eq!(app.available("auth0|64f1c2").await, 0);
}

/// A token's `sub` is the id itself: it reads that end user's balance and subscribes to it,
/// and an id that differs by case is somebody else.
async fn tokens_and_subscriptions_carry_application_ids(app: TestApp) {
    let id = "auth0|64f1c2";
    app.add_credits(json!({ "endUserId": id, "amount": 50 }))
        .await;
    let token = app.end_user_token(id, None).await;
    let own = app
        .graphql_with_key(Some(&token), BALANCE, json!({ "id": id }))
        .await;
    assert_eq!(own["data"]["balance"]["available"], 50, "{own}");
    let other = app
        .graphql_with_key(Some(&token), BALANCE, json!({ "id": "AUTH0|64F1C2" }))
        .await;
    assert_eq!(error_code(&other), "FORBIDDEN", "{other}");

    let mut socket = Socket::connect(&app.address, Protocol::TransportWs, &token).await;
    socket
        .subscribe("1", BALANCE_CHANGED, json!({ "id": id }))
        .await;
    let first = socket.next_data(Duration::from_secs(10)).await;
    assert_eq!(first["balanceChanged"]["endUserId"], json!(id));
    assert_eq!(first["balanceChanged"]["available"], 50);
    app.subtract_credits(json!({ "endUserId": id, "amount": 8 }))
        .await;
    let changed = socket.next_data(Duration::from_secs(10)).await;
    assert_eq!(changed["balanceChanged"]["available"], 42, "{changed}");
}

const CREATE_CHECKOUT: &str = "mutation($input: CreateCheckoutSessionInput!) {
    createCheckoutSession(input: $input) { id } }";

/// Checkout sends the id in the session's metadata and, up to Stripe's 200 characters, as its
/// `client_reference_id`; the paid session grants to that id and a refund claws back from it.
async fn checkout_and_refunds_carry_application_ids(env: StripeEnv) {
    let app = &env.app;
    let bundle = app.starter_bundle().await;
    for (index, id) in ["auth0|64f1c2", "josé", &longest_id()]
        .into_iter()
        .enumerate()
    {
        app.ok(
            CREATE_CHECKOUT,
            json!({ "input": {
                "bundleId": bundle["id"], "endUserId": id,
                "successUrl": "https://app.example.com/thanks", "cancelUrl": "https://app.example.com/",
            } }),
        )
        .await;
        let requests = env.stripe.requests();
        let request = &requests[index];
        assert_eq!(request.field("metadata[tally_end_user_id]"), id);
        assert_eq!(
            request.field("payment_intent_data[metadata][tally_end_user_id]"),
            id
        );
        let reference = request
            .form
            .iter()
            .find(|(key, _)| key == "client_reference_id")
            .map(|(_, value)| value.as_str());
        if id.chars().count() <= 200 {
            assert_eq!(reference, Some(id));
        } else {
            assert_eq!(reference, None, "longer than Stripe allows: metadata only");
        }

        // The session completes (as Stripe reports it, metadata and all).
        let mut session = paid_session(&bundle, id);
        if id.chars().count() > 200 {
            session["client_reference_id"] = Value::Null;
        }
        app.deliver_ok(
            &event("checkout.session.completed", session.clone()),
            "applied",
        )
        .await;
        assert_eq!(app.available(id).await, 100, "{id}");
        let pi = session["payment_intent"].as_str().unwrap();
        app.deliver_ok(&event("charge.refunded", charge(pi, 999, 999)), "applied")
            .await;
        assert_eq!(app.available(id).await, 0, "{id}: clawed back");
        let events = app.stripe_events().await;
        assert!(
            events.iter().any(|e| e["endUserId"] == json!(id)),
            "the Stripe event log names {id}"
        );
    }
    assert_verify_clean(app);
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/uuid_era");

/// Tally started on a copy of a database written before ids were strings (see the fixture's
/// `make.py`): starting it applies the migration.
async fn uuid_era_app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_on_filled(backend, |url| async move {
        match backend {
            Backend::Sqlite => {
                let path = url
                    .strip_prefix("sqlite://")
                    .and_then(|rest| rest.split('?').next())
                    .expect("a SQLite file URL");
                std::fs::copy(format!("{FIXTURE}/tally.sqlite"), path).expect("copy the fixture");
            }
            Backend::Postgres => {
                use sea_orm::ConnectionTrait;
                let dump = std::fs::read_to_string(format!("{FIXTURE}/postgres.sql")).unwrap();
                let db = sea_orm::Database::connect(&url).await.unwrap();
                db.execute_unprepared(&dump).await.expect("load the dump");
                db.close().await.unwrap();
            }
        }
    })
    .await
}

async fn a_database_from_the_uuid_era_migrates_with_every_balance_unchanged(app: TestApp) {
    let expected: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/expected.json")).unwrap())
            .unwrap();
    assert_eq!(expected.len(), 4);
    for (id, before) in &expected {
        let balance = app
            .ok(
                "query($u: ID!) { balance(endUserId: $u) { endUserId available held } }",
                json!({ "u": id }),
            )
            .await;
        assert_eq!(balance["endUserId"], json!(id));
        // An open hold that timed out since the fixture was made moves credits from held to
        // available: their sum is what cannot change.
        let total = |b: &Value| b["available"].as_i64().unwrap() + b["held"].as_i64().unwrap();
        assert_eq!(
            total(&balance),
            total(before),
            "{id}: {balance} vs {before}"
        );
        assert!(balance["held"].as_i64() <= before["held"].as_i64(), "{id}");
    }
    assert_verify_clean(&app);
    let listed = app.ok(END_USERS, json!({ "u": null })).await;
    let mut ids: Vec<&str> = listed["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["endUserId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut want: Vec<&str> = expected.keys().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(ids, want);

    // An idempotency key recorded before the migration still replays its debit...
    let user = "3f2b6c1e-8a4d-4e2f-9b7a-1c5d8e0f2a31";
    let before = app.available(user).await;
    let replay = app
        .subtract_credits(json!({ "endUserId": user, "amount": 120, "idempotencyKey": "fx-sub-1" }))
        .await;
    assert_eq!(replay["replayed"], true, "{replay}");
    assert_eq!(app.available(user).await, before);
    // ...and the migrated accounts take new writes, through GraphQL and REST alike.
    app.subtract_credits(json!({ "endUserId": user, "amount": 1 }))
        .await;
    assert_eq!(app.available(user).await, before - 1);
    let rest_user = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let spent = app
        .rest_post(
            "/subtract",
            json!({ "end_user_id": rest_user, "amount": 5 }),
        )
        .await;
    assert_eq!(spent.0, 200, "{}", spent.1);
    assert_verify_clean(&app);
}
