//! The retry schedule: exponential back-off with jitter, for a limited window. Pure.
//!
//! After the n-th failed attempt the next one waits `base × 2^(n−1)`, at most `max_delay`,
//! scaled by a random factor between 0.75 and 1.25 so that endpoints coming back up are not
//! hit by every retry at once. Once the next attempt would fall after `window` from the
//! delivery's creation, the delivery is failed instead.

use std::time::Duration;

use chrono::{DateTime, Utc};

#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub base: Duration,
    pub max_delay: Duration,
    pub window: Duration,
}

/// When to try again after `attempts` failed attempts (`jitter` in 0..=1), or `None`: give up.
pub fn next_attempt(
    schedule: &Schedule,
    attempts: u32,
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let doublings = attempts.saturating_sub(1).min(40);
    let exponential = schedule
        .base
        .saturating_mul(1u32 << doublings.min(31))
        .min(schedule.max_delay);
    let delay = exponential.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0));
    let at = now + chrono::Duration::from_std(delay).ok()?;
    let deadline = created_at + chrono::Duration::from_std(schedule.window).ok()?;
    (at <= deadline).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Schedule = Schedule {
        base: Duration::from_secs(30),
        max_delay: Duration::from_secs(6 * 3600),
        window: Duration::from_secs(3 * 24 * 3600),
    };

    #[test]
    fn delays_double_up_to_the_cap() {
        let start = Utc::now();
        let delay = |attempts| {
            (next_attempt(&DEFAULT, attempts, start, start, 0.5).unwrap() - start).num_seconds()
        };
        assert_eq!(delay(1), 30);
        assert_eq!(delay(2), 60);
        assert_eq!(delay(3), 120);
        assert_eq!(delay(10), 30 * 512);
        assert_eq!(delay(11), 6 * 3600, "capped");
        assert_eq!(delay(40), 6 * 3600);
    }

    #[test]
    fn jitter_stays_within_a_quarter_either_way() {
        let start = Utc::now();
        let low = next_attempt(&DEFAULT, 3, start, start, 0.0).unwrap() - start;
        let high = next_attempt(&DEFAULT, 3, start, start, 1.0).unwrap() - start;
        assert_eq!((low.num_seconds(), high.num_seconds()), (90, 150));
    }

    #[test]
    fn gives_up_after_the_window() {
        let start = Utc::now();
        let mut now = start;
        let mut attempts = 0;
        while let Some(at) = next_attempt(&DEFAULT, attempts + 1, start, now, 1.0) {
            attempts += 1;
            now = at;
        }
        assert!(now - start <= chrono::Duration::days(3));
        assert!(
            (15..=25).contains(&attempts),
            "about three days of retries: {attempts}"
        );
    }
}
