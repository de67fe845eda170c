//! Purchase webhooks: a Stripe purchase is `purchase.completed`, its refund
//! `purchase.refunded` with what was clawed back; each delivered signed.

use std::sync::Arc;
use std::time::Duration;

use crate::helpers::receiver::{Answer, Receiver, assert_all_signed};
use crate::helpers::stripe::*;
use crate::helpers::*;

on_both_databases_with!(setup; a_purchase_and_its_refund_are_delivered);

async fn setup(backend: Backend) -> Option<StripeEnv> {
    stripe_env_with(
        backend,
        Arc::new(|config: &mut tally::Config| {
            config.webhooks.allow_http_loopback = true;
            config.webhooks.poll_interval = Duration::from_millis(50);
        }),
    )
    .await
}

async fn a_purchase_and_its_refund_are_delivered(env: StripeEnv) {
    let app = &env.app;
    let receiver = Receiver::start(Answer::Ok).await;
    receiver
        .subscribe(app, &["purchase.completed", "purchase.refunded"])
        .await;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let session = app.buy(&bundle, &user).await;
    let payment_intent = session["payment_intent"].as_str().unwrap();
    app.deliver_ok(
        &event("charge.refunded", charge(payment_intent, 999, 999)),
        "applied",
    )
    .await;

    let received = receiver
        .wait_until(
            Duration::from_secs(20),
            "the purchase and the refund",
            |r| r.len() >= 2,
        )
        .await;
    assert_all_signed(&received);
    let completed = &receiver.of_type("purchase.completed")[0].body["data"];
    assert_eq!(completed["endUserId"], user);
    assert_eq!(completed["credits"], 100);
    assert_eq!(completed["balanceAfter"], 100);
    assert_eq!(completed["reference"], session["id"]);
    assert_eq!(completed["paymentReference"], payment_intent);
    assert_eq!(completed["paidAmount"], 999);
    let refunded = &receiver.of_type("purchase.refunded")[0].body["data"];
    assert_eq!(refunded["endUserId"], user);
    assert_eq!(refunded["paymentReference"], payment_intent);
    assert_eq!(refunded["refundedAmount"], 999);
    assert_eq!(refunded["clawedBack"], 100);
    assert_eq!(refunded["balanceAfter"], 0);
    assert_eq!(refunded["grantId"], completed["grantId"]);

    // The same refund reported again by another event changes nothing and emits nothing.
    let emitted = app.outbox_events(None).await;
    app.deliver_ok(
        &event(
            "refund.created",
            refund(payment_intent, "re_1", 999, "succeeded"),
        ),
        "ignored",
    )
    .await;
    assert_eq!(app.outbox_events(None).await, emitted);
    assert_eq!(receiver.received().len(), 2);
}
