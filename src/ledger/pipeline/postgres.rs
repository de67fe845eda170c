//! A PostgreSQL write lane's connection: a batch in two flights.
//!
//! A batch needs five statements: begin, lock its accounts, load them, write, commit. sqlx sends
//! each only once the answer to the one before has come back, and while a batch waits for those
//! round trips it holds its accounts' locks and the clients wait with it. tokio-postgres sends
//! requests without waiting for earlier answers (pipelining), so a batch here is two round
//! trips:
//!
//! 1. begin, lock, load (and read the batch's stored idempotency keys), sent together. The
//!    server still runs them one after another, so the load starts only once every lock is
//!    held and sees what the batches that held them before committed.
//! 2. the writes, as one statement that checks itself (`tally_assert_rows`: every part must
//!    touch the rows the plan says, or the statement fails), then commit, sent together. When
//!    the writes fail the transaction is aborted, and PostgreSQL answers the commit by rolling
//!    back: nothing of the batch is written, and each write is retried on its own.
//!
//! The lock, load and key statements have one text whatever the batch's size (the lists are
//! arrays), so each is prepared once per connection and planned once. The writes' text depends
//! on how many rows of each table the batch writes; each shape is prepared the first time a
//! connection meets it and kept.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{DbErr, RuntimeErr, Statement as OrmStatement, Values};
use sea_query_postgres::{PostgresValue, PostgresValues};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};
use uuid::Uuid;

use super::connection::{Failure, LockedAndLoaded};
use super::sql::LockedRow;
use crate::db::pipelined_connect::PipelinedOptions;
use crate::entities::{grant, idempotency_key};

/// Locks the accounts of `$1` (sorted, distinct), creating the missing ones, in the order of the
/// array: two batches (on any processes) that share accounts lock them in the same order and
/// cannot deadlock. An existing account is left as it is (`WHERE false`: no new row version), but
/// still locked (`FOR NO KEY UPDATE`).
const LOCK: &str = "INSERT INTO accounts (end_user_id, last_seq, created_at, updated_at) \
     SELECT u.id, 0, $2, $2 FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n) ORDER BY u.n \
     ON CONFLICT (end_user_id) DO UPDATE SET updated_at = excluded.updated_at WHERE false";

/// Each locked account with its alert row, once per open grant (once with none when it has no
/// open grant). Every table is filtered by the array itself, so that each is read by its index
/// whatever the statistics were when the plan was made: a statement prepared on a new database is
/// planned while the tables are nearly empty, and such a plan for the bare join read all of
/// `grants` for every batch (it halved the rate of a bulk seed) until autovacuum next analyzed
/// the table. (Sequential scans are off for the session too, see `ledger::direct`.)
const LOAD: &str = "SELECT a.end_user_id AS locked_end_user_id, a.last_seq AS locked_last_seq, \
     b.thresholds AS alert_thresholds, b.fired AS alert_fired, b.depleted AS alert_depleted, g.* \
     FROM accounts a \
     LEFT JOIN balance_alerts b ON b.end_user_id = a.end_user_id AND b.end_user_id = ANY($1) \
     LEFT JOIN grants g ON g.end_user_id = a.end_user_id AND g.end_user_id = ANY($1) \
     AND g.remaining > 0 AND g.voided_at IS NULL \
     WHERE a.end_user_id = ANY($1::text[])";

/// The idempotency keys among `$1` that earlier writes recorded.
const KEYS: &str = "SELECT key, operation, request_hash, end_user_id, entry_id, created_at \
     FROM idempotency_keys WHERE key = ANY($1::text[])";

/// Write shapes one connection keeps prepared; past this the cache starts again (a batch's
/// shape is its row counts per table, so a busy server meets a few hundred at most).
const MAX_PREPARED_WRITES: usize = 1_024;

/// A lane's open PostgreSQL connection, its fixed statements prepared.
pub(super) struct PostgresLane {
    client: Client,
    lock: Statement,
    load: Statement,
    keys: Statement,
    writes: HashMap<String, Statement>,
}

impl PostgresLane {
    /// Connects, sets the session up as the other connections Tally holds (see
    /// `ledger::direct`), and prepares the fixed statements.
    pub async fn open(options: &PipelinedOptions) -> Result<Self, DbErr> {
        // tokio-postgres sets `TCP_NODELAY` itself (see `crate::db::tcp_nodelay` for sqlx's).
        let client = options.connect().await.map_err(connection_error)?;
        client
            .batch_execute(crate::ledger::direct::POSTGRES_SESSION_SETTINGS)
            .await
            .map_err(query_error)?;
        let (lock, load, keys) = tokio::try_join!(
            client.prepare(LOCK),
            client.prepare(LOAD),
            client.prepare(KEYS)
        )
        .map_err(query_error)?;
        Ok(Self {
            client,
            lock,
            load,
            keys,
            writes: HashMap::new(),
        })
    }

    /// Flight 1: begins, locks the accounts of `users` (sorted, distinct), tells `locked`, loads
    /// them and reads which of `keys` are stored. On an error the transaction may be open: roll
    /// back (or drop the connection).
    pub async fn begin_lock_and_load(
        &self,
        users: &[&str],
        keys: &[&str],
        now: DateTime<Utc>,
        locked: impl FnOnce(),
    ) -> Result<LockedAndLoaded, DbErr> {
        debug_assert!(users.windows(2).all(|pair| pair[0] < pair[1]));
        // Polled in this order, so sent in this order (each sends its request when first polled).
        let begin = self.client.batch_execute("BEGIN");
        let lock = async {
            let locked_rows = self.client.execute(&self.lock, &[&users, &now]).await;
            locked();
            locked_rows
        };
        let load_params: [&(dyn ToSql + Sync); 1] = [&users];
        let load = self.client.query(&self.load, &load_params);
        let stored = async {
            match keys.is_empty() {
                true => Ok(Vec::new()),
                false => self.client.query(&self.keys, &[&keys]).await,
            }
        };
        let (begun, lock, load, stored) = tokio::join!(begin, lock, load, stored);
        begun.map_err(query_error)?;
        lock.map_err(query_error)?;
        let rows = load
            .map_err(query_error)?
            .iter()
            .map(locked_row)
            .collect::<Result<_, _>>()?;
        let keys = stored
            .map_err(query_error)?
            .iter()
            .map(stored_key)
            .collect::<Result<_, _>>()?;
        Ok(LockedAndLoaded { rows, keys })
    }

