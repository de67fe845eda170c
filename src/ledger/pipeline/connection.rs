//! The connection a lane writes through: opened by the lane and held for as long as it works.
//!
//! Why not borrow one from the pool for each batch: sqlx tests a connection on its way back
//! to the pool (a round trip, in a task of its own), and the next batch's `begin` waited for
//! that before it could start. On SQLite that was 0.85 ms of a 5 ms batch. A lane applies one
//! batch at a time, so one connection is all it needs.
//!
//! The connection goes into each batch's transaction and comes back only when the commit or
//! rollback succeeded. A transaction dropped any other way (an error, a panic) takes its
//! connection with it, so a connection in an unknown state is never used again: the next batch
//! opens a new one.

use std::sync::Arc;

use sea_orm::sqlx;
use sea_orm::sqlx::postgres::PgTransactionManager;
use sea_orm::sqlx::sqlite::SqliteTransactionManager;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement, Values,
};
use sea_query_sqlx::SqlxValues;
use sqlx_core::transaction::TransactionManager;

use crate::ledger::direct::{DirectConnection as Raw, DirectOptions};

#[derive(Clone, Copy)]
enum Finish {
    Commit,
    Rollback,
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
        // The driver's own transaction commands, not `BEGIN` as a statement: on SQLite a
        // statement's results come back from sqlx's worker thread through a channel, one more
        // thread hop than a command's acknowledgement (about 0.1 ms each for `BEGIN` and
        // `COMMIT`, measured on a lone client's debits).
        let begun = match &mut raw {
            Raw::Sqlite(conn) => SqliteTransactionManager::begin(conn, None).await,
            Raw::Postgres(conn) => PgTransactionManager::begin(conn, None).await,
        };
        begun.map_err(exec_error)?;
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
        let finished = match (&mut raw, how) {
            (Raw::Sqlite(conn), Finish::Commit) => SqliteTransactionManager::commit(conn).await,
            (Raw::Sqlite(conn), Finish::Rollback) => SqliteTransactionManager::rollback(conn).await,
            (Raw::Postgres(conn), Finish::Commit) => PgTransactionManager::commit(conn).await,
            (Raw::Postgres(conn), Finish::Rollback) => PgTransactionManager::rollback(conn).await,
        };
        finished.map_err(exec_error)?;
        self.held = Some(raw);
        Ok(())
    }

    async fn open(&self) -> Result<Raw, DbErr> {
        self.options.connect().await
    }
}

/// One batch's transaction on a lane's connection; the ORM's statements run on it as on any
/// connection.
pub(super) struct BatchTransaction {
    backend: DbBackend,
    raw: tokio::sync::Mutex<Raw>,
}

#[async_trait::async_trait]
impl ConnectionTrait for BatchTransaction {
    fn get_database_backend(&self) -> DbBackend {
        self.backend
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let Statement { sql, values, .. } = stmt;
        let arguments = SqlxValues(values.unwrap_or(Values(Vec::new())));
        let query = sqlx::AssertSqlSafe(sql.as_str());
        let result = match &mut *self.raw.lock().await {
            Raw::Sqlite(conn) => sqlx::query_with(query, arguments)
                .execute(conn)
                .await
                .map(ExecResult::from),
            Raw::Postgres(conn) => sqlx::query_with(query, arguments)
                .execute(conn)
                .await
                .map(ExecResult::from),
        };
        result.map_err(exec_error)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let query = sqlx::AssertSqlSafe(sql);
        let result = match &mut *self.raw.lock().await {
            Raw::Sqlite(conn) => sqlx::raw_sql(query)
                .execute(conn)
                .await
                .map(ExecResult::from),
            Raw::Postgres(conn) => sqlx::raw_sql(query)
                .execute(conn)
                .await
                .map(ExecResult::from),
        };
        result.map_err(exec_error)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(self.query_all_raw(stmt).await?.into_iter().next())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let Statement { sql, values, .. } = stmt;
        let arguments = SqlxValues(values.unwrap_or(Values(Vec::new())));
        let query = sqlx::AssertSqlSafe(sql.as_str());
        let rows = match &mut *self.raw.lock().await {
            Raw::Sqlite(conn) => sqlx::query_with(query, arguments)
                .fetch_all(conn)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
            Raw::Postgres(conn) => sqlx::query_with(query, arguments)
                .fetch_all(conn)
                .await
                .map(|rows| rows.into_iter().map(QueryResult::from).collect()),
        };
        rows.map_err(|error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(error))))
    }
}

/// The error the ORM itself gives for a failed statement, so callers classify it as they
/// would any other (a unique violation, a deadlock).
fn exec_error(error: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(error)))
}
