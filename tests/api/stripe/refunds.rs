//! Refunds claw back a purchase's credits: proportionally, once per refund, never more than
//! what remains of the purchase, and also when the refund arrives before the purchase.

use crate::helpers::stripe::*;
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases_with!(stripe_env;
    a_full_refund_claws_back_the_whole_purchase,
    partial_refunds_add_up_whichever_event_reports_them,
    a_refund_before_its_purchase_is_applied_when_the_purchase_lands,
    a_partly_spent_purchase_loses_only_what_remains,
    refunds_count_once_per_refund_id,
    unfinished_and_foreign_refunds_change_nothing,
    refunds_racing_their_purchases_are_each_applied_once,
);

fn payment_intent(session: &Value) -> String {
    session["payment_intent"].as_str().unwrap().to_owned()
}

async fn clawbacks(app: &TestApp, user: &str) -> Vec<Value> {
    app.all_entries(user)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "CLAWBACK")
        .collect()
}

async fn a_full_refund_claws_back_the_whole_purchase(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let session = app.buy(&bundle, &user).await;
    let grant_id = app.balance(&user).await["grants"][0]["id"].clone();

    let refunded = event(
        "charge.refunded",
        charge(&payment_intent(&session), 999, 999),
    );
    let answer = app.deliver_ok(&refunded, "applied").await;
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("clawed back 100"),
        "{answer}"
    );
    assert_eq!(app.available(&user).await, 0);

    let entries = clawbacks(app, &user).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry["amount"], 100);
    assert_eq!(entry["delta"], -100);
    assert_eq!(entry["balanceAfter"], 0);
    assert_eq!(entry["grantId"], grant_id);
    assert_eq!(
        entry["allocations"],
        json!([{ "grantId": grant_id, "amount": 100 }])
    );
    let stored = app.stripe_event(&refunded["id"]).await;
    assert_eq!(stored["outcome"], "APPLIED");
    assert_eq!(stored["entryId"], entry["id"]);
    assert_eq!(stored["endUserId"], user);
    assert_eq!(stored["paymentIntentId"], session["payment_intent"]);
    assert_ledger_replays(app, &user).await;
}

async fn partial_refunds_add_up_whichever_event_reports_them(env: StripeEnv) {
    let app = &env.app;
    let bundle = app.starter_bundle().await;

    // charge.refunded reports the cumulative amount; refund.* each refund on its own. Both
    // describe the same refunds, so together they must not count twice.
    let user = new_user();
    let pi = payment_intent(&app.buy(&bundle, &user).await);
    // First refund of $5.00: floor(100 × 500 / 999) = 50 credits.
    app.deliver_ok(&event("charge.refunded", charge(&pi, 999, 500)), "applied")
        .await;
    assert_eq!(app.available(&user).await, 50);
    // The same refund as refund.created: already counted.
    let answer = app
        .deliver_ok(
            &event("refund.created", refund(&pi, "re_first", 500, "succeeded")),
            "ignored",
        )
        .await;
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("already counted"),
        "{answer}"
    );
    assert_eq!(app.available(&user).await, 50);
    // A second refund of $4.99 brings the cumulative amount to the full 999: all 100 credits.
    app.deliver_ok(&event("charge.refunded", charge(&pi, 999, 999)), "applied")
        .await;
    assert_eq!(app.available(&user).await, 0);
    app.deliver_ok(
        &event("refund.created", refund(&pi, "re_second", 499, "succeeded")),
        "ignored",
    )
    .await;
    let amounts: Vec<Value> = clawbacks(app, &user)
        .await
        .iter()
        .map(|e| e["amount"].clone())
        .collect();
    assert_eq!(amounts, vec![json!(50), json!(50)]);
    assert_ledger_replays(app, &user).await;

    // Refund events first, then the charge's cumulative report: 30, then 20 more.
    let user = new_user();
    let pi = payment_intent(&app.buy(&bundle, &user).await);
    app.deliver_ok(
        &event(
            "refund.created",
            refund(&pi, &unique("re_"), 300, "succeeded"),
        ),
        "applied",
    )
    .await;
    assert_eq!(app.available(&user).await, 70);
    app.deliver_ok(
        &event(
            "refund.updated",
            refund(&pi, &unique("re_"), 200, "succeeded"),
        ),
        "applied",
    )
    .await;
    assert_eq!(app.available(&user).await, 50);
    app.deliver_ok(&event("charge.refunded", charge(&pi, 999, 500)), "ignored")
        .await;
    assert_eq!(app.available(&user).await, 50);
    // A refund too small for a whole credit takes nothing (rounded down).
    let user = new_user();
    let pi = payment_intent(&app.buy(&bundle, &user).await);
    app.deliver_ok(
        &event(
            "refund.created",
            refund(&pi, &unique("re_"), 9, "succeeded"),
        ),
        "ignored",
    )
    .await;
    assert_eq!(app.available(&user).await, 100);
    assert_ledger_replays(app, &user).await;
}

