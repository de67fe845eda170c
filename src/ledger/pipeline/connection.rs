//! The connection a lane writes through: opened by the lane and held for as long as it works.
//!
//! Why not borrow one from the pool for each batch: sqlx tests a connection on its way back
//! to the pool (a round trip, in a task of its own), and the next batch's `begin` waited for
//! that before it could start. On SQLite that was 0.85 ms of a 5 ms batch. A lane applies one
//! batch at a time, so one connection is all it needs.
//!
//! On SQLite the lane drives its connection synchronously, on the lane's own thread
//! (`sqlite_sync`); on PostgreSQL it is sqlx's, awaited on the runtime. A batch asks its
//! transaction for exactly what it needs (run a statement, load the locked accounts, read stored
//! idempotency keys, count a merged write's rows), each answered in the types the batch uses.
//!
//! The connection goes into each batch's transaction and comes back only when the commit or
//! rollback succeeded. A transaction dropped any other way (an error, a panic) takes its
//! connection with it, so a connection in an unknown state is never used again: the next batch
//! opens a new one.

use std::sync::{Arc, Mutex};

use sea_orm::sqlx::postgres::PgTransactionManager;
use sea_orm::sqlx::{self, PgConnection};
use sea_orm::{
    DbBackend, DbErr, FromQueryResult, QueryResult, RuntimeErr, Statement, TryGetable, Values,
};
use sea_query_sqlx::SqlxValues;
use sqlx_core::transaction::TransactionManager;

use super::sql::LockedRow;
use super::sqlite_sync;
use crate::entities::idempotency_key;
use crate::error::Result;
use crate::ledger::direct::{DirectConnection, DirectOptions};

#[derive(Clone, Copy)]
enum Finish {
    Commit,
    Rollback,
}

/// A lane's open connection.
enum Raw {
    /// Used only through `Mutex::get_mut` (never locked): the mutex only makes the connection
    /// shareable by reference, as the PostgreSQL lanes' futures need to be.
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(PgConnection),
}

/// A lane's connection, opened on first use and again after any failure.
pub(super) struct LaneConnection {
    options: DirectOptions,
    held: Option<Raw>,
}

impl LaneConnection {
    pub fn new(options: DirectOptions) -> Self {
        Self {
            options,
            held: None,
        }
    }

    pub fn backend(&self) -> DbBackend {
        self.options.backend()
    }

    /// Begins a transaction on the held connection (opening one first if there is none).
    pub async fn begin(&mut self) -> Result<BatchTransaction, DbErr> {
        let mut raw = match self.held.take() {
            Some(raw) => raw,
            None => self.open().await?,
        };
        match &mut raw {
            // IMMEDIATE: the write lock from the start, so a batch that read never fails to
            // become a writer because another process wrote in between.
            Raw::Sqlite(conn) => {
                sqlite_sync::execute(sqlite(conn), "BEGIN IMMEDIATE", &[]).map(drop)?
            }
            // The driver's own transaction command: no statement to prepare.
            Raw::Postgres(conn) => PgTransactionManager::begin(conn, None)
                .await
                .map_err(exec_error)?,
        }
        Ok(BatchTransaction {
            backend: self.backend(),
            raw: tokio::sync::Mutex::new(raw),
        })
    }

    /// Commits, and keeps the connection for the next batch.
    pub async fn commit(&mut self, transaction: BatchTransaction) -> Result<(), DbErr> {
        self.finish(transaction, Finish::Commit).await
    }

    /// Rolls back, and keeps the connection for the next batch.
    pub async fn rollback(&mut self, transaction: BatchTransaction) -> Result<(), DbErr> {
        self.finish(transaction, Finish::Rollback).await
    }

    /// Ends the transaction; the connection is kept only if that succeeded.
    async fn finish(&mut self, transaction: BatchTransaction, how: Finish) -> Result<(), DbErr> {
        let mut raw = transaction.raw.into_inner();
        match (&mut raw, how) {
            (Raw::Sqlite(conn), Finish::Commit) => {
                sqlite_sync::execute(sqlite(conn), "COMMIT", &[]).map(drop)?
            }
            (Raw::Sqlite(conn), Finish::Rollback) => {
                sqlite_sync::execute(sqlite(conn), "ROLLBACK", &[]).map(drop)?
            }
            (Raw::Postgres(conn), Finish::Commit) => PgTransactionManager::commit(conn)
                .await
                .map_err(exec_error)?,
            (Raw::Postgres(conn), Finish::Rollback) => PgTransactionManager::rollback(conn)
                .await
                .map_err(exec_error)?,
        }
        self.held = Some(raw);
        Ok(())
    }

