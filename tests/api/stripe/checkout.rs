//! `createCheckoutSession`: what Stripe receives (checked by a local stand-in), who may call it,
//! and what is refused.

use std::sync::Arc;

use crate::helpers::stripe::*;
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases_with!(stripe_env;
    a_checkout_session_is_created_with_the_bundle_and_end_user,
    end_user_tokens_may_check_out_only_for_themselves,
    bad_checkout_input_is_refused_before_stripe_is_called,
    stripe_errors_are_reported_without_side_effects,
    a_created_session_completes_into_a_grant,
);

const CREATE_CHECKOUT: &str = "mutation($input: CreateCheckoutSessionInput!) {
    createCheckoutSession(input: $input) { id url } }";

fn checkout_input(bundle: &Value, user: &str) -> Value {
    json!({
        "bundleId": bundle["id"],
        "endUserId": user,
        "successUrl": "https://app.example.com/credits/thanks?session={CHECKOUT_SESSION_ID}",
        "cancelUrl": "https://app.example.com/credits",
    })
}

async fn a_checkout_session_is_created_with_the_bundle_and_end_user(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let input = checkout_input(&bundle, &user);
    let session = app.ok(CREATE_CHECKOUT, json!({ "input": input })).await;
    let id = session["id"].as_str().unwrap();
    assert!(id.starts_with("cs_test_"), "{session}");
    assert_eq!(
        session["url"],
        format!("https://checkout.stripe.com/c/pay/{id}")
    );

    let requests = env.stripe.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/checkout/sessions");
    assert_eq!(
        request.authorization.as_deref(),
        Some(format!("Bearer {STRIPE_SECRET_KEY}").as_str())
    );
    assert!(
        request.stripe_version.is_some(),
        "a pinned API version is sent"
    );
    assert_eq!(request.field("mode"), "payment");
    assert_eq!(
        request.field("line_items[0][price]"),
        bundle["stripePriceId"]
    );
    assert_eq!(request.field("line_items[0][quantity]"), "1");
    assert_eq!(request.field("client_reference_id"), user);
    assert_eq!(request.field("metadata[tally_bundle_id]"), bundle["id"]);
    assert_eq!(request.field("metadata[tally_end_user_id]"), user);
    // Refunds carry only the PaymentIntent: it gets the same metadata.
    assert_eq!(
        request.field("payment_intent_data[metadata][tally_bundle_id]"),
        bundle["id"]
    );
    assert_eq!(
        request.field("payment_intent_data[metadata][tally_end_user_id]"),
        user
    );
    assert_eq!(request.field("success_url"), input["successUrl"]);
    assert_eq!(request.field("cancel_url"), input["cancelUrl"]);
    let mut sent: Vec<&str> = request.form.iter().map(|(k, _)| k.as_str()).collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            "cancel_url",
            "client_reference_id",
            "line_items[0][price]",
            "line_items[0][quantity]",
            "metadata[tally_bundle_id]",
            "metadata[tally_end_user_id]",
            "mode",
            "payment_intent_data[metadata][tally_bundle_id]",
            "payment_intent_data[metadata][tally_end_user_id]",
            "success_url",
        ],
        "nothing else is sent"
    );

    // Creating a session grants nothing and records no event.
    assert_eq!(app.available(&user).await, 0);
    assert_eq!(app.stripe_events().await, Vec::<Value>::new());
}

async fn end_user_tokens_may_check_out_only_for_themselves(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let token = app.end_user_token(&user, None).await;

    let own = app
        .graphql_with_key(
            Some(&token),
            CREATE_CHECKOUT,
            json!({ "input": checkout_input(&bundle, &user) }),
        )
        .await;
    assert!(own.get("errors").is_none(), "{own}");
    assert_eq!(env.stripe.requests().len(), 1);
    assert_eq!(env.stripe.requests()[0].field("client_reference_id"), user);

    let someone_else = app
        .graphql_with_key(
            Some(&token),
            CREATE_CHECKOUT,
            json!({ "input": checkout_input(&bundle, &new_user()) }),
        )
        .await;
    assert_eq!(error_code(&someone_else), "FORBIDDEN");
    for key in [None, Some("tally_sk_not_a_real_key_000000000000")] {
        let body = app
            .graphql_with_key(
                key,
                CREATE_CHECKOUT,
                json!({ "input": checkout_input(&bundle, &user) }),
            )
            .await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED");
    }
    assert_eq!(
        env.stripe.requests().len(),
        1,
        "refused calls never reach Stripe"
    );
}

