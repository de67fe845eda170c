//! `POST /webhooks/stripe`: signatures, purchases granted exactly once, and what is recorded.

use crate::helpers::stripe::*;
use crate::helpers::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

on_both_databases_with!(stripe_env;
    a_signed_paid_session_grants_the_bundle_once,
    forged_and_badly_signed_deliveries_change_nothing,
    any_v1_under_any_configured_secret_is_accepted,
    a_redelivered_event_changes_nothing,
    concurrent_deliveries_of_one_event_grant_once,
    an_unpaid_session_waits_for_its_async_payment,
    completed_and_async_succeeded_grant_one_session_once,
    other_event_types_are_recorded_as_ignored,
    malformed_bodies_are_refused_after_the_signature,
    an_unknown_price_fails_until_the_catalog_knows_it,
    a_payment_link_session_is_resolved_through_its_line_items,
    sessions_without_bundle_or_end_user_fail_and_are_recorded,
    stripe_events_page_newest_first,
    oversized_bodies_are_refused,
    signed_events_with_nul_characters_are_recorded_rejected,
);

async fn no_events(app: &TestApp) {
    assert_eq!(app.stripe_events().await, Vec::<Value>::new());
}

async fn a_signed_paid_session_grants_the_bundle_once(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let session = paid_session(&bundle, &user);
    let delivery = event("checkout.session.completed", session.clone());

    let answer = app.deliver_ok(&delivery, "applied").await;
    assert_eq!(answer["duplicate"], false);
    assert_eq!(answer["received"], true);

    let balance = app.ok(PURCHASE_BALANCE, json!({ "id": user })).await;
    assert_eq!(balance["available"], 100);
    let grant = &balance["grants"][0];
    assert_eq!(grant["amount"], 100);
    assert_eq!(grant["source"], "PURCHASE");
    assert_eq!(grant["reference"], session["id"]);
    assert_eq!(grant["paymentReference"], session["payment_intent"]);
    assert_eq!(grant["paidAmount"], 999);
    assert_eq!(grant["paidCurrency"], "usd");
    assert_eq!(grant["description"], "100 credits");
    assert_eq!(grant["metadata"]["bundleId"], bundle["id"]);
    assert_eq!(grant["metadata"]["stripeEventId"], delivery["id"]);
    // 365 × 24 h from when the payment was granted.
    let expires: DateTime<Utc> = grant["expiresAt"].as_str().unwrap().parse().unwrap();
    let created: DateTime<Utc> = grant["createdAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires - created, Duration::days(365));

    let entries = app.all_entries(&user).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["kind"], "GRANT");
    assert_eq!(entries[0]["grantId"], grant["id"]);

    let stored = app.stripe_event(&delivery["id"]).await;
    assert_eq!(stored["type"], "checkout.session.completed");
    assert_eq!(stored["outcome"], "APPLIED");
    assert_eq!(stored["objectId"], session["id"]);
    assert_eq!(stored["paymentIntentId"], session["payment_intent"]);
    assert_eq!(stored["endUserId"], user);
    assert_eq!(stored["entryId"], entries[0]["id"]);
    assert_eq!(stored["attempts"], 1);
    assert_eq!(stored["livemode"], false);
    assert!(
        stored["reason"]
            .as_str()
            .unwrap()
            .contains("granted 100 credits")
    );
    assert_ledger_replays(app, &user).await;
}

