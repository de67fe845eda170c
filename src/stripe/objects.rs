//! The parts of Stripe's objects Tally reads. Every other field is ignored, so new fields Stripe
//! adds (or an API version upgrade) change nothing here.

use std::collections::HashMap;

use serde::Deserialize;

/// An event envelope: `{ id, type, livemode, data: { object } }`.
#[derive(Debug, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: serde_json::Value,
}

/// A reference to another object: its id, or the object itself when expanded.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    pub fn id(&self) -> &str {
        match self {
            Self::Id(id) | Self::Object { id } => id,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CheckoutSession {
    pub id: String,
    pub mode: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: Option<String>,
    pub client_reference_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
    pub payment_intent: Option<Expandable>,
    /// Minor units.
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Charge {
    pub id: String,
    pub payment_intent: Option<Expandable>,
    pub amount_refunded: i64,
    pub currency: String,
    /// Older API versions include the charge's refunds.
    pub refunds: Option<RefundList>,
}

#[derive(Debug, Deserialize)]
pub struct RefundList {
    #[serde(default)]
    pub data: Vec<Refund>,
}

#[derive(Debug, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: Option<String>,
    pub payment_intent: Option<Expandable>,
}

impl Refund {
    pub fn succeeded(&self) -> bool {
        self.status.as_deref() == Some("succeeded")
    }
}
