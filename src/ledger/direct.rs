//! Connections Tally holds itself, outside the shared pool, through sqlx: those that serve
//! balance reads (`readers`), and SQLite's checkpoint task. (The write lanes drive their own:
//! rusqlite on SQLite, tokio-postgres on PostgreSQL, both with these settings.)
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

    /// Opens a connection. On PostgreSQL it then applies `POSTGRES_SESSION_SETTINGS`.
    pub async fn connect(&self) -> Result<DirectConnection, DbErr> {
        let connection = match self {
            Self::Sqlite(options) => options.connect().await.map(DirectConnection::Sqlite),
            Self::Postgres(options) => match options.connect().await {
                Ok(mut connection) => {
                    crate::db::tcp_nodelay::set_on_connections_to(options.get_port());
                    sea_orm::sqlx::raw_sql(POSTGRES_SESSION_SETTINGS)
                        .execute(&mut connection)
                        .await
                        .map(|_| DirectConnection::Postgres(connection))
                }
                Err(error) => Err(error),
            },
        };
        connection.map_err(|error| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(error))))
    }
}

/// What every PostgreSQL connection Tally holds itself (readers, write lanes) sets for its
/// session: sequential scans off, and one plan per prepared statement.
///
/// Each statement these connections send finds rows by an indexed key, is prepared once per
/// connection, and after five runs keeps a generic plan; on a new database that plan is made
/// while the tables are nearly empty, where a sequential scan looks cheapest, and it stays
/// until autovacuum next analyzes the table (a minute or more). During the benchmark's
/// seeding of 10,000 new end users, a batch's load planned that way took 1.5–15 ms instead
/// of 0.03 ms, holding the batch's locks meanwhile. With sequential scans off, the planner
/// takes the index wherever one applies. A `SET` after connecting rather than the startup
/// `options` parameter, which connection poolers such as PgBouncer refuse by default.
///
/// Left to choose, PostgreSQL planned a batch's load and its writes anew on every run (a
/// custom plan, about 0.1 ms each in a statement log); with one generic plan per statement
/// the spread debit rate rose about 5%. The plans are the same index lookups: the lane's lists
/// filter every table (`pipeline::postgres`), and sequential scans are off.
pub const POSTGRES_SESSION_SETTINGS: &str =
    "SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan";

pub enum DirectConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}