    async fn open(&self) -> Result<Raw, DbErr> {
        match &self.options {
            DirectOptions::Sqlite(options) => {
                sqlite_sync::open(options, &sqlite_sync::WriterSettings::default())
                    .map(|conn| Raw::Sqlite(Mutex::new(conn)))
            }
            DirectOptions::Postgres(_) => match self.options.connect().await? {
                DirectConnection::Postgres(conn) => Ok(Raw::Postgres(conn)),
                DirectConnection::Sqlite(_) => Err(DbErr::Custom(
                    "PostgreSQL options opened a SQLite connection".into(),
                )),
            },
        }
    }
}

/// The SQLite connection, by the exclusive access the caller already has.
fn sqlite(conn: &mut Mutex<rusqlite::Connection>) -> &mut rusqlite::Connection {
    // A poisoned mutex only means a panic while it was borrowed; the transaction of that panic
    // was dropped with its connection (see the module's head), so this one is sound.
    conn.get_mut()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One batch's transaction on a lane's connection.
pub(super) struct BatchTransaction {
    backend: DbBackend,
    raw: tokio::sync::Mutex<Raw>,
}

impl BatchTransaction {
    pub fn backend(&self) -> DbBackend {
        self.backend
    }

    /// Whether each statement is a round trip to the database (PostgreSQL, over the network),
    /// so that statements are worth merging into one; the SQLite lane runs them itself.
    pub fn statements_cost_a_round_trip(&self) -> bool {
        self.backend != DbBackend::Sqlite
    }

    /// Runs a statement that returns no rows; the rows it changed.
    pub async fn execute(&self, statement: Statement) -> Result<u64> {
        let Statement { sql, values, .. } = statement;
        let values = values.unwrap_or(Values(Vec::new()));
        match &mut *self.raw.lock().await {
            Raw::Sqlite(conn) => Ok(sqlite_sync::execute(sqlite(conn), &sql, &values.0)?),
            Raw::Postgres(conn) => {
                let query = sqlx::query_with(sqlx::AssertSqlSafe(sql.as_str()), SqlxValues(values));
                let done = query.execute(conn).await.map_err(exec_error)?;
                Ok(done.rows_affected())
            }
        }
    }

    /// The rows of `sql::load_locked`.
    pub async fn load_locked(&self, statement: Statement) -> Result<Vec<LockedRow>> {
        match &mut *self.raw.lock().await {
            Raw::Sqlite(conn) => sqlite_sync::load_locked(sqlite(conn), &statement),
            Raw::Postgres(conn) => postgres_rows(conn, statement)
                .await?
                .iter()
                .map(|row| Ok(LockedRow::from_query_result(row, "")?))
                .collect(),
        }
    }

    /// The idempotency keys a `SELECT` of that table found.
    pub async fn stored_keys(&self, statement: Statement) -> Result<Vec<idempotency_key::Model>> {
        match &mut *self.raw.lock().await {
            Raw::Sqlite(conn) => sqlite_sync::stored_keys(sqlite(conn), &statement),
            Raw::Postgres(conn) => postgres_rows(conn, statement)
                .await?
                .iter()
                .map(|row| Ok(idempotency_key::Model::from_query_result(row, "")?))
                .collect(),
        }
    }

    /// PostgreSQL: the one row of a statement that answers counts (`sql::merged`).
    pub async fn counts(&self, statement: Statement, columns: usize) -> Result<Vec<i64>> {
        let rows = match &mut *self.raw.lock().await {
            Raw::Postgres(conn) => postgres_rows(conn, statement).await?,
            Raw::Sqlite(_) => {
                return Err(DbErr::Custom("merged writes are PostgreSQL's".into()).into());
            }
        };
        let row = rows
            .first()
            .ok_or_else(|| DbErr::Custom("a merged write answered no row".into()))?;
        (0..columns)
            .map(|index| Ok(i64::try_get_by_index(row, index).map_err(DbErr::from)?))
            .collect()
    }
}

async fn postgres_rows(
    conn: &mut PgConnection,
    statement: Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    let Statement { sql, values, .. } = statement;
    let values = SqlxValues(values.unwrap_or(Values(Vec::new())));
    sqlx::query_with(sqlx::AssertSqlSafe(sql.as_str()), values)
        .fetch_all(conn)
        .await
        .map(|rows| rows.into_iter().map(QueryResult::from).collect())
        .map_err(|error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))))
}

/// The error the ORM itself gives for a failed statement, so callers classify it as they
/// would any other (a unique violation, a deadlock).
fn exec_error(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
}