async fn forged_and_badly_signed_deliveries_change_nothing(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let delivery = event("checkout.session.completed", paid_session(&bundle, &user));
    let body = serde_json::to_vec(&delivery).unwrap();
    let now = Utc::now().timestamp();
    let good = v1_signature(WEBHOOK_SECRET, now, &body);

    // A body changed after signing: 10 000 credits for the price of 100.
    let mut forged_event = delivery.clone();
    forged_event["data"]["object"]["metadata"]["tally_bundle_id"] = json!(uuid::Uuid::new_v4());
    let forged = serde_json::to_vec(&forged_event).unwrap();

    let cases: Vec<(&str, Vec<u8>, Option<String>)> = vec![
        ("forged body", forged, Some(format!("t={now},v1={good}"))),
        (
            "wrong secret",
            body.clone(),
            Some(format!(
                "t={now},v1={}",
                v1_signature("whsec_someone_else", now, &body)
            )),
        ),
        ("missing header", body.clone(), None),
        ("empty header", body.clone(), Some(String::new())),
        ("not key=value", body.clone(), Some("garbage".into())),
        ("no timestamp", body.clone(), Some(format!("v1={good}"))),
        ("no v1", body.clone(), Some(format!("t={now}"))),
        (
            "timestamp not a number",
            body.clone(),
            Some(format!("t=yesterday,v1={good}")),
        ),
        ("v0 only", body.clone(), Some(format!("t={now},v0={good}"))),
        (
            "not hex",
            body.clone(),
            Some(format!("t={now},v1=zz{good}")),
        ),
        (
            "signature of another timestamp",
            body.clone(),
            Some(format!("t={},v1={good}", now - 1)),
        ),
        // Ten minutes off, well past the 300 s tolerance: at 301 s a second ticking over
        // before the server reads its clock brought the timestamp back inside (a flaky test).
        (
            "stale timestamp",
            body.clone(),
            Some(format!(
                "t={},v1={}",
                now - 600,
                v1_signature(WEBHOOK_SECRET, now - 600, &body)
            )),
        ),
        (
            "timestamp in the future",
            body.clone(),
            Some(format!(
                "t={},v1={}",
                now + 600,
                v1_signature(WEBHOOK_SECRET, now + 600, &body)
            )),
        ),
    ];
    for (case, body, header) in cases {
        let response = app.post_webhook(&body, header.as_deref()).await;
        assert_eq!(response.status, 400, "{case}: {}", response.body);
        let error = response.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: a JSON error: {}", response.body));
        assert!(!error.is_empty(), "{case}");
    }
    assert_eq!(app.available(&user).await, 0);
    assert!(app.all_entries(&user).await.is_empty());
    no_events(app).await;

    // The same body, correctly signed, still works: nothing was recorded against its id.
    let response = app
        .post_webhook(&body, Some(&format!("t={now},v1={good}")))
        .await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(app.available(&user).await, 100);
}

async fn any_v1_under_any_configured_secret_is_accepted(env: StripeEnv) {
    let app = &env.app;
    let bundle = app.starter_bundle().await;
    let now = Utc::now().timestamp();

    // Stripe signs with the old and the new secret while a rolled secret expires: two v1.
    let user = new_user();
    let body = serde_json::to_vec(&event(
        "checkout.session.completed",
        paid_session(&bundle, &user),
    ))
    .unwrap();
    let header = format!(
        "t={now},v1={},v1={},v0={}",
        v1_signature("whsec_not_configured_here", now, &body),
        v1_signature(WEBHOOK_SECRET, now, &body),
        v1_signature("whsec_v0", now, &body),
    );
    let response = app.post_webhook(&body, Some(&header)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(app.available(&user).await, 100);

    // Tally holds two secrets (STRIPE_WEBHOOK_SECRET=new,old): either one verifies.
    let user = new_user();
    let body = serde_json::to_vec(&event(
        "checkout.session.completed",
        paid_session(&bundle, &user),
    ))
    .unwrap();
    let header = signature_header(OLD_WEBHOOK_SECRET, &body);
    let response = app.post_webhook(&body, Some(&header)).await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(app.available(&user).await, 100);
}

async fn a_redelivered_event_changes_nothing(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let delivery = event("checkout.session.completed", paid_session(&bundle, &user));
    app.deliver_ok(&delivery, "applied").await;
    let first = app.stripe_event(&delivery["id"]).await;

    // Stripe retries with a fresh signature; the body is the same event.
    for _ in 0..3 {
        let answer = app.deliver_ok(&delivery, "applied").await;
        assert_eq!(answer["duplicate"], true);
    }
    assert_eq!(app.available(&user).await, 100);
    assert_eq!(app.all_entries(&user).await.len(), 1);
    let events = app.stripe_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0], first,
        "the record is not touched by a redelivery"
    );
    assert_ledger_replays(app, &user).await;
}

