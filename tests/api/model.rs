//! The rest of the credits model: holds, voids and reversals, recurring cycles, history and
//! balance at an instant, and `tally verify`.

use std::time::Duration;

use crate::helpers::*;

/// How long a test waits for the scheduler.
const WAIT: Duration = Duration::from_secs(10);
use chrono::{DateTime, Utc};
use futures::future::join_all;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tally::entities::{grant, ledger_allocation};

on_both_databases!(
    holds_reserve_then_capture_or_release,
    an_open_hold_releases_itself_at_its_deadline,
    a_hold_keeps_its_credits_when_their_grant_expires,
    concurrent_holds_and_debits_keep_available_non_negative,
    voids_and_reversals_leave_their_own_entries,
    a_reversal_into_an_expired_grant_expires_again,
    a_cycle_renews_resets_and_rolls_over,
    a_stopped_cycle_ends_with_its_period,
    a_cycle_resumes_at_its_current_period_after_downtime,
    two_instances_renew_a_period_once,
    history_filters_and_balance_at_past_instants,
    verify_is_clean_after_a_mixed_run_and_reports_planted_differences,
    an_allocation_of_a_missing_grant_is_refused_or_reported,
    a_used_up_cycle_renews_on_time,
    captures_and_releases_take_idempotency_keys,
    the_database_refuses_holds_beyond_what_a_grant_has_left,
);

const HOLD: &str = "mutation($input: CreateHoldInput!) { createHold(input: $input) {
    hold { id amount capturedAmount status expiresAt } entry { id kind amount delta balanceAfter }
    balance { available held } replayed } }";
const CAPTURE: &str = "mutation($input: CaptureHoldInput!) { captureHold(input: $input) {
    hold { id status capturedAmount } entry { id kind amount allocations { grantId amount } }
    balance { available held } } }";
const RELEASE: &str = "mutation($input: ReleaseHoldInput!) { releaseHold(input: $input) {
    hold { id status } balance { available held } } }";
const VOID: &str = "mutation($input: VoidGrantInput!) { voidGrant(input: $input) {
    entry { id kind amount grantId allocations { grantId amount } description } balance { available } replayed } }";
const REVERSE: &str = "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) {
    entry { id kind amount reversedEntryId allocations { grantId amount } } balance { available } replayed } }";
const START_CYCLE: &str = "mutation($input: StartCycleInput!) { startCycle(input: $input) {
    cycle { id status amount validityDays rolloverMax currentPeriodStart currentPeriodEnd currentGrantId }
    balance { available } replayed } }";
const STOP_CYCLE: &str = "mutation($input: StopCycleInput!) { stopCycle(input: $input) {
    id status canceledAt currentPeriodEnd } }";
const CYCLE: &str = "query($id: ID!) { cycle(endUserId: $id) {
    id status currentPeriodStart currentPeriodEnd currentGrantId } }";
const BALANCE_AT: &str = "query($id: ID!, $at: DateTime) { balance(endUserId: $id, at: $at) {
    available held grants { id remaining } } }";

