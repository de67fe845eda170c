//! PostgreSQL only: the write lanes' own connections (tokio-postgres, pipelined). They follow the
//! URL's TLS mode as the pool does, come back after PostgreSQL cuts them, and a batch whose
//! writes touch other rows than planned commits nothing although its commit was already sent.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::json;

use crate::helpers::*;

/// Starts Tally on a fresh PostgreSQL database whose URL carries `parameters`.
async fn spawn_with_url_parameters(parameters: &'static str) -> Option<TestApp> {
    TestApp::spawn_with(
        Backend::Postgres,
        std::sync::Arc::new(move |config: &mut tally::Config| {
            let separator = if config.database_url.contains('?') {
                '&'
            } else {
                '?'
            };
            config.database_url = format!("{}{separator}{parameters}", config.database_url);
        }),
    )
    .await
}

/// The app's connections to its database (not the test's own): (with TLS, without), counted
/// by the application name the test's URL gave them.
async fn app_connections_by_tls(app: &TestApp, application_name: &str) -> (i64, i64) {
    let admin = app.db().await;
    let row = admin
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FILTER (WHERE NOT s.ssl) \
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.datname = current_database() AND a.application_name = $1",
            [application_name.into()],
        ))
        .await
        .unwrap()
        .expect("one row");
    (
        row.try_get_by_index(0).unwrap(),
        row.try_get_by_index(1).unwrap(),
    )
}

/// Selects `what` (say, `pg_terminate_backend(pid)`) of each connection to the test's database
/// that matches `condition`; how many there were.
async fn backends(app: &TestApp, what: &str, condition: &str) -> usize {
    app.db()
        .await
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT {what} FROM pg_stat_activity \
                 WHERE datname = current_database() AND {condition}"
            ),
        ))
        .await
        .unwrap()
        .len()
}

/// Debits through the lanes until the lane has a connection, and checks the balance.
async fn write_through_the_lanes(app: &TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 3 }))
        .await;
    assert!(debit["entry"]["id"].is_string(), "{debit}");
    assert_eq!(app.available(&user).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_write_lanes_use_tls_as_the_url_says() {
    for (parameters, name, tls_expected) in [
        (
            "sslmode=disable&application_name=tally-plain",
            "tally-plain",
            false,
        ),
        (
            "sslmode=require&application_name=tally-tls",
            "tally-tls",
            true,
        ),
    ] {
        let Some(app) = spawn_with_url_parameters(parameters).await else {
            return;
        };
        write_through_the_lanes(&app).await;
        let (tls, no_tls) = app_connections_by_tls(&app, name).await;
        let (expected, other) = if tls_expected {
            (tls, no_tls)
        } else {
            (no_tls, tls)
        };
        assert_eq!(
            other, 0,
            "{parameters}: every connection alike ({tls} with TLS, {no_tls} without)"
        );
        // The pool's, the lane's, the readers'.
        assert!(expected >= 2, "{parameters}: {expected} connections");
    }
}

/// When PostgreSQL cuts a lane's connections (a restart, a proxy's timeout), the next writes
/// are answered: the batch that meets the cut is retried one write at a time, and the lane
/// opens a new connection. (The lanes name their connections when the URL does not.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_survive_their_lane_connections_being_cut() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;
    let lanes = "application_name = 'tally-write-lane'";
    assert!(
        backends(&app, "pg_terminate_backend(pid)", lanes).await >= 1,
        "a lane's connection was cut"
    );
    let debits = (0..8).map(|_| app.subtract_credits(json!({ "endUserId": user, "amount": 5 })));
    for debit in futures::future::join_all(debits).await {
        assert!(debit["entry"]["id"].is_string(), "{debit}");
    }
    assert_eq!(app.available(&user).await, 0);
    // One more batch, whatever the first after the cut held.
    app.add_credits(json!({ "endUserId": user, "amount": 2 }))
        .await;
    assert_eq!(app.available(&user).await, 2);
    assert!(
        backends(&app, "pid", lanes).await >= 1,
        "the lane connected again"
    );
    assert_verify_clean(&app);
}

/// A lane sends a batch's writes and its commit together. Here a trigger the test plants makes
/// PostgreSQL skip every entry a lane's connection inserts (and count each skip in a sequence,
/// which no rollback undoes), so the batch's writes touch fewer rows than it planned:
/// `tally_assert_rows` fails the statement, the commit sent behind it rolls everything back, and
/// the debit runs again on its own through the pool, whole. Had the lane's commit gone through,
/// the grant would have given credits to an entry that does not exist, which `tally verify`
/// reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_whose_writes_miss_their_plan_commits_nothing() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    let db = app.db().await;
    db.execute_unprepared(
        "CREATE SEQUENCE lane_entry_skips; \
         CREATE FUNCTION skip_lane_entries() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF current_setting('application_name') = 'tally-write-lane' THEN \
             PERFORM nextval('lane_entry_skips'); \
             RETURN NULL; \
           END IF; \
           RETURN NEW; \
         END $$; \
         CREATE TRIGGER skip_lane_entries BEFORE INSERT ON ledger_entries \
         FOR EACH ROW EXECUTE FUNCTION skip_lane_entries();",
    )
    .await
    .unwrap();

    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 3 }))
        .await;
    assert!(debit["entry"]["id"].is_string(), "{debit}");
    let skipped = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT is_called FROM lane_entry_skips",
        ))
        .await
        .unwrap()
        .expect("one row");
    let skipped: bool = skipped.try_get_by_index(0).unwrap();
    assert!(skipped, "the lane's batch met the trigger");
    assert_eq!(app.available(&user).await, 7);
    let entries = app.all_entries(&user).await;
    let debits: Vec<_> = entries
        .iter()
        .filter(|entry| entry["kind"] == "DEBIT")
        .collect();
    assert_eq!(debits.len(), 1, "{entries:?}");
    assert_verify_clean(&app);
}

/// When PostgreSQL cuts every connection of the app, the pool's included, the writes are
/// answered too: the lane's batch fails on its cut connection and its writes run again the
/// per-request way, on pooled connections that were cut as well; such a connection fails at
/// `BEGIN`, which changes nothing, and the write begins again on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_request_writes_survive_the_pool_s_connections_being_cut() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;
    // Several writes at once first, so that the pool keeps several connections.
    let warm = (0..8).map(|_| app.subtract_credits(json!({ "endUserId": user, "amount": 1 })));
    futures::future::join_all(warm).await;
    let every_other = "pid <> pg_backend_pid()";
    let cut = backends(&app, "pg_terminate_backend(pid)", every_other).await;
    assert!(cut >= 2, "the app's connections were cut");
    let debits = (0..8).map(|_| app.subtract_credits(json!({ "endUserId": user, "amount": 4 })));
    for debit in futures::future::join_all(debits).await {
        assert!(debit["entry"]["id"].is_string(), "{debit}");
    }
    assert_eq!(app.available(&user).await, 0);
    assert_verify_clean(&app);
}
