//! PostgreSQL: sends what writers committed as `NOTIFY`, outside their transactions (see the
//! module above for why). Whatever queued while one notification was being sent goes out
//! together in the next, as few payloads as fit.

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

pub async fn announce(
    events: BalanceEvents,
    pool: PgPool,
    mut queued: mpsc::UnboundedReceiver<EndUserId>,
) {
    let mut round = Vec::with_capacity(MAX_PER_ROUND);
    while queued.recv_many(&mut round, MAX_PER_ROUND).await > 0 {
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