async fn concurrent_deliveries_of_one_event_grant_once(env: StripeEnv) {
    let app = &env.app;
    // Deliveries race on two Tally instances sharing the database (each its own pool).
    let other = TestApp::client_for(app, &app.start_another().await);
    let bundle = app.starter_bundle().await;
    for round in 0..3 {
        let user = new_user();
        let delivery = event("checkout.session.completed", paid_session(&bundle, &user));
        let body = serde_json::to_vec(&delivery).unwrap();
        let header = signature_header(WEBHOOK_SECRET, &body);
        let responses = futures::future::join_all((0..10).map(|i| {
            let target = if i % 2 == 0 { app } else { &other };
            target.post_webhook(&body, Some(&header))
        }))
        .await;
        let mut fresh = 0;
        for response in &responses {
            assert_eq!(response.status, 200, "round {round}: {}", response.body);
            assert_eq!(response.body["outcome"], "applied");
            if response.body["duplicate"] == false {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1, "round {round}: exactly one delivery applied it");
        assert_eq!(app.available(&user).await, 100, "round {round}");
        assert_eq!(app.purchase_grants(&user).await.len(), 1, "round {round}");
        assert_ledger_replays(app, &user).await;
        assert_eq!(app.stripe_event(&delivery["id"]).await["attempts"], 1);
    }
}

async fn an_unpaid_session_waits_for_its_async_payment(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let mut session = paid_session(&bundle, &user);
    session["payment_status"] = json!("unpaid");
    let completed = event("checkout.session.completed", session.clone());
    let answer = app.deliver_ok(&completed, "pending").await;
    assert!(
        answer["reason"].as_str().unwrap().contains("unpaid"),
        "{answer}"
    );
    assert_eq!(app.available(&user).await, 0);
    assert!(app.all_entries(&user).await.is_empty());

    // Redelivering the unpaid event changes nothing either.
    let again = app.deliver_ok(&completed, "pending").await;
    assert_eq!(again["duplicate"], true);

    session["payment_status"] = json!("paid");
    let succeeded = event("checkout.session.async_payment_succeeded", session.clone());
    app.deliver_ok(&succeeded, "applied").await;
    assert_eq!(app.available(&user).await, 100);
    assert_eq!(
        app.stripe_event(&completed["id"]).await["outcome"],
        "PENDING"
    );
    assert_eq!(
        app.stripe_event(&succeeded["id"]).await["outcome"],
        "APPLIED"
    );

    // A payment that fails is recorded, and grants nothing.
    let other_user = new_user();
    let mut failed_session = paid_session(&bundle, &other_user);
    failed_session["payment_status"] = json!("unpaid");
    let failed = event("checkout.session.async_payment_failed", failed_session);
    let answer = app.deliver_ok(&failed, "ignored").await;
    assert!(
        answer["reason"].as_str().unwrap().contains("failed"),
        "{answer}"
    );
    assert_eq!(app.available(&other_user).await, 0);
    assert_ledger_replays(app, &user).await;
}

async fn completed_and_async_succeeded_grant_one_session_once(env: StripeEnv) {
    let app = &env.app;
    let bundle = app.starter_bundle().await;
    for first_type in [
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
    ] {
        let user = new_user();
        let session = paid_session(&bundle, &user);
        let second_type = if first_type == "checkout.session.completed" {
            "checkout.session.async_payment_succeeded"
        } else {
            "checkout.session.completed"
        };
        let first = event(first_type, session.clone());
        let second = event(second_type, session.clone());
        app.deliver_ok(&first, "applied").await;
        let answer = app.deliver_ok(&second, "ignored").await;
        assert!(
            answer["reason"]
                .as_str()
                .unwrap()
                .contains("already granted"),
            "{answer}"
        );
        assert_eq!(answer["duplicate"], false);
        assert_eq!(app.available(&user).await, 100);
        assert_eq!(app.purchase_grants(&user).await.len(), 1);
        assert_ledger_replays(app, &user).await;
    }

    // Racing: both event types of one session at once, many times over.
    let user = new_user();
    let session = paid_session(&bundle, &user);
    let deliveries: Vec<Value> = (0..8)
        .map(|i| {
            let kind = if i % 2 == 0 {
                "checkout.session.completed"
            } else {
                "checkout.session.async_payment_succeeded"
            };
            event(kind, session.clone())
        })
        .collect();
    let responses = futures::future::join_all(deliveries.iter().map(|e| app.deliver(e))).await;
    let applied = responses
        .iter()
        .inspect(|r| assert_eq!(r.status, 200, "{}", r.body))
        .filter(|r| r.body["outcome"] == "applied")
        .count();
    assert_eq!(applied, 1);
    assert_eq!(app.available(&user).await, 100);
    assert_eq!(app.purchase_grants(&user).await.len(), 1);
}

async fn other_event_types_are_recorded_as_ignored(env: StripeEnv) {
    let app = &env.app;
    // The fixture's own event: a plan.created.
    let mut plan_created = fixture("event");
    plan_created["id"] = json!(unique("evt_test_"));
    let answer = app.deliver_ok(&plan_created, "ignored").await;
    assert!(answer["reason"].as_str().unwrap().contains("plan.created"));
    let invoice_paid = event("invoice.paid", fixture("invoice"));
    app.deliver_ok(&invoice_paid, "ignored").await;

    let events = app.stripe_events().await;
    assert_eq!(events.len(), 2);
    let stored = app.stripe_event(&plan_created["id"]).await;
    assert_eq!(stored["type"], "plan.created");
    assert_eq!(stored["outcome"], "IGNORED");
    assert_eq!(stored["objectId"], plan_created["data"]["object"]["id"]);
    assert_eq!(stored["endUserId"], Value::Null);

    // A subscription-mode session is not a bundle purchase.
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let mut session = paid_session(&bundle, &user);
    session["mode"] = json!("subscription");
    app.deliver_ok(&event("checkout.session.completed", session), "ignored")
        .await;
    assert_eq!(app.available(&user).await, 0);
}

async fn malformed_bodies_are_refused_after_the_signature(env: StripeEnv) {
    let app = &env.app;
    for body in [
        b"{\"id\": \"evt_1\", \"type\": ".to_vec(),
        b"not json".to_vec(),
        b"[1, 2]".to_vec(),
        br#"{"id": "evt_1", "object": "event"}"#.to_vec(),
        br#"{"id": "", "type": "checkout.session.completed", "data": {"object": {}}}"#.to_vec(),
    ] {
        let header = signature_header(WEBHOOK_SECRET, &body);
        let response = app.post_webhook(&body, Some(&header)).await;
        assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(&body));
        assert!(response.body["error"].is_string(), "{}", response.body);
    }
    no_events(app).await;

    // A readable event whose object is not a Checkout Session: refused (400), and recorded
    // REJECTED (FAILED means answered 5xx).
    let mut session = fixture("checkout_session");
    session.as_object_mut().unwrap().remove("id");
    let broken = event("checkout.session.completed", session);
    let response = app.deliver(&broken).await;
    assert_eq!(response.status, 400, "{}", response.body);
    assert_eq!(response.body["eventId"], broken["id"]);
    let stored = app.stripe_event(&broken["id"]).await;
    assert_eq!(stored["outcome"], "REJECTED");
    // A redelivery is read again (and refused again).
    let again = app.deliver(&broken).await;
    assert_eq!(again.status, 400, "{}", again.body);
    let stored = app.stripe_event(&broken["id"]).await;
    assert_eq!(stored["outcome"], "REJECTED");
    assert_eq!(stored["attempts"], 2);
    assert!(
        stored["reason"]
            .as_str()
            .unwrap()
            .contains("Checkout Session")
    );
}

