//! The burn-down plan (ledger rule 1 in docs/ledger.md): which grants a debit takes its credits from.
//!
//! Pure functions over grants and a clock, so the order is tested on its own. The order:
//! 1. grants with a priority before grants without; lower priority numbers first;
//! 2. soonest expiry first; grants that never expire last;
//! 3. the oldest grant (`created_at`) first;
//! 4. the lowest id first, so the order is total and the same on every process.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::grant::Grant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub grant_id: Uuid,
    pub amount: i64,
}

/// Allocations of `amounts` on fresh grants, for the plans' unit tests.
#[cfg(test)]
pub fn allocations_of(amounts: &[i64]) -> Vec<Allocation> {
    amounts
        .iter()
        .map(|&amount| Allocation {
            grant_id: Uuid::new_v4(),
            amount,
        })
        .collect()
}

/// The active balance is short of the request; nothing may be taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub available: i64,
    pub requested: i64,
}

pub fn burn_down_order(a: &Grant, b: &Grant) -> Ordering {
    // `None` sorts after `Some` in both keys: no priority and no expiry both mean "last".
    let priority = |g: &Grant| (g.priority.is_none(), g.priority);
    let expiry = |g: &Grant| (g.expires_at.is_none(), g.expires_at);
    priority(a)
        .cmp(&priority(b))
        .then_with(|| expiry(a).cmp(&expiry(b)))
        .then_with(|| a.created_at.cmp(&b.created_at))
        .then_with(|| a.id.cmp(&b.id))
}

/// The grants that count at `now`, in the order debits consume them.
pub fn active_in_burn_down_order(grants: &[Grant], now: DateTime<Utc>) -> Vec<&Grant> {
    let mut active: Vec<&Grant> = grants.iter().filter(|g| g.is_active(now)).collect();
    active.sort_by(|a, b| burn_down_order(a, b));
    active
}

/// What debits may take at `now`: what remains in the active grants, less open holds.
pub fn active_balance(grants: &[Grant], now: DateTime<Utc>) -> i64 {
    grants
        .iter()
        .filter(|g| g.is_active(now))
        .map(Grant::spendable)
        .sum()
}

