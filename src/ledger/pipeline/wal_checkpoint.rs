//! SQLite only: the write-ahead log is copied back into the database file by a connection of
//! its own, beside the write lane, instead of by the lane itself.
//!
//! Why: SQLite checkpoints in whichever connection's commit took the log past
//! `wal_autocheckpoint` pages, and that is nearly always the lane's. Every few batches, one
//! batch then also read about 1,000 pages back from the log, wrote them into the database and
//! synced it before its callers were answered, while the machine's other core sat idle. With
//! 32 clients debiting 10,000 end users, checkpoints here raised the debit rate by 10–20% (the
//! commit went from 1.7–1.9 ms to 1.2 ms on average).
//!
//! A checkpoint runs at most every `CHECKPOINT_INTERVAL`, after a commit. It is `PASSIVE`: it
//! copies what no reader still needs and never waits for the writer or the readers, so it
//! holds up nothing. The lane's connection keeps a backstop (`LANE_AUTOCHECKPOINT_PAGES`,
//! set in `crate::db`), so the log cannot grow without bound if this task falls behind.

use std::time::Duration;

use sea_orm::sqlx::{self, SqliteConnection};
use tokio::sync::mpsc;

use crate::ledger::direct::{DirectConnection, DirectOptions};

/// The least time between two checkpoints. Each one syncs the database file; at the
/// benchmark's rate the log gathers about 1,000 pages in this time, as many as SQLite's own
/// default lets it gather. (20 ms measured slower: more syncs for the same pages.)
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Pages the lane's log may reach before the lane checkpoints it itself (40 MB at SQLite's
/// default 4 KiB pages): only if the checkpoint task has stopped or fallen far behind.
pub const LANE_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Tells the checkpoint task that a batch committed. Cheap: it never waits.
#[derive(Clone)]
pub(super) struct WalCheckpoint {
    committed: mpsc::Sender<()>,
}

impl WalCheckpoint {
    /// Starts the checkpoint task, which opens a connection of its own with `options`. It
    /// ends once every lane (each holding a clone) has stopped.
    pub fn start(options: DirectOptions) -> Self {
        // One pending signal is enough: the task checkpoints everything committed so far.
        let (committed, signals) = mpsc::channel(1);
        tokio::spawn(run(options, signals));
        Self { committed }
    }

    pub fn committed(&self) {
        // Full: a checkpoint is already due.
        let _ = self.committed.try_send(());
    }
}

async fn run(options: DirectOptions, mut signals: mpsc::Receiver<()>) {
    let mut held: Option<SqliteConnection> = None;
    while signals.recv().await.is_some() {
        match checkpoint(&options, held.take()).await {
            Ok(connection) => held = Some(connection),
            // The next commit tries again on a new connection; the lane's backstop meanwhile.
            Err(error) => {
                tracing::warn!(error = %error, "checkpointing the SQLite write-ahead log failed");
            }
        }
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
    }
}

/// One passive checkpoint on `held` (or a new connection); gives the connection back if it
/// worked, so one in an unknown state is never used again.
async fn checkpoint(
    options: &DirectOptions,
    held: Option<SqliteConnection>,
) -> Result<SqliteConnection, String> {
    let mut connection = match held {
        Some(connection) => connection,
        None => match options.connect().await.map_err(|error| error.to_string())? {
            DirectConnection::Sqlite(connection) => connection,
            DirectConnection::Postgres(_) => return Err("not a SQLite database".into()),
        },
    };
    // (busy, frames in the log, frames copied back): busy is 1 only for a blocking mode.
    let (_busy, log_frames, _copied_frames): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut connection)
            .await
            .map_err(|error| error.to_string())?;
    metrics::counter!("tally_sqlite_wal_checkpoints_total").increment(1);
    metrics::gauge!("tally_sqlite_wal_frames").set(log_frames.max(0) as f64);
    Ok(connection)
}
