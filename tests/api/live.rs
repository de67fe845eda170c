//! Live balances: subscriptions over both WebSocket protocols, end-user tokens, expiry on time,
//! several processes on one PostgreSQL, and subscribers that stall.

use std::time::Duration;

use crate::helpers::ws::{BALANCE_CHANGED, Event, Protocol, Socket};
use crate::helpers::*;
use chrono::Utc;
use serde_json::{Value, json};

const PUSH_WAIT: Duration = Duration::from_secs(5);

on_both_databases!(
    every_change_is_pushed_in_order_on_both_protocols,
    end_user_tokens_read_only_their_own_user,
    sockets_need_a_credential_and_a_timely_init,
    a_stalled_subscriber_delays_nobody,
    a_grant_expiring_before_the_schedulers_next_pass_wakes_it,
);

/// The scheduler sleeps up to 10 s between passes; a grant that expires sooner than that wakes
/// it (a grant that expires later does not need to), so the expiry is recorded and pushed on
/// time with no other write, in real time rather than by moving the clock.
async fn a_grant_expiring_before_the_schedulers_next_pass_wakes_it(app: TestApp) {
    let user = new_user();
    // A later grant first: it must not stand in the way of the sooner one.
    app.add_credits(json!({ "endUserId": user, "amount": 100, "validityDays": 30 }))
        .await;
    let mut socket = watching(&app, &user, 100).await;
    let soon = (app.now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    app.add_credits(json!({ "endUserId": user, "amount": 5, "expiresAt": soon }))
        .await;
    assert_eq!(available(&socket.next_data(PUSH_WAIT).await), 105);
    let started = std::time::Instant::now();
    assert_eq!(available(&socket.next_data(PUSH_WAIT).await), 100);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(expiry_entries(&app, &user).await, 1);
}

/// A graphql-transport-ws socket subscribed to `user`'s balance, its snapshot (`available`)
/// already read.
async fn watching(app: &TestApp, user: &str, available_now: i64) -> Socket {
    let mut socket = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
    socket
        .subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
        .await;
    assert_eq!(available(&socket.next_data(PUSH_WAIT).await), available_now);
    socket
}

async fn expiry_entries(app: &TestApp, user: &str) -> usize {
    let entries = app.all_entries(user).await;
    entries.iter().filter(|e| e["kind"] == "EXPIRY").count()
}

fn available(data: &Value) -> i64 {
    data["balanceChanged"]["available"]
        .as_i64()
        .expect("available")
}

async fn every_change_is_pushed_in_order_on_both_protocols(app: TestApp) {
    for protocol in Protocol::BOTH {
        let user = new_user();
        let mut socket = Socket::connect(&app.address, protocol, ADMIN_KEY).await;
        socket
            .subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        let first = socket.next_data(PUSH_WAIT).await;
        assert_eq!(first["balanceChanged"]["endUserId"], user);
        assert_eq!(
            available(&first),
            0,
            "{protocol:?}: the current balance at once"
        );

        app.add_credits(json!({ "endUserId": user, "amount": 100, "validityDays": 30 }))
            .await;
        assert_eq!(
            available(&socket.next_data(PUSH_WAIT).await),
            100,
            "{protocol:?}: grant"
        );
        app.subtract_credits(json!({ "endUserId": user, "amount": 30 }))
            .await;
        assert_eq!(
            available(&socket.next_data(PUSH_WAIT).await),
            70,
            "{protocol:?}: debit"
        );

        let soon = (app.now() + chrono::Duration::minutes(1)).to_rfc3339();
        app.add_credits(json!({ "endUserId": user, "amount": 5, "expiresAt": soon }))
            .await;
        assert_eq!(
            available(&socket.next_data(PUSH_WAIT).await),
            75,
            "{protocol:?}: short grant"
        );
        // Past its expiresAt the expiry is recorded by the scheduler and pushed, once.
        app.advance_clock(chrono::Duration::minutes(2));
        let expired = socket.next_data(PUSH_WAIT).await;
        assert_eq!(available(&expired), 70, "{protocol:?}: expiry");
        assert!(
            socket
                .next_event(Duration::from_millis(1500))
                .await
                .is_none(),
            "{protocol:?}: nothing more after the expiry"
        );
        let kinds: Vec<Value> = app
            .all_entries(&user)
            .await
            .iter()
            .map(|e| e["kind"].clone())
            .collect();
        assert_eq!(
            kinds,
            vec![
                json!("EXPIRY"),
                json!("GRANT"),
                json!("DEBIT"),
                json!("GRANT")
            ]
        );
        assert_ledger_replays(&app, &user).await;
    }
}

async fn end_user_tokens_read_only_their_own_user(app: TestApp) {
    let user = new_user();
    let other = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;
    let token = app.end_user_token(&user, Some(600)).await;

    // Its own balance and history: yes.
    let body = app
        .graphql_with_key(Some(&token), BALANCE, json!({ "id": user }))
        .await;
    assert_eq!(body["data"]["balance"]["available"], 40, "{body}");
    let body = app
        .graphql_with_key(Some(&token), TRANSACTIONS, json!({ "id": user }))
        .await;
    assert_eq!(
        body["data"]["transactions"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{body}"
    );
    // Someone else's, any write, minting tokens: forbidden.
    for (query, variables) in [
        (BALANCE, json!({ "id": other })),
        (TRANSACTIONS, json!({ "id": other })),
        (
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1 } }),
        ),
        (
            ADD_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 1 } }),
        ),
        (
            "mutation($input: CreateEndUserTokenInput!) { createEndUserToken(input: $input) { token } }",
            json!({ "input": { "endUserId": user } }),
        ),
    ] {
        let body = app.graphql_with_key(Some(&token), query, variables).await;
        assert_eq!(error_code(&body), "FORBIDDEN", "{body}");
    }
    assert_eq!(app.available(&user).await, 40, "nothing was written");

    // Subscribing to its own balance works on both protocols; to another's is refused.
    for protocol in Protocol::BOTH {
        let mut socket = Socket::connect(&app.address, protocol, &token).await;
        socket
            .subscribe("own", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        assert_eq!(available(&socket.next_data(PUSH_WAIT).await), 40);
        socket
            .subscribe("other", BALANCE_CHANGED, json!({ "id": other }))
            .await;
        match socket.next_event(PUSH_WAIT).await {
            Some(Event::Errors(errors)) => {
                assert_eq!(errors[0]["extensions"]["code"], "FORBIDDEN", "{errors}")
            }
            other => panic!("{protocol:?}: expected FORBIDDEN, got {other:?}"),
        }
    }

    // Tampered and expired tokens are not credentials.
    let mut tampered = token.clone();
    let flip = tampered.len() - 5;
    tampered.replace_range(
        flip..flip + 1,
        if &token[flip..flip + 1] == "A" {
            "B"
        } else {
            "A"
        },
    );
    let body = app
        .graphql_with_key(Some(&tampered), BALANCE, json!({ "id": user }))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    let short = app.end_user_token(&user, Some(1)).await;
    app.advance_clock(chrono::Duration::seconds(2));
    let body = app
        .graphql_with_key(Some(&short), BALANCE, json!({ "id": user }))
        .await;
    assert_eq!(error_code(&body), "UNAUTHENTICATED", "{body}");
    let mut socket = Socket::open(&app.address, Protocol::TransportWs, None).await;
    assert!(
        !socket
            .init(json!({ "authorization": format!("Bearer {short}") }))
            .await
    );

    // Lifetimes are bounded.
    for ttl in [0, 86_401] {
        let body = app
            .graphql(
                "mutation($input: CreateEndUserTokenInput!) { createEndUserToken(input: $input) { token } }",
                json!({ "input": { "endUserId": user, "ttlSeconds": ttl } }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    }
}

async fn sockets_need_a_credential_and_a_timely_init(app: TestApp) {
    for protocol in Protocol::BOTH {
        // No credential anywhere: refused.
        let mut socket = Socket::open(&app.address, protocol, None).await;
        assert!(!socket.init(json!({})).await, "{protocol:?}");
        // A wrong key: refused.
        let mut socket = Socket::open(&app.address, protocol, None).await;
        assert!(
            !socket
                .init(json!({ "authorization": "Bearer tally_sk_nope" }))
                .await
        );
        // The upgrade request's header works too.
        let mut socket =
            Socket::open(&app.address, protocol, Some(&format!("Bearer {ADMIN_KEY}"))).await;
        assert!(
            socket.init(json!({})).await,
            "{protocol:?}: header credential"
        );
        let user = new_user();
        socket
            .subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        assert_eq!(available(&socket.next_data(PUSH_WAIT).await), 0);
    }
    // Never sending connection_init: closed after the timeout (1 s in tests) with 4408.
    let mut socket = Socket::open(&app.address, Protocol::TransportWs, None).await;
    match socket.next_event(Duration::from_secs(5)).await {
        Some(Event::Closed(code, _)) => assert_eq!(code, Some(4408)),
        other => panic!("expected the socket closed, got {other:?}"),
    }
}

async fn a_stalled_subscriber_delays_nobody(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 1_000_000 }))
        .await;
    // Ten subscribers that never read what they are sent. Each update they are sent is made
    // large (~30 KB, the field repeated under aliases) so that their sockets' buffers fill up
    // and the server's sends to them block.
    let aliases: String = (0..1500).map(|i| format!("a{i}: available ")).collect();
    let heavy = format!(
        "subscription($id: ID!) {{ balanceChanged(endUserId: $id) {{ available {aliases} }} }}"
    );
    let mut stalled = Vec::new();
    for _ in 0..10 {
        let mut socket = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
        socket.subscribe("1", &heavy, json!({ "id": user })).await;
        stalled.push(socket);
    }
    let mut live = Socket::connect(&app.address, Protocol::LegacyWs, ADMIN_KEY).await;
    live.subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
        .await;
    assert_eq!(available(&live.next_data(PUSH_WAIT).await), 1_000_000);

    const DEBITS: i64 = 400;
    let debits = async {
        for _ in 0..DEBITS {
            app.subtract_credits(json!({ "endUserId": user, "amount": 1 }))
                .await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), debits)
        .await
        .expect("debits finish while subscribers stall");
    // The reading subscriber ends on the latest balance (it may have skipped some).
    let expected = 1_000_000 - DEBITS;
    let mut last = 0;
    while last != expected {
        last = available(&live.next_data(PUSH_WAIT).await);
        assert!(last >= expected, "balances only go down here");
    }
    // A stalled one that finally reads also ends on the latest.
    let socket = &mut stalled[0];
    let mut last = 0;
    while last != expected {
        last = available(&socket.next_data(PUSH_WAIT).await);
    }
}

