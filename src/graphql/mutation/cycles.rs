use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};

use crate::graphql::context::ledger_for_secret_key;
use crate::graphql::scalars::{Credits, end_user_id};
use crate::graphql::types::{Balance, Cycle};
use crate::ledger::cycles::StartCycleRequest;

#[derive(InputObject)]
pub struct StartCycleInput {
    pub end_user_id: ID,
    /// Credits granted each period.
    pub amount: Credits,
    /// Length of a period in days (1 to 36525).
    pub validity_days: i32,
    /// Most credits carried over into the next period (default 0: no rollover).
    #[graphql(default_with = "Credits(0)")]
    pub rollover_max: Credits,
    pub idempotency_key: Option<String>,
}

#[derive(InputObject)]
pub struct StopCycleInput {
    pub end_user_id: ID,
}

#[derive(SimpleObject)]
pub struct StartCyclePayload {
    pub cycle: Cycle,
    pub balance: Balance,
    pub replayed: bool,
}

#[derive(Default)]
pub struct CyclesMutation;

#[Object]
impl CyclesMutation {
    /// Starts the end user's recurring cycle and grants its first period.
    /// `ACTIVE_CYCLE_EXISTS` if one is active.
    async fn start_cycle(
        &self,
        ctx: &Context<'_>,
        input: StartCycleInput,
    ) -> Result<StartCyclePayload> {
        let ledger = ledger_for_secret_key(ctx)?;
        let outcome = ledger
            .start_cycle(StartCycleRequest {
                end_user_id: end_user_id(&input.end_user_id)?,
                amount: input.amount.0,
                validity_days: i64::from(input.validity_days),
                rollover_max: input.rollover_max.0,
                idempotency_key: input.idempotency_key,
            })
            .await?;
        Ok(StartCyclePayload {
            cycle: outcome.cycle.into(),
            balance: outcome.balance.into(),
            replayed: outcome.replayed,
        })
    }

    /// Cancels renewal; the current period's credits stay usable until it ends.
    /// `NO_ACTIVE_CYCLE` if there is none.
    async fn stop_cycle(&self, ctx: &Context<'_>, input: StopCycleInput) -> Result<Cycle> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .stop_cycle(end_user_id(&input.end_user_id)?)
            .await?
            .into())
    }
}
