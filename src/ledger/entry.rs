//! A ledger entry: one immutable record of one change, with what each grant gave to it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::burn_down::Allocation;
use super::types::{EndUserId, EntryKind};
use crate::entities::ledger_entry;
use crate::error::Result;

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: Uuid,
    pub end_user_id: EndUserId,
    pub seq: i64,
    pub kind: EntryKind,
    /// Magnitude, always positive; `kind` gives the direction.
    pub amount: i64,
    pub balance_after: i64,
    pub grant_id: Option<Uuid>,
    pub description: Option<String>,
    pub metadata: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    /// In the order the grants were drawn on.
    pub allocations: Vec<Allocation>,
}

impl Entry {
    /// The signed change to the balance: positive adds, negative takes away.
    pub fn delta(&self) -> i64 {
        self.kind.sign() * self.amount
    }

    pub fn from_model(model: ledger_entry::Model, allocations: Vec<Allocation>) -> Result<Self> {
        Ok(Self {
            id: model.id,
            end_user_id: EndUserId(model.end_user_id),
            seq: model.seq,
            kind: EntryKind::from_stored(&model.kind)?,
            amount: model.amount,
            balance_after: model.balance_after,
            grant_id: model.grant_id,
            description: model.description,
            metadata: model.metadata,
            idempotency_key: model.idempotency_key,
            created_at: model.created_at,
            allocations,
        })
    }
}