fn kinds(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .rev()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn holds_reserve_then_capture_or_release(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    let held = app
        .ok(HOLD, json!({ "input": { "endUserId": user, "amount": 30, "ttlSeconds": 600, "description": "render job" } }))
        .await;
    assert_eq!(held["hold"]["status"], "OPEN");
    assert_eq!(held["balance"], json!({ "available": 70, "held": 30 }));
    assert_eq!(held["entry"]["kind"], "HOLD");
    assert_eq!(held["entry"]["delta"], -30);
    let hold_id = held["hold"]["id"].clone();

    // A debit cannot take held credits.
    let body = app
        .graphql(
            SUBTRACT_CREDITS,
            json!({ "input": { "endUserId": user, "amount": 71 } }),
        )
        .await;
    assert_eq!(error_code(&body), "INSUFFICIENT_CREDITS");
    assert_eq!(body["errors"][0]["extensions"]["available"], 70);
    // Nor can a second hold.
    let body = app
        .graphql(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 71, "ttlSeconds": 60 } }),
        )
        .await;
    assert_eq!(error_code(&body), "INSUFFICIENT_CREDITS");

    // Over the held amount: refused, nothing changes.
    let body = app
        .graphql(
            CAPTURE,
            json!({ "input": { "holdId": hold_id, "amount": 31 } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    assert_eq!(app.balance(&user).await["available"], 70);

    let captured = app
        .ok(
            CAPTURE,
            json!({ "input": { "holdId": hold_id, "amount": 20 } }),
        )
        .await;
    assert_eq!(captured["hold"]["status"], "CAPTURED");
    assert_eq!(captured["hold"]["capturedAmount"], 20);
    assert_eq!(captured["entry"]["kind"], "CAPTURE");
    assert_eq!(captured["entry"]["amount"], 20);
    assert_eq!(captured["balance"], json!({ "available": 80, "held": 0 }));
    // A closed hold cannot be captured or released again.
    for (query, input) in [
        (CAPTURE, json!({ "holdId": hold_id })),
        (RELEASE, json!({ "holdId": hold_id })),
    ] {
        let body = app.graphql(query, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    }

    // Full capture by default; release gives everything back.
    let second = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 10, "ttlSeconds": 60 } }),
        )
        .await;
    let full = app
        .ok(
            CAPTURE,
            json!({ "input": { "holdId": second["hold"]["id"] } }),
        )
        .await;
    assert_eq!(full["hold"]["capturedAmount"], 10);
    assert_eq!(full["balance"]["available"], 70);
    let third = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 50, "ttlSeconds": 60 } }),
        )
        .await;
    assert_eq!(third["balance"]["available"], 20);
    let released = app
        .ok(
            RELEASE,
            json!({ "input": { "holdId": third["hold"]["id"] } }),
        )
        .await;
    assert_eq!(released["hold"]["status"], "RELEASED");
    assert_eq!(released["balance"], json!({ "available": 70, "held": 0 }));

    let body = app
        .graphql(RELEASE, json!({ "input": { "holdId": new_user() } }))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    for input in [
        json!({ "endUserId": user, "amount": 0, "ttlSeconds": 60 }),
        json!({ "endUserId": user, "amount": 5, "ttlSeconds": 0 }),
        json!({ "endUserId": user, "amount": 5, "ttlSeconds": 2_592_001 }),
    ] {
        let body = app.graphql(HOLD, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    }
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        [
            "GRANT", "HOLD", "CAPTURE", "RELEASE", "HOLD", "CAPTURE", "HOLD", "RELEASE"
        ]
    );
    assert_ledger_replays(&app, &user).await;
    assert_verify_clean(&app);
}

async fn an_open_hold_releases_itself_at_its_deadline(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;
    let held = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 25, "ttlSeconds": 1 } }),
        )
        .await;
    assert_eq!(held["balance"]["available"], 15);
    app.advance_clock(chrono::Duration::seconds(2));
    // Released by the scheduler, which the clock's move woke.
    eventually(WAIT, "the scheduler to release the hold", || async {
        (app.balance(&user).await["available"] == 40).then_some(())
    })
    .await;
    let body = app
        .graphql(
            CAPTURE,
            json!({ "input": { "holdId": held["hold"]["id"] } }),
        )
        .await;
    assert_eq!(
        error_code(&body),
        "BAD_USER_INPUT",
        "an expired hold cannot be captured"
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        ["GRANT", "HOLD", "RELEASE"]
    );
}

async fn a_hold_keeps_its_credits_when_their_grant_expires(app: TestApp) {
    let user = new_user();
    let soon = (app.now() + chrono::Duration::minutes(1)).to_rfc3339();
    app.add_credits(json!({ "endUserId": user, "amount": 30, "expiresAt": soon }))
        .await;
    let keep = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 10, "ttlSeconds": 600 } }),
        )
        .await;
    let drop = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 5, "ttlSeconds": 600 } }),
        )
        .await;
    // The grant expires; the holds (600 s) do not.
    app.advance_clock(chrono::Duration::minutes(2));
    // The grant expired: its 15 unheld credits with it; the 15 held stay for the holds.
    let balance = app.ok(BALANCE_AT, json!({ "id": user })).await;
    assert_eq!(
        (balance["available"].as_i64(), balance["held"].as_i64()),
        (Some(0), Some(15))
    );
    let captured = app
        .ok(
            CAPTURE,
            json!({ "input": { "holdId": keep["hold"]["id"], "amount": 6 } }),
        )
        .await;
    assert_eq!(
        captured["hold"]["capturedAmount"], 6,
        "a capture within the hold never fails"
    );
    // Released credits of an expired grant expire at once.
    let released = app
        .ok(
            RELEASE,
            json!({ "input": { "holdId": drop["hold"]["id"] } }),
        )
        .await;
    assert_eq!(released["balance"], json!({ "available": 0, "held": 0 }));
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        [
            "GRANT", "HOLD", "HOLD", "EXPIRY", "CAPTURE", "RELEASE", "EXPIRY", "RELEASE", "EXPIRY"
        ]
    );
    assert_ledger_replays(&app, &user).await;
    assert_verify_clean(&app);
}

