use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};

use crate::graphql::context::ledger_for_reader;
use crate::graphql::scalars::end_user_id as parse_end_user_id;
use crate::graphql::types::{Balance, Cycle};
use crate::ledger::types::Instant;

#[derive(Default)]
pub struct BalanceQuery;

#[Object]
impl BalanceQuery {
    /// An end user's balance now, or at a past instant `at` (replayed from the ledger).
    /// An end user never seen has a balance of 0. Secret keys, or that end user's own token.
    async fn balance(
        &self,
        ctx: &Context<'_>,
        end_user_id: ID,
        at: Option<DateTime<Utc>>,
    ) -> Result<Balance> {
        let user = parse_end_user_id(&end_user_id)?;
        let ledger = ledger_for_reader(ctx, &user)?;
        Ok(match at {
            Some(at) => ledger.balance_at(user, Instant::parse("at", at)?).await?,
            None => ledger.balance(user).await?,
        }
        .into())
    }

    /// The end user's most recent recurring cycle (active or canceled), if any.
    /// Secret keys, or that end user's own token.
    async fn cycle(&self, ctx: &Context<'_>, end_user_id: ID) -> Result<Option<Cycle>> {
        let user = parse_end_user_id(&end_user_id)?;
        let ledger = ledger_for_reader(ctx, &user)?;
        Ok(ledger.cycle(user).await?.map(Cycle::from))
    }
}
