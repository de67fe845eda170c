//! Expiry on time: when a grant's `expiresAt` passes, an `EXPIRY` entry records what remained,
//! and subscribers hear of it.
//!
//! Every process runs `run_expiry_scheduler`. It sleeps until the soonest expiry (at most
//! `MAX_SLEEP`, so grants added by other processes are not missed for long), and is woken early
//! when this process adds a grant that expires. Expiring takes the account lock and re-reads the
//! grants, so processes racing for one grant record its expiry once. At start the first pass
//! catches up with everything that expired while no process ran. Writes also record due
//! expiries before anything else, so the ledger never shows a debit drawing on expired credits.

use std::time::Duration;

use super::types::EndUserId;
use super::{Ledger, clock, store};
use crate::error::Result;

/// Longest sleep between passes.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// End users handled per query while catching up.
const BATCH: u64 = 200;
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

impl Ledger {
    /// Records the expiries due for one end user. Returns how many grants expired.
    pub async fn expire_due(&self, end_user_id: EndUserId) -> Result<usize> {
        let mut write = self.begin_write(end_user_id).await?;
        let expired = write.load(&self.events).await?;
        write.commit(&self.events).await?;
        Ok(expired)
    }

    /// One pass: expires everything due now. Returns when the next expiry is due, if any.
    pub async fn expire_all_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        loop {
            let now = clock::now();
            let users = store::end_users_with_due_expiries(&self.db, now, BATCH).await?;
            for user in &users {
                self.expire_due(*user).await?;
            }
            if (users.len() as u64) < BATCH {
                return store::next_expiry_after(&self.db, now).await;
            }
        }
    }
}

pub async fn run_expiry_scheduler(ledger: Ledger) {
    loop {
        let sleep_for = match ledger.expire_all_due().await {
            Ok(Some(next)) => (next - clock::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(error) => {
                tracing::warn!(error = error.message(), "expiry pass failed; retrying");
                RETRY_AFTER_ERROR
            }
        };
        tokio::select! {
            () = tokio::time::sleep(sleep_for) => {}
            () = ledger.expiry_alarm.notified() => {}
        }
    }
}