/// A subscriber gets at most one balance per `TALLY_LIVE_MIN_INTERVAL_MS`.
mod paced {
    use super::*;

    /// `TALLY_LIVE_MIN_INTERVAL_MS` for the pacing test: long enough that its quick debits all
    /// land within one interval even on a slow machine.
    const PACED_INTERVAL: Duration = Duration::from_secs(3);

    async fn paced(backend: Backend) -> Option<TestApp> {
        let configure: Configure = std::sync::Arc::new(|config: &mut tally::Config| {
            config.live_min_interval = PACED_INTERVAL;
        });
        TestApp::spawn_with(backend, configure).await
    }

    on_both_databases_with!(paced; changes_close_together_arrive_as_one_balance_the_latest);

    async fn changes_close_together_arrive_as_one_balance_the_latest(app: TestApp) {
        let user = new_user();
        app.add_credits(json!({ "endUserId": user, "amount": 100 }))
            .await;
        let mut socket = watching(&app, &user, 100).await;

        // Three debits right after the snapshot: held until the interval is up, then sent as one
        // balance, the one after all three.
        for amount in [1, 2, 3] {
            app.subtract_credits(json!({ "endUserId": user, "amount": amount }))
                .await;
        }
        let held = socket.next_data(PACED_INTERVAL * 3).await;
        assert_eq!(
            available(&held),
            94,
            "the latest balance, not a step on the way"
        );
        assert!(
            socket
                .next_event(PACED_INTERVAL + PUSH_WAIT)
                .await
                .is_none(),
            "nothing more: the one balance covered all three"
        );

        // After a quiet spell longer than the interval, a change goes out at once: well before
        // the interval would be up.
        app.subtract_credits(json!({ "endUserId": user, "amount": 4 }))
            .await;
        match socket.next_event(PACED_INTERVAL / 2).await {
            Some(Event::Data(data)) => assert_eq!(available(&data), 90),
            other => panic!("expected the balance at once, got {other:?}"),
        }
    }
}

