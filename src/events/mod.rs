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
//!
//! Each subscriber is also paced: it gets at most one balance per `min_interval`
//! (`TALLY_LIVE_MIN_INTERVAL_MS`). A change after a quiet spell goes out at once; changes that
//! follow sooner are held until the interval is up and go out as one balance, the latest. An end
//! user debited a few hundred times a second would otherwise cost every subscriber a GraphQL
//! execution and a WebSocket frame per write batch, and with a hundred subscribers that work
//! took a third of the debit rate away (`bench/subscriptions.sh`).

mod announcer;
mod listener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sea_orm::DbBackend;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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
    /// Least time between two balances sent to one subscriber (zero: no pacing).
    min_interval: Duration,
    /// Where the pacing grid starts (see `next_send`).
    epoch: Instant,
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
    pub fn new(backend: DbBackend, min_interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                backend,
                min_interval,
                epoch: Instant::now(),
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
            last_sent: None,
            scheduled: None,
            wanted: 0,
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

impl Inner {
    /// The first instant of the pacing grid (every `min_interval` from `epoch`) at least
    /// `min_interval` after `last_sent`. Every subscriber of the process paces on the same grid,
    /// so the subscribers of a busy end user wake together and share one read, instead of each
    /// reading at an instant of its own.
    fn next_send(&self, last_sent: Instant) -> Instant {
        let interval_ns = self.min_interval.as_nanos();
        if interval_ns == 0 {
            return last_sent;
        }
        let earliest_ns = (last_sent + self.min_interval)
            .saturating_duration_since(self.epoch)
            .as_nanos();
        let periods = earliest_ns.div_ceil(interval_ns);
        let offset_ns = u64::try_from(periods * interval_ns).unwrap_or(u64::MAX);
        self.epoch + Duration::from_nanos(offset_ns)
    }
}

/// One subscriber's view of an end user's changes.
pub struct BalanceWatch {
    receiver: watch::Receiver<u64>,
    last_read: SharedRead,
    /// When this subscriber was last given a balance (for pacing).
    last_sent: Option<Instant>,
    /// The grid instant `changed` waited for, if it waited.
    scheduled: Option<Instant>,
    /// The change counter as of the last `changed`: the read this subscriber is owed.
    wanted: u64,
    end_user_id: EndUserId,
    inner: Arc<Inner>,
}

impl BalanceWatch {
    /// Waits until something changed since the last `latest` (or since subscribing), and, if
    /// this subscriber was given a balance less than `min_interval` ago, until the next instant
    /// of the pacing grid. Returns false when the event source is gone.
    pub async fn changed(&mut self) -> bool {
        if self.receiver.changed().await.is_err() {
            return false;
        }
        if let Some(last_sent) = self.last_sent
            && Instant::now() < last_sent + self.inner.min_interval
        {
            // Changes meanwhile only bump the counter; `latest` reads them all at once.
            let send_at = self.inner.next_send(last_sent);
            tokio::time::sleep_until(send_at).await;
            // Counted from the grid's instant, not from when this task got to run after it,
            // or the next send would slip to the instant after.
            self.scheduled = Some(send_at);
        }
        // What this subscriber is owed: a balance that includes every change announced so far.
        self.wanted = *self.receiver.borrow_and_update();
        true
    }

    /// The balance as of every change announced before `changed` returned. `read` runs at most
    /// once for all local subscribers of the end user that are owed no newer change; the others
    /// take its result. With `fresh`, `read` runs regardless (a new subscriber's first snapshot).
    pub async fn latest<F, Fut>(&mut self, fresh: bool, read: F) -> Result<Arc<Balance>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Balance>>,
    {
        self.last_sent = Some(self.scheduled.take().unwrap_or_else(Instant::now));
        // Reads are serialized per end user, so a later read never loses to an earlier one.
        let mut last_read = self.last_read.lock().await;
        if !fresh
            && let Some((version, balance)) = last_read.as_ref()
            && *version >= self.wanted
        {
            // Changes announced after `wanted` stay unseen: `changed` returns for them.
            return Ok(balance.clone());
        }
        // Tag the read with the newest change announced before it starts: it includes them all.
        let version = *self.receiver.borrow_and_update();
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

    fn empty_balance(id: &EndUserId) -> Balance {
        Balance::from_grants(id.clone(), &[], chrono::Utc::now())
    }

    /// Events paced by `interval`, and one subscriber that has been sent its first snapshot.
    async fn subscribed(interval: Duration) -> (BalanceEvents, EndUserId, BalanceWatch) {
        let events = BalanceEvents::new(DbBackend::Sqlite, interval);
        let id = EndUserId::from_stored(Uuid::new_v4().to_string());
        let mut watch = events.subscribe(id.clone());
        watch
            .latest(true, || async { Ok(empty_balance(&id)) })
            .await
            .unwrap();
        (events, id, watch)
    }

    #[tokio::test]
    async fn changes_sooner_than_the_interval_wait_for_it_and_arrive_as_one_read() {
        let interval = Duration::from_millis(300);
        let (events, id, mut watch) = subscribed(interval).await;
        let sent = Instant::now();
        events.wake(&id);
        events.wake(&id);
        assert!(watch.changed().await);
        assert!(sent.elapsed() >= interval - Duration::from_millis(5));
        let mut reads = 0;
        watch
            .latest(false, || {
                reads += 1;
                async { Ok(empty_balance(&id)) }
            })
            .await
            .unwrap();
        assert_eq!(reads, 1);
        assert!(
            !watch.receiver.has_changed().unwrap(),
            "both changes were read"
        );
    }

    #[tokio::test]
    async fn a_change_after_a_quiet_spell_goes_out_at_once() {
        let interval = Duration::from_secs(60);
        let (events, id, mut watch) = subscribed(interval).await;
        // As if the last balance went out a full interval ago.
        watch.last_sent = Some(Instant::now() - interval);
        events.wake(&id);
        let changed = tokio::time::timeout(Duration::from_secs(10), watch.changed()).await;
        assert_eq!(
            changed.ok(),
            Some(true),
            "held although the interval was up"
        );
    }

    #[tokio::test]
    async fn a_read_serves_every_subscriber_it_covers_though_more_changes_came_since() {
        let events = BalanceEvents::new(DbBackend::Sqlite, Duration::ZERO);
        let id = EndUserId::from_stored(Uuid::new_v4().to_string());
        let mut first = events.subscribe(id.clone());
        let mut second = events.subscribe(id.clone());
        events.wake(&id);
        assert!(first.changed().await && second.changed().await);
        let mut reads = 0;
        let mut read = || {
            reads += 1;
            async { Ok(empty_balance(&id)) }
        };
        let one = first.latest(false, &mut read).await.unwrap();
        // A change after `second` was woken: what `first` read still covers what it is owed.
        events.wake(&id);
        let other = second.latest(false, &mut read).await.unwrap();
        assert!(Arc::ptr_eq(&one, &other));
        // …and the newer change is still news to it.
        assert!(second.changed().await);
        second.latest(false, &mut read).await.unwrap();
        assert_eq!(reads, 2);
    }

    #[test]
    fn the_pacing_grid_is_at_least_an_interval_on_and_shared() {
        let interval = Duration::from_millis(50);
        let events = BalanceEvents::new(DbBackend::Sqlite, interval);
        let epoch = events.inner.epoch;
        for sent_ms in [0, 1, 49, 50, 51, 130] {
            let sent = epoch + Duration::from_millis(sent_ms);
            let next = events.inner.next_send(sent);
            assert!(next >= sent + interval, "{sent_ms} ms");
            assert!(next < sent + 2 * interval, "{sent_ms} ms");
            let grid_ns = next.duration_since(epoch).as_nanos();
            assert_eq!(grid_ns % interval.as_nanos(), 0, "{sent_ms} ms");
        }
        // Two subscribers sent a few milliseconds apart wake at the same instant.
        assert_eq!(
            events.inner.next_send(epoch + Duration::from_millis(101)),
            events.inner.next_send(epoch + Duration::from_millis(104))
        );
    }

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
