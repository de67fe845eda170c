//! Balance-change notifications: who must be told that an end user's balance changed.
//!
//! Writers announce a change right after their commit (never for a rollback). On PostgreSQL
//! the announcer task sends it as a `NOTIFY` on [`CHANNEL`], which PostgreSQL delivers to every
//! process listening, this one included (`listener`). On SQLite (one process) the announcement
//! is made in-process at once.
//!
//! The `NOTIFY` is sent outside the write's transaction, from a task of its own that gathers
//! what every write committed meanwhile into as few notifications as fit: a transaction that has
//! sent `NOTIFY` takes a database-wide lock at its commit and signals every listening backend,
//! and sent from inside each write batch that cost the hot-user workload about a quarter of its
//! rate. The price: a process killed between a commit and the notification leaves the other
//! processes' subscribers of that end user one change behind, until the next change or until
//! they subscribe again (which answers the balance at once).
//!
//! Each process keeps one `watch` channel per end user that has local subscribers. A change
//! bumps the channel's counter, which never blocks and never queues: a subscriber that is slow
//! sees one "changed" however many changes happened, then reads the balance as committed now.
//! So a stalled subscriber delays no writer and no other subscriber, may skip intermediate
//! balances, and always ends on the latest one. The local subscribers of one end user share
//! each read (`BalanceWatch::latest`): one query per change per process, not per subscriber.

mod announcer;
mod listener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use sea_orm::DbBackend;
use tokio::sync::{mpsc, watch};

use crate::error::Result;
use crate::ledger::notifier::Notifier;
use crate::ledger::{Balance, EndUserId};

/// The PostgreSQL channel. Payloads carry end user ids (one per line), never balances.
pub const CHANNEL: &str = "tally_balance";
/// PostgreSQL refuses payloads of 8,000 bytes or more.
const MAX_PAYLOAD_BYTES: usize = 7_900;

/// The end user ids of one commit as few notification payloads as fit, one id per line: an id
/// never holds a control character, so a newline separates without escaping. (The longest id,
/// 255 four-byte characters, is 1,020 bytes: every id fits a payload.)
pub fn notification_payloads(end_user_ids: &[EndUserId]) -> Vec<String> {
    let mut payloads: Vec<String> = Vec::new();
    for id in end_user_ids {
        let id = id.as_str();
        match payloads.last_mut() {
            Some(payload) if payload.len() + 1 + id.len() <= MAX_PAYLOAD_BYTES => {
                payload.push('\n');
                payload.push_str(id);
            }
            _ => payloads.push(id.to_owned()),
        }
    }
    payloads
}

/// The end user ids a payload names; `None` if any line is not one.
pub fn parse_payload(payload: &str) -> Option<Vec<EndUserId>> {
    payload
        .split('\n')
        .map(|id| EndUserId::parse("payload", id).ok())
        .collect()
}

#[derive(Clone)]
pub struct BalanceEvents {
    inner: Arc<Inner>,
}

struct Inner {
    backend: DbBackend,
    watchers: Mutex<HashMap<EndUserId, Watched>>,
    /// PostgreSQL: the announcer's queue, once `start` has started it.
    announcements: OnceLock<mpsc::UnboundedSender<EndUserId>>,
}

/// The last balance read for an end user's local subscribers, tagged with the change counter
/// it includes; the mutex also serializes the reads.
type SharedRead = Arc<tokio::sync::Mutex<Option<(u64, Arc<Balance>)>>>;

/// One end user's local subscribers: the change counter, and the last balance read for them.
struct Watched {
    changes: watch::Sender<u64>,
    last_read: SharedRead,
}

impl BalanceEvents {
    pub fn new(backend: DbBackend) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                watchers: Mutex::new(HashMap::new()),
                announcements: OnceLock::new(),
            }),
        }
    }

    /// Right after a commit: on PostgreSQL, queue the end users for the announcer (which sends
    /// the `NOTIFY` every process hears); on SQLite, tell this process's subscribers.
    pub fn announce_committed(&self, end_user_ids: &[EndUserId]) {
        match self.inner.announcements.get() {
            Some(queue) => {
                for id in end_user_ids {
                    if queue.send(id.clone()).is_err() {
                        // The announcer is gone (the runtime is shutting down): local only.
                        self.wake(id);
                    }
                }
            }
            None => end_user_ids.iter().for_each(|id| self.wake(id)),
        }
    }

    /// Tells this process's subscribers of one end user that their balance changed.
    pub fn wake(&self, end_user_id: &EndUserId) {
        let watchers = self.inner.watchers.lock().expect("watchers lock");
        if let Some(watched) = watchers.get(end_user_id) {
            watched.changes.send_modify(|version| *version += 1);
        }
    }

    /// Tells every local subscriber to re-read: after notifications may have been lost.
    pub fn wake_all(&self) {
        let watchers = self.inner.watchers.lock().expect("watchers lock");
        for watched in watchers.values() {
            watched.changes.send_modify(|version| *version += 1);
        }
    }

    /// Number of end users with local subscribers (for metrics and tests).
    pub fn watched_end_users(&self) -> usize {
        self.inner.watchers.lock().expect("watchers lock").len()
    }

    pub fn subscribe(&self, end_user_id: EndUserId) -> BalanceWatch {
        let mut watchers = self.inner.watchers.lock().expect("watchers lock");
        let watched = watchers
            .entry(end_user_id.clone())
            .or_insert_with(|| Watched {
                changes: watch::channel(0).0,
                last_read: Arc::new(tokio::sync::Mutex::new(None)),
            });
        BalanceWatch {
            receiver: watched.changes.subscribe(),
            last_read: watched.last_read.clone(),
            end_user_id,
            inner: self.inner.clone(),
        }
    }

    /// On PostgreSQL, starts the announcer (committed changes out as `NOTIFY`) and the
    /// listener (notifications in, as local wake-ups), and waits until the listener listens: a
    /// process must not accept subscribers it cannot yet keep up to date.
    pub async fn start(&self, db: &sea_orm::DatabaseConnection) -> anyhow::Result<()> {
        if self.inner.backend != DbBackend::Postgres {
            return Ok(());
        }
        let pool = db.get_postgres_connection_pool().clone();
        let (queue, queued) = mpsc::unbounded_channel();
        if self.inner.announcements.set(queue).is_err() {
            anyhow::bail!("the balance announcer was started twice");
        }
        tokio::spawn(announcer::announce(self.clone(), pool.clone(), queued));
        let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(listener::listen(self.clone(), pool, listening_tx));
        tokio::time::timeout(std::time::Duration::from_secs(30), listening_rx)
            .await
            .map_err(|_| anyhow::anyhow!("PostgreSQL LISTEN did not start within 30 s"))?
            .map_err(|_| anyhow::anyhow!("the balance listener stopped before listening"))
    }
}