/// Two real `tally` processes on one PostgreSQL database.
mod postgres_processes {
    use crate::helpers::process::Process;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_changes_cross_processes_and_expire_once() {
        let Some(app) = TestApp::spawn(Backend::Postgres).await else {
            return;
        };
        let a = Process::start(&app.database_url).await;
        let b = Process::start(&app.database_url).await;
        let (process_a, process_b) = (a.address.clone(), b.address.clone());
        let user = new_user();

        for protocol in Protocol::BOTH {
            let mut on_b = Socket::connect(&process_b, protocol, ADMIN_KEY).await;
            on_b.subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
                .await;
            let start = available(&on_b.next_data(PUSH_WAIT).await);
            // A debit through process A reaches the subscriber on process B.
            let via_a = TestApp::client_for(&app, &process_a);
            via_a
                .add_credits(json!({ "endUserId": user, "amount": 10 }))
                .await;
            assert_eq!(available(&on_b.next_data(PUSH_WAIT).await), start + 10);
            via_a
                .subtract_credits(json!({ "endUserId": user, "amount": 3 }))
                .await;
            assert_eq!(available(&on_b.next_data(PUSH_WAIT).await), start + 7);
        }

        // A grant expiring in a second: both processes' schedulers race; expired once.
        let mut on_a = Socket::connect(&process_a, Protocol::TransportWs, ADMIN_KEY).await;
        on_a.subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        let mut on_b = Socket::connect(&process_b, Protocol::LegacyWs, ADMIN_KEY).await;
        on_b.subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        let before = available(&on_a.next_data(PUSH_WAIT).await);
        assert_eq!(available(&on_b.next_data(PUSH_WAIT).await), before);
        let soon = (Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
        let via_b = TestApp::client_for(&app, &process_b);
        via_b
            .add_credits(json!({ "endUserId": user, "amount": 50, "expiresAt": soon }))
            .await;
        for socket in [&mut on_a, &mut on_b] {
            assert_eq!(available(&socket.next_data(PUSH_WAIT).await), before + 50);
            assert_eq!(
                available(&socket.next_data(Duration::from_millis(2500)).await),
                before
            );
            assert!(
                socket
                    .next_event(Duration::from_millis(1500))
                    .await
                    .is_none(),
                "pushed once"
            );
        }
        let expiries = expiry_entries(&app, &user).await;
        assert_eq!(expiries, 1, "one expiry entry with two schedulers running");
        assert_ledger_replays(&app, &user).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres_listener_reconnect_sends_fresh_snapshots() {
        let Some(app) = TestApp::spawn(Backend::Postgres).await else {
            return;
        };
        let user = new_user();
        let mut socket = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
        socket
            .subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
            .await;
        assert_eq!(available(&socket.next_data(PUSH_WAIT).await), 0);
        // Cut the listening connection; the change made while it is down must still arrive.
        let admin = app.db().await;
        use sea_orm::ConnectionTrait;
        admin
            .execute_unprepared(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
            )
            .await
            .unwrap();
        app.add_credits(json!({ "endUserId": user, "amount": 8 }))
            .await;
        let mut last = 0;
        while last != 8 {
            last = available(&socket.next_data(PUSH_WAIT).await);
        }
    }
}

/// Idle sockets are pinged; one that stops answering is closed, one that answers stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_sockets_are_reaped_and_answering_ones_kept() {
    let configure: Configure = std::sync::Arc::new(|config: &mut tally::Config| {
        config.ws_keepalive_interval = Duration::from_secs(1);
    });
    let app = TestApp::spawn_with(Backend::Sqlite, configure)
        .await
        .expect("SQLite");
    let mut silent = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
    let mut answering = Socket::connect(&app.address, Protocol::TransportWs, ADMIN_KEY).await;
    // Reading is what answers pings (the client library replies as it reads).
    assert!(
        answering.next_event(Duration::from_secs(5)).await.is_none(),
        "no events, still open"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Closed with 1001, or reset while the client answers the pings it reads too late.
    match silent.next_event(Duration::from_secs(2)).await {
        Some(Event::Closed(code, _)) => assert!(matches!(code, Some(1001) | None), "{code:?}"),
        other => panic!("the silent socket should have been closed, got {other:?}"),
    }
    let user = new_user();
    answering
        .subscribe("1", BALANCE_CHANGED, json!({ "id": user }))
        .await;
    assert_eq!(
        available(&answering.next_data(PUSH_WAIT).await),
        0,
        "the answering socket works"
    );
}
