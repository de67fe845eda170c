use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use uuid::Uuid;

use crate::graphql::context::ledger_for_secret_key;
use crate::graphql::scalars::{Credits, end_user_id};
use crate::graphql::types::{Balance, Hold, LedgerEntry};
use crate::ledger::holds::{CreateHoldRequest, HoldOutcome};

#[derive(InputObject)]
pub struct CreateHoldInput {
    pub end_user_id: ID,
    /// Credits to reserve, from 1 to 2^53 − 1. `INSUFFICIENT_CREDITS` if not available.
    pub amount: Credits,
    /// The hold releases itself after this many seconds (1 to 2592000, 30 days).
    pub ttl_seconds: i32,
    /// At most 1000 characters.
    pub description: Option<String>,
    /// Retrying with the same key and request returns the first result and changes nothing.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct CaptureHoldInput {
    pub hold_id: Uuid,
    /// Credits to spend, at most the hold's amount (default: all of it). The rest is released.
    pub amount: Option<Credits>,
    /// Retrying with the same key and request returns the first result and changes nothing.
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ReleaseHoldInput {
    pub hold_id: Uuid,
    /// Retrying with the same key and request returns the first result and changes nothing.
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct HoldPayload {
    pub hold: Hold,
    /// The entry the call recorded: HOLD for createHold, CAPTURE for captureHold (null when
    /// nothing was captured), null for releaseHold.
    pub entry: Option<LedgerEntry>,
    /// The balance now.
    pub balance: Balance,
    pub replayed: bool,
}

impl From<HoldOutcome> for HoldPayload {
    fn from(outcome: HoldOutcome) -> Self {
        Self {
            hold: outcome.hold.into(),
            entry: outcome.entry.map(LedgerEntry::from),
            balance: outcome.balance.into(),
            replayed: outcome.replayed,
        }
    }
}

#[derive(Default)]
pub struct HoldsMutation;

#[Object]
impl HoldsMutation {
    /// Reserves credits for work in progress. Held credits are not available to debits; a
    /// capture within the hold's amount never fails for lack of credits.
    async fn create_hold(&self, ctx: &Context<'_>, input: CreateHoldInput) -> Result<HoldPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .create_hold(CreateHoldRequest {
                end_user_id: end_user_id(&input.end_user_id)?,
                amount: input.amount.0,
                ttl_seconds: i64::from(input.ttl_seconds),
                description: input.description,
                idempotency_key: input.idempotency_key,
            })
            .await?
            .into())
    }

    /// Spends up to the held amount and releases the rest. Over the hold's amount: refused.
    async fn capture_hold(
        &self,
        ctx: &Context<'_>,
        input: CaptureHoldInput,
    ) -> Result<HoldPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .capture_hold(
                input.hold_id,
                input.amount.map(|a| a.0),
                input.idempotency_key,
            )
            .await?
            .into())
    }

    /// Makes a hold's credits available again.
    async fn release_hold(
        &self,
        ctx: &Context<'_>,
        input: ReleaseHoldInput,
    ) -> Result<HoldPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .release_hold(input.hold_id, input.idempotency_key)
            .await?
            .into())
    }
}
