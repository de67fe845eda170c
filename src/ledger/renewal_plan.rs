//! Renewal arithmetic for recurring cycles. Pure, so the rule is tested on its own;
//! `cycles::renew_due` applies it.
//!
//! When a period has ended, the cycle resumes at the period containing `now`: periods missed
//! while nothing ran (the server was down) are skipped, not granted one after another. What
//! the ended period's grant left (and so expired) rolls over up to the cycle's `rollover_max`.

use chrono::{DateTime, Duration, Utc};

/// The period (start, end) that contains `now`, for a cycle whose current period ends at
/// `period_end` (at or before `now`) and whose periods last `period`.
pub fn period_containing(
    period_end: DateTime<Utc>,
    period: Duration,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, DateTime<Utc>) {
    assert!(period > Duration::zero(), "a period has a length");
    debug_assert!(period_end <= now, "only an ended period renews");
    let missed = (now - period_end).num_seconds() / period.num_seconds().max(1);
    let start = period_end + period * (missed as i32);
    let end = start + period;
    debug_assert!(start <= now && now < end);
    (start, end)
}

/// Credits carried into the new period: what expired of the last, at most `rollover_max`.
pub fn rollover(expired: i64, rollover_max: i64) -> i64 {
    debug_assert!(expired >= 0 && rollover_max >= 0);
    expired.min(rollover_max)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_period_that_just_ended_is_followed_by_the_next() {
        let (start, end) = period_containing(at(8, 0), Duration::days(7), at(8, 0));
        assert_eq!((start, end), (at(8, 0), at(15, 0)));
        let (start, end) = period_containing(at(8, 0), Duration::days(7), at(9, 5));
        assert_eq!((start, end), (at(8, 0), at(15, 0)));
    }

    #[test]
    fn periods_missed_while_nothing_ran_are_skipped() {
        // Ended on the 1st; now is the 20th: the periods of the 1st and 8th were missed.
        let (start, end) = period_containing(at(1, 0), Duration::days(7), at(20, 12));
        assert_eq!((start, end), (at(15, 0), at(22, 0)));
    }

    #[test]
    fn rollover_carries_what_expired_up_to_the_cap() {
        assert_eq!(rollover(30, 0), 0);
        assert_eq!(rollover(30, 50), 30);
        assert_eq!(rollover(80, 50), 50);
    }
}
