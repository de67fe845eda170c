//! What resolvers take from the request context.

use async_graphql::Context;

use crate::auth::Caller;
use crate::error::{Error, Result};
use crate::ledger::Ledger;

pub fn ledger<'a>(ctx: &Context<'a>) -> Result<&'a Ledger> {
    ctx.data::<Ledger>()
        .map_err(|_| Error::Internal("ledger missing from GraphQL context".into()))
}

pub fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
}

/// The ledger, for a caller holding a secret key; `UNAUTHENTICATED` otherwise.
pub fn ledger_for_secret_key<'a>(ctx: &Context<'a>) -> Result<&'a Ledger> {
    caller(ctx).require_secret_key()?;
    ledger(ctx)
}
