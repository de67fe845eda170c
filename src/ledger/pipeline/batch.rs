//! Applying one batch: lock, load, decide in memory, write set-based, commit once, answer.

use std::collections::{HashMap, HashSet};

use tokio::sync::oneshot;

use super::connection::{BatchTransaction, Failure, LaneConnection};
use super::decide::Decision;
use super::decide::{Batch, Changes, LoadedAccount};
use super::{Job, Lane, sql};
use crate::error::{Error, Result};
use crate::ledger::clock::Clock;
use crate::ledger::grant::Grant;
use crate::ledger::outbound::{self, StoredAlerts};
use crate::ledger::types::EndUserId;

impl Lane {
    /// Applies `jobs` and answers each. `locked` is told (or dropped) once the batch holds every
    /// lock it takes, or has failed: from then on the lane may start its next batch.
    pub(super) async fn apply(
        &self,
        connection: &mut LaneConnection,
        jobs: Vec<Job>,
        locked: oneshot::Sender<()>,
    ) {
        match self.try_apply(connection, &jobs, locked).await {
            Ok(replies) => {
                for (job, reply) in jobs.into_iter().zip(replies) {
                    let _ = job.reply.send(Ok(reply));
                }
            }
            Err(Failure::BeforeCommit(error)) => {
                tracing::warn!(
                    writes = jobs.len(),
                    error = error.detail(),
                    "write batch failed before commit; each write is retried on its own"
                );
                for job in jobs {
                    let _ = job.reply.send(Ok(Decision::Deferred));
                }
            }
            Err(Failure::AtCommit(error)) => {
                tracing::error!(
                    writes = jobs.len(),
                    error = error.detail(),
                    "write batch commit failed"
                );
                for job in jobs {
                    let _ = job.reply.send(Err(Error::Internal(format!(
                        "committing a write batch: {}",
                        error.detail()
                    ))));
                }
            }
        }
    }

    async fn try_apply(
        &self,
        connection: &mut LaneConnection,
        jobs: &[Job],
        locked: oneshot::Sender<()>,
    ) -> Result<Vec<Decision>, Failure> {
        let mut txn = connection
            .begin()
            .await
            .map_err(|error| Failure::BeforeCommit(error.into()))?;
        let (replies, changes, alerts) = match decide(&mut txn, jobs, &self.clock, locked).await {
            Ok(decided) => decided,
            Err(error) => {
                connection.abandon(txn).await;
                return Err(Failure::BeforeCommit(error));
            }
        };
        if changes.is_empty() {
            // Refusals and replays only: the new accounts the lock created go with the rollback.
            connection
                .rollback(txn)
                .await
                .map_err(|error| Failure::BeforeCommit(error.into()))?;
            return Ok(replies);
        }
        let (writes, events) = self.plan_writes(txn.backend(), &changes, &alerts);
        connection.write_and_commit(txn, writes).await?;
        if let Some(wal_checkpoint) = &self.wal_checkpoint {
            wal_checkpoint.committed();
        }
        crate::ledger::metrics::batch_committed(jobs.len());
        crate::ledger::metrics::entries_committed(
            changes.entries.iter().map(|e| (e.kind, e.amount)),
        );
        let users: Vec<EndUserId> = changes
            .last_seqs
            .iter()
            .map(|(user, _)| user.clone())
            .collect();
        self.events.announce_committed(&users);
        if let Some(soonest) = changes.new_grants.iter().filter_map(|g| g.expires_at).min() {
            self.expiry_alarm.falls_due(soonest);
        }
        if events > 0 {
            self.outbound.committed.notify_one();
        }
        Ok(replies)
    }

    /// The batch's writes with their outbound events (see `sql::batch_writes`), and how many
    /// events.
    fn plan_writes(
        &self,
        backend: sea_orm::DbBackend,
        changes: &Changes,
        alerts: &HashMap<String, StoredAlerts>,
    ) -> (Vec<sql::Write>, usize) {
        let now = self.clock.now();
        let events = outbound::plan_batch(
            &changes.entries,
            &changes.new_grants,
            alerts,
            &self.outbound,
            now,
        );
        let writes = sql::batch_writes(backend, changes, &events, now);
        (writes, events.events.len())
    }
}

/// Locks and loads the batch's accounts and decides every write in arrival order; also gives
/// the accounts' alert rows, for the events.
async fn decide(
    txn: &mut BatchTransaction,
    jobs: &[Job],
    clock: &Clock,
    locked: oneshot::Sender<()>,
) -> Result<(Vec<Decision>, Changes, HashMap<String, StoredAlerts>)> {
    let mut users: Vec<EndUserId> = jobs
        .iter()
        .map(|job| job.write.end_user_id().clone())
        .collect();
    users.sort_unstable();
    users.dedup();
    // Read with the locks: a deferred account's writes run elsewhere, so its keys are read
    // for nothing, which costs less than a round trip of their own once the deferrals are known.
    let keys: Vec<&str> = jobs
        .iter()
        .filter_map(|job| job.write.idempotency_key().map(|key| key.as_str()))
        .collect();
    // Once every account of the batch is locked, a later batch of this lane may start: wherever
    // it shares an end user with this one, it waits for these locks (see `super`).
    let (sql::Loaded { accounts, alerts }, stored) =
        sql::lock_and_load(txn, &users, &keys, clock.now(), || {
            let _ = locked.send(());
        })
        .await?;
    // The batch's clock, read once every lock is held.
    let now = clock.now();
    let (simple, deferred): (Vec<LoadedAccount>, Vec<LoadedAccount>) = accounts
        .into_iter()
        .partition(|account| !needs_settling(&account.grants, now));
    let deferred: HashSet<&EndUserId> = deferred.iter().map(|a| &a.end_user_id).collect();

    let mut batch = Batch::new(simple, stored, now);
    let replies = jobs
        .iter()
        .map(|job| {
            if deferred.contains(job.write.end_user_id()) {
                Decision::Deferred
            } else {
                batch.decide(&job.write)
            }
        })
        .collect();
    Ok((replies, batch.finish(), alerts))
}

/// Whether an account has something due that only the per-request path settles: holds that
/// may have passed their deadline, or a cycle whose period may have ended (its grant expired).
fn needs_settling(grants: &[Grant], now: chrono::DateTime<chrono::Utc>) -> bool {
    grants
        .iter()
        .any(|g| g.held > 0 || (g.cycle_id.is_some() && g.is_expired(now)))
}
