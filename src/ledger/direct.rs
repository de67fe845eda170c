//! Connections Tally holds itself, outside the shared pool: each write lane's, and those that
//! serve balance reads (`readers`).
//!
//! Why not the pool: sqlx tests every connection on its way back to the pool (a round trip to
//! PostgreSQL, a hop to SQLite's worker thread, in a task of its own), so a read that borrows
//! one costs two requests to the database instead of one. A connection held here goes back as
//! it is when what ran on it succeeded, and is dropped after anything else (an error, a
//! cancelled request), so one in an unknown state is never used again.

use std::sync::Arc;

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::sqlx::{ConnectOptions, PgConnection, SqliteConnection};
use sea_orm::{DbBackend, DbErr, RuntimeErr};

/// How to open such a connection (`crate::db` builds them from the pool's own options).
#[derive(Clone, Debug)]
pub enum DirectOptions {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

impl DirectOptions {
    pub fn backend(&self) -> DbBackend {
        match self {
            Self::Sqlite(_) => DbBackend::Sqlite,
            Self::Postgres(_) => DbBackend::Postgres,
        }
    }

    pub async fn connect(&self) -> Result<DirectConnection, DbErr> {
        let connection = match self {
            Self::Sqlite(options) => options.connect().await.map(DirectConnection::Sqlite),
            Self::Postgres(options) => options.connect().await.map(DirectConnection::Postgres),
        };
        connection.map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error))))
    }
}

pub enum DirectConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}
