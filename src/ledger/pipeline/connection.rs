//! The connection a lane writes through: opened by the lane and held for as long as it works.
//!
//! Why not borrow one from the pool for each batch: sqlx tests a connection on its way back
//! to the pool (a round trip, in a task of its own), and the next batch's `begin` waited for
//! that before it could start. On SQLite that was 0.85 ms of a 5 ms batch. A lane applies one
//! batch at a time, so one connection is all it needs.
//!
//! On SQLite the lane drives its connection synchronously, on the lane's own thread
//! (`sqlite_sync`); on PostgreSQL it is tokio-postgres's, pipelined (`postgres`). A batch asks
//! for exactly what it needs (lock and load its accounts with their stored idempotency keys,
//! then write and commit), each answered in the types the batch uses.
//!
//! The connection goes into each batch's transaction and comes back only when the commit or
//! rollback succeeded. A transaction dropped any other way (an error, a panic) takes its
//! connection with it, so a connection in an unknown state is never used again: the next batch
//! opens a new one.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sea_orm::{DbBackend, DbErr};

use super::postgres::PostgresLane;
use super::sql::{self, LockedRow};
use super::{WriterOptions, sqlite_sync};
use crate::entities::idempotency_key;
use crate::error::{Error, Result};
use crate::ledger::types::EndUserId;

/// Why a batch did not commit.
pub(super) enum Failure {
    /// Nothing was written: every write may safely run again on its own.
    BeforeCommit(Error),
    /// The commit itself failed, or the connection broke while it may have happened: nothing is
    /// retried; the callers are told, and their idempotency keys make their own retries safe.
    AtCommit(Error),
}

fn before(error: impl Into<Error>) -> Failure {
    Failure::BeforeCommit(error.into())
}

/// A lane's open connection.
enum Raw {
    /// Used only through `Mutex::get_mut` (never locked): the mutex only makes the connection
    /// shareable by reference, as the lanes' futures need to be.
    Sqlite(Mutex<rusqlite::Connection>),
    Postgres(PostgresLane),
}

/// A lane's connection, opened on first use and again after any failure.
pub(super) struct LaneConnection {
    options: WriterOptions,
    held: Option<Raw>,
}

impl LaneConnection {
    pub fn new(options: WriterOptions) -> Self {
        Self {
            options,
            held: None,
        }
    }

    /// Begins a batch on the held connection (opening one first if there is none). On SQLite
    /// the transaction begins here; on PostgreSQL with the lock (`BatchTransaction::lock_and_load`).
    pub async fn begin(&mut self) -> Result<BatchTransaction, DbErr> {
        let mut raw = match self.held.take() {
            Some(raw) => raw,
            None => self.open().await?,
        };
        if let Raw::Sqlite(conn) = &mut raw {
            // IMMEDIATE: the write lock from the start, so a batch that read never fails to
            // become a writer because another process wrote in between.
            sqlite_sync::execute(sqlite(conn), "BEGIN IMMEDIATE", &[])?;
        }
        Ok(BatchTransaction { raw })
    }

    /// Rolls back, and keeps the connection for the next batch if that succeeded.
    pub async fn rollback(&mut self, transaction: BatchTransaction) -> Result<(), DbErr> {
        let mut raw = transaction.raw;
        match &mut raw {
            Raw::Sqlite(conn) => sqlite_sync::execute(sqlite(conn), "ROLLBACK", &[]).map(drop)?,
            // Also where the batch failed before its `BEGIN` ran: PostgreSQL only warns then.
            Raw::Postgres(lane) => lane.rollback().await?,
        }
        self.held = Some(raw);
        Ok(())
    }

    /// Ends a batch that failed before its commit. SQLite rolls back and keeps the connection.
    /// PostgreSQL drops it, and the server rolls back: what failed may be the connection's own
    /// state (a prepared statement whose result a migration of another process changed fails
    /// every run until it is prepared again), and a new connection costs less than finding out.
    pub async fn abandon(&mut self, transaction: BatchTransaction) {
        if let Raw::Sqlite(_) = transaction.raw {
            let _ = self.rollback(transaction).await;
        }
    }