impl Notifier for BalanceEvents {
    fn announce_committed(&self, end_user_ids: &[EndUserId]) {
        BalanceEvents::announce_committed(self, end_user_ids);
    }
}

/// One subscriber's view of an end user's changes.
pub struct BalanceWatch {
    receiver: watch::Receiver<u64>,
    last_read: SharedRead,
    end_user_id: EndUserId,
    inner: Arc<Inner>,
}

impl BalanceWatch {
    /// Waits until something changed since the last `latest` (or since subscribing).
    /// Returns false when the event source is gone.
    pub async fn changed(&mut self) -> bool {
        self.receiver.changed().await.is_ok()
    }

    /// The balance as of every change announced so far. `read` runs at most once per change
    /// for all local subscribers of the end user; the others take its result. With `fresh`,
    /// `read` runs regardless (a new subscriber's first snapshot).
    pub async fn latest<F, Fut>(&mut self, fresh: bool, read: F) -> Result<Arc<Balance>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Balance>>,
    {
        let wanted = *self.receiver.borrow_and_update();
        // Reads are serialized per end user, so a later read never loses to an earlier one.
        let mut last_read = self.last_read.lock().await;
        if !fresh
            && let Some((version, balance)) = last_read.as_ref()
            && *version >= wanted
        {
            return Ok(balance.clone());
        }
        // Tag the read with the newest change announced before it starts: it includes them all.
        let version = *self.receiver.borrow();
        let balance = Arc::new(read().await?);
        *last_read = Some((version, balance.clone()));
        Ok(balance)
    }
}

impl Drop for BalanceWatch {
    fn drop(&mut self) {
        let mut watchers = self.inner.watchers.lock().expect("watchers lock");
        // This receiver still counts while it is being dropped.
        if watchers
            .get(&self.end_user_id)
            .is_some_and(|watched| watched.changes.receiver_count() <= 1)
        {
            watchers.remove(&self.end_user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn payloads_carry_every_id_and_stay_under_the_limit() {
        let ids: Vec<EndUserId> = (0..500)
            .map(|_| EndUserId::from_stored(Uuid::new_v4().to_string()))
            .collect();
        let payloads = notification_payloads(&ids);
        assert!(payloads.len() > 1, "500 ids do not fit one payload");
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        let parsed: Vec<EndUserId> = payloads
            .iter()
            .flat_map(|p| parse_payload(p).expect("well-formed"))
            .collect();
        assert_eq!(parsed, ids);
    }

    #[test]
    fn one_id_is_its_own_payload_and_odd_payloads_are_refused() {
        let id = EndUserId::from_stored(Uuid::new_v4().to_string());
        assert_eq!(
            notification_payloads(std::slice::from_ref(&id)),
            vec![id.to_string()]
        );
        assert!(notification_payloads(&[]).is_empty());
        assert_eq!(
            parse_payload("auth0|64f,1"),
            Some(vec![EndUserId::from_stored("auth0|64f,1".into())])
        );
        assert_eq!(parse_payload(""), None);
        assert_eq!(parse_payload(&format!("{id}\n x")), None);
    }

    #[test]
    fn the_longest_ids_fit_a_payload_each() {
        let longest = |c: char| EndUserId::from_stored(c.to_string().repeat(255));
        let ids = vec![longest('😀'), longest('é'), longest('"')];
        let payloads = notification_payloads(&ids);
        assert!(payloads.iter().all(|p| p.len() <= MAX_PAYLOAD_BYTES));
        let parsed: Vec<EndUserId> = payloads
            .iter()
            .flat_map(|p| parse_payload(p).unwrap())
            .collect();
        assert_eq!(parsed, ids);
    }
}
