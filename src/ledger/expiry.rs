//! Time-driven changes, on time: when a grant's `expiresAt` passes, an `EXPIRY` entry records
//! what remained; a hold past its deadline is released; a cycle at its period's end renews.
//! Subscribers hear of each.
//!
//! Every process runs `run_expiry_scheduler`. It sleeps until the soonest expiry (at most
//! `MAX_SLEEP`, so grants added by other processes are not missed for long), and is woken early
//! when this process adds something that falls due before that (`expiry_alarm`). Expiring takes the account lock and re-reads the
//! grants, so processes racing for one grant record its expiry once. At start the first pass
//! catches up with everything that expired while no process ran. Writes also record due
//! expiries before anything else, so the ledger never shows a debit drawing on expired credits.

use std::time::Duration;

use super::types::EndUserId;
use super::{Ledger, store};
use crate::error::Result;

/// Longest sleep between passes.
const MAX_SLEEP: Duration = Duration::from_secs(10);
/// End users handled per query while catching up.
const BATCH: u64 = 200;
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

impl Ledger {
    /// Settles what is due for one end user (expiries, hold deadlines, renewals). Returns how
    /// many entries that wrote.
    pub async fn settle_due(&self, end_user_id: EndUserId) -> Result<usize> {
        let mut write = self.begin_write(&end_user_id).await?;
        let written = write.load_settling_all().await?;
        write.commit(&self.events).await?;
        Ok(written)
    }

    /// One pass: settles everything due now. Returns when the next thing falls due, if known.
    pub async fn expire_all_due(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        loop {
            let now = self.clock.now();
            let mut users = store::end_users_with_due_expiries(&self.db, now, BATCH).await?;
            users.extend(store::end_users_with_due_holds(&self.db, now, BATCH).await?);
            users.extend(store::end_users_with_due_cycles(&self.db, now, BATCH).await?);
            users.sort_unstable();
            users.dedup();
            let mut settled = 0;
            for user in &users {
                // One end user's failure must not hold up everyone sorted after them.
                match self.settle_due(user.clone()).await {
                    Ok(_) => settled += 1,
                    Err(error) => tracing::warn!(
                        end_user = %user,
                        error = error.detail(),
                        "settling what fell due failed"
                    ),
                }
            }
            // A full batch of failures would be found again at once: wait instead of spinning.
            if (users.len() as u64) < BATCH || settled == 0 {
                let next = [
                    store::next_expiry_after(&self.db, now).await?,
                    store::next_hold_deadline_after(&self.db, now).await?,
                    store::next_period_end_after(&self.db, now).await?,
                ];
                return Ok(next.into_iter().flatten().min());
            }
        }
    }
}

pub async fn run_expiry_scheduler(ledger: Ledger) {
    // Taken before the first pass: a move of the clock during a pass cuts the next nap short.
    let mut clock_moved = ledger.clock.alarm();
    loop {
        ledger.expiry_alarm.pass_started();
        let sleep_for = match ledger.expire_all_due().await {
            Ok(Some(next)) => (next - ledger.clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP),
            Ok(None) => MAX_SLEEP,
            Err(error) => {
                tracing::warn!(error = error.detail(), "expiry pass failed; retrying");
                RETRY_AFTER_ERROR
            }
        };
        let next_pass = ledger.clock.now()
            + chrono::Duration::from_std(sleep_for).unwrap_or(chrono::Duration::zero());
        ledger.expiry_alarm.pass_planned(next_pass);
        tokio::select! {
            () = clock_moved.sleep(sleep_for) => {}
            () = ledger.expiry_alarm.woken() => {}
        }
    }
}
