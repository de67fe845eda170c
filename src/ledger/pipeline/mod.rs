//! The write pipeline: concurrent writes coalesced into batched transactions (group commit).
//!
//! A write is queued on one of a few *lanes*, chosen by its end user, so one end user's writes
//! always meet in the same lane and are decided in arrival order. A lane takes everything
//! waiting (up to `max_batch`; it never waits on purpose when the queue is short) and applies
//! it in one transaction (`batch`): every account locked by one statement in a fixed order, their
//! grants loaded by one query, every request decided in memory (`decide`), the results written
//! by one statement per table (`sql`), one commit, then each caller gets its own answer.
//!
//! On PostgreSQL a lane has up to `batches_in_flight` batches under way, each on a connection of
//! its own: it takes its next batch as soon as the last one holds its locks, so the database
//! works on one while the other waits for a round trip or its commit. Per end user order still
//! holds: a later batch that shares an end user with an earlier one waits for that account's
//! lock, which the earlier batch already holds and keeps until its commit, so it decides
//! against what the earlier one committed. Account locks cannot deadlock: every batch takes them
//! in one statement, in end-user order. The one other wait, on an idempotency key another batch
//! is inserting for a different end user, is as rare as a client reusing a key across end users;
//! PostgreSQL breaks such a deadlock, and the failed batch's writes are retried on their own.
//!
//! Accounts with something to settle that only the per-request path knows (open holds, a cycle
//! whose period ended) are *deferred*: the caller runs its write the per-request way, which
//! settles first. So is every write of a batch that failed before committing (a lost race on an
//! idempotency key with another process, a deadlock, a dropped connection): each is retried on
//! its own, so one bad request never fails the innocent ones beside it.

mod batch;
mod connection;
mod decide;
mod postgres;
mod sql;
mod sqlite_sync;
mod wal_checkpoint;

use std::sync::Arc;

use sea_orm::DbBackend;
use tokio::sync::{mpsc, oneshot};

pub(in crate::ledger) use decide::{Decision, Write};

use connection::LaneConnection;
use wal_checkpoint::WalCheckpoint;

use super::clock::Clock;
use super::direct::DirectOptions;
use super::expiry_alarm::ExpiryAlarm;
use super::notifier::Notifier;
use super::outbound::Outbound;
use super::types::EndUserId;
use crate::db::pipelined_connect::PipelinedOptions;
use crate::error::{Error, Result};

/// How the lanes open their connections: on SQLite sqlx's options for the database file (the lane
/// opens it with rusqlite, see `sqlite_sync`); on PostgreSQL tokio-postgres's (see `postgres`).
#[derive(Clone, Debug)]
pub enum WriterOptions {
    Sqlite(sea_orm::sqlx::sqlite::SqliteConnectOptions),
    Postgres(PipelinedOptions),
}

impl WriterOptions {
    pub fn backend(&self) -> DbBackend {
        match self {
            Self::Sqlite(_) => DbBackend::Sqlite,
            Self::Postgres(_) => DbBackend::Postgres,
        }
    }
}

/// How many lanes and how large a batch.
#[derive(Clone, Copy, Debug)]
pub struct PipelineSettings {
    /// Lanes per process; `None`: one on SQLite (one writer at a time anyway), and on
    /// PostgreSQL `default_postgres_lanes`.
    pub lanes: Option<usize>,
    /// Most writes one batch takes.
    pub max_batch: usize,
    /// PostgreSQL: batches one lane may have under way at once, each on a connection of its
    /// own (SQLite: always one).
    pub batches_in_flight: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            lanes: None,
            max_batch: DEFAULT_MAX_BATCH,
            batches_in_flight: DEFAULT_BATCHES_IN_FLIGHT,
        }
    }
}

pub const DEFAULT_MAX_BATCH: usize = 256;
pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 2;

/// Lanes on PostgreSQL unless set: half the cores this process may use, one to eight, each with
/// `DEFAULT_BATCHES_IN_FLIGHT` batches under way.
///
/// Enough batches under way keep the database busy while one waits for its round trips and its
/// commit; more than that split the same clients into smaller batches, each paying its round
/// trips and its commit for fewer writes. On a 2-core machine with PostgreSQL beside Tally, 32
/// clients spread over 10,000 end users, with the pipelined lanes (`postgres`, 6 s runs, rate ÷
/// the database floor measured in the same run): one lane with two batches in flight
/// 0.84–0.87×; with one 0.78×; one lane with three 0.78×; two lanes with two 0.76×.
pub fn default_postgres_lanes() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    (cores / 2).clamp(1, 8)
}
/// Writes that may wait in one lane before callers wait to enqueue.
const QUEUE_PER_LANE: usize = 4_096;

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Decision>>,
}

#[derive(Clone)]
pub struct WritePipeline {
    lanes: Arc<[mpsc::Sender<Job>]>,
}

/// What a lane needs to apply a batch.
#[derive(Clone)]
struct Lane {
    clock: Clock,
    events: Arc<dyn Notifier>,
    expiry_alarm: Arc<ExpiryAlarm>,
    outbound: Arc<Outbound>,
    /// SQLite: told of each commit, to copy the log back beside the lane.
    wal_checkpoint: Option<WalCheckpoint>,
}

