//! What resolvers take from the request context, with the access check each operation needs.

use async_graphql::Context;

use crate::auth::Caller;
use crate::auth::tokens::TokenSigner;
use crate::error::{Error, Result};
use crate::ledger::{EndUserId, Ledger};
use crate::stripe::Stripe;
use crate::webhooks::Webhooks;

fn ledger<'a>(ctx: &Context<'a>) -> Result<&'a Ledger> {
    ctx.data::<Ledger>()
        .map_err(|_| Error::Internal("ledger missing from GraphQL context".into()))
}

/// The instance's clock (what `now` means to this request), for fields computed at read time.
pub fn clock<'a>(ctx: &Context<'a>) -> Result<&'a crate::ledger::clock::Clock> {
    ledger(ctx).map(Ledger::clock)
}

pub fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
}

/// The ledger, for a caller holding a secret key.
pub fn ledger_for_secret_key<'a>(ctx: &Context<'a>) -> Result<&'a Ledger> {
    caller(ctx).require_secret_key()?;
    ledger(ctx)
}

/// The ledger, for a caller who may read `end_user_id`'s data.
pub fn ledger_for_reader<'a>(ctx: &Context<'a>, end_user_id: &EndUserId) -> Result<&'a Ledger> {
    caller(ctx).require_read(end_user_id)?;
    ledger(ctx)
}

/// The token signer, for a caller holding a secret key.
pub fn signer_for_secret_key<'a>(ctx: &Context<'a>) -> Result<&'a TokenSigner> {
    caller(ctx).require_secret_key()?;
    ctx.data::<TokenSigner>()
        .map_err(|_| Error::Internal("token signer missing from GraphQL context".into()))
}

/// Webhook endpoints and deliveries, for a caller holding a secret key.
pub fn webhooks_for_secret_key<'a>(ctx: &Context<'a>) -> Result<&'a Webhooks> {
    caller(ctx).require_secret_key()?;
    ctx.data::<Webhooks>()
        .map_err(|_| Error::Internal("webhooks missing from GraphQL context".into()))
}

fn stripe<'a>(ctx: &Context<'a>) -> Result<&'a Stripe> {
    ctx.data::<Stripe>()
        .map_err(|_| Error::Internal("Stripe service missing from GraphQL context".into()))
}

/// Stripe purchases and the catalog, for any valid credential.
pub fn stripe_for_any_caller<'a>(ctx: &Context<'a>) -> Result<&'a Stripe> {
    caller(ctx).require_authenticated()?;
    stripe(ctx)
}

/// Stripe purchases and the catalog, for a caller holding a secret key.
pub fn stripe_for_secret_key<'a>(ctx: &Context<'a>) -> Result<&'a Stripe> {
    caller(ctx).require_secret_key()?;
    stripe(ctx)
}

/// Stripe purchases, for a caller who may act for `end_user_id`.
pub fn stripe_acting_for<'a>(ctx: &Context<'a>, end_user_id: &EndUserId) -> Result<&'a Stripe> {
    caller(ctx).require_acting_for(end_user_id)?;
    stripe(ctx)
}
