//! One rule for what a refused write settled on its way: expiries (and other things) that fell
//! due are recorded even when the write is then refused, whatever the write. Nothing of the
//! refused request itself is.
//!
//! To see which write recorded an expiry, the test makes a grant's expiry fall due behind the
//! scheduler's back (moving `expires_at` into the past in the database, as after downtime) and
//! sends the refused write at once: the EXPIRY entry is there when the refusal is answered.

use crate::helpers::*;
use chrono::{Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tally::entities::grant;

on_both_databases!(every_refused_write_records_the_expiries_that_fell_due,);

const VOID: &str = "mutation($input: VoidGrantInput!) { voidGrant(input: $input) { replayed } }";
const REVERSE: &str =
    "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) { replayed } }";
const HOLD: &str =
    "mutation($input: CreateHoldInput!) { createHold(input: $input) { hold { id } } }";
const CAPTURE: &str =
    "mutation($input: CaptureHoldInput!) { captureHold(input: $input) { replayed } }";
const START_CYCLE: &str =
    "mutation($input: StartCycleInput!) { startCycle(input: $input) { replayed } }";
const STOP_CYCLE: &str = "mutation($input: StopCycleInput!) { stopCycle(input: $input) { id } }";

/// Makes `grant_id` due for expiry a second ago, without telling Tally.
async fn expire_behind_the_back(app: &TestApp, grant_id: &str) {
    let db = app.db().await;
    let past = Utc::now() - Duration::seconds(1);
    let updated = grant::Entity::update_many()
        .col_expr(grant::Column::ExpiresAt, Expr::val(past))
        .filter(grant::Column::Id.eq(uuid::Uuid::parse_str(grant_id).unwrap()))
        .exec(&db)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 1);
    db.close().await.unwrap();
}

async fn every_refused_write_records_the_expiries_that_fell_due(app: TestApp) {
    // Each refusal: the end user holds 100 that never expire and 10 about to; then a write that
    // is refused under the account lock.
    type Refusal = fn(&TestApp, &Setup) -> (&'static str, Value);
    let refusals: [(&str, Refusal, &str); 8] = [
        (
            "subtractCredits beyond the balance",
            |_, s| {
                (
                    SUBTRACT_CREDITS,
                    json!({ "input": { "endUserId": s.user, "amount": 1_000 } }),
                )
            },
            "INSUFFICIENT_CREDITS",
        ),
        (
            "addCredits beyond 2^53 - 1",
            |_, s| {
                (
                    ADD_CREDITS,
                    json!({ "input": { "endUserId": s.user, "amount": 9_007_199_254_740_941i64 } }),
                )
            },
            "BAD_USER_INPUT",
        ),
        (
            "voidGrant of a voided grant",
            |_, s| (VOID, json!({ "input": { "grantId": s.voided } })),
            "BAD_USER_INPUT",
        ),
        (
            "reverseDebit of more than it took",
            |_, s| {
                (
                    REVERSE,
                    json!({ "input": { "entryId": s.debit, "amount": 50 } }),
                )
            },
            "BAD_USER_INPUT",
        ),
        (
            "captureHold of more than held",
            |_, s| {
                (
                    CAPTURE,
                    json!({ "input": { "holdId": s.hold, "amount": 6 } }),
                )
            },
            "BAD_USER_INPUT",
        ),
        (
            "createHold beyond the balance",
            |_, s| {
                (
                    HOLD,
                    json!({ "input": { "endUserId": s.user, "amount": 1_000, "ttlSeconds": 60 } }),
                )
            },
            "INSUFFICIENT_CREDITS",
        ),
        (
            "startCycle with an active cycle",
            |_, s| {
                (
                    START_CYCLE,
                    json!({ "input": { "endUserId": s.cycling, "amount": 5, "validityDays": 30 } }),
                )
            },
            "ACTIVE_CYCLE_EXISTS",
        ),
        (
            "stopCycle without a cycle",
            |_, s| (STOP_CYCLE, json!({ "input": { "endUserId": s.user } })),
            "NO_ACTIVE_CYCLE",
        ),
    ];
    for (what, refusal, code) in refusals {
        let setup = Setup::new(&app).await;
        let (document, variables) = refusal(&app, &setup);
        // The cycle case writes to its own end user.
        let user = if what.starts_with("startCycle") {
            setup.cycling.clone()
        } else {
            setup.user.clone()
        };
        let expiring = if what.starts_with("startCycle") {
            &setup.cycling_expiring
        } else {
            &setup.expiring
        };
        let before = app.all_entries(&user).await;
        let available = app.available(&user).await;
        expire_behind_the_back(&app, expiring).await;

        let body = app.graphql(document, variables).await;
        assert_eq!(error_code(&body), code, "{what}: {body}");

        let after = app.all_entries(&user).await;
        assert_eq!(after.len(), before.len() + 1, "{what}: one entry more");
        let newest = &after[0];
        assert_eq!(newest["kind"], "EXPIRY", "{what}: {newest}");
        assert_eq!(newest["grantId"], expiring.as_str(), "{what}");
        assert_eq!(newest["amount"], 10, "{what}");
        assert_eq!(app.available(&user).await, available - 10, "{what}");
    }
}

/// What each refusal needs.
struct Setup {
    user: String,
    /// 10 credits that the test makes due.
    expiring: String,
    voided: String,
    debit: String,
    hold: String,
    /// An end user with an active cycle, and credits the test makes due.
    cycling: String,
    cycling_expiring: String,
}

impl Setup {
    async fn new(app: &TestApp) -> Self {
        let user = new_user();
        let add = |amount: i64, expires: bool| {
            let mut input = json!({ "endUserId": user, "amount": amount });
            if expires {
                input["validityDays"] = json!(30);
            }
            input
        };
        app.add_credits(add(100, false)).await;
        let voided = app.add_credits(add(3, false)).await["grant"]["id"].clone();
        app.ok(VOID, json!({ "input": { "grantId": voided } }))
            .await;
        let debit = app
            .subtract_credits(json!({ "endUserId": user, "amount": 20 }))
            .await["entry"]["id"]
            .clone();
        let hold = app
            .ok(
                HOLD,
                json!({ "input": { "endUserId": user, "amount": 5, "ttlSeconds": 600 } }),
            )
            .await["hold"]["id"]
            .clone();
        // Added last, so the debit and the hold above drew on the never-expiring grant.
        let expiring = app.add_credits(add(10, true)).await["grant"]["id"].clone();

        let cycling = new_user();
        app.ok(
            START_CYCLE,
            json!({ "input": { "endUserId": cycling, "amount": 50, "validityDays": 30 } }),
        )
        .await;
        let cycling_expiring = app
            .add_credits(json!({ "endUserId": cycling, "amount": 10, "validityDays": 1 }))
            .await["grant"]["id"]
            .clone();
        let text = |value: Value| value.as_str().unwrap().to_owned();
        Self {
            user,
            expiring: text(expiring),
            voided: text(voided),
            debit: text(debit),
            hold: text(hold),
            cycling,
            cycling_expiring: text(cycling_expiring),
        }
    }
}
