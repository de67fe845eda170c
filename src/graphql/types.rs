//! GraphQL views of the domain types. They only present; the ledger decides.
//!
//! Each view is built once from its domain value by `From`, which moves the value's parts
//! (nothing is cloned), and derives its fields: a field's doc comment is its description in the
//! schema. Fields computed when asked live in a `ComplexObject`; async-graphql lists them after
//! the derived fields. A doc comment on a derived type would become the type's description, so
//! the types the schema describes nowhere carry plain comments.

use async_graphql::{ComplexObject, Context, Enum, ID, Json, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::scalars::{Credits, MinorUnits};
use crate::ledger::{self, Payment, burn_down};
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

// An end user's credits right now.
#[derive(SimpleObject)]
pub struct Balance {
    end_user_id: ID,
    /// What a debit can take now: what remains in the active grants, less open holds.
    available: Credits,
    /// Credits reserved by open holds: not available, not yet spent.
    held: Credits,
    /// The active grants, in the order debits consume them (burn-down order).
    grants: Vec<Grant>,
    /// When the next active grant expires; null when none of them expires.
    next_expiry: Option<DateTime<Utc>>,
}

impl From<ledger::Balance> for Balance {
    fn from(balance: ledger::Balance) -> Self {
        Self {
            end_user_id: ID(balance.end_user_id.into_string()),
            available: Credits(balance.available),
            held: Credits(balance.held),
            grants: balance.grants.into_iter().map(Grant::from).collect(),
            next_expiry: balance.next_expiry,
        }
    }
}

// Credits added in one go (a lot). Debits take from grants in burn-down order.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Grant {
    id: Uuid,
    end_user_id: ID,
    /// Credits granted.
    amount: Credits,
    /// Credits not yet taken: `amount` minus everything the ledger's allocations took.
    remaining: Credits,
    source: GrantSource,
    /// From when the credits count.
    effective_at: DateTime<Utc>,
    /// When the credits stop counting; null = never.
    expires_at: Option<DateTime<Utc>>,
    /// Grants with a priority are spent before those without; lower numbers first.
    priority: Option<i32>,
    description: Option<String>,
    metadata: Option<Json<serde_json::Value>>,
    created_at: DateTime<Utc>,
    /// Part of `remaining` reserved by open holds.
    held: Credits,
    /// The recurring cycle that granted it.
    cycle_id: Option<Uuid>,
    voided_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    payment: Option<Payment>,
}

impl From<ledger::Grant> for Grant {
    fn from(grant: ledger::Grant) -> Self {
        Self {
            id: grant.id,
            end_user_id: ID(grant.end_user_id.into_string()),
            amount: Credits(grant.amount),
            remaining: Credits(grant.remaining),
            source: grant.source.into(),
            effective_at: grant.effective_at,
            expires_at: grant.expires_at,
            priority: grant.priority,
            description: grant.description,
            metadata: grant.metadata.map(Json),
            created_at: grant.created_at,
            held: Credits(grant.held),
            cycle_id: grant.cycle_id,
            voided_at: grant.voided_at,
            payment: grant.payment,
        }
    }
}

// `active` reads the clock when asked; async-graphql lists these fields after the derived ones,
// so the payment's fields, which follow `active` in the schema, are resolved here too.
#[ComplexObject]
impl Grant {
    /// True while the grant counts towards the balance.
    async fn active(&self, ctx: &Context<'_>) -> async_graphql::Result<bool> {
        Ok(ledger::grant::is_active_at(
            super::context::clock(ctx)?.now(),
            self.effective_at,
            self.expires_at,
            self.voided_at,
            self.remaining.0,
        ))
    }

    /// What the grant is for, unique among grants: the Stripe Checkout Session of a purchase.
    async fn reference(&self) -> Option<&str> {
        self.payment.as_ref().map(|p| p.reference.as_str())
    }

    /// The payment behind a purchase: a Stripe PaymentIntent id (refunds name it).
    async fn payment_reference(&self) -> Option<&str> {
        self.payment
            .as_ref()
            .and_then(|p| p.payment_reference.as_deref())
    }