async fn a_refund_before_its_purchase_is_applied_when_the_purchase_lands(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let session = paid_session(&bundle, &user);
    let pi = payment_intent(&session);

    let early = event(
        "refund.created",
        refund(&pi, &unique("re_"), 500, "succeeded"),
    );
    let answer = app.deliver_ok(&early, "pending").await;
    assert!(answer["reason"].as_str().unwrap().contains(&pi), "{answer}");
    assert_eq!(app.available(&user).await, 0);
    assert!(app.all_entries(&user).await.is_empty());
    // A redelivery while it waits changes nothing.
    assert_eq!(app.deliver_ok(&early, "pending").await["duplicate"], true);

    let purchase = event("checkout.session.completed", session);
    let answer = app.deliver_ok(&purchase, "applied").await;
    assert!(
        answer["reason"]
            .as_str()
            .unwrap()
            .contains("clawed back 50"),
        "{answer}"
    );
    assert_eq!(app.available(&user).await, 50);

    let entries = app.all_entries(&user).await;
    let kinds: Vec<&Value> = entries.iter().map(|e| &e["kind"]).collect();
    assert_eq!(kinds, vec!["CLAWBACK", "GRANT"]);
    assert_eq!(entries[0]["amount"], 50);
    assert_eq!(entries[0]["balanceAfter"], 50);
    let stored = app.stripe_event(&early["id"]).await;
    assert_eq!(stored["outcome"], "APPLIED");
    assert_eq!(stored["entryId"], entries[0]["id"]);
    assert!(
        stored["reason"]
            .as_str()
            .unwrap()
            .contains(purchase["id"].as_str().unwrap())
    );
    // Still once: the early refund redelivered after the purchase is a duplicate.
    assert_eq!(app.deliver_ok(&early, "applied").await["duplicate"], true);
    assert_eq!(app.available(&user).await, 50);
    assert_ledger_replays(app, &user).await;
}

async fn a_partly_spent_purchase_loses_only_what_remains(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let manual = app
        .add_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;
    let session = app.buy(&bundle, &user).await;
    // The purchase expires first, so the debit takes 80 of its 100.
    let spent = app
        .subtract_credits(json!({ "endUserId": user, "amount": 80 }))
        .await;
    let purchase_grant = spent["allocations"][0]["grantId"].clone();
    assert_eq!(
        spent["allocations"],
        json!([{ "grantId": purchase_grant, "amount": 80 }])
    );
    assert_eq!(app.available(&user).await, 60);

    let refunded = event(
        "charge.refunded",
        charge(&payment_intent(&session), 999, 999),
    );
    app.deliver_ok(&refunded, "applied").await;
    // Only the 20 that remained of the purchase; the manual grant is untouched.
    assert_eq!(app.available(&user).await, 40);
    let balance = app.balance(&user).await;
    assert_eq!(balance["grants"].as_array().unwrap().len(), 1);
    assert_eq!(balance["grants"][0]["id"], manual["grant"]["id"]);
    assert_eq!(balance["grants"][0]["remaining"], 40);
    let entries = clawbacks(app, &user).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["amount"], 20);
    assert_eq!(
        entries[0]["allocations"],
        json!([{ "grantId": purchase_grant, "amount": 20 }])
    );

    // A later report of the same refund finds nothing more to take.
    app.deliver_ok(
        &event(
            "refund.updated",
            refund(&payment_intent(&session), &unique("re_"), 999, "succeeded"),
        ),
        "applied",
    )
    .await;
    assert_eq!(app.available(&user).await, 40);
    assert_eq!(clawbacks(app, &user).await.len(), 1);

    // Reversing the debit gives the 80 back to the refunded purchase, which claws them back
    // again: a refunded purchase never regains credits.
    app.ok(
        "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) { entry { kind } } }",
        json!({ "input": { "entryId": spent["entry"]["id"] } }),
    )
    .await;
    assert_eq!(app.available(&user).await, 40);
    let entries = clawbacks(app, &user).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["amount"], 80, "newest first");
    assert_ledger_replays(app, &user).await;
}