/// Takes `amount` from the active grants in burn-down order, or nothing at all (ledger rule 2).
pub fn plan_debit(
    grants: &[Grant],
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Vec<Allocation>, Shortfall> {
    debug_assert!(amount > 0, "amounts are validated positive before planning");
    let available = active_balance(grants, now);
    if available < amount {
        return Err(Shortfall {
            available,
            requested: amount,
        });
    }
    let mut still_needed = amount;
    let mut allocations = Vec::new();
    for grant in active_in_burn_down_order(grants, now) {
        if still_needed == 0 {
            break;
        }
        let taken = grant.spendable().min(still_needed);
        if taken == 0 {
            continue;
        }
        allocations.push(Allocation {
            grant_id: grant.id,
            amount: taken,
        });
        still_needed -= taken;
    }
    assert_eq!(still_needed, 0, "an affordable debit is fully allocated");
    Ok(allocations)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::ledger::types::{EndUserId, GrantSource};

    fn now() -> DateTime<Utc> {
        "2026-11-24T12:00:00Z".parse().unwrap()
    }

    fn grant(n: u128, remaining: i64, expires_in_days: Option<i64>, age_days: i64) -> Grant {
        Grant {
            id: Uuid::from_u128(n),
            end_user_id: EndUserId::from_stored("u".to_owned()),
            amount: remaining.max(1),
            remaining,
            source: GrantSource::Manual,
            effective_at: now() - Duration::days(age_days),
            expires_at: expires_in_days.map(|d| now() + Duration::days(d)),
            priority: None,
            description: None,
            metadata: None,
            created_at: now() - Duration::days(age_days),
            voided_at: None,
            held: 0,
            cycle_id: None,
            payment: None,
        }
    }

    fn take(grants: &[Grant], amount: i64) -> Vec<(u128, i64)> {
        plan_debit(grants, amount, now())
            .unwrap()
            .into_iter()
            .map(|a| (a.grant_id.as_u128(), a.amount))
            .collect()
    }

    #[test]
    fn soonest_expiry_is_spent_first() {
        let grants = [
            grant(1, 10, Some(30), 1),
            grant(2, 10, Some(5), 1),
            grant(3, 10, Some(10), 1),
        ];
        assert_eq!(take(&grants, 15), vec![(2, 10), (3, 5)]);
    }

    #[test]
    fn never_expiring_grants_are_spent_last() {
        let grants = [grant(1, 10, None, 5), grant(2, 10, Some(365), 1)];
        assert_eq!(take(&grants, 12), vec![(2, 10), (1, 2)]);
    }

    #[test]
    fn ties_go_to_the_oldest_then_the_lowest_id() {
        let grants = [
            grant(9, 5, Some(10), 1),
            grant(7, 5, Some(10), 3),
            grant(4, 5, Some(10), 1),
        ];
        assert_eq!(take(&grants, 15), vec![(7, 5), (4, 5), (9, 5)]);
        let grants = [grant(2, 5, None, 1), grant(1, 5, None, 1)];
        assert_eq!(take(&grants, 6), vec![(1, 5), (2, 1)]);
    }

    #[test]
    fn priority_comes_before_expiry() {
        let mut prioritised = grant(1, 10, None, 1);
        prioritised.priority = Some(5);
        let mut first = grant(2, 10, Some(100), 1);
        first.priority = Some(1);
        let soon = grant(3, 10, Some(1), 1);
        let grants = [soon, prioritised, first];
        assert_eq!(take(&grants, 25), vec![(2, 10), (1, 10), (3, 5)]);
    }

    #[test]
    fn grants_not_yet_effective_expired_voided_or_empty_are_ignored() {
        let mut future = grant(1, 100, Some(30), 1);
        future.effective_at = now() + Duration::hours(1);
        let mut expired = grant(2, 100, Some(30), 60);
        expired.expires_at = Some(now() - Duration::seconds(1));
        let mut voided = grant(3, 100, Some(30), 1);
        voided.voided_at = Some(now());
        let empty = grant(4, 0, Some(1), 1);
        let usable = grant(5, 7, Some(40), 1);
        let grants = [future, expired, voided, empty, usable];
        assert_eq!(active_balance(&grants, now()), 7);
        assert_eq!(take(&grants, 7), vec![(5, 7)]);
    }

    #[test]
    fn credits_held_by_open_holds_are_not_spendable() {
        let mut held = grant(1, 10, Some(1), 1);
        held.held = 8;
        let free = grant(2, 10, Some(5), 1);
        let grants = [held, free];
        assert_eq!(active_balance(&grants, now()), 12);
        assert_eq!(take(&grants, 12), vec![(1, 2), (2, 10)]);
        assert!(plan_debit(&grants, 13, now()).is_err());
    }

    #[test]
    fn expiry_at_exactly_now_no_longer_counts() {
        let mut g = grant(1, 10, None, 1);
        g.expires_at = Some(now());
        assert_eq!(active_balance(&[g], now()), 0);
    }

    #[test]
    fn exact_amounts_across_several_grants_empty_them() {
        let grants = [
            grant(1, 3, Some(1), 1),
            grant(2, 4, Some(2), 1),
            grant(3, 5, Some(3), 1),
        ];
        assert_eq!(take(&grants, 12), vec![(1, 3), (2, 4), (3, 5)]);
    }

    #[test]
    fn an_insufficient_total_takes_nothing_and_says_how_much_there_is() {
        let grants = [grant(1, 3, Some(1), 1), grant(2, 4, None, 1)];
        assert_eq!(
            plan_debit(&grants, 8, now()),
            Err(Shortfall {
                available: 7,
                requested: 8
            })
        );
        assert_eq!(
            plan_debit(&[], 1, now()),
            Err(Shortfall {
                available: 0,
                requested: 1
            })
        );
    }
}
