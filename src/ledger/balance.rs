//! An end user's balance at an instant, with the grants that make it up.

use chrono::{DateTime, Utc};

use super::burn_down::active_in_burn_down_order;
use super::grant::Grant;
use super::types::EndUserId;

#[derive(Clone, Debug, PartialEq)]
pub struct Balance {
    pub end_user_id: EndUserId,
    /// What a debit could take now: the active grants' remaining credits less open holds.
    pub available: i64,
    /// Credits reserved by open holds (on any grant, expired ones included).
    pub held: i64,
    /// The active grants, in the order debits consume them.
    pub grants: Vec<Grant>,
    /// The soonest `expires_at` among the active grants.
    pub next_expiry: Option<DateTime<Utc>>,
}

impl Balance {
    pub fn from_grants(end_user_id: EndUserId, grants: &[Grant], now: DateTime<Utc>) -> Self {
        let active: Vec<Grant> = active_in_burn_down_order(grants, now)
            .into_iter()
            .cloned()
            .collect();
        Self {
            end_user_id,
            available: active.iter().map(Grant::spendable).sum(),
            held: grants
                .iter()
                .filter(|g| g.voided_at.is_none())
                .map(|g| g.held)
                .sum(),
            next_expiry: active.iter().filter_map(|g| g.expires_at).min(),
            grants: active,
        }
    }
}