    /// Runs the batch's writes and commits; keeps the connection for the next batch unless the
    /// outcome is unknown. On `Failure::BeforeCommit` nothing of the batch was written.
    pub async fn write_and_commit(
        &mut self,
        mut transaction: BatchTransaction,
        writes: Vec<sql::Write>,
    ) -> Result<(), Failure> {
        let written = match &mut transaction.raw {
            Raw::Sqlite(conn) => sqlite_writes(sqlite(conn), writes),
            Raw::Postgres(lane) => postgres_writes(lane, writes).await,
        };
        match written {
            Ok(()) => {
                self.held = Some(transaction.raw);
                Ok(())
            }
            Err(Failure::BeforeCommit(error)) => {
                // Nothing written; the transaction may still be open (PostgreSQL ends it at the
                // commit it was sent with, when the writes failed there).
                self.abandon(transaction).await;
                Err(Failure::BeforeCommit(error))
            }
            // The connection goes with the transaction: its state is unknown.
            Err(at_commit) => Err(at_commit),
        }
    }

    async fn open(&self) -> Result<Raw, DbErr> {
        match &self.options {
            WriterOptions::Sqlite(options) => {
                sqlite_sync::open(options, &sqlite_sync::WriterSettings::default())
                    .map(|conn| Raw::Sqlite(Mutex::new(conn)))
            }
            WriterOptions::Postgres(options) => {
                PostgresLane::open(options).await.map(Raw::Postgres)
            }
        }
    }
}

/// SQLite: each write in turn, checked for its rows, then the commit.
fn sqlite_writes(conn: &mut rusqlite::Connection, writes: Vec<sql::Write>) -> Result<(), Failure> {
    for write in writes {
        let (statement, expected_rows) = write.into_parts();
        let values = statement.values.map(|values| values.0).unwrap_or_default();
        let rows = sqlite_sync::execute(conn, &statement.sql, &values).map_err(before)?;
        sql::check_rows(expected_rows, rows).map_err(before)?;
    }
    sqlite_sync::execute(conn, "COMMIT", &[])
        .map(drop)
        .map_err(|error| Failure::AtCommit(error.into()))
}

/// PostgreSQL: the writes as one statement sent with the commit (`postgres`), unless they pass
/// the limit of one statement's parameters; then each in turn, and the commit.
async fn postgres_writes(lane: &mut PostgresLane, writes: Vec<sql::Write>) -> Result<(), Failure> {
    let writes = match sql::merged_checked(writes) {
        Ok(merged) => return lane.write_and_commit(merged).await,
        Err(too_many_parameters) => too_many_parameters,
    };
    for write in writes {
        let (statement, expected_rows) = write.into_parts();
        let rows = lane.execute(statement).await.map_err(before)?;
        sql::check_rows(expected_rows, rows).map_err(before)?;
    }
    lane.commit()
        .await
        .map_err(|error| Failure::AtCommit(error.into()))
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
    raw: Raw,
}

/// What locking a batch's accounts read: their rows (see `sql::load_locked`) and the stored
/// idempotency keys among the batch's.
pub(super) struct LockedAndLoaded {
    pub rows: Vec<LockedRow>,
    pub keys: Vec<idempotency_key::Model>,
}

impl BatchTransaction {
    pub fn backend(&self) -> DbBackend {
        match self.raw {
            Raw::Sqlite(_) => DbBackend::Sqlite,
            Raw::Postgres(_) => DbBackend::Postgres,
        }
    }

    /// Locks the accounts of `users` (sorted, distinct) in that order, creating the missing
    /// ones, tells `locked`, then loads them and reads which of `keys` are stored.
    pub async fn lock_and_load(
        &mut self,
        users: &[EndUserId],
        keys: &[&str],
        now: DateTime<Utc>,
        locked: impl FnOnce(),
    ) -> Result<LockedAndLoaded> {
        match &mut self.raw {
            Raw::Sqlite(conn) => {
                let conn = sqlite(conn);
                for statement in sql::lock_statements(users, now) {
                    let values = statement.values.map(|values| values.0).unwrap_or_default();
                    // Only the new accounts count as changed rows; `sql::loaded` checks that
                    // every one is there.
                    sqlite_sync::execute(conn, &statement.sql, &values)?;
                }
                locked();
                let mut rows = Vec::new();
                for statement in sql::load_statements(users) {
                    rows.extend(sqlite_sync::load_locked(conn, &statement)?);
                }
                let mut stored = Vec::new();
                for statement in sql::key_statements(keys) {
                    stored.extend(sqlite_sync::stored_keys(conn, &statement)?);
                }
                Ok(LockedAndLoaded { rows, keys: stored })
            }
            Raw::Postgres(lane) => {
                let users: Vec<&str> = users.iter().map(EndUserId::as_str).collect();
                let read = lane.begin_lock_and_load(&users, keys, now, locked).await?;
                Ok(LockedAndLoaded {
                    rows: read.rows,
                    keys: read.keys,
                })
            }
        }
    }
}
