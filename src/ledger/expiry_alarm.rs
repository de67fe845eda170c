//! How writes wake the expiry scheduler: only when what they add falls due before the
//! scheduler's next planned pass.
//!
//! Waking it for every grant that expires made each write batch that added grants cost a whole
//! pass (six queries, two of them scans of the grants' expiry index): a bulk of `addCredits`
//! (the benchmark's seeding) woke it 75 times a second, and those passes took more of
//! PostgreSQL's time than the grants themselves. A pass plans its next one at most
//! `MAX_SLEEP` ahead, so a grant expiring later than that never needs to wake it.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// While a pass runs: every new deadline wakes the scheduler again once the pass ends, since
/// the pass may have read the database before that deadline was committed.
const PASS_RUNNING: i64 = i64::MAX;

pub struct ExpiryAlarm {
    notify: Notify,
    /// When the scheduler next looks, in the ledger clock's Unix milliseconds; `PASS_RUNNING`
    /// while it is looking.
    next_pass_ms: AtomicI64,
}

impl Default for ExpiryAlarm {
    fn default() -> Self {
        Self {
            notify: Notify::new(),
            next_pass_ms: AtomicI64::new(PASS_RUNNING),
        }
    }
}

impl ExpiryAlarm {
    /// A committed write added something that falls due at `due` (a grant's expiry, a hold's
    /// deadline, a period's end): wakes the scheduler if it would otherwise look too late.
    pub fn falls_due(&self, due: DateTime<Utc>) {
        if due.timestamp_millis() < self.next_pass_ms.load(Ordering::SeqCst) {
            self.notify.notify_one();
        }
    }

    /// The scheduler starts a pass: deadlines committed from now on wake it again after.
    pub fn pass_started(&self) {
        self.next_pass_ms.store(PASS_RUNNING, Ordering::SeqCst);
    }

    /// The scheduler's pass ended and it next looks at `next_pass` (or earlier, if woken).
    pub fn pass_planned(&self, next_pass: DateTime<Utc>) {
        // Only from `PASS_RUNNING`: a wake-up that came during the pass is already a stored
        // permit in `notify`, and the plan is then cut short by it anyway.
        self.next_pass_ms
            .store(next_pass.timestamp_millis(), Ordering::SeqCst);
    }

    /// Resolves when a write calls for an earlier pass (at once, if one did since the last).
    pub async fn woken(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    async fn was_woken(alarm: &ExpiryAlarm) -> bool {
        tokio::time::timeout(Duration::from_millis(20), alarm.woken())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_a_deadline_before_the_planned_pass_wakes_the_scheduler() {
        let alarm = ExpiryAlarm::default();
        alarm.pass_planned(at(1_000));
        alarm.falls_due(at(1_000));
        alarm.falls_due(at(5_000));
        assert!(!was_woken(&alarm).await);
        alarm.falls_due(at(999));
        assert!(was_woken(&alarm).await);
    }

    #[tokio::test]
    async fn any_deadline_during_a_pass_wakes_the_scheduler_after_it() {
        let alarm = ExpiryAlarm::default();
        alarm.pass_planned(at(1_000));
        alarm.pass_started();
        // Committed while the pass reads: the pass may have missed it.
        alarm.falls_due(at(1_000_000));
        alarm.pass_planned(at(1_000));
        assert!(was_woken(&alarm).await);
        assert!(!was_woken(&alarm).await, "one wake-up, not two");
    }
}
