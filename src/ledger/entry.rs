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
    /// The hold a HOLD / CAPTURE / RELEASE entry is about.
    pub hold_id: Option<Uuid>,
    /// The debit a REVERSAL gives back.
    pub reversed_entry_id: Option<Uuid>,
    /// In the order the grants were drawn on; negative amounts give credits back.
    pub allocations: Vec<Allocation>,
}

impl Entry {
    /// A new entry with no references, allocations, description or metadata yet.
    pub fn new(
        kind: EntryKind,
        end_user_id: EndUserId,
        seq: i64,
        amount: i64,
        balance_after: i64,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            end_user_id,
            seq,
            kind,
            amount,
            balance_after,
            grant_id: None,
            description: None,
            metadata: None,
            idempotency_key: None,
            created_at,
            hold_id: None,
            reversed_entry_id: None,
            allocations: Vec::new(),
        }
    }

    /// The signed change to the balance: positive adds, negative takes away.
    pub fn delta(&self) -> i64 {
        self.kind.sign() * self.amount
    }

    pub fn from_model(model: ledger_entry::Model, allocations: Vec<Allocation>) -> Result<Self> {
        Ok(Self {
            id: model.id,
            end_user_id: EndUserId::from_stored(model.end_user_id),
            seq: model.seq,
            kind: EntryKind::from_stored(&model.kind)?,
            amount: model.amount,
            balance_after: model.balance_after,
            grant_id: model.grant_id,
            description: model.description,
            metadata: model.metadata,
            idempotency_key: model.idempotency_key,
            created_at: model.created_at,
            hold_id: model.hold_id,
            reversed_entry_id: model.reversed_entry_id,
            allocations,
        })
    }
}