async fn an_unknown_price_fails_until_the_catalog_knows_it(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    // A Payment Link session: no Tally metadata, the end user in client_reference_id.
    let bundle_template = json!({ "id": null, "priceAmount": 1499, "currency": "usd" });
    let mut session = paid_session(&bundle_template, &user);
    session["metadata"] = json!({});
    session["payment_link"] = json!("plink_1PgafzB7WZ01zgkW");
    let price = unique("price_test_");
    env.stripe
        .set_line_items(session["id"].as_str().unwrap(), vec![(price.clone(), 1)]);
    let delivery = event("checkout.session.completed", session.clone());

    let response = app.deliver(&delivery).await;
    assert_eq!(response.status, 500, "{}", response.body);
    assert_eq!(response.body["retry"], true);
    assert!(response.body["error"].as_str().unwrap().contains(&price));
    let stored = app.stripe_event(&delivery["id"]).await;
    assert_eq!(stored["outcome"], "FAILED");
    assert!(
        stored["reason"].as_str().unwrap().contains(&price),
        "{stored}"
    );
    assert_eq!(app.available(&user).await, 0);

    // Stripe retries; still unknown: still failed, one more attempt.
    assert_eq!(app.deliver(&delivery).await.status, 500);
    assert_eq!(app.stripe_event(&delivery["id"]).await["attempts"], 2);

    // The operator adds the bundle; the next retry grants it.
    app.create_bundle(json!({
        "name": "500 credits", "credits": 500, "validityDays": 365,
        "priceAmount": 1499, "currency": "usd", "stripePriceId": price,
    }))
    .await;
    let answer = app.deliver_ok(&delivery, "applied").await;
    assert_eq!(answer["duplicate"], false);
    assert_eq!(app.available(&user).await, 500);
    let stored = app.stripe_event(&delivery["id"]).await;
    assert_eq!(stored["outcome"], "APPLIED");
    assert_eq!(stored["attempts"], 3);
    // Once applied, another retry is a duplicate.
    assert_eq!(
        app.deliver_ok(&delivery, "applied").await["duplicate"],
        true
    );
    assert_eq!(app.available(&user).await, 500);
}