async fn concurrent_holds_and_debits_keep_available_non_negative(app: TestApp) {
    let addresses = app.two_instances().await;
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    let answers = app
        .concurrently(&addresses, 40, |i| {
            if i % 2 == 0 {
                (
                    HOLD,
                    json!({ "input": { "endUserId": user, "amount": 7, "ttlSeconds": 600 } }),
                )
            } else {
                (
                    SUBTRACT_CREDITS,
                    json!({ "input": { "endUserId": user, "amount": 5 } }),
                )
            }
        })
        .await;
    let (mut held, mut spent) = (0, 0);
    for body in &answers {
        if let Some(hold) = body["data"]["createHold"].as_object() {
            held += hold["hold"]["amount"].as_i64().unwrap();
            assert!(hold["balance"]["available"].as_i64().unwrap() >= 0);
        } else if let Some(debit) = body["data"]["subtractCredits"].as_object() {
            spent += debit["entry"]["amount"].as_i64().unwrap();
            assert!(debit["balance"]["available"].as_i64().unwrap() >= 0);
        } else {
            assert_eq!(error_code(body), "INSUFFICIENT_CREDITS", "{body}");
        }
    }
    let balance = app.ok(BALANCE_AT, json!({ "id": user })).await;
    assert_eq!(balance["held"].as_i64().unwrap(), held);
    assert_eq!(balance["available"].as_i64().unwrap(), 100 - held - spent);
    assert!(100 - held - spent < 5, "everything that fit was taken");
    assert_ledger_replays(&app, &user).await;
    assert_verify_clean(&app);
}