    /// Flight 2: runs `writes` (one statement that checks its own row counts, see
    /// `sql::merged`) and commits.
    pub async fn write_and_commit(&mut self, writes: OrmStatement) -> Result<(), Failure> {
        let before = |error| Failure::BeforeCommit(query_error(error).into());
        let statement = self
            .prepared(&writes.sql)
            .await
            .map_err(|error| Failure::BeforeCommit(error.into()))?;
        let values = bind(writes.values);
        let params = values.as_params();
        let mut written = std::pin::pin!(self.client.execute(&statement, &params));
        // Its first poll sends the request, unless the client refuses it first (a value it
        // cannot encode, a closed connection): then the commit must not follow.
        if let std::task::Poll::Ready(answered) = futures::poll!(written.as_mut()) {
            // (An answer at once, which tokio-postgres never gives, still leaves the commit to
            // send.)
            answered.map_err(before)?;
            return self
                .commit()
                .await
                .map_err(|error| Failure::AtCommit(error.into()));
        }
        let (written, committed) = tokio::join!(written, self.client.batch_execute("COMMIT"));
        match written {
            // The server refused the writes: the transaction was aborted, and the commit
            // rolled it back.
            Err(error) if error.as_db_error().is_some() => Err(before(error)),
            // No answer: whether the commit happened is unknown.
            Err(error) => Err(Failure::AtCommit(connection_error(error).into())),
            Ok(_) => committed.map_err(|error| Failure::AtCommit(query_error(error).into())),
        }
    }

    /// Runs one statement in the open transaction (writes too large to merge); its rows.
    pub async fn execute(&mut self, statement: OrmStatement) -> Result<u64, DbErr> {
        let prepared = self.prepared(&statement.sql).await?;
        let values = bind(statement.values);
        self.client
            .execute(&prepared, &values.as_params())
            .await
            .map_err(query_error)
    }

    pub async fn commit(&self) -> Result<(), DbErr> {
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(query_error)
    }

    pub async fn rollback(&self) -> Result<(), DbErr> {
        self.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(query_error)
    }

    /// The prepared statement of a write shape, preparing it on first use.
    async fn prepared(&mut self, sql: &str) -> Result<Statement, DbErr> {
        if let Some(statement) = self.writes.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await.map_err(query_error)?;
        if self.writes.len() >= MAX_PREPARED_WRITES {
            // Dropping a statement closes it on the server.
            self.writes.clear();
        }
        self.writes.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

fn bind(values: Option<Values>) -> PostgresValues {
    PostgresValues(
        values
            .map(|values| values.0)
            .unwrap_or_default()
            .into_iter()
            .map(PostgresValue)
            .collect(),
    )
}

fn locked_row(row: &Row) -> Result<LockedRow, DbErr> {
    let grant_id: Option<Uuid> = column(row, "id")?;
    Ok(LockedRow {
        end_user_id: column(row, "locked_end_user_id")?,
        last_seq: column(row, "locked_last_seq")?,
        alert_thresholds: column(row, "alert_thresholds")?,
        alert_fired: column(row, "alert_fired")?,
        alert_depleted: column(row, "alert_depleted")?,
        grant: match grant_id {
            Some(id) => Some(grant::Model {
                id,
                end_user_id: column(row, "end_user_id")?,
                amount: column(row, "amount")?,
                remaining: column(row, "remaining")?,
                source: column(row, "source")?,
                effective_at: column(row, "effective_at")?,
                expires_at: column(row, "expires_at")?,
                priority: column(row, "priority")?,
                description: column(row, "description")?,
                metadata: column(row, "metadata")?,
                created_at: column(row, "created_at")?,
                voided_at: column(row, "voided_at")?,
                held: column(row, "held")?,
                cycle_id: column(row, "cycle_id")?,
                reference: column(row, "reference")?,
                payment_reference: column(row, "payment_reference")?,
                paid_amount: column(row, "paid_amount")?,
                paid_currency: column(row, "paid_currency")?,
            }),
            None => None,
        },
    })
}

fn stored_key(row: &Row) -> Result<idempotency_key::Model, DbErr> {
    Ok(idempotency_key::Model {
        key: column(row, "key")?,
        operation: column(row, "operation")?,
        request_hash: column(row, "request_hash")?,
        end_user_id: column(row, "end_user_id")?,
        entry_id: column(row, "entry_id")?,
        created_at: column(row, "created_at")?,
    })
}

fn column<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, DbErr> {
    row.try_get(name)
        .map_err(|error| DbErr::Type(format!("column {name}: {error}")))
}

/// A failure to reach the database (its connection is not reused).
fn connection_error(error: tokio_postgres::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(error.to_string()))
}

/// A statement the server refused, or a broken connection while it ran. A batch's errors are
/// logged and decide only between retrying its writes and failing them (`Failure`), so the
/// server's message and code are all they carry.
fn query_error(error: tokio_postgres::Error) -> DbErr {
    let detail = match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    };
    DbErr::Exec(RuntimeErr::Internal(detail))
}