async fn a_payment_link_session_is_resolved_through_its_line_items(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let mut session = paid_session(&bundle, &user);
    session["metadata"] = json!({});
    session["amount_total"] = json!(1998);
    let session_id = session["id"].as_str().unwrap().to_owned();
    // Two of the bundle in one purchase (an adjustable quantity).
    env.stripe.set_line_items(
        &session_id,
        vec![(bundle["stripePriceId"].as_str().unwrap().to_owned(), 2)],
    );
    app.deliver_ok(&event("checkout.session.completed", session), "applied")
        .await;

    let balance = app.ok(PURCHASE_BALANCE, json!({ "id": user })).await;
    assert_eq!(balance["available"], 200);
    assert_eq!(balance["grants"][0]["paidAmount"], 1998);
    assert_eq!(balance["grants"][0]["metadata"]["quantity"], 2);

    let requests = env.stripe.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.path,
        format!("/v1/checkout/sessions/{session_id}/line_items")
    );
    assert!(request.query.contains("limit=100"), "{}", request.query);
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {STRIPE_SECRET_KEY}").as_str())
    );
    assert!(request.stripe_version.is_some());
    assert_ledger_replays(app, &user).await;
}

async fn sessions_without_bundle_or_end_user_fail_and_are_recorded(env: StripeEnv) {
    let app = &env.app;
    let bundle = app.starter_bundle().await;
    let user = new_user();

    let mut no_such_bundle = paid_session(&bundle, &user);
    no_such_bundle["metadata"]["tally_bundle_id"] = json!(uuid::Uuid::new_v4());
    let mut no_end_user = paid_session(&bundle, &user);
    no_end_user["metadata"] = json!({});
    no_end_user["client_reference_id"] = Value::Null;
    env.stripe.set_line_items(
        no_end_user["id"].as_str().unwrap(),
        vec![(bundle["stripePriceId"].as_str().unwrap().to_owned(), 1)],
    );
    // Not an end-user id Tally could have sent: surrounding whitespace.
    let mut not_an_id = paid_session(&bundle, &user);
    not_an_id["metadata"] = json!({});
    not_an_id["client_reference_id"] = json!(" customer-42 ");
    env.stripe.set_line_items(
        not_an_id["id"].as_str().unwrap(),
        vec![(bundle["stripePriceId"].as_str().unwrap().to_owned(), 1)],
    );
    let mut two_items = paid_session(&bundle, &user);
    two_items["metadata"] = json!({});
    let price = bundle["stripePriceId"].as_str().unwrap().to_owned();
    env.stripe.set_line_items(
        two_items["id"].as_str().unwrap(),
        vec![(price.clone(), 1), (price, 1)],
    );
    let mut unknown_session = paid_session(&bundle, &user);
    unknown_session["metadata"] = json!({});

    for (session, expected) in [
        (no_such_bundle, "no bundle"),
        (no_end_user, "no end user"),
        (not_an_id, "not a valid id"),
        (two_items, "2 line items"),
        (unknown_session, "No such checkout.session"),
    ] {
        let delivery = event("checkout.session.completed", session);
        let response = app.deliver(&delivery).await;
        assert_eq!(response.status, 500, "{expected}: {}", response.body);
        let stored = app.stripe_event(&delivery["id"]).await;
        assert_eq!(stored["outcome"], "FAILED", "{expected}");
        let reason = stored["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{expected}: {reason}");
    }
    assert_eq!(app.available(&user).await, 0);
}

