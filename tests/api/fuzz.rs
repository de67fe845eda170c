//! Property-based hostile input: generated malformed GraphQL documents, variables, raw bodies,
//! Creduse REST bodies and signed Stripe events thrown at a running Tally, on SQLite and on
//! PostgreSQL. Whatever arrives, the answer is a client error or a success: never a 5xx (but the
//! webhook's designed "retry" answer), never `INTERNAL_SERVER_ERROR`, never an internal detail
//! (SQL, sqlx / SeaORM text, a panic, a source path), and a refused request writes nothing.
//!
//! Bounded for CI: a fixed number of cases per database, no shrinking beyond a few steps.

use crate::helpers::stripe::{WEBHOOK_SECRET, signature_header, stripe_env};
use crate::helpers::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{Value, json};

const CASES: u32 = 1_000;

/// What the generated requests aim at: real rows, so that some requests reach deep.
#[derive(Clone, Debug)]
struct Targets {
    user: String,
    grant: String,
    debit: String,
    hold: String,
    bundle: String,
}

#[derive(Clone, Debug)]
enum Probe {
    /// POST /graphql with `{query, variables}`.
    Graphql { query: String, variables: Value },
    /// POST /graphql with these bytes as the body.
    RawGraphql(Vec<u8>),
    /// GET /graphql?query=….
    GetGraphql(String),
    /// A Creduse REST call with these bytes as the body.
    Rest { path: &'static str, body: Vec<u8> },
    /// POST /webhooks/stripe, correctly signed.
    Webhook(Vec<u8>),
}

impl Probe {
    fn text(&self) -> String {
        match self {
            Self::Graphql { query, variables } => format!("{query} {variables}"),
            Self::RawGraphql(body) | Self::Rest { body, .. } | Self::Webhook(body) => {
                String::from_utf8_lossy(body).into_owned()
            }
            Self::GetGraphql(query) => query.clone(),
        }
    }
}

/// GraphQL literals: often fitting values, so that some requests get far (or succeed), else
/// anything.
fn literal() -> impl Strategy<Value = String> {
    let fitting = prop_oneof![
        (1i64..50).prop_map(|n| n.to_string()),
        Just("null".to_owned()),
        Just("\"fine\"".to_owned()),
        Just("\"2099-01-01T00:00:00Z\"".to_owned()),
        Just("{plan: \"pro\"}".to_owned()),
    ];
    prop_oneof![5 => fitting, 1 => hostile_literal()]
}

fn hostile_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1.5".to_owned()),
        Just("1e400".to_owned()),
        Just("9007199254740992".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("99999999999999999999999999".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("{a: 1, a: 2}".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"a\\u0000b\"".to_owned()),
        Just("\"-262143-01-01T00:00:00Z\"".to_owned()),
        Just("\"+262142-12-31T23:59:59Z\"".to_owned()),
        Just("\"0000-01-01T00:00:00Z\"".to_owned()),
        Just("\"2099-01-01T00:00:00Z\"".to_owned()),
        Just("\"not a uuid\"".to_owned()),
        Just("DEBIT".to_owned()),
        Just("TRIAL".to_owned()),
        Just(format!("\"{}\"", "x".repeat(2_000))),
        Just(format!("{}1{}", "[".repeat(70), "]".repeat(70))),
        (1i64..200).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9 _{}\\[\\]():$!@#,.-]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ]
}

/// A JSON value for variables, valid-looking or not (bounded depth).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (1i64..200).prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(1e300)),
        Just(json!("\u{0}")),
        Just(json!("-262143-01-01T00:00:00Z")),
        Just(json!("2099-01-01T00:00:00Z")),
        Just(json!("x".repeat(3_000))),
        "[a-z0-9 _{}:\\[\\]-]{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(("[a-zA-Z\\u{0}]{1,8}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Documents with holes (`#`) for literals; `@U`, `@G`, `@D`, `@H`, `@B` stand for the targets.
const TEMPLATES: &[&str] = &[
    "mutation { addCredits(input: {endUserId: @U, amount: #, validityDays: #, description: #, metadata: #, idempotencyKey: #}) { replayed grant { id } } }",
    "mutation { addCredits(input: {endUserId: @U, amount: #, expiresAt: #, effectiveAt: #, source: #, priority: #}) { replayed } }",
    "mutation { subtractCredits(input: {endUserId: #, amount: #, description: #, metadata: #}) { entry { id } balance { available } } }",
    "mutation { createHold(input: {endUserId: @U, amount: #, ttlSeconds: #, description: #}) { hold { id } } }",
    "mutation { captureHold(input: {holdId: @H, amount: #}) { replayed } }",
    "mutation { voidGrant(input: {grantId: #, reason: #}) { replayed } }",
    "mutation { reverseDebit(input: {entryId: @D, amount: #, reason: #}) { replayed } }",
    "mutation { startCycle(input: {endUserId: @U, amount: #, validityDays: #, rolloverMax: #}) { replayed } }",
    "mutation { createBundle(input: {name: #, credits: #, priceAmount: #, currency: #, stripePriceId: #}) { bundle { id } } }",
    "mutation { updateBundle(input: {id: @B, name: #, validityDays: #}) { bundle { id } } }",
    "mutation { createEndUserToken(input: {endUserId: #, ttlSeconds: #}) { token } }",
    "{ balance(endUserId: @U, at: #) { available held grants { id remaining } } }",
    "{ transactions(endUserId: @U, first: #, after: #, kinds: #, from: #, to: #) { edges { cursor node { id kind } } } }",
    "{ cycle(endUserId: #) { amount } stripeEvents(first: #) { edges { cursor } } bundles(includeArchived: #) { id } }",
    "subscription { balanceChanged(endUserId: #) { available } }",
];

/// Variables documents: one `$input` the generator fills.
const VARIABLE_TEMPLATES: &[&str] = &[
    "mutation($input: AddCreditsInput!) { addCredits(input: $input) { replayed } }",
    "mutation($input: SubtractCreditsInput!) { subtractCredits(input: $input) { replayed } }",
    "mutation($input: CreateHoldInput!) { createHold(input: $input) { replayed } }",
    "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) { replayed } }",
    "mutation($input: StartCycleInput!) { startCycle(input: $input) { replayed } }",
    "query($input: DateTime) { balance(endUserId: @U, at: $input) { available } }",
];

const INPUT_FIELDS: &[&str] = &[
    "endUserId",
    "amount",
    "validityDays",
    "expiresAt",
    "effectiveAt",
    "description",
    "metadata",
    "idempotencyKey",
    "ttlSeconds",
    "entryId",
    "reason",
    "rolloverMax",
    "source",
];

fn fill(template: &str, literals: &[String], targets: &Targets) -> String {
    let quoted = |id: &str| format!("\"{id}\"");
    let template = template
        .replace("@U", &quoted(&targets.user))
        .replace("@G", &quoted(&targets.grant))
        .replace("@D", &quoted(&targets.debit))
        .replace("@H", &quoted(&targets.hold))
        .replace("@B", &quoted(&targets.bundle));
    let mut out = String::new();
    let mut next = literals.iter().cycle();
    for ch in template.chars() {
        match ch {
            '#' => out.push_str(next.next().map_or("null", String::as_str)),
            other => out.push(other),
        }
    }
    out
}

/// Small damage to a text: bytes inserted, removed or repeated at random places.
fn damaged(text: String, edits: Vec<(usize, u8, u8)>) -> String {
    let mut bytes = text.into_bytes();
    for (at, kind, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match kind % 4 {
            0 => bytes.insert(at, b"{}[]():$!@\"\\#,.- \n0a"[byte as usize % 19]),
            1 => {
                bytes.remove(at);
            }
            2 => {
                let end = (at + 1 + byte as usize % 16).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn probe(targets: Targets) -> impl Strategy<Value = Probe> {
    let edits = prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..3);
    let t = targets.clone();
    let documents = (
        prop::sample::select(TEMPLATES),
        prop::collection::vec(literal(), 6),
        edits.clone(),
    )
        .prop_map(move |(template, literals, edits)| Probe::Graphql {
            query: damaged(fill(template, &literals, &t), edits),
            variables: json!({}),
        });
    let t = targets.clone();
    let variables = (
        prop::sample::select(VARIABLE_TEMPLATES),
        prop::collection::vec((prop::sample::select(INPUT_FIELDS), json_value()), 0..6),
        any::<bool>(),
    )
        .prop_map(move |(template, fields, with_user)| {
            let mut input: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            if with_user {
                input.insert("endUserId".into(), json!(t.user));
                input.insert("entryId".into(), json!(t.debit));
            }
            Probe::Graphql {
                query: fill(template, &[], &t),
                variables: json!({ "input": input }),
            }
        });
    let t = targets.clone();
    let raw = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (prop::sample::select(TEMPLATES), edits.clone()).prop_map(move |(template, edits)| {
            // Duplicate keys, truncation and other JSON damage around a real document.
            let body = format!(
                "{{\"query\": {}, \"variables\": {{\"input\": {{\"amount\": 1, \"amount\": 7}}}}, \"query\": 1}}",
                json!(fill(template, &["1".to_owned()], &t))
            );
            damaged(body, edits).into_bytes()
        }),
    ]
    .prop_map(Probe::RawGraphql);
    let t = targets.clone();
    let get = (
        prop::sample::select(TEMPLATES),
        prop::collection::vec(literal(), 6),
        edits,
    )
        .prop_map(move |(template, literals, edits)| {
            Probe::GetGraphql(damaged(fill(template, &literals, &t), edits))
        });
    let t = targets.clone();
    let rest =
        (
            prop::sample::select(
                &[
                    "/add",
                    "/subtract",
                    "/start-cycle",
                    "/stop-cycle",
                    "/get-active-balance",
                ][..],
            ),
            prop_oneof![
            prop::collection::vec(any::<u8>(), 0..120),
            (json_value(), json_value(), any::<bool>()).prop_map(move |(amount, validity, user)| {
                let end_user = if user { json!(t.user) } else { amount.clone() };
                json!({ "end_user_id": end_user, "amount": amount, "validity_days": validity })
                    .to_string()
                    .into_bytes()
            }),
        ],
        )
            .prop_map(|(path, body)| Probe::Rest { path, body });
    let webhook = (
        prop::sample::select(&[
            "checkout.session.completed",
            "checkout.session.async_payment_succeeded",
            "charge.refunded",
            "refund.updated",
            "customer.created",
        ][..]),
        json_value(),
        "[a-z_0-9\\u{0}]{0,12}",
    )
        .prop_map(|(event_type, object, id)| {
            Probe::Webhook(
                json!({ "id": format!("evt_{id}"), "type": event_type, "data": { "object": object } })
                    .to_string()
                    .into_bytes(),
            )
        });
    prop_oneof![4 => documents, 3 => variables, 1 => raw, 1 => get, 2 => rest, 1 => webhook]
}

/// Rows only a request's own write adds (never the scheduler's settling: expiries, releases,
/// renewals), so a refused request must leave every count as it was.
async fn written_rows(db: &DatabaseConnection, ledger_only: bool) -> Vec<i64> {
    let tables = if ledger_only {
        "(SELECT COUNT(*) FROM ledger_entries WHERE kind NOT IN ('expiry', 'release', 'renewal')),
         (SELECT COUNT(*) FROM holds), (SELECT COUNT(*) FROM cycles), (SELECT COUNT(*) FROM bundles),
         (SELECT COUNT(*) FROM idempotency_keys), (SELECT COUNT(*) FROM accounts)"
    } else {
        "(SELECT COUNT(*) FROM ledger_entries WHERE kind NOT IN ('expiry', 'release', 'renewal')),
         (SELECT COUNT(*) FROM holds), (SELECT COUNT(*) FROM cycles), (SELECT COUNT(*) FROM bundles),
         (SELECT COUNT(*) FROM idempotency_keys), (SELECT COUNT(*) FROM accounts),
         (SELECT COUNT(*) FROM stripe_events), (SELECT COUNT(*) FROM api_keys)"
    };
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT {tables}"),
        ))
        .await
        .unwrap()
        .unwrap();
    let columns = if ledger_only { 6 } else { 8 };
    (0..columns)
        .map(|i| row.try_get_by_index::<i64>(i).unwrap())
        .collect()
}

/// Words that would betray internals in an answer (unless the request itself carried them).
const INTERNALS: &[&str] = &[
    "INTERNAL_SERVER_ERROR",
    "internal server error",
    "sqlx",
    "sea_orm",
    "sea-orm",
    "SeaORM",
    "database error",
    "SELECT ",
    "INSERT ",
    "UPDATE ",
    "syntax error at",
    "violates",
    "constraint",
    "panicked",
    "src/",
    ".rs:",
    "stack backtrace",
    "PgDatabaseError",
    "SqliteError",
];

async fn send(app: &TestApp, probe: &Probe) -> (u16, String) {
    let url = |path: &str| format!("{}{path}", app.address);
    let request = match probe {
        Probe::Graphql { query, variables } => app
            .client
            .post(url("/graphql"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({ "query": query, "variables": variables })),
        Probe::RawGraphql(body) => app
            .client
            .post(url("/graphql"))
            .bearer_auth(ADMIN_KEY)
            .header("Content-Type", "application/json")
            .body(body.clone()),
        Probe::GetGraphql(query) => app
            .client
            .get(url("/graphql"))
            .bearer_auth(ADMIN_KEY)
            .query(&[("query", query)]),
        Probe::Rest { path, body } => {
            let builder = if *path == "/get-active-balance" {
                app.client.get(url(path))
            } else {
                app.client.post(url(path))
            };
            builder
                .bearer_auth(ADMIN_KEY)
                .header("Content-Type", "application/json")
                .body(body.clone())
        }
        Probe::Webhook(body) => app
            .client
            .post(url("/webhooks/stripe"))
            .header("Stripe-Signature", signature_header(WEBHOOK_SECRET, body))
            .header("Content-Type", "application/json")
            .body(body.clone()),
    };
    let response = request
        .send()
        .await
        .expect("an answer, never a dropped connection");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Whether the answer refuses the request as a whole (nothing of it may have been written).
fn refused(status: u16, body: &str) -> bool {
    if status >= 400 {
        return true;
    }
    let Ok(body) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    let has_errors = body["errors"].as_array().is_some_and(|e| !e.is_empty());
    let no_data = match &body["data"] {
        Value::Null => true,
        Value::Object(fields) => fields.values().all(Value::is_null),
        _ => false,
    };
    has_errors && no_data
}

async fn check(app: &TestApp, db: &DatabaseConnection, probe: &Probe) -> Result<(), TestCaseError> {
    let webhook = matches!(probe, Probe::Webhook(_));
    let before = written_rows(db, webhook).await;
    let (status, body) = send(app, probe).await;
    // The one designed 5xx: a webhook event Tally could not resolve, answered so Stripe retries.
    let designed_retry = webhook
        && status == 500
        && serde_json::from_str::<Value>(&body).is_ok_and(|b| b["retry"] == true);
    prop_assert!(status < 500 || designed_retry, "{status}: {body}");
    let sent = probe.text();
    for word in INTERNALS {
        prop_assert!(
            !body.contains(word) || sent.contains(word),
            "the answer shows {word:?}: {body}"
        );
    }
    if refused(status, &body) {
        let after = written_rows(db, webhook).await;
        prop_assert_eq!(
            before,
            after,
            "a refused request wrote: {}: {}",
            status,
            body
        );
    }
    Ok(())
}

fn fuzz(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(env) = runtime.block_on(stripe_env(backend)) else {
        return;
    };
    let app = env.app;
    let (db, targets) = runtime.block_on(async {
        let db = app.db().await;
        let user = new_user();
        let grant = app
            .add_credits(json!({ "endUserId": user, "amount": 1_000 }))
            .await["grant"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let debit = app
            .subtract_credits(json!({ "endUserId": user, "amount": 10 }))
            .await["entry"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let hold = app
            .ok(
                "mutation($u: ID!) { createHold(input: {endUserId: $u, amount: 5, ttlSeconds: 86400}) { hold { id } } }",
                json!({ "u": user }),
            )
            .await["hold"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let bundle = app
            .ok(
                "mutation { createBundle(input: {name: \"fuzz\", credits: 10, priceAmount: 100, currency: \"usd\", stripePriceId: \"price_fuzz\"}) { bundle { id } } }",
                json!({}),
            )
            .await["bundle"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        (db, Targets { user, grant, debit, hold, bundle })
    });
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        max_shrink_iters: 64,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&probe(targets), |probe| {
        runtime.block_on(check(&app, &db, &probe))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    runtime.block_on(async {
        // Still serving, and the ledger still replays.
        let health = app
            .client
            .get(format!("{}/healthz", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        assert_eq!(
            tally::ledger::verify::verify(&db).await.unwrap(),
            Vec::<String>::new()
        );
    });
    drop(app);
    drop(runtime);
}

#[test]
fn sqlite_answers_generated_hostile_input_with_client_errors() {
    fuzz(Backend::Sqlite);
}

#[test]
fn postgres_answers_generated_hostile_input_with_client_errors() {
    fuzz(Backend::Postgres);
}