async fn refunds_count_once_per_refund_id(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let pi = payment_intent(&app.buy(&bundle, &user).await);
    let refund_id = unique("re_");
    // refund.created, then refund.updated for the same refund (e.g. a changed description),
    // then the same event again.
    let created = event("refund.created", refund(&pi, &refund_id, 250, "succeeded"));
    app.deliver_ok(&created, "applied").await;
    app.deliver_ok(
        &event("refund.updated", refund(&pi, &refund_id, 250, "succeeded")),
        "ignored",
    )
    .await;
    assert_eq!(app.deliver_ok(&created, "applied").await["duplicate"], true);
    // floor(100 × 250 / 999) = 25
    assert_eq!(app.available(&user).await, 75);
    assert_eq!(clawbacks(app, &user).await.len(), 1);

    // A charge.refunded that lists its refunds counts each listed id once too.
    let mut charge = charge(&pi, 999, 250);
    charge["refunds"]["data"] = json!([refund(&pi, &refund_id, 250, "succeeded")]);
    app.deliver_ok(&event("charge.refunded", charge), "ignored")
        .await;
    assert_eq!(app.available(&user).await, 75);
    assert_ledger_replays(app, &user).await;
}

async fn unfinished_and_foreign_refunds_change_nothing(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let pi = payment_intent(&app.buy(&bundle, &user).await);
    let refund_id = unique("re_");

    let pending = event("refund.created", refund(&pi, &refund_id, 999, "pending"));
    let answer = app.deliver_ok(&pending, "ignored").await;
    assert!(
        answer["reason"].as_str().unwrap().contains("pending"),
        "{answer}"
    );
    assert_eq!(app.available(&user).await, 100);
    // It succeeds later.
    app.deliver_ok(
        &event("refund.updated", refund(&pi, &refund_id, 999, "succeeded")),
        "applied",
    )
    .await;
    assert_eq!(app.available(&user).await, 0);

    // A charge without a PaymentIntent (the fixture's own) is not a Checkout purchase.
    let mut legacy = fixture("charge");
    legacy["amount_refunded"] = json!(100);
    app.deliver_ok(&event("charge.refunded", legacy), "ignored")
        .await;
}

async fn refunds_racing_their_purchases_are_each_applied_once(env: StripeEnv) {
    let app = &env.app;
    let other = TestApp::client_for(app, &app.start_another().await);
    let bundle = app.starter_bundle().await;
    let mut users = Vec::new();
    let mut deliveries = Vec::new();
    for _ in 0..6 {
        let user = new_user();
        let session = paid_session(&bundle, &user);
        let pi = payment_intent(&session);
        deliveries.push(event("checkout.session.completed", session));
        deliveries.push(event(
            "refund.created",
            refund(&pi, &unique("re_"), 500, "succeeded"),
        ));
        deliveries.push(event("charge.refunded", charge(&pi, 999, 500)));
        users.push(user);
    }
    let responses = futures::future::join_all(deliveries.iter().enumerate().map(|(i, e)| {
        let target = if i % 2 == 0 { app } else { &other };
        target.deliver(e)
    }))
    .await;
    for response in &responses {
        assert_eq!(response.status, 200, "{}", response.body);
    }
    for user in &users {
        assert_eq!(app.available(user).await, 50, "user {user}");
        let taken: i64 = clawbacks(app, user)
            .await
            .iter()
            .map(|e| e["amount"].as_i64().unwrap())
            .sum();
        assert_eq!(taken, 50);
        assert_ledger_replays(app, user).await;
    }
    // Nothing is left waiting.
    let events = app.stripe_events().await;
    assert_eq!(events.len(), deliveries.len());
    assert!(
        events
            .iter()
            .all(|e| e["outcome"] != "PENDING" && e["outcome"] != "FAILED"),
        "{events:#?}"
    );
}