async fn stripe_events_page_newest_first(env: StripeEnv) {
    let app = &env.app;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let delivery = event("customer.created", json!({ "id": unique("cus_") }));
        app.deliver_ok(&delivery, "ignored").await;
        ids.push(delivery["id"].clone());
    }
    ids.reverse();
    let first = app.ok(STRIPE_EVENTS, json!({ "first": 2 })).await;
    let page: Vec<Value> = first["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    assert_eq!(page, ids[..2].to_vec());
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    assert_eq!(first["pageInfo"]["hasPreviousPage"], false);
    let all: Vec<Value> = app
        .stripe_events()
        .await
        .into_iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(all, ids);
    let next = app
        .ok(
            STRIPE_EVENTS,
            json!({ "first": 100, "after": first["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(next["edges"].as_array().unwrap().len(), 3);
    assert_eq!(next["pageInfo"]["hasNextPage"], false);
    assert_eq!(next["pageInfo"]["hasPreviousPage"], true);

    for (variables, field) in [
        (json!({ "first": 101 }), "first"),
        (json!({ "first": -1 }), "first"),
        (json!({ "after": "not-a-cursor" }), "after"),
    ] {
        let body = app.graphql(STRIPE_EVENTS, variables).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    // Secret keys only.
    let token = app
        .ok(
            "mutation($u: ID!) { createEndUserToken(input: {endUserId: $u}) { token } }",
            json!({ "u": new_user() }),
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = app
        .graphql_with_key(Some(&token), STRIPE_EVENTS, json!({}))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    let body = app.graphql_with_key(None, STRIPE_EVENTS, json!({})).await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

async fn oversized_bodies_are_refused(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let mut session = paid_session(&bundle, &user);
    session["custom_text"]["submit"]["message"] = json!("x".repeat(70 * 1024));
    let delivery = event("checkout.session.completed", session);
    let response = app.deliver(&delivery).await;
    assert_eq!(response.status, 413);
    assert_eq!(app.available(&user).await, 0);
    no_events(app).await;
}

#[tokio::test]
async fn without_a_webhook_secret_deliveries_are_refused_with_503() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let body = serde_json::to_vec(&event("customer.created", json!({ "id": "cus_1" }))).unwrap();
    let header = signature_header(WEBHOOK_SECRET, &body);
    let response = app.post_webhook(&body, Some(&header)).await;
    assert_eq!(response.status, 503);
    assert!(
        response.body["error"]
            .as_str()
            .unwrap()
            .contains("STRIPE_WEBHOOK_SECRET")
    );
    assert_eq!(app.stripe_events().await, Vec::<Value>::new());
}

/// A NUL (U+0000) anywhere in a signed event (PostgreSQL text cannot hold one) is refused with
/// 400 and recorded `REJECTED` under its id with each NUL spelled `\u0000`; nothing is granted,
/// and both databases answer alike.
async fn signed_events_with_nul_characters_are_recorded_rejected(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let with_nul_in = |part: &str| {
        let mut session = paid_session(&bundle, &user);
        let mut delivery = event("checkout.session.completed", session.clone());
        match part {
            "id" => delivery["id"] = json!(format!("{}\u{0}x", delivery["id"].as_str().unwrap())),
            "type" => delivery["type"] = json!("checkout.session.completed\u{0}"),
            "object id" => {
                session["id"] = json!(format!("{}\u{0}", session["id"].as_str().unwrap()));
                delivery["data"]["object"] = session;
            }
            _ => {
                session["metadata"]["note"] = json!("a\u{0}b");
                delivery["data"]["object"] = session;
            }
        }
        delivery
    };
    for part in ["id", "type", "object id", "metadata"] {
        let delivery = with_nul_in(part);
        let response = app.deliver(&delivery).await;
        assert_eq!(response.status, 400, "NUL in {part}: {}", response.body);
        assert!(
            response.body["error"].as_str().unwrap().contains("NUL"),
            "{}",
            response.body
        );
        let recorded_id = delivery["id"].as_str().unwrap().replace('\u{0}', "\\u0000");
        assert_eq!(
            response.body["eventId"],
            recorded_id.as_str(),
            "NUL in {part}"
        );
        let stored = app.stripe_event(&json!(recorded_id)).await;
        assert_eq!(stored["outcome"], "REJECTED", "NUL in {part}: {stored}");
        assert!(
            !stored["id"].as_str().unwrap().contains('\u{0}'),
            "{stored}"
        );
        // The same delivery again: refused again, one record.
        let again = app.deliver(&delivery).await;
        assert_eq!(again.status, 400, "NUL in {part}: {}", again.body);
        assert_eq!(app.stripe_event(&json!(recorded_id)).await["attempts"], 2);
    }
    assert_eq!(app.available(&user).await, 0);
    assert!(app.all_entries(&user).await.is_empty());
}
