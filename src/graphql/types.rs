//! GraphQL views of the domain types. They only present; the ledger decides.

use async_graphql::{Enum, ID, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::scalars::{Credits, MinorUnits};
use crate::ledger::{self, burn_down};
use crate::{bundles, stripe};

/// Where a grant's credits came from.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "GrantSource")]
pub enum GrantSource {
    Manual,
    Trial,
    Promotion,
    Purchase,
    Subscription,
    Refund,
}

impl From<GrantSource> for ledger::GrantSource {
    fn from(source: GrantSource) -> Self {
        match source {
            GrantSource::Manual => Self::Manual,
            GrantSource::Trial => Self::Trial,
            GrantSource::Promotion => Self::Promotion,
            GrantSource::Purchase => Self::Purchase,
            GrantSource::Subscription => Self::Subscription,
            GrantSource::Refund => Self::Refund,
        }
    }
}

impl From<ledger::GrantSource> for GrantSource {
    fn from(source: ledger::GrantSource) -> Self {
        match source {
            ledger::GrantSource::Manual => Self::Manual,
            ledger::GrantSource::Trial => Self::Trial,
            ledger::GrantSource::Promotion => Self::Promotion,
            ledger::GrantSource::Purchase => Self::Purchase,
            ledger::GrantSource::Subscription => Self::Subscription,
            ledger::GrantSource::Refund => Self::Refund,
        }
    }
}

/// What a ledger entry records.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "EntryKind")]
pub enum EntryKind {
    /// Credits added: a new grant.
    Grant,
    /// Credits spent.
    Debit,
    /// What remained of a grant when it expired.
    Expiry,
    /// What remained of a grant when it was voided.
    Void,
    /// Credits a debit took, given back to its grants.
    Reversal,
    /// Credits reserved by a hold: no longer available, not yet spent.
    Hold,
    /// Held credits spent.
    Capture,
    /// Held credits made available again.
    Release,
    /// A recurring cycle's new period (or the rollover into it).
    Renewal,
    /// Credits of a purchase taken back because its payment was refunded.
    Clawback,
}

impl From<ledger::EntryKind> for EntryKind {
    fn from(kind: ledger::EntryKind) -> Self {
        match kind {
            ledger::EntryKind::Grant => Self::Grant,
            ledger::EntryKind::Debit => Self::Debit,
            ledger::EntryKind::Expiry => Self::Expiry,
            ledger::EntryKind::Void => Self::Void,
            ledger::EntryKind::Reversal => Self::Reversal,
            ledger::EntryKind::Hold => Self::Hold,
            ledger::EntryKind::Capture => Self::Capture,
            ledger::EntryKind::Release => Self::Release,
            ledger::EntryKind::Renewal => Self::Renewal,
            ledger::EntryKind::Clawback => Self::Clawback,
        }
    }
}

impl From<EntryKind> for ledger::EntryKind {
    fn from(kind: EntryKind) -> Self {
        match kind {
            EntryKind::Grant => Self::Grant,
            EntryKind::Debit => Self::Debit,
            EntryKind::Expiry => Self::Expiry,
            EntryKind::Void => Self::Void,
            EntryKind::Reversal => Self::Reversal,
            EntryKind::Hold => Self::Hold,
            EntryKind::Capture => Self::Capture,
            EntryKind::Release => Self::Release,
            EntryKind::Renewal => Self::Renewal,
            EntryKind::Clawback => Self::Clawback,
        }
    }
}

/// An end user's credits right now.
pub struct Balance(pub ledger::Balance);

#[Object]
impl Balance {
    async fn end_user_id(&self) -> ID {
        ID::from(self.0.end_user_id.as_str())
    }

    /// What a debit can take now: what remains in the active grants, less open holds.
    async fn available(&self) -> Credits {
        Credits(self.0.available)
    }

    /// Credits reserved by open holds: not available, not yet spent.
    async fn held(&self) -> Credits {
        Credits(self.0.held)
    }

    /// The active grants, in the order debits consume them (burn-down order).
    async fn grants(&self) -> Vec<Grant> {
        self.0.grants.iter().cloned().map(Grant).collect()
    }

    /// When the next active grant expires; null when none of them expires.
    async fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.0.next_expiry
    }
}

/// Credits added in one go (a lot). Debits take from grants in burn-down order.
pub struct Grant(pub ledger::Grant);

#[Object]
impl Grant {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    async fn end_user_id(&self) -> ID {
        ID::from(self.0.end_user_id.as_str())
    }

    /// Credits granted.
    async fn amount(&self) -> Credits {
        Credits(self.0.amount)
    }

    /// Credits not yet taken: `amount` minus everything the ledger's allocations took.
    async fn remaining(&self) -> Credits {
        Credits(self.0.remaining)
    }

    async fn source(&self) -> GrantSource {
        self.0.source.into()
    }

    /// From when the credits count.
    async fn effective_at(&self) -> DateTime<Utc> {
        self.0.effective_at
    }

    /// When the credits stop counting; null = never.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }

