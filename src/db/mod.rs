//! Opening the database and bringing its schema up to date.

pub mod pipelined_connect;
pub mod tcp_nodelay;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend, DbErr};

use crate::ledger::{DirectOptions, Readers, WriterOptions};

/// How long a SQLite writer waits for the single write lock before giving up. Writes hold it
/// for a millisecond or two, so only a pathological backlog reaches this.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per PostgreSQL connection.
const STATEMENT_CACHE_CAPACITY: usize = 2_048;

pub async fn connect(
    database_url: &str,
    max_connections: u32,
) -> Result<DatabaseConnection, DbErr> {
    Database::connect(options(database_url, max_connections)).await
}

/// SQLite page cache of the write pipeline's connection (negative: KiB, as SQLite counts).
pub const SQLITE_WRITER_CACHE_KIB: i64 = 65_536;

/// How the write pipeline opens the connections its lanes hold (`ledger::pipeline`): the
/// shared pool's own options. On SQLite the lane opens its connection itself, to that
/// database, with the same durability, a larger page cache and a later automatic checkpoint
/// (`ledger::pipeline::sqlite_sync::WriterSettings`); on PostgreSQL through tokio-postgres
/// (`pipelined_connect`). The error names a setting those connections cannot use.
pub fn writer_options(shared: &DatabaseConnection) -> Result<WriterOptions, String> {
    match pool_options(shared).0 {
        DirectOptions::Sqlite(options) => Ok(WriterOptions::Sqlite(options)),
        DirectOptions::Postgres(options) => {
            pipelined_connect::PipelinedOptions::from_pool(&options).map(WriterOptions::Postgres)
        }
    }
}

/// Connections for balance reads (`ledger::readers`): a quarter of the pool's size, at least
/// two and at most eight. A read holds one for one statement, so a few serve many clients, and
/// they come on top of the pool's.
pub fn readers(shared: &DatabaseConnection) -> Readers {
    let (options, pool_size) = pool_options(shared);
    Readers::new(options, (pool_size as usize / 4).clamp(2, 8))
}

/// The shared pool's connection options and size, for the connections Tally holds itself.
fn pool_options(shared: &DatabaseConnection) -> (DirectOptions, u32) {
    match shared.get_database_backend() {
        DbBackend::Postgres => {
            let pool = shared.get_postgres_connection_pool();
            (
                DirectOptions::Postgres((*pool.connect_options()).clone()),
                pool.options().get_max_connections(),
            )
        }
        _ => {
            let pool = shared.get_sqlite_connection_pool();
            (
                DirectOptions::Sqlite((*pool.connect_options()).clone()),
                pool.options().get_max_connections(),
            )
        }
    }
}

fn options(database_url: &str, max_connections: u32) -> ConnectOptions {
    // Parsed only if it is PostgreSQL's: sqlx warns of every parameter it does not know.
    let postgres_port = (DbBackend::Postgres.is_prefix_of(database_url))
        .then(|| database_url.parse::<sea_orm::sqlx::postgres::PgConnectOptions>())
        .and_then(Result::ok)
        .map(|options| options.get_port());
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false)
        // sqlx pings a connection (a round trip) before lending it out, then again when it comes
        // back: the first ping doubled the round trips of a balance read. Only a connection that
        // sat idle long enough to have been cut is tested first.
        .test_before_acquire_if_idle_for(Duration::from_secs(30))
        .map_sqlx_postgres_opts(|postgres| {
            // Statements with lists (an entry page's allocations, the per-request path's
            // multi-row writes) differ by their length, and each text is prepared once per
            // connection: keep enough that the common lengths stay prepared (sqlx keeps 100 by
            // default). The write lanes keep their own (`ledger::pipeline::postgres`).
            postgres.statement_cache_capacity(STATEMENT_CACHE_CAPACITY)
        })
        // Sets the pool's one `after_connect`; sea-orm's own would set a schema search path,
        // which Tally never asks for.
        .map_sqlx_postgres_pool_opts(move |pool| {
            pool.after_connect(move |_, _| {
                Box::pin(async move {
                    if let Some(port) = postgres_port {
                        tcp_nodelay::set_on_connections_to(port);
                    }
                    Ok(())
                })
            })
        })
        .map_sqlx_sqlite_opts(|sqlite| {
            // WAL lets readers run beside the one writer; FULL sync makes an acknowledged
            // write survive power loss too, not only a crash of the process. (The write lane's
            // own connection sets the same: `ledger::pipeline::sqlite_sync::WriterSettings`.)
            sqlite
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(SQLITE_BUSY_TIMEOUT)
                .foreign_keys(true)
        });
    options
}

pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}
