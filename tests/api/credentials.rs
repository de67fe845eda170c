//! Credentials that must not outlive their grant: secret keys are checked from memory and a
//! revoked one is refused on every process within a second; end-user tokens die with the key
//! that minted them; a subscription socket is closed (4403) when its token expires or its key is
//! revoked. Also what an end-user token may read.

use std::time::{Duration, Instant};

use crate::helpers::ws::{BALANCE_CHANGED, Event, Protocol, Socket};
use crate::helpers::*;
use serde_json::{Value, json};

on_both_databases!(
    revoked_keys_and_their_tokens_are_refused_on_every_process_within_a_second,
    subscriptions_close_when_their_token_expires,
    valid_keys_are_checked_without_the_database,
    end_user_tokens_read_their_own_cycle_only,
);

async fn balance_code(app: &TestApp, credential: &str, user: &str) -> Option<String> {
    let body = app
        .graphql_with_key(Some(credential), BALANCE, json!({ "id": user }))
        .await;
    body.get("errors").map(|_| error_code(&body))
}

/// Waits until `credential` is refused on `app`; panics after `limit`.
async fn refused_within(app: &TestApp, credential: &str, user: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    let code = eventually(limit, "the credential to be refused", || {
        balance_code(app, credential, user)
    })
    .await;
    assert_eq!(code, "UNAUTHENTICATED");
    started.elapsed()
}

async fn revoked_keys_and_their_tokens_are_refused_on_every_process_within_a_second(app: TestApp) {
    let other = TestApp::client_for(&app, &app.start_another().await);
    let user = new_user();
    let key = tally_cli(&app, &["keys", "create", "--name", "frontend tokens"]);
    let key = key.trim().to_owned();
    let id = tally_cli(&app, &["keys", "list"])
        .lines()
        .find(|line| line.ends_with("frontend tokens"))
        .and_then(|line| line.split_whitespace().next().map(str::to_owned))
        .expect("listed");
    // A key just made works at once, on both processes; so do the tokens it mints.
    let minted = app.end_user_token_with_key(&key, &user, Some(600)).await;
    let by_admin = app.end_user_token(&user, Some(600)).await;
    for process in [&app, &other] {
        for credential in [&key, &minted, &by_admin] {
            assert_eq!(balance_code(process, credential, &user).await, None);
        }
    }
    let mut socket = Socket::connect(&other.address, Protocol::TransportWs, &minted).await;
    socket
        .subscribe("b", BALANCE_CHANGED, json!({ "id": user }))
        .await;
    socket.next_data(Duration::from_secs(5)).await;

    let revoked_at = Instant::now();
    tally_cli(&app, &["keys", "revoke", &id]);
    let limit = Duration::from_millis(1_000);
    for process in [&app, &other] {
        refused_within(
            process,
            &key,
            &user,
            limit.saturating_sub(revoked_at.elapsed()),
        )
        .await;
        refused_within(
            process,
            &minted,
            &user,
            limit.saturating_sub(revoked_at.elapsed()),
        )
        .await;
    }
    // The socket of a token the revoked key minted is closed, with 4403.
    match socket.next_event(Duration::from_secs(3)).await {
        Some(Event::Closed(code, reason)) => {
            assert_eq!(code, Some(4403));
            assert_eq!(reason, "credential revoked");
        }
        other => panic!("expected the socket closed, got {other:?}"),
    }
    // Other keys, and the tokens they minted, are untouched; the revoked key mints no more.
    for process in [&app, &other] {
        assert_eq!(balance_code(process, &by_admin, &user).await, None);
        assert_eq!(balance_code(process, ADMIN_KEY, &user).await, None);
    }
    let body = app
        .graphql_with_key(
            Some(&key),
            CREATE_END_USER_TOKEN,
            json!({ "input": { "endUserId": user } }),
        )
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED");
}

async fn subscriptions_close_when_their_token_expires(app: TestApp) {
    let user = new_user();
    for protocol in Protocol::BOTH {
        let short = app.end_user_token(&user, Some(2)).await;
        let mut socket = Socket::connect(&app.address, protocol, &short).await;
        socket
            .subscribe("b", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        assert_eq!(
            socket.next_data(Duration::from_secs(5)).await["balanceChanged"]["available"],
            0
        );
        let opened = Instant::now();
        match socket.next_event(Duration::from_secs(5)).await {
            Some(Event::Closed(code, reason)) => {
                assert_eq!(code, Some(4403), "{protocol:?}");
                assert_eq!(reason, "credential expired", "{protocol:?}");
            }
            other => panic!("{protocol:?}: expected the socket closed, got {other:?}"),
        }
        // Expiry is in whole seconds, checked every second.
        assert!(
            opened.elapsed() < Duration::from_secs(4),
            "{:?}",
            opened.elapsed()
        );
        assert_eq!(
            balance_code(&app, &short, &user).await.as_deref(),
            Some("UNAUTHENTICATED")
        );
    }
    // A socket with a secret key stays open.
    let mut socket = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
    socket
        .subscribe("b", BALANCE_CHANGED, json!({ "id": user }))
        .await;
    socket.next_data(Duration::from_secs(5)).await;
    assert!(
        socket
            .next_event(Duration::from_millis(2_500))
            .await
            .is_none()
    );
}

/// Secret keys are held in memory: with the key set loaded, checking a valid key needs no
/// database at all (here the connection it was loaded from is closed).
async fn valid_keys_are_checked_without_the_database(app: TestApp) {
    let db = app.db().await;
    let cache = tally::auth::key_cache::KeyCache::load(db.clone())
        .await
        .unwrap();
    db.close().await.unwrap();
    let key_id = cache
        .authenticate(ADMIN_KEY)
        .await
        .expect("answered from memory")
        .expect("the admin key is live");
    assert!(cache.is_live(key_id).await.expect("answered from memory"));
    // An unknown key is looked up in the database, which is gone: an error, not a yes.
    assert!(cache.authenticate("tally_sk_unknown").await.is_err());
}

/// An end-user token may read its own end user's `cycle` (the subscription its frontend shows),
/// never another's.
async fn end_user_tokens_read_their_own_cycle_only(app: TestApp) {
    let user = new_user();
    app.ok(
        "mutation($input: StartCycleInput!) { startCycle(input: $input) { cycle { id } } }",
        json!({ "input": { "endUserId": user, "amount": 100, "validityDays": 30 } }),
    )
    .await;
    let own = app.end_user_token(&user, Some(600)).await;
    let cycle = "query($id: ID!) { cycle(endUserId: $id) { amount status } }";
    let body = app
        .graphql_with_key(Some(&own), cycle, json!({ "id": user }))
        .await;
    assert_eq!(
        body["data"]["cycle"],
        json!({ "amount": 100, "status": "ACTIVE" }),
        "{body}"
    );
    let body = app
        .graphql_with_key(Some(&own), cycle, json!({ "id": new_user() }))
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    assert_eq!(body["data"], Value::Null);
}