async fn voids_and_reversals_leave_their_own_entries(app: TestApp) {
    let user = new_user();
    let a = app
        .add_credits(json!({ "endUserId": user, "amount": 50, "validityDays": 10 }))
        .await;
    let b = app
        .add_credits(json!({ "endUserId": user, "amount": 50 }))
        .await;
    let (a, b) = (a["grant"]["id"].clone(), b["grant"]["id"].clone());
    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 70 }))
        .await;
    let debit_id = debit["entry"]["id"].clone();
    assert_eq!(
        debit["allocations"],
        json!([{ "grantId": a, "amount": 50 }, { "grantId": b, "amount": 20 }])
    );

    // Partial reversal: back to the grants it came from, latest drawn first.
    let first = app
        .ok(
            REVERSE,
            json!({ "input": { "entryId": debit_id, "amount": 30, "reason": "job failed" } }),
        )
        .await;
    assert_eq!(first["entry"]["kind"], "REVERSAL");
    assert_eq!(first["entry"]["reversedEntryId"], debit_id);
    assert_eq!(
        first["entry"]["allocations"],
        json!([{ "grantId": b, "amount": -20 }, { "grantId": a, "amount": -10 }])
    );
    assert_eq!(first["balance"]["available"], 60);
    // Reversals may not add up to more than the debit took.
    let body = app
        .graphql(
            REVERSE,
            json!({ "input": { "entryId": debit_id, "amount": 41 } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body}");
    let rest = app
        .ok(REVERSE, json!({ "input": { "entryId": debit_id } }))
        .await;
    assert_eq!(rest["entry"]["amount"], 40);
    assert_eq!(rest["balance"]["available"], 100);
    let body = app
        .graphql(
            REVERSE,
            json!({ "input": { "entryId": debit_id, "amount": 1 } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    // Only debits and captures can be reversed.
    let grant_entry = app.all_entries(&user).await.last().unwrap()["id"].clone();
    let body = app
        .graphql(REVERSE, json!({ "input": { "entryId": grant_entry } }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    let body = app
        .graphql(REVERSE, json!({ "input": { "entryId": new_user() } }))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");

    let voided = app
        .ok(
            VOID,
            json!({ "input": { "grantId": b, "reason": "fraud", "idempotencyKey": "void-b" } }),
        )
        .await;
    assert_eq!(voided["entry"]["kind"], "VOID");
    assert_eq!(voided["entry"]["amount"], 50);
    assert_eq!(voided["entry"]["description"], "fraud");
    assert_eq!(voided["balance"]["available"], 50);
    let again = app
        .ok(
            VOID,
            json!({ "input": { "grantId": b, "reason": "fraud", "idempotencyKey": "void-b" } }),
        )
        .await;
    assert_eq!(again["replayed"], true);
    assert_eq!(again["entry"]["id"], voided["entry"]["id"]);
    let body = app
        .graphql(VOID, json!({ "input": { "grantId": b } }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT", "already voided");
    let body = app
        .graphql(VOID, json!({ "input": { "grantId": new_user() } }))
        .await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    // A grant with held credits cannot be voided until the hold closes.
    let hold = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 5, "ttlSeconds": 60 } }),
        )
        .await;
    let body = app
        .graphql(VOID, json!({ "input": { "grantId": a } }))
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    app.ok(
        RELEASE,
        json!({ "input": { "holdId": hold["hold"]["id"] } }),
    )
    .await;
    let voided = app.ok(VOID, json!({ "input": { "grantId": a } })).await;
    assert_eq!(voided["balance"]["available"], 0);
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        [
            "GRANT", "GRANT", "DEBIT", "REVERSAL", "REVERSAL", "VOID", "HOLD", "RELEASE", "VOID"
        ]
    );
    assert_ledger_replays(&app, &user).await;
    assert_verify_clean(&app);
}

async fn a_reversal_into_an_expired_grant_expires_again(app: TestApp) {
    let user = new_user();
    let soon = (app.now() + chrono::Duration::hours(1)).to_rfc3339();
    app.add_credits(json!({ "endUserId": user, "amount": 10, "expiresAt": soon }))
        .await;
    app.add_credits(json!({ "endUserId": user, "amount": 5 }))
        .await;
    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 12 }))
        .await;
    app.advance_clock(chrono::Duration::hours(2));
    let reversed = app
        .ok(
            REVERSE,
            json!({ "input": { "entryId": debit["entry"]["id"] } }),
        )
        .await;
    // The 2 from the never-expiring grant come back; the 10 from the expired one leave again.
    assert_eq!(reversed["balance"]["available"], 5);
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        ["GRANT", "GRANT", "DEBIT", "REVERSAL", "EXPIRY"]
    );
    assert_ledger_replays(&app, &user).await;

    // Into a voided grant: given back, then voided again.
    let other = new_user();
    let voided = app
        .add_credits(json!({ "endUserId": other, "amount": 10 }))
        .await;
    app.add_credits(json!({ "endUserId": other, "amount": 3 }))
        .await;
    let debit = app
        .subtract_credits(json!({ "endUserId": other, "amount": 10 }))
        .await;
    app.ok(
        VOID,
        json!({ "input": { "grantId": voided["grant"]["id"] } }),
    )
    .await;
    let reversed = app
        .ok(
            REVERSE,
            json!({ "input": { "entryId": debit["entry"]["id"] } }),
        )
        .await;
    assert_eq!(reversed["balance"]["available"], 3);
    assert_eq!(
        kinds(&app.all_entries(&other).await),
        ["GRANT", "GRANT", "DEBIT", "VOID", "REVERSAL", "VOID"]
    );
    assert_ledger_replays(&app, &other).await;
    assert_verify_clean(&app);
}

/// Moves the clock to `ago` after the end of the current period (`period` long, begun now).
fn end_period(app: &TestApp, ago: chrono::Duration, period: chrono::Duration) {
    app.advance_clock(period + ago);
}

/// The end user's available credits once they are `expected` (and, if given, the ledger holds
/// `entries` entries): the scheduler, woken by the clock's move, renews a cycle on its own.
async fn renewed_balance(app: &TestApp, user: &str, expected: i64, entries: Option<usize>) -> i64 {
    eventually(WAIT, "the scheduler to renew the cycle", || async {
        let available = app.available(user).await;
        let settled = available == expected
            && match entries {
                Some(entries) => app.all_entries(user).await.len() == entries,
                None => true,
            };
        settled.then_some(available)
    })
    .await
}

/// Starts a cycle of `amount` credits every `validity_days` days for `user`.
async fn start_cycle(app: &TestApp, user: &str, amount: i64, validity_days: i64) {
    app.ok(
        START_CYCLE,
        json!({ "input": { "endUserId": user, "amount": amount, "validityDays": validity_days } }),
    )
    .await;
}

