//! The ledger's clock, one per running instance and handed to everything that stores or
//! compares instants (the ledger, its scheduler, tokens, webhooks, Stripe records).
//!
//! In production it is the system clock. Tests build an adjustable one and move it forward
//! (`advance`) instead of sleeping until a grant expires or a hold's deadline passes; the
//! scheduler is woken when it moves. It only ever moves forward, and keeps ticking with the
//! system clock between moves, so instants it hands out stay ordered as real ones are.
//!
//! Both databases keep microseconds, so every instant is cut to microseconds: what a write
//! returns equals what a later read returns.
//!
//! Timestamps that belong to a wire protocol (Stripe's signature tolerance, the
//! `webhook-timestamp` Tally signs) stay on the system clock: the other side checks them
//! against its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::watch;

#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. Otherwise how far it has been moved ahead of it.
    shift: Option<Arc<Shift>>,
}

struct Shift {
    ahead_us: AtomicI64,
    /// Bumped on every move; each `Alarm` remembers which moves it has seen.
    moved: watch::Sender<u64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    /// The system clock, which `advance` can move forward (for tests).
    pub fn adjustable() -> Self {
        Self {
            shift: Some(Arc::new(Shift {
                ahead_us: AtomicI64::new(0),
                moved: watch::Sender::new(0),
            })),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let now = Utc::now().trunc_subsecs(6);
        match &self.shift {
            None => now,
            Some(shift) => {
                now + chrono::Duration::microseconds(shift.ahead_us.load(Ordering::Acquire))
            }
        }
    }

    /// Moves an adjustable clock forward by `by` and wakes whoever sleeps on it.
    ///
    /// # Panics
    /// On the system clock, or with a negative `by`: time never goes back.
    pub fn advance(&self, by: chrono::Duration) {
        let shift = self
            .shift
            .as_ref()
            .expect("only an adjustable clock can be advanced");
        let by_us = by.num_microseconds().expect("an advance fits in i64 µs");
        assert!(by_us >= 0, "the clock never goes back");
        shift.ahead_us.fetch_add(by_us, Ordering::AcqRel);
        shift.moved.send_modify(|moves| *moves += 1);
    }

    /// What a time-driven loop sleeps on. Take it before reading `now` for a pass: a move made
    /// during the pass then cuts the following sleep short, so no move is missed.
    pub fn alarm(&self) -> Alarm {
        Alarm {
            moved: self.shift.as_ref().map(|shift| shift.moved.subscribe()),
        }
    }
}

pub struct Alarm {
    moved: Option<watch::Receiver<u64>>,
}

impl Alarm {
    /// Sleeps for `duration`, or less if the clock moved since this alarm last rang: the caller
    /// reads `now` again and decides whether to sleep more.
    pub async fn sleep(&mut self, duration: Duration) {
        match &mut self.moved {
            None => tokio::time::sleep(duration).await,
            Some(moved) => {
                tokio::select! {
                    () = tokio::time::sleep(duration) => {}
                    _ = moved.changed() => {}
                }
            }
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.shift {
            None => f.write_str("Clock::system"),
            Some(shift) => write!(
                f,
                "Clock::adjustable(+{} µs)",
                shift.ahead_us.load(Ordering::Relaxed)
            ),
        }
    }
}

pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_adjustable_clock_moves_forward_by_what_it_is_told() {
        let clock = Clock::adjustable();
        let before = clock.now();
        clock.advance(chrono::Duration::days(31));
        let after = clock.now();
        assert!(after - before >= chrono::Duration::days(31));
        assert!(after - before < chrono::Duration::days(31) + chrono::Duration::seconds(5));
        assert_eq!(after, to_stored_precision(after), "microseconds");
    }

    #[test]
    #[should_panic(expected = "never goes back")]
    fn an_adjustable_clock_never_goes_back() {
        Clock::adjustable().advance(chrono::Duration::seconds(-1));
    }

    #[tokio::test]
    async fn a_move_wakes_an_alarm_even_one_made_before_it_slept() {
        let clock = Clock::adjustable();
        let mut alarm = clock.alarm();
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::timeout(
            Duration::from_secs(5),
            alarm.sleep(Duration::from_secs(3600)),
        )
        .await
        .expect("woken by the move made before it slept");
        let sleeper = tokio::spawn(async move { alarm.sleep(Duration::from_secs(3600)).await });
        clock.advance(chrono::Duration::seconds(1));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .expect("woken by a move while it slept")
            .expect("the sleeper ran");
    }
}