async fn bad_checkout_input_is_refused_before_stripe_is_called(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    let archived = app.starter_bundle().await;
    app.ok(
        "mutation($id: UUID!) { archiveBundle(input: {id: $id}) { bundle { active } } }",
        json!({ "id": archived["id"] }),
    )
    .await;

    let mut cases = Vec::new();
    for (field, value) in [
        ("successUrl", "/relative/thanks"),
        ("successUrl", "ftp://example.com"),
        ("cancelUrl", "https:// spaced.example.com"),
        ("cancelUrl", ""),
    ] {
        let mut input = checkout_input(&bundle, &user);
        input[field] = json!(value);
        cases.push((input, "BAD_USER_INPUT", Some(field)));
    }
    cases.push((
        checkout_input(&archived, &user),
        "BAD_USER_INPUT",
        Some("bundleId"),
    ));
    let mut unknown = checkout_input(&bundle, &user);
    unknown["bundleId"] = json!(uuid::Uuid::new_v4());
    cases.push((unknown, "NOT_FOUND", None));
    let mut not_an_id = checkout_input(&bundle, &user);
    not_an_id["endUserId"] = json!("user-1\n");
    cases.push((not_an_id, "BAD_USER_INPUT", None));

    for (input, code, field) in cases {
        let body = app
            .graphql(CREATE_CHECKOUT, json!({ "input": input }))
            .await;
        assert_eq!(error_code(&body), code, "{input}: {body}");
        if let Some(field) = field {
            assert_eq!(body["errors"][0]["extensions"]["field"], field, "{body}");
        }
    }
    assert!(env.stripe.requests().is_empty());
}

async fn stripe_errors_are_reported_without_side_effects(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    env.stripe
        .fail_session_creation(400, "No such price: 'price_gone'");
    let body = app
        .graphql(
            CREATE_CHECKOUT,
            json!({ "input": checkout_input(&bundle, &user) }),
        )
        .await;
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("No such price"), "{message}");
    assert!(!message.contains(STRIPE_SECRET_KEY));
    assert_eq!(env.stripe.requests().len(), 1);

    // Without STRIPE_SECRET_KEY nothing is sent anywhere.
    let stand_in = StandIn::start().await;
    let base = stand_in.url.clone();
    let unconfigured = TestApp::spawn_with(
        app.backend,
        Arc::new(move |config| config.stripe.api_base = Some(base.clone())),
    )
    .await
    .unwrap();
    let bundle = unconfigured.starter_bundle().await;
    let body = unconfigured
        .graphql(
            CREATE_CHECKOUT,
            json!({ "input": checkout_input(&bundle, &user) }),
        )
        .await;
    assert_eq!(error_code(&body), "SERVICE_UNAVAILABLE");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("STRIPE_SECRET_KEY")
    );
    assert!(stand_in.requests().is_empty());
}

async fn a_created_session_completes_into_a_grant(env: StripeEnv) {
    let app = &env.app;
    let user = new_user();
    let bundle = app.starter_bundle().await;
    app.ok(
        CREATE_CHECKOUT,
        json!({ "input": checkout_input(&bundle, &user) }),
    )
    .await;
    // Stripe's webhook later carries the session back with the metadata Tally set.
    let request = &env.stripe.requests()[0];
    let mut session = paid_session(&bundle, &new_user());
    session["client_reference_id"] = json!(request.field("client_reference_id"));
    session["metadata"] = json!({
        "tally_bundle_id": request.field("metadata[tally_bundle_id]"),
        "tally_end_user_id": request.field("metadata[tally_end_user_id]"),
    });
    app.deliver_ok(&event("checkout.session.completed", session), "applied")
        .await;
    assert_eq!(app.available(&user).await, 100);
}
