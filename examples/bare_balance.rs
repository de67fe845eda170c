//! The comparator for Tally's `balance` query in `bench/ledger.sh` (a benchmark, not a test):
//! what a hand-written axum + sqlx endpoint does for the same request, with nothing else.
//!
//! It answers `POST /graphql` bodies of the benchmark's balance request (it reads only
//! `variables.u`), checks the bearer key against the one it was given (from memory), runs the
//! SELECT that Tally's `balance` runs (the end user's open grants: `ledger::store::
//! load_open_grants`, every column of `grants`), decodes every column, keeps the active grants
//! in burn-down order and answers the same JSON as the GraphQL answer. The pool has the same
//! size and SQLite the same settings as Tally's. Configured like Tally, from the environment:
//! `DATABASE_URL`, `TALLY_LISTEN`, `TALLY_ADMIN_API_KEY`, `TALLY_DB_MAX_CONNECTIONS`.
//!
//! The difference between its rate and Tally's is what Tally's layers cost on a read: the
//! GraphQL engine, the authentication, the ORM and the domain types.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::sqlx::{self, PgPool, Row, SqlitePool};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// The statement SeaORM builds for `load_open_grants`, column for column.
const SELECT_OPEN_GRANTS: &str = r#"SELECT "grants"."id", "grants"."end_user_id", "grants"."amount", "grants"."remaining", "grants"."source", "grants"."effective_at", "grants"."expires_at", "grants"."priority", "grants"."description", "grants"."metadata", "grants"."created_at", "grants"."voided_at", "grants"."held", "grants"."cycle_id", "grants"."reference", "grants"."payment_reference", "grants"."paid_amount", "grants"."paid_currency" FROM "grants" WHERE "grants"."end_user_id" = $1 AND "grants"."remaining" > $2 AND "grants"."voided_at" IS NULL"#;

enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

struct App {
    pool: Pool,
    bearer: String,
    /// The database is from before application-chosen end-user ids (`BENCH_END_USER_ID_TYPE=UUID`,
    /// set to measure such a build): `end_user_id` columns hold UUIDs, not text.
    uuid_ids: bool,
}

/// An end-user id as the database stores it.
#[allow(dead_code)] // Decoded for a fair comparison.
enum StoredId {
    Text(String),
    Uuid(Uuid),
}

/// Every column, decoded as Tally decodes it, so that the comparison is not flattered by
/// skipping work the real query must do.
#[allow(dead_code)] // Decoded for a fair comparison; only some fields are answered.
struct OpenGrant {
    id: Uuid,
    end_user_id: StoredId,
    amount: i64,
    remaining: i64,
    source: String,
    effective_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    priority: Option<i32>,
    description: Option<String>,
    metadata: Option<serde_json::Value>,
    created_at: DateTime<Utc>,
    voided_at: Option<DateTime<Utc>>,
    held: i64,
    cycle_id: Option<Uuid>,
    reference: Option<String>,
    payment_reference: Option<String>,
    paid_amount: Option<i64>,
    paid_currency: Option<String>,
}

/// The same decoding for both drivers' row types.
macro_rules! decode_grant {
    ($row:expr, $uuid_ids:expr) => {{
        let row = $row;
        Ok::<_, sqlx::Error>(OpenGrant {
            id: row.try_get(0)?,
            end_user_id: if $uuid_ids {
                StoredId::Uuid(row.try_get(1)?)
            } else {
                StoredId::Text(row.try_get(1)?)
            },
            amount: row.try_get(2)?,
            remaining: row.try_get(3)?,
            source: row.try_get(4)?,
            effective_at: row.try_get(5)?,
            expires_at: row.try_get(6)?,
            priority: row.try_get(7)?,
            description: row.try_get(8)?,
            metadata: row.try_get(9)?,
            created_at: row.try_get(10)?,
            voided_at: row.try_get(11)?,
            held: row.try_get(12)?,
            cycle_id: row.try_get(13)?,
            reference: row.try_get(14)?,
            payment_reference: row.try_get(15)?,
            paid_amount: row.try_get(16)?,
            paid_currency: row.try_get(17)?,
        })
    }};
}