    /// What the purchase cost, in the currency's minor unit.
    async fn paid_amount(&self) -> Option<MinorUnits> {
        self.payment.as_ref().and_then(|p| p.amount).map(MinorUnits)
    }

    /// The purchase's currency (ISO 4217, lower case).
    async fn paid_currency(&self) -> Option<&str> {
        self.payment.as_ref().and_then(|p| p.currency.as_deref())
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

// One immutable record of a change to an end user's credits.
#[derive(SimpleObject)]
pub struct LedgerEntry {
    id: Uuid,
    end_user_id: ID,
    /// Position in the end user's ledger: 1, 2, 3… with no gaps.
    sequence: i64,
    kind: EntryKind,
    /// Size of the change, always positive.
    amount: Credits,
    /// The signed change to the available balance: positive for grants, renewals, reversals and
    /// releases; negative for debits, expiries, voids and holds; zero for captures (their
    /// hold already took the credits out of the available balance).
    delta: Credits,
    /// The available balance right after this entry.
    balance_after: Credits,
    /// The grant a `GRANT`/`RENEWAL` entry created, or an `EXPIRY`/`VOID` entry ended.
    grant_id: Option<Uuid>,
    /// The hold a `HOLD`, `CAPTURE` or `RELEASE` entry is about.
    hold_id: Option<Uuid>,
    /// The debit a `REVERSAL` gives back.
    reversed_entry_id: Option<Uuid>,
    /// Which grants paid for a debit (or lost credits to an expiry, void or capture), and how
    /// much each, in the order they were drawn on; negative amounts went back to the grant.
    allocations: Vec<Allocation>,
    description: Option<String>,
    metadata: Option<Json<serde_json::Value>>,
    idempotency_key: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<ledger::Entry> for LedgerEntry {
    fn from(entry: ledger::Entry) -> Self {
        Self {
            id: entry.id,
            // One multiplication, made whether asked or not: a lazy field would have to come
            // after every derived one in the schema.
            delta: Credits(entry.delta()),
            end_user_id: ID(entry.end_user_id.into_string()),
            sequence: entry.seq,
            kind: entry.kind.into(),
            amount: Credits(entry.amount),
            balance_after: Credits(entry.balance_after),
            grant_id: entry.grant_id,
            hold_id: entry.hold_id,
            reversed_entry_id: entry.reversed_entry_id,
            allocations: entry
                .allocations
                .into_iter()
                .map(|allocation| Allocation::from(&allocation))
                .collect(),
            description: entry.description,
            metadata: entry.metadata.map(Json),
            idempotency_key: entry.idempotency_key,
            created_at: entry.created_at,
        }
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

impl From<ledger::holds::HoldStatus> for HoldStatus {
    fn from(status: ledger::holds::HoldStatus) -> Self {
        match status {
            ledger::holds::HoldStatus::Open => Self::Open,
            ledger::holds::HoldStatus::Captured => Self::Captured,
            ledger::holds::HoldStatus::Released => Self::Released,
            ledger::holds::HoldStatus::Expired => Self::Expired,
        }
    }
}

// Credits reserved for work in progress.
#[derive(SimpleObject)]
pub struct Hold {
    id: Uuid,
    end_user_id: ID,
    /// Credits reserved.
    amount: Credits,
    /// Credits spent by the capture (0 until captured).
    captured_amount: Credits,
    status: HoldStatus,
    description: Option<String>,
    /// When an open hold releases itself.
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    closed_at: Option<DateTime<Utc>>,
}

impl From<ledger::holds::Hold> for Hold {
    fn from(hold: ledger::holds::Hold) -> Self {
        Self {
            id: hold.id,
            end_user_id: ID(hold.end_user_id.into_string()),
            amount: Credits(hold.amount),
            captured_amount: Credits(hold.captured_amount),
            status: hold.status.into(),
            description: hold.description,
            expires_at: hold.expires_at,
            created_at: hold.created_at,
            closed_at: hold.closed_at,
        }
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

impl From<ledger::cycles::CycleStatus> for CycleStatus {
    fn from(status: ledger::cycles::CycleStatus) -> Self {
        match status {
            ledger::cycles::CycleStatus::Active => Self::Active,
            ledger::cycles::CycleStatus::Canceled => Self::Canceled,
        }
    }
}

// An end user's recurring grant: `amount` credits every `validityDays`.
#[derive(SimpleObject)]
pub struct Cycle {
    id: Uuid,
    end_user_id: ID,
    /// Credits granted each period.
    amount: Credits,
    /// Length of a period in days.
    validity_days: i32,
    /// Most credits carried from one period into the next.
    rollover_max: Credits,
    status: CycleStatus,
    current_period_start: DateTime<Utc>,
    current_period_end: DateTime<Utc>,
    /// The grant of the current period.
    current_grant_id: Uuid,
    created_at: DateTime<Utc>,
    canceled_at: Option<DateTime<Utc>>,
}

impl From<ledger::cycles::Cycle> for Cycle {
    fn from(cycle: ledger::cycles::Cycle) -> Self {
        Self {
            id: cycle.id,
            end_user_id: ID(cycle.end_user_id.into_string()),
            amount: Credits(cycle.amount),
            validity_days: cycle.validity_days,
            rollover_max: Credits(cycle.rollover_max),
            status: cycle.status.into(),
            current_period_start: cycle.current_period_start,
            current_period_end: cycle.current_period_end,
            current_grant_id: cycle.current_grant_id,
            created_at: cycle.created_at,
            canceled_at: cycle.canceled_at,
        }
    }
}

// Credits for sale at a Stripe price.
#[derive(SimpleObject)]
pub struct Bundle {
    id: Uuid,
    name: String,
    /// Credits a purchase grants.
    credits: Credits,
    /// The purchased credits expire this many days (× 24 h) after the payment completes;
    /// null = never.
    validity_days: Option<i64>,
    /// The price, in the currency's minor unit (999 = $9.99). Stripe charges the amount of
    /// the Stripe price; this is what the catalog shows.
    price_amount: MinorUnits,
    /// ISO 4217, lower case (usd).
    currency: String,
    /// The Stripe price it is sold at (price_…), unique among bundles.
    stripe_price_id: String,
    /// False once archived: no longer listed to end users nor sold.
    active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<bundles::Bundle> for Bundle {
    fn from(bundle: bundles::Bundle) -> Self {
        Self {
            id: bundle.id,
            name: bundle.name,
            credits: Credits(bundle.credits),
            validity_days: bundle.validity_days,
            price_amount: MinorUnits(bundle.price_amount),
            currency: bundle.currency,
            stripe_price_id: bundle.stripe_price_id,
            active: bundle.active,
            created_at: bundle.created_at,
            updated_at: bundle.updated_at,
        }
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

// A Stripe event Tally received.
#[derive(SimpleObject)]
pub struct StripeEvent {
    /// Stripe's event id (evt_…).
    id: String,
    /// Stripe's event type, e.g. checkout.session.completed.
    #[graphql(name = "type")]
    event_type: String,
    livemode: bool,
    /// The event's object: a Checkout Session, Charge or Refund id.
    object_id: Option<String>,
    payment_intent_id: Option<String>,
    outcome: StripeEventOutcome,
    /// Why: what was granted or clawed back, what it waits for, or what went wrong.
    reason: Option<String>,
    /// The end user it concerned, once known.
    end_user_id: Option<ID>,
    /// The ledger entry it wrote: the purchase's GRANT or a refund's CLAWBACK.
    entry_id: Option<Uuid>,
    /// Deliveries processed: more than one when a failed event was delivered again.
    attempts: i32,
    /// When it was first received.
    received_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<stripe::StoredEvent> for StripeEvent {
    fn from(event: stripe::StoredEvent) -> Self {
        Self {
            id: event.id,
            event_type: event.event_type,
            livemode: event.livemode,
            object_id: event.object_id,
            payment_intent_id: event.payment_intent_id,
            outcome: event.outcome.into(),
            reason: event.reason,
            end_user_id: event.end_user_id.map(ID),
            entry_id: event.entry_id,
            attempts: event.attempts,
            received_at: event.received_at,
            updated_at: event.updated_at,
        }
    }
}
