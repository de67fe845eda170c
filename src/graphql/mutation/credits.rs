use async_graphql::{Context, ID, InputObject, Json, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::graphql::context::ledger_for_secret_key;
use crate::graphql::scalars::{Credits, end_user_id};
use crate::graphql::types::{Balance, Grant, GrantSource, LedgerEntry};
use crate::ledger::{AddCreditsRequest, SubtractCreditsRequest};

#[derive(InputObject)]
pub struct AddCreditsInput {
    pub end_user_id: ID,
    /// Credits to grant, from 1 to 2^53 − 1.
    pub amount: Credits,
    /// Valid for this many days (× 24 h) from when the grant takes effect, 1 to 36525.
    /// Give this or `expiresAt`, not both; neither means the credits never expire.
    pub validity_days: Option<i32>,
    /// When the credits expire; must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the credits start to count (default: now).
    pub effective_at: Option<DateTime<Utc>>,
    #[graphql(default_with = "GrantSource::Manual")]
    pub source: GrantSource,
    /// Spent before grants without one; lower numbers first (0 to 1000).
    pub priority: Option<i32>,
    /// At most 1000 characters.
    pub description: Option<String>,
    /// A JSON object of at most 4096 bytes.
    pub metadata: Option<Json<serde_json::Value>>,
    /// Retrying with the same key and request returns the first result and changes nothing.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct AddCreditsPayload {
    pub grant: Grant,
    /// The `GRANT` ledger entry.
    pub entry: LedgerEntry,
    /// The balance now.
    pub balance: Balance,
    /// True when this answers an earlier call with the same idempotency key.
    pub replayed: bool,
}

#[derive(InputObject)]
pub struct SubtractCreditsInput {
    pub end_user_id: ID,
    /// Credits to spend, from 1 to 2^53 − 1. All or nothing.
    pub amount: Credits,
    /// At most 1000 characters.
    pub description: Option<String>,
    /// A JSON object of at most 4096 bytes.
    pub metadata: Option<Json<serde_json::Value>>,
    /// Retrying with the same key and request returns the first result and changes nothing.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct SubtractCreditsPayload {
    /// The `DEBIT` ledger entry.
    pub entry: LedgerEntry,
    /// Which grants paid, in the order they were drawn on.
    pub allocations: Vec<crate::graphql::types::Allocation>,
    /// The balance now.
    pub balance: Balance,
    /// True when this answers an earlier call with the same idempotency key.
    pub replayed: bool,
}

#[derive(Default)]
pub struct CreditsMutation;

#[Object]
impl CreditsMutation {
    /// Grants credits to an end user (created on first use).
    async fn add_credits(
        &self,
        ctx: &Context<'_>,
        input: AddCreditsInput,
    ) -> Result<AddCreditsPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        let outcome = ledger
            .add_credits(AddCreditsRequest {
                end_user_id: end_user_id(&input.end_user_id)?,
                amount: input.amount.0,
                validity_days: input.validity_days.map(i64::from),
                expires_at: input.expires_at,
                effective_at: input.effective_at,
                source: input.source.into(),
                priority: input.priority,
                description: input.description,
                metadata: input.metadata.map(|json| json.0),
                idempotency_key: input.idempotency_key,
            })
            .await?;
        Ok(AddCreditsPayload {
            grant: outcome.grant.into(),
            entry: outcome.entry.into(),
            balance: outcome.balance.into(),
            replayed: outcome.replayed,
        })
    }

    /// Spends an end user's credits, soonest-expiring first. Fails with
    /// `INSUFFICIENT_CREDITS` (and changes nothing) when the available balance is short.
    async fn subtract_credits(
        &self,
        ctx: &Context<'_>,
        input: SubtractCreditsInput,
    ) -> Result<SubtractCreditsPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        let outcome = ledger
            .subtract_credits(SubtractCreditsRequest {
                end_user_id: end_user_id(&input.end_user_id)?,
                amount: input.amount.0,
                description: input.description,
                metadata: input.metadata.map(|json| json.0),
                idempotency_key: input.idempotency_key,
            })
            .await?;
        let allocations = outcome.entry.allocations.iter().map(Into::into).collect();
        Ok(SubtractCreditsPayload {
            entry: outcome.entry.into(),
            allocations,
            balance: outcome.balance.into(),
            replayed: outcome.replayed,
        })
    }
}