async fn open_grants(app: &App, end_user: &str) -> Result<Vec<OpenGrant>, sqlx::Error> {
    let uuid_ids = app.uuid_ids;
    let as_uuid = || Uuid::parse_str(end_user).map_err(|e| sqlx::Error::Decode(Box::new(e)));
    // The same statement on either driver: bind the id as the database stores it, decode.
    macro_rules! fetch {
        ($pool:expr) => {{
            let query = sqlx::query(SELECT_OPEN_GRANTS);
            let query = if uuid_ids {
                query.bind(as_uuid()?)
            } else {
                query.bind(end_user)
            };
            query
                .bind(0_i64)
                .fetch_all($pool)
                .await?
                .iter()
                .map(|row| decode_grant!(row, uuid_ids))
                .collect()
        }};
    }
    match &app.pool {
        Pool::Postgres(pool) => fetch!(pool),
        Pool::Sqlite(pool) => fetch!(pool),
    }
}

#[derive(Deserialize)]
struct GraphqlBody {
    variables: Variables,
}

#[derive(Deserialize)]
struct Variables {
    u: String,
}

async fn balance(State(app): State<Arc<App>>, headers: HeaderMap, body: String) -> Response {
    if headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) != Some(app.bearer.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(request) = serde_json::from_str::<GraphqlBody>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut grants = match open_grants(&app, &request.variables.u).await {
        Ok(grants) => grants,
        Err(error) => {
            eprintln!("bare_balance: {error}");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // Held credits count on every open grant; the rest only on active ones, in burn-down order
    // (README, "Rules the ledger keeps").
    let held: i64 = grants.iter().map(|g| g.held).sum();
    let now = Utc::now();
    grants.retain(|g| {
        g.effective_at <= now
            && g.expires_at.is_none_or(|at| now < at)
            && g.voided_at.is_none()
            && g.remaining > 0
    });
    grants.sort_by(|a, b| {
        (
            a.priority.is_none(),
            a.priority,
            a.expires_at.is_none(),
            a.expires_at,
        )
            .cmp(&(
                b.priority.is_none(),
                b.priority,
                b.expires_at.is_none(),
                b.expires_at,
            ))
            .then(a.created_at.cmp(&b.created_at))
            .then(a.id.cmp(&b.id))
    });
    let available: i64 = grants.iter().map(|g| g.remaining - g.held).sum();
    let answer = json!({ "data": { "balance": {
        "available": available,
        "held": held,
        "nextExpiry": grants.iter().filter_map(|g| g.expires_at).min(),
        "grants": grants.iter().map(|g| json!({
            "id": g.id, "remaining": g.remaining, "expiresAt": g.expires_at,
        })).collect::<Vec<_>>(),
    } } });
    axum::Json(answer).into_response()
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() {
    let url = env("DATABASE_URL", "sqlite://tally.db?mode=rwc");
    let listen = env("TALLY_LISTEN", "127.0.0.1:8080");
    let key = std::env::var("TALLY_ADMIN_API_KEY").expect("TALLY_ADMIN_API_KEY");
    let size: u32 = env("TALLY_DB_MAX_CONNECTIONS", "16")
        .parse()
        .expect("TALLY_DB_MAX_CONNECTIONS");
    let pool = if url.starts_with("sqlite:") {
        // As in Tally's src/db.rs.
        let options: SqliteConnectOptions = url.parse().expect("DATABASE_URL");
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        Pool::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(size)
                .connect_with(options)
                .await
                .expect("connect"),
        )
    } else {
        Pool::Postgres(
            PgPoolOptions::new()
                .max_connections(size)
                .connect(&url)
                .await
                .expect("connect"),
        )
    };
    let app = Arc::new(App {
        pool,
        bearer: format!("Bearer {key}"),
        uuid_ids: std::env::var("BENCH_END_USER_ID_TYPE").is_ok_and(|name| name == "UUID"),
    });
    let router = axum::Router::new()
        .route("/graphql", post(balance))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .expect("TALLY_LISTEN");
    axum::serve(listener, router).await.expect("serve");
}
