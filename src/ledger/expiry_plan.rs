//! Which grants expire now, and the `EXPIRY` entries that record it. A pure function of the
//! grants and the clock, shared by every write (per request and batched) and the scheduler.

use chrono::{DateTime, Utc};

use super::burn_down::{Allocation, active_balance};
use super::grant::Grant;

/// One `EXPIRY` entry to write: what leaves which grant, when, and the balance after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedExpiry {
    pub allocation: Allocation,
    /// When it happened: the grant's expiry, never before the write's earlier entries
    /// (credits released back onto an expired grant expire when they are released).
    pub happened_at: DateTime<Utc>,
    pub balance_after: i64,
}

/// Every grant whose expiry has passed with spendable credits left (credits held by open holds
/// stay until the hold closes), in expiry order. Each entry's `balanceAfter` counts the grants
/// that expire after it: they were still available when it happened.
pub fn plan_expiries(
    grants: &[Grant],
    now: DateTime<Utc>,
    last_entry_at: Option<DateTime<Utc>>,
) -> Vec<PlannedExpiry> {
    let mut due: Vec<&Grant> = grants
        .iter()
        .filter(|g| g.voided_at.is_none() && g.spendable() > 0 && g.is_expired(now))
        .collect();
    if due.is_empty() {
        return Vec::new();
    }
    due.sort_by_key(|g| (g.expires_at, g.id));
    // Expired grants are not active, so taking from them leaves the active balance as it is.
    let still_active = active_balance(grants, now);
    let mut expiring_later: i64 = due.iter().map(|g| g.spendable()).sum();
    due.into_iter()
        .map(|grant| {
            let amount = grant.spendable();
            expiring_later -= amount;
            let expired_at = grant.expires_at.expect("due grants expire");
            let happened_at = last_entry_at.map_or(expired_at, |last| expired_at.max(last));
            PlannedExpiry {
                allocation: Allocation {
                    grant_id: grant.id,
                    amount,
                },
                happened_at,
                balance_after: still_active + expiring_later,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::ledger::types::{EndUserId, GrantSource};

    fn grant(remaining: i64, held: i64, expires_in_s: Option<i64>, now: DateTime<Utc>) -> Grant {
        Grant {
            id: Uuid::now_v7(),
            end_user_id: EndUserId::from_stored("u".to_owned()),
            amount: remaining.max(1),
            remaining,
            source: GrantSource::Manual,
            effective_at: now - Duration::days(30),
            expires_at: expires_in_s.map(|s| now + Duration::seconds(s)),
            priority: None,
            description: None,
            metadata: None,
            created_at: now - Duration::days(30),
            voided_at: None,
            held,
            cycle_id: None,
            payment: None,
        }
    }

    #[test]
    fn nothing_is_due_when_nothing_has_expired() {
        let now = Utc::now();
        let grants = [grant(10, 0, Some(60), now), grant(5, 0, None, now)];
        assert!(plan_expiries(&grants, now, None).is_empty());
    }

    #[test]
    fn expiries_come_in_expiry_order_with_the_balance_they_left() {
        let now = Utc::now();
        let later = grant(7, 0, Some(-10), now);
        let sooner = grant(3, 0, Some(-20), now);
        let active = grant(100, 0, Some(3600), now);
        let plan = plan_expiries(&[later.clone(), active, sooner.clone()], now, None);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].allocation.grant_id, sooner.id);
        assert_eq!(plan[0].allocation.amount, 3);
        assert_eq!(plan[0].happened_at, sooner.expires_at.unwrap());
        // When the sooner one expired, the later one (7) still counted beside the active 100.
        assert_eq!(plan[0].balance_after, 107);
        assert_eq!(plan[1].allocation.grant_id, later.id);
        assert_eq!(plan[1].balance_after, 100);
    }

    #[test]
    fn held_credits_stay_until_their_hold_closes() {
        let now = Utc::now();
        let partly_held = grant(10, 4, Some(-5), now);
        let fully_held = grant(6, 6, Some(-5), now);
        let plan = plan_expiries(&[partly_held.clone(), fully_held], now, None);
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].allocation.amount, 6);
        assert_eq!(plan[0].allocation.grant_id, partly_held.id);
    }

    #[test]
    fn voided_and_used_up_grants_do_not_expire_again() {
        let now = Utc::now();
        let mut voided = grant(10, 0, Some(-5), now);
        voided.voided_at = Some(now - Duration::seconds(60));
        let used_up = grant(0, 0, Some(-5), now);
        assert!(plan_expiries(&[voided, used_up], now, None).is_empty());
    }

    #[test]
    fn an_expiry_is_never_dated_before_the_writes_earlier_entries() {
        let now = Utc::now();
        let expired = grant(10, 0, Some(-60), now);
        let last_entry_at = now - Duration::seconds(1);
        let plan = plan_expiries(&[expired], now, Some(last_entry_at));
        assert_eq!(plan[0].happened_at, last_entry_at);
    }
}
