//! A grant (Creduse: a one-time cycle) as the domain sees it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::types::{EndUserId, GrantSource};
use crate::entities::grant;
use crate::error::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    pub id: Uuid,
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub remaining: i64,
    pub source: GrantSource,
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Spent before grants without one; lower numbers first.
    pub priority: Option<i32>,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub voided_at: Option<DateTime<Utc>>,
    /// Part of `remaining` earmarked by open holds: only those holds may take it.
    pub held: i64,
    /// The recurring cycle that granted it, if any.
    pub cycle_id: Option<Uuid>,
    /// How it was paid for, when it was bought.
    pub payment: Option<Payment>,
}

/// The payment behind a purchased grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// What the grant is for, unique among grants: a Stripe Checkout Session id.
    pub reference: String,
    /// The payment refunds name: a Stripe PaymentIntent id (none when nothing was charged).
    pub payment_reference: Option<String>,
    /// What was paid, in the currency's minor unit (cents); `None` when unknown.
    pub amount: Option<i64>,
    /// ISO 4217, lower case.
    pub currency: Option<String>,
}

/// `Grant::is_active` for a grant taken apart (the GraphQL view keeps its parts, not the grant).
pub fn is_active_at(
    now: DateTime<Utc>,
    effective_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    voided_at: Option<DateTime<Utc>>,
    remaining_credits: i64,
) -> bool {
    effective_at <= now
        && !has_expired(expires_at, now)
        && voided_at.is_none()
        && remaining_credits > 0
}

/// Credits that expire at `expires_at` stop counting at that instant.
fn has_expired(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|expires_at| expires_at <= now)
}

impl Grant {
    /// Counts towards the balance at `now`: in effect, not expired, not voided, not used up.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        is_active_at(
            now,
            self.effective_at,
            self.expires_at,
            self.voided_at,
            self.remaining,
        )
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        has_expired(self.expires_at, now)
    }

    /// What a debit (or a new hold) may take: what remains less what open holds earmarked.
    pub fn spendable(&self) -> i64 {
        self.remaining - self.held
    }

    pub fn from_model(model: grant::Model) -> Result<Self> {
        Ok(Self {
            id: model.id,
            end_user_id: EndUserId::from_stored(model.end_user_id),
            amount: model.amount,
            remaining: model.remaining,
            source: GrantSource::from_stored(&model.source)?,
            effective_at: model.effective_at,
            expires_at: model.expires_at,
            priority: model.priority,
            description: model.description,
            metadata: model.metadata,
            created_at: model.created_at,
            voided_at: model.voided_at,
            held: model.held,
            cycle_id: model.cycle_id,
            payment: model.reference.map(|reference| Payment {
                reference,
                payment_reference: model.payment_reference,
                amount: model.paid_amount,
                currency: model.paid_currency,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::is_active_at;

    #[test]
    fn a_grant_counts_from_its_effective_instant_until_its_expiry_instant() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).expect("a valid instant");
        let second = Duration::seconds(1);
        let active = |effective_at, expires_at: Option<DateTime<Utc>>, voided_at, remaining| {
            is_active_at(now, effective_at, expires_at, voided_at, remaining)
        };
        assert!(active(now, None, None, 1));
        assert!(active(now - second, Some(now + second), None, 1));
        assert!(!active(now + second, None, None, 1), "not yet in effect");
        assert!(
            !active(now - second, Some(now), None, 1),
            "expired at this instant"
        );
        assert!(!active(now - second, None, Some(now), 1), "voided");
        assert!(!active(now - second, None, None, 0), "used up");
    }
}
