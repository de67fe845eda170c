use async_graphql::{Context, Object, Result};
use uuid::Uuid;

use crate::graphql::context::ledger_for_reader;
use crate::graphql::types::Balance;
use crate::ledger::EndUserId;

#[derive(Default)]
pub struct BalanceQuery;

#[Object]
impl BalanceQuery {
    /// An end user's balance now. An end user never seen has a balance of 0.
    /// Secret keys, or that end user's own token.
    async fn balance(&self, ctx: &Context<'_>, end_user_id: Uuid) -> Result<Balance> {
        let ledger = ledger_for_reader(ctx, EndUserId(end_user_id))?;
        Ok(Balance(ledger.balance(EndUserId(end_user_id)).await?))
    }
}
