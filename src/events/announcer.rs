//! PostgreSQL: sends what writers committed as `NOTIFY`, outside their transactions (see the
//! module above for why). Whatever queued while one notification was being sent, or during the
//! pause after it, goes out together in the next, as few payloads as fit.
//!
//! Why the pause (`MIN_ROUND_INTERVAL`): a transaction that notifies gets a transaction id, so
//! each `NOTIFY` is a commit record and a write-ahead-log flush of its own, queued behind and
//! ahead of the write batches' own flushes. Sent after every batch, they took 6–7% of the
//! debit rate of 32 clients spread over 10,000 end users (PostgreSQL's CPU per debit 10%
//! higher, measured against a `pg_notify` that does nothing). A change after a quiet spell still
//! goes out at once.

use std::time::Duration;

use sea_orm::sqlx::PgPool;
use tokio::sync::mpsc;

use super::{BalanceEvents, CHANNEL, notification_payloads};
use crate::ledger::EndUserId;

/// End users gathered into one round of notifications at most.
const MAX_PER_ROUND: usize = 4_096;
/// Tries per payload before giving up on it (the database is unreachable).
const ATTEMPTS: u32 = 3;
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// The least time from one round's start to the next's: at most 100 rounds a second, each
/// delayed by at most this, well within a subscriber's own pacing (50 ms by default).
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(10);

pub async fn announce(
    events: BalanceEvents,
    pool: PgPool,
    mut queued: mpsc::UnboundedReceiver<EndUserId>,
) {
    let mut round = Vec::with_capacity(MAX_PER_ROUND);
    while queued.recv_many(&mut round, MAX_PER_ROUND).await > 0 {
        let next_round = tokio::time::Instant::now() + MIN_ROUND_INTERVAL;
        round.sort_unstable();
        round.dedup();
        for payload in notification_payloads(&round) {
            if !send(&pool, &payload).await {
                // Other processes miss this change until the next one; this one's own
                // subscribers are told directly.
                tracing::warn!("balance notification not sent; local subscribers told directly");
                if let Some(ids) = super::parse_payload(&payload) {
                    ids.iter().for_each(|id| events.wake(id));
                }
            }
        }
        round.clear();
        tokio::time::sleep_until(next_round).await;
    }
}

async fn send(pool: &PgPool, payload: &str) -> bool {
    for attempt in 1..=ATTEMPTS {
        match sea_orm::sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(pool)
            .await
        {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(%error, attempt, "sending a balance notification failed");
                if attempt < ATTEMPTS {
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
    false
}