    /// Grants with a priority are spent before those without; lower numbers first.
    async fn priority(&self) -> Option<i32> {
        self.0.priority
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn metadata(&self) -> Option<Json<serde_json::Value>> {
        self.0.metadata.clone().map(Json)
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    /// Part of `remaining` reserved by open holds.
    async fn held(&self) -> Credits {
        Credits(self.0.held)
    }

    /// The recurring cycle that granted it.
    async fn cycle_id(&self) -> Option<Uuid> {
        self.0.cycle_id
    }

    async fn voided_at(&self) -> Option<DateTime<Utc>> {
        self.0.voided_at
    }

    /// True while the grant counts towards the balance.
    async fn active(&self) -> bool {
        self.0.is_active(Utc::now())
    }

    /// What the grant is for, unique among grants: the Stripe Checkout Session of a purchase.
    async fn reference(&self) -> Option<&str> {
        self.0.payment.as_ref().map(|p| p.reference.as_str())
    }

    /// The payment behind a purchase: a Stripe PaymentIntent id (refunds name it).
    async fn payment_reference(&self) -> Option<&str> {
        self.0
            .payment
            .as_ref()
            .and_then(|p| p.payment_reference.as_deref())
    }

    /// What the purchase cost, in the currency's minor unit.
    async fn paid_amount(&self) -> Option<MinorUnits> {
        self.0
            .payment
            .as_ref()
            .and_then(|p| p.amount)
            .map(MinorUnits)
    }

    /// The purchase's currency (ISO 4217, lower case).
    async fn paid_currency(&self) -> Option<&str> {
        self.0.payment.as_ref().and_then(|p| p.currency.as_deref())
    }
}

/// How much one grant gave to one ledger entry.
#[derive(SimpleObject)]
pub struct Allocation {
    pub grant_id: Uuid,
    pub amount: Credits,
}

impl From<&burn_down::Allocation> for Allocation {
    fn from(allocation: &burn_down::Allocation) -> Self {
        Self {
            grant_id: allocation.grant_id,
            amount: Credits(allocation.amount),
        }
    }
}

/// One immutable record of a change to an end user's credits.
pub struct LedgerEntry(pub ledger::Entry);

#[Object]
impl LedgerEntry {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    async fn end_user_id(&self) -> ID {
        ID::from(self.0.end_user_id.as_str())
    }

    /// Position in the end user's ledger: 1, 2, 3… with no gaps.
    async fn sequence(&self) -> i64 {
        self.0.seq
    }

    async fn kind(&self) -> EntryKind {
        self.0.kind.into()
    }

    /// Size of the change, always positive.
    async fn amount(&self) -> Credits {
        Credits(self.0.amount)
    }

    /// The signed change to the available balance: positive for grants, renewals, reversals and
    /// releases; negative for debits, expiries, voids and holds; zero for captures (their
    /// hold already took the credits out of the available balance).
    async fn delta(&self) -> Credits {
        Credits(self.0.delta())
    }

    /// The available balance right after this entry.
    async fn balance_after(&self) -> Credits {
        Credits(self.0.balance_after)
    }

    /// The grant a `GRANT`/`RENEWAL` entry created, or an `EXPIRY`/`VOID` entry ended.
    async fn grant_id(&self) -> Option<Uuid> {
        self.0.grant_id
    }

    /// The hold a `HOLD`, `CAPTURE` or `RELEASE` entry is about.
    async fn hold_id(&self) -> Option<Uuid> {
        self.0.hold_id
    }

    /// The debit a `REVERSAL` gives back.
    async fn reversed_entry_id(&self) -> Option<Uuid> {
        self.0.reversed_entry_id
    }

    /// Which grants paid for a debit (or lost credits to an expiry, void or capture), and how
    /// much each, in the order they were drawn on; negative amounts went back to the grant.
    async fn allocations(&self) -> Vec<Allocation> {
        self.0.allocations.iter().map(Allocation::from).collect()
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn metadata(&self) -> Option<Json<serde_json::Value>> {
        self.0.metadata.clone().map(Json)
    }

    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "HoldStatus")]
pub enum HoldStatus {
    Open,
    Captured,
    Released,
    /// Passed its deadline and was released by itself.
    Expired,
}

/// Credits reserved for work in progress.
pub struct Hold(pub ledger::holds::Hold);

#[Object]
impl Hold {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    async fn end_user_id(&self) -> ID {
        ID::from(self.0.end_user_id.as_str())
    }

    /// Credits reserved.
    async fn amount(&self) -> Credits {
        Credits(self.0.amount)
    }

    /// Credits spent by the capture (0 until captured).
    async fn captured_amount(&self) -> Credits {
        Credits(self.0.captured_amount)
    }

    async fn status(&self) -> HoldStatus {
        match self.0.status {
            ledger::holds::HoldStatus::Open => HoldStatus::Open,
            ledger::holds::HoldStatus::Captured => HoldStatus::Captured,
            ledger::holds::HoldStatus::Released => HoldStatus::Released,
            ledger::holds::HoldStatus::Expired => HoldStatus::Expired,
        }
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    /// When an open hold releases itself.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn closed_at(&self) -> Option<DateTime<Utc>> {
        self.0.closed_at
    }
}

#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "CycleStatus")]
pub enum CycleStatus {
    /// Renews at the end of each period.
    Active,
    /// Stopped: the current period runs out, nothing renews.
    Canceled,
}

/// An end user's recurring grant: `amount` credits every `validityDays`.
pub struct Cycle(pub ledger::cycles::Cycle);

#[Object]
impl Cycle {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    async fn end_user_id(&self) -> ID {
        ID::from(self.0.end_user_id.as_str())
    }

    /// Credits granted each period.
    async fn amount(&self) -> Credits {
        Credits(self.0.amount)
    }

    /// Length of a period in days.
    async fn validity_days(&self) -> i32 {
        self.0.validity_days
    }

    /// Most credits carried from one period into the next.
    async fn rollover_max(&self) -> Credits {
        Credits(self.0.rollover_max)
    }

    async fn status(&self) -> CycleStatus {
        match self.0.status {
            ledger::cycles::CycleStatus::Active => CycleStatus::Active,
            ledger::cycles::CycleStatus::Canceled => CycleStatus::Canceled,
        }
    }

    async fn current_period_start(&self) -> DateTime<Utc> {
        self.0.current_period_start
    }

    async fn current_period_end(&self) -> DateTime<Utc> {
        self.0.current_period_end
    }

    /// The grant of the current period.
    async fn current_grant_id(&self) -> Uuid {
        self.0.current_grant_id
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn canceled_at(&self) -> Option<DateTime<Utc>> {
        self.0.canceled_at
    }
}

/// Credits for sale at a Stripe price.
pub struct Bundle(pub bundles::Bundle);

#[Object]
impl Bundle {
    async fn id(&self) -> Uuid {
        self.0.id
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Credits a purchase grants.
    async fn credits(&self) -> Credits {
        Credits(self.0.credits)
    }

    /// The purchased credits expire this many days (× 24 h) after the payment completes;
    /// null = never.
    async fn validity_days(&self) -> Option<i64> {
        self.0.validity_days
    }

    /// The price, in the currency's minor unit (999 = $9.99). Stripe charges the amount of
    /// the Stripe price; this is what the catalog shows.
    async fn price_amount(&self) -> MinorUnits {
        MinorUnits(self.0.price_amount)
    }

    /// ISO 4217, lower case (usd).
    async fn currency(&self) -> &str {
        &self.0.currency
    }

    /// The Stripe price it is sold at (price_…), unique among bundles.
    async fn stripe_price_id(&self) -> &str {
        &self.0.stripe_price_id
    }

    /// False once archived: no longer listed to end users nor sold.
    async fn active(&self) -> bool {
        self.0.active
    }

    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// What Tally made of a Stripe event.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "StripeEventOutcome")]
pub enum StripeEventOutcome {
    /// It changed the ledger (a grant or a claw-back) or was taken into account.
    Applied,
    /// Nothing to do: another event type, a session already granted, a refund already counted.
    Ignored,
    /// Waiting: an unpaid session for its payment, a refund for its purchase.
    Pending,
    /// Tally could not process it and answered 5xx; Stripe delivers it again, and Tally
    /// processes it again.
    Failed,
    /// Signed, but unreadable (an object not of the type the event names, a NUL character):
    /// Tally answered 400. A redelivery is processed again.
    Rejected,
}

impl From<stripe::Outcome> for StripeEventOutcome {
    fn from(outcome: stripe::Outcome) -> Self {
        match outcome {
            stripe::Outcome::Applied => Self::Applied,
            stripe::Outcome::Ignored => Self::Ignored,
            stripe::Outcome::Pending => Self::Pending,
            stripe::Outcome::Failed => Self::Failed,
            stripe::Outcome::Rejected => Self::Rejected,
        }
    }
}

/// A Stripe event Tally received.
pub struct StripeEvent(pub stripe::StoredEvent);

#[Object]
impl StripeEvent {
    /// Stripe's event id (evt_…).
    async fn id(&self) -> &str {
        &self.0.id
    }

    /// Stripe's event type, e.g. checkout.session.completed.
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }

    async fn livemode(&self) -> bool {
        self.0.livemode
    }

    /// The event's object: a Checkout Session, Charge or Refund id.
    async fn object_id(&self) -> Option<&str> {
        self.0.object_id.as_deref()
    }

    async fn payment_intent_id(&self) -> Option<&str> {
        self.0.payment_intent_id.as_deref()
    }

    async fn outcome(&self) -> StripeEventOutcome {
        self.0.outcome.into()
    }

    /// Why: what was granted or clawed back, what it waits for, or what went wrong.
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }

    /// The end user it concerned, once known.
    async fn end_user_id(&self) -> Option<ID> {
        self.0.end_user_id.as_deref().map(ID::from)
    }

    /// The ledger entry it wrote: the purchase's GRANT or a refund's CLAWBACK.
    async fn entry_id(&self) -> Option<Uuid> {
        self.0.entry_id
    }

    /// Deliveries processed: more than one when a failed event was delivered again.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }

    /// When it was first received.
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }

    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}
