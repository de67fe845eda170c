use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use uuid::Uuid;

use crate::graphql::context::ledger_for_secret_key;
use crate::graphql::scalars::Credits;
use crate::graphql::types::{Balance, LedgerEntry};
use crate::ledger::corrections::{CorrectionOutcome, ReverseDebitRequest, VoidGrantRequest};

#[derive(InputObject)]
pub struct VoidGrantInput {
    pub grant_id: Uuid,
    /// Why (kept as the VOID entry's description; at most 1000 characters).
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct ReverseDebitInput {
    /// A DEBIT or CAPTURE entry.
    pub entry_id: Uuid,
    /// Credits to give back (default: all that is left to reverse).
    pub amount: Option<Credits>,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(SimpleObject)]
pub struct CorrectionPayload {
    /// The VOID or REVERSAL entry.
    pub entry: LedgerEntry,
    pub balance: Balance,
    pub replayed: bool,
}

impl From<CorrectionOutcome> for CorrectionPayload {
    fn from(outcome: CorrectionOutcome) -> Self {
        Self {
            entry: outcome.entry.into(),
            balance: outcome.balance.into(),
            replayed: outcome.replayed,
        }
    }
}

#[derive(Default)]
pub struct CorrectionsMutation;

#[Object]
impl CorrectionsMutation {
    /// Sets what remains of a grant to zero (a VOID entry). Refused while open holds reserve
    /// some of its credits.
    async fn void_grant(
        &self,
        ctx: &Context<'_>,
        input: VoidGrantInput,
    ) -> Result<CorrectionPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .void_grant(VoidGrantRequest {
                grant_id: input.grant_id,
                reason: input.reason,
                idempotency_key: input.idempotency_key,
            })
            .await?
            .into())
    }

    /// Gives back up to what a debit took, to the grants it came from (a REVERSAL entry).
    /// Reversals of one debit never add up to more than it took. Credits given back to a grant
    /// that has since expired expire again at once.
    async fn reverse_debit(
        &self,
        ctx: &Context<'_>,
        input: ReverseDebitInput,
    ) -> Result<CorrectionPayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .reverse_debit(ReverseDebitRequest {
                entry_id: input.entry_id,
                amount: input.amount.map(|a| a.0),
                reason: input.reason,
                idempotency_key: input.idempotency_key,
            })
            .await?
            .into())
    }
}