/// `end_period` for a period of `days` days that ended a second ago.
fn period_ended_a_second_ago(app: &TestApp, days: i64) {
    end_period(
        app,
        chrono::Duration::seconds(1),
        chrono::Duration::days(days),
    );
}

async fn a_cycle_renews_resets_and_rolls_over(app: TestApp) {
    let user = new_user();
    let started = app
        .ok(START_CYCLE, json!({ "input": { "endUserId": user, "amount": 100, "validityDays": 30, "rolloverMax": 25 } }))
        .await;
    assert_eq!(started["cycle"]["status"], "ACTIVE");
    assert_eq!(started["balance"]["available"], 100);
    let body = app
        .graphql(
            START_CYCLE,
            json!({ "input": { "endUserId": user, "amount": 5, "validityDays": 1 } }),
        )
        .await;
    assert_eq!(error_code(&body), "ACTIVE_CYCLE_EXISTS");
    app.subtract_credits(json!({ "endUserId": user, "amount": 40 }))
        .await;

    period_ended_a_second_ago(&app, 30);
    // The next write (here a debit) finds the period over: 60 expire, 100 are granted, and 25
    // of the 60 roll over.
    let spent = app
        .subtract_credits(json!({ "endUserId": user, "amount": 1 }))
        .await;
    assert_eq!(spent["balance"]["available"], 124);
    let entries = app.all_entries(&user).await;
    assert_eq!(
        kinds(&entries),
        ["GRANT", "DEBIT", "EXPIRY", "RENEWAL", "RENEWAL", "DEBIT"]
    );
    assert_eq!(entries[3]["amount"], 60);
    let renewed = app.ok(CYCLE, json!({ "id": user })).await;
    assert_ne!(
        renewed["currentGrantId"],
        started["cycle"]["currentGrantId"]
    );
    let start: DateTime<Utc> = renewed["currentPeriodStart"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let end: DateTime<Utc> = renewed["currentPeriodEnd"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(end - start, chrono::Duration::days(30));
    assert!(
        (app.now() - start).num_seconds().abs() < 5,
        "the new period starts where the old ended"
    );
    assert_ledger_replays(&app, &user).await;

    // Without rollover the balance resets to the amount.
    let plain = new_user();
    start_cycle(&app, &plain, 10, 7).await;
    app.subtract_credits(json!({ "endUserId": plain, "amount": 3 }))
        .await;
    period_ended_a_second_ago(&app, 7);
    // The scheduler renews it on its own too (the clock's move woke it).
    let available = renewed_balance(&app, &plain, 10, Some(4)).await;
    assert_eq!(available, 10);
    assert_eq!(
        kinds(&app.all_entries(&plain).await),
        ["GRANT", "DEBIT", "EXPIRY", "RENEWAL"]
    );
    assert_verify_clean(&app);
}

async fn a_stopped_cycle_ends_with_its_period(app: TestApp) {
    let user = new_user();
    let body = app
        .graphql(STOP_CYCLE, json!({ "input": { "endUserId": user } }))
        .await;
    assert_eq!(error_code(&body), "NO_ACTIVE_CYCLE");
    start_cycle(&app, &user, 20, 30).await;
    let stopped = app
        .ok(STOP_CYCLE, json!({ "input": { "endUserId": user } }))
        .await;
    assert_eq!(stopped["status"], "CANCELED");
    assert!(stopped["canceledAt"].is_string());
    assert_eq!(
        app.available(&user).await,
        20,
        "usable until the period ends"
    );
    let body = app
        .graphql(STOP_CYCLE, json!({ "input": { "endUserId": user } }))
        .await;
    assert_eq!(error_code(&body), "NO_ACTIVE_CYCLE");
    period_ended_a_second_ago(&app, 30);
    app.add_credits(json!({ "endUserId": user, "amount": 1 }))
        .await;
    assert_eq!(app.available(&user).await, 1, "no renewal after a stop");
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        ["GRANT", "EXPIRY", "GRANT"]
    );
    // A new cycle may start once the old one is canceled.
    start_cycle(&app, &user, 5, 1).await;
    assert_verify_clean(&app);
}

async fn a_cycle_resumes_at_its_current_period_after_downtime(app: TestApp) {
    let user = new_user();
    start_cycle(&app, &user, 10, 1).await;
    // Nothing ran for 2.5 periods: the missed periods are not granted.
    end_period(&app, chrono::Duration::hours(60), chrono::Duration::days(1));
    app.add_credits(json!({ "endUserId": user, "amount": 1 }))
        .await;
    assert_eq!(app.available(&user).await, 11);
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        ["GRANT", "EXPIRY", "RENEWAL", "GRANT"]
    );
    let cycle = app.ok(CYCLE, json!({ "id": user })).await;
    let start: DateTime<Utc> = cycle["currentPeriodStart"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let behind = app.now() - start;
    assert!(
        behind >= chrono::Duration::hours(11) && behind <= chrono::Duration::hours(13),
        "resumes at the period containing now (started {behind} ago)"
    );
}

async fn two_instances_renew_a_period_once(app: TestApp) {
    let addresses = app.two_instances().await;
    let user = new_user();
    start_cycle(&app, &user, 50, 7).await;
    period_ended_a_second_ago(&app, 7);
    join_all((0..20).map(|i| {
        let via = TestApp::client_for(&app, &addresses[i % 2]);
        let user = user.clone();
        async move {
            via.subtract_credits(json!({ "endUserId": user, "amount": 1 }))
                .await
        }
    }))
    .await;
    let entries = app.all_entries(&user).await;
    assert_eq!(entries.iter().filter(|e| e["kind"] == "RENEWAL").count(), 1);
    assert_eq!(entries.iter().filter(|e| e["kind"] == "EXPIRY").count(), 1);
    assert_eq!(app.available(&user).await, 30);
    assert_ledger_replays(&app, &user).await;
}

async fn history_filters_and_balance_at_past_instants(app: TestApp) {
    let user = new_user();
    let at =
        |entry: &Value| -> DateTime<Utc> { entry["createdAt"].as_str().unwrap().parse().unwrap() };
    let before = app.now();
    app.advance_clock(chrono::Duration::milliseconds(20));
    let granted = app
        .add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await;
    let granted_at: DateTime<Utc> = granted["grant"]["createdAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    app.advance_clock(chrono::Duration::milliseconds(20));
    app.subtract_credits(json!({ "endUserId": user, "amount": 30 }))
        .await;
    app.advance_clock(chrono::Duration::milliseconds(20));
    let soon = (app.now() + chrono::Duration::minutes(1)).to_rfc3339();
    app.add_credits(json!({ "endUserId": user, "amount": 50, "expiresAt": soon }))
        .await;
    app.advance_clock(chrono::Duration::milliseconds(20));
    app.ok(
        HOLD,
        json!({ "input": { "endUserId": user, "amount": 20, "ttlSeconds": 600 } }),
    )
    .await;
    // The 50 expire; the hold (600 s) does not.
    app.advance_clock(chrono::Duration::minutes(2));
    app.subtract_credits(json!({ "endUserId": user, "amount": 5 }))
        .await;

    let entries = app.ok(
        "query($id: ID!) { transactions(endUserId: $id, first: 100) { edges { node { kind createdAt balanceAfter } } } }",
        json!({ "id": user }),
    ).await["edges"].as_array().unwrap().iter().map(|e| e["node"].clone()).collect::<Vec<_>>();
    assert_eq!(
        kinds(&entries),
        ["GRANT", "DEBIT", "GRANT", "HOLD", "EXPIRY", "DEBIT"]
    );
    // entries are newest first: [DEBIT, EXPIRY, HOLD, GRANT, DEBIT, GRANT]
    let (debit_at, grant2_at, hold_at, expiry_at) = (
        at(&entries[4]),
        at(&entries[3]),
        at(&entries[2]),
        at(&entries[1]),
    );
    let checks: Vec<(DateTime<Utc>, i64, i64)> = vec![
        (before, 0, 0),
        (granted_at, 100, 0),
        (debit_at, 70, 0),
        (grant2_at, 120, 0),
        (hold_at, 100, 20),
        (expiry_at - chrono::Duration::milliseconds(1), 100, 20),
        // The 50 expired with 30 of it still unheld... the hold took from the soonest-expiring
        // grant, so its 20 stay held and 30 expire.
        (expiry_at, 70, 20),
        (app.now(), 65, 20),
    ];
    for (instant, available, held) in checks {
        let balance = app
            .ok(
                BALANCE_AT,
                json!({ "id": user, "at": instant.to_rfc3339() }),
            )
            .await;
        assert_eq!(
            (
                balance["available"].as_i64().unwrap(),
                balance["held"].as_i64().unwrap()
            ),
            (available, held),
            "balance at {instant}"
        );
    }

    let debits = app.ok(
        "query($id: ID!) { transactions(endUserId: $id, kinds: [DEBIT, HOLD]) { edges { node { kind amount } } } }",
        json!({ "id": user }),
    ).await;
    let shown: Vec<_> = debits["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].clone())
        .collect();
    assert_eq!(shown, vec![json!("DEBIT"), json!("HOLD"), json!("DEBIT")]);
    let window = app.ok(
        "query($id: ID!, $from: DateTime, $to: DateTime) { transactions(endUserId: $id, from: $from, to: $to) { edges { node { kind } } } }",
        json!({ "id": user, "from": debit_at.to_rfc3339(), "to": hold_at.to_rfc3339() }),
    ).await;
    let shown: Vec<_> = window["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["kind"].clone())
        .collect();
    assert_eq!(shown, vec![json!("GRANT"), json!("DEBIT")]);
}

async fn verify_is_clean_after_a_mixed_run_and_reports_planted_differences(app: TestApp) {
    let users: Vec<String> = (0..3).map(|_| new_user()).collect();
    for user in &users {
        app.add_credits(json!({ "endUserId": user, "amount": 200, "validityDays": 5 }))
            .await;
    }
    join_all((0..30).map(|i| {
        let app = &app;
        let user = users[i % 3].clone();
        async move {
            match i % 3 {
                0 => {
                    app.graphql(
                        SUBTRACT_CREDITS,
                        json!({ "input": { "endUserId": user, "amount": 3 } }),
                    )
                    .await
                }
                1 => {
                    app.graphql(
                        HOLD,
                        json!({ "input": { "endUserId": user, "amount": 4, "ttlSeconds": 60 } }),
                    )
                    .await
                }
                _ => {
                    app.graphql(
                        ADD_CREDITS,
                        json!({ "input": { "endUserId": user, "amount": 2 } }),
                    )
                    .await
                }
            }
        }
    }))
    .await;
    assert_verify_clean(&app);

    // Plant a difference directly in the database.
    let db = app.db().await;
    let user: &str = users[0].as_str();
    grant::Entity::update_many()
        .col_expr(
            grant::Column::Remaining,
            Expr::col(grant::Column::Remaining).add(7),
        )
        .filter(grant::Column::EndUserId.eq(user))
        .filter(grant::Column::Amount.eq(200))
        .exec(&db)
        .await
        .unwrap();
    let (ok, stdout) = run_verify(&app);
    assert!(!ok, "verify must fail: {stdout}");
    assert!(stdout.contains("remaining"), "{stdout}");
}

/// PostgreSQL has no foreign key from allocations to grants (it cost a query per debit; see the
/// migration `m20261206_000010_lean_ledger_appends`): `tally verify` reports what one would
/// have refused. SQLite keeps the key and refuses the row.
async fn an_allocation_of_a_missing_grant_is_refused_or_reported(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    let debit = app
        .subtract_credits(json!({ "endUserId": user, "amount": 3 }))
        .await;
    let entry_id: uuid::Uuid = debit["entry"]["id"].as_str().unwrap().parse().unwrap();
    assert_verify_clean(&app);

    let missing_grant = uuid::Uuid::now_v7();
    let planted = ledger_allocation::Entity::insert(ledger_allocation::ActiveModel {
        entry_id: Set(entry_id),
        grant_id: Set(missing_grant),
        amount: Set(1),
        position: Set(1),
    })
    .exec(&app.db().await)
    .await;
    match app.backend {
        Backend::Sqlite => {
            let error = planted.expect_err("SQLite's foreign key refuses the allocation");
            assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
            assert_verify_clean(&app);
        }
        Backend::Postgres => {
            planted.expect("PostgreSQL has no foreign key on allocations");
            let (ok, stdout) = run_verify(&app);
            assert!(!ok, "verify must fail: {stdout}");
            assert!(
                stdout.contains(&format!(
                    "grant {missing_grant}: allocations take 1 from a grant that does not exist"
                )),
                "{stdout}"
            );
        }
    }
}

/// A cycle whose current grant is used up still renews on time, by the scheduler.
async fn a_used_up_cycle_renews_on_time(app: TestApp) {
    let user = new_user();
    start_cycle(&app, &user, 10, 3).await;
    app.subtract_credits(json!({ "endUserId": user, "amount": 10 }))
        .await;
    period_ended_a_second_ago(&app, 3);
    // A write races the scheduler the clock's move woke (the period's grant is used up, so
    // this write does not renew it): whichever lands first, the entries are dated in sequence.
    app.add_credits(json!({ "endUserId": user, "amount": 1 }))
        .await;
    let available = renewed_balance(&app, &user, 11, None).await;
    assert_eq!(available, 11);
    let entries = app.all_entries(&user).await;
    let mut after_the_period = kinds(&entries)[2..].to_vec();
    after_the_period.sort();
    assert_eq!(kinds(&entries)[..2], ["GRANT", "DEBIT"]);
    assert_eq!(after_the_period, ["GRANT", "RENEWAL"]);
    let times: Vec<DateTime<Utc>> = entries
        .iter()
        .rev()
        .map(|e| e["createdAt"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "entries are dated in sequence: {times:?}"
    );
    assert_ledger_replays(&app, &user).await;
}

async fn captures_and_releases_take_idempotency_keys(app: TestApp) {
    let user = new_user();
    app.add_credits(json!({ "endUserId": user, "amount": 50 }))
        .await;
    let first = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 20, "ttlSeconds": 60 } }),
        )
        .await;
    let capture = json!({ "input": { "holdId": first["hold"]["id"], "amount": 15, "idempotencyKey": "cap-1" } });
    let captured = app.ok(CAPTURE, capture.clone()).await;
    let again = app.ok(CAPTURE, capture).await;
    assert_eq!(
        again["entry"]["id"], captured["entry"]["id"],
        "the first result, replayed"
    );
    assert_eq!(again["hold"]["capturedAmount"], 15);
    assert_eq!(again["balance"]["available"], 35);
    let body = app
        .graphql(CAPTURE, json!({ "input": { "holdId": first["hold"]["id"], "amount": 16, "idempotencyKey": "cap-1" } }))
        .await;
    assert_eq!(error_code(&body), "IDEMPOTENCY_CONFLICT");

    let second = app
        .ok(
            HOLD,
            json!({ "input": { "endUserId": user, "amount": 5, "ttlSeconds": 60 } }),
        )
        .await;
    let release = json!({ "input": { "holdId": second["hold"]["id"], "idempotencyKey": "rel-1" } });
    let released = app.ok(RELEASE, release.clone()).await;
    let again = app.ok(RELEASE, release).await;
    assert_eq!(again["hold"], released["hold"]);
    assert_eq!(again["balance"]["available"], 35);
    // Without a key, closing a closed hold is refused as before.
    let body = app
        .graphql(
            RELEASE,
            json!({ "input": { "holdId": second["hold"]["id"] } }),
        )
        .await;
    assert_eq!(error_code(&body), "BAD_USER_INPUT");
    assert_eq!(
        kinds(&app.all_entries(&user).await),
        ["GRANT", "HOLD", "CAPTURE", "RELEASE", "HOLD", "RELEASE"]
    );
    assert_ledger_replays(&app, &user).await;
}

/// 0 ≤ held ≤ remaining: the ledger keeps it, and the database refuses a row that breaks it
/// (a CHECK on PostgreSQL, triggers on SQLite), as it refuses `remaining` outside 0..=amount.
async fn the_database_refuses_holds_beyond_what_a_grant_has_left(app: TestApp) {
    let user = new_user();
    let grant_id = app
        .add_credits(json!({ "endUserId": user, "amount": 100 }))
        .await["grant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(
        "mutation($u: ID!) { createHold(input: {endUserId: $u, amount: 30, ttlSeconds: 600}) { hold { id } } }",
        json!({ "u": user }),
    )
    .await;
    let db = app.db().await;
    let grant_id = uuid::Uuid::parse_str(&grant_id).unwrap();
    for (column, value) in [
        (grant::Column::Held, Expr::val(-1)),
        (grant::Column::Held, Expr::val(101)),
        (grant::Column::Remaining, Expr::val(29)),
    ] {
        let refused = grant::Entity::update_many()
            .col_expr(column, value)
            .filter(grant::Column::Id.eq(grant_id))
            .exec(&db)
            .await;
        let error = refused.expect_err("the database refuses it").to_string();
        assert!(error.to_lowercase().contains("check"), "{error}");
    }
    // What the ledger itself did is within the rule, and still there.
    let balance = app.balance(&user).await;
    assert_eq!(balance["available"], 70);
    assert_verify_clean(&app);
}