impl WritePipeline {
    /// Starts the lanes (on PostgreSQL tasks on the current runtime; on SQLite each on a thread
    /// of its own, see `sqlite_sync`); each opens a connection of its own with `writer` and
    /// keeps it (see `connection`). On SQLite also the task that checkpoints the write-ahead log
    /// (see `wal_checkpoint`).
    pub fn start(
        writer: WriterOptions,
        clock: Clock,
        events: Arc<dyn Notifier>,
        expiry_alarm: Arc<ExpiryAlarm>,
        outbound: Arc<Outbound>,
        settings: PipelineSettings,
    ) -> Self {
        let lanes = settings
            .lanes
            .unwrap_or(match writer.backend() {
                DbBackend::Postgres => default_postgres_lanes(),
                _ => 1,
            })
            .max(1);
        let max_batch = settings.max_batch.max(1);
        let in_flight = match writer.backend() {
            // One writer at a time: a second batch would only wait for the first's lock.
            DbBackend::Sqlite => 1,
            _ => settings.batches_in_flight.max(1),
        };
        let wal_checkpoint = match &writer {
            WriterOptions::Sqlite(options) => {
                Some(WalCheckpoint::start(DirectOptions::Sqlite(options.clone())))
            }
            WriterOptions::Postgres(_) => None,
        };
        let lane = Lane {
            clock,
            events,
            expiry_alarm,
            outbound,
            wal_checkpoint,
        };
        let senders: Vec<mpsc::Sender<Job>> = (0..lanes)
            .map(|index| {
                let (sender, receiver) = mpsc::channel(QUEUE_PER_LANE);
                let running =
                    run_lane(lane.clone(), writer.clone(), receiver, max_batch, in_flight);
                match writer.backend() {
                    // The SQLite lane blocks its thread while SQLite works: a thread of its own.
                    DbBackend::Sqlite => spawn_on_own_thread(index, running),
                    _ => {
                        tokio::spawn(running);
                    }
                }
                sender
            })
            .collect();
        Self {
            lanes: senders.into(),
        }
    }

    /// Queues a write and waits for its answer.
    pub(in crate::ledger) async fn submit(&self, write: Write) -> Result<Decision> {
        let lane = lane_of(write.end_user_id(), self.lanes.len());
        let (reply, answer) = oneshot::channel();
        // Counted from just before it joins the lane's queue (nothing awaits in between while
        // the queue has room) until it is answered: operators see writes piling up behind a
        // slow database, and a test sees that a write has reached the queue.
        let _pending = crate::observability::metrics::GaugeGuard::new("tally_writes_pending");
        self.lanes[lane]
            .send(Job { write, reply })
            .await
            .map_err(|_| Error::Internal("the write pipeline has stopped".into()))?;
        answer.await.map_err(|_| {
            // The batch panicked: whether it committed is unknown, so it is not retried here.
            Error::Internal("a write batch failed; retry with the same idempotency key".into())
        })?
    }
}

/// Runs a lane on a thread of its own, with a runtime of its own for its waits (its queue).
/// It ends with the lane: when every sender of its queue is gone.
fn spawn_on_own_thread(index: usize, lane: impl Future<Output = ()> + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name(format!("tally-write-lane-{index}"))
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(lane),
                Err(error) => tracing::error!(%error, "the write lane's runtime did not start"),
            }
        });
    if let Err(error) = spawned {
        // Its queue's receiver is gone with it: writes are refused, not left waiting.
        tracing::error!(%error, "the write lane's thread did not start");
    }
}

/// Runs a lane: takes what is queued, applies it as one batch on a free connection, and takes
/// the next batch as soon as that one holds its locks (see the module's head), with at most
/// `in_flight` batches (and connections) at once.
async fn run_lane(
    lane: Lane,
    options: WriterOptions,
    mut receiver: mpsc::Receiver<Job>,
    max_batch: usize,
    in_flight: usize,
) {
    assert!(in_flight > 0, "a lane needs a connection");
    // Connections go round: a batch takes a free one and gives it back when it has answered.
    let (freed, mut free) = mpsc::channel(in_flight);
    for _ in 0..in_flight {
        let _ = freed.try_send(LaneConnection::new(options.clone()));
    }
    let mut jobs = Vec::with_capacity(max_batch);
    while let Some(mut connection) = free.recv().await {
        if receiver.recv_many(&mut jobs, max_batch).await == 0 {
            break;
        }
        let batch = std::mem::take(&mut jobs);
        let (locked, holds_its_locks) = oneshot::channel();
        let lane = lane.clone();
        let freed = freed.clone();
        tokio::spawn(async move {
            // A panic fails this batch's callers (their answers are dropped), not the lane; the
            // connection comes back without its transaction (see `connection`).
            let applied = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                lane.apply(&mut connection, batch, locked),
            ));
            if applied.await.is_err() {
                tracing::error!("a write batch panicked");
            }
            let _ = freed.send(connection).await;
        });
        // Told, or dropped with a batch that ended early.
        let _ = holds_its_locks.await;
    }
}

/// The lane that serves an end user: every write of one end user goes through one lane, so
/// they keep their arrival order. (`DefaultHasher::new` has fixed keys: stable in a process.)
fn lane_of(end_user_id: &EndUserId, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    end_user_id.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}
