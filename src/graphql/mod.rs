//! The GraphQL schema: plain modules of resolvers over the ledger. The HTTP side is in `http`.

pub mod context;
pub mod document_cache;
pub mod error_codes;
pub mod executor;
pub mod input_fields;
pub mod mutation;
pub mod nesting;
mod operation_metrics;
pub mod paging;
pub mod query;
pub mod scalars;
pub mod subscription;
pub mod types;
pub mod webhook_types;

use async_graphql::{Schema, SchemaBuilder};

use crate::auth::tokens::TokenSigner;
use crate::events::BalanceEvents;
use crate::ledger::Ledger;
use crate::stripe::Stripe;
use crate::webhooks::Webhooks;
pub use executor::GraphqlExecutor;
use subscription::Subscription;

pub type TallySchema = Schema<query::Query, mutation::Mutation, Subscription>;

/// Deep enough for GraphiQL's introspection query, far too shallow for abuse.
pub const MAX_QUERY_DEPTH: usize = 16;
pub const MAX_QUERY_COMPLEXITY: usize = 2_000;

fn builder() -> SchemaBuilder<query::Query, mutation::Mutation, Subscription> {
    Schema::build(
        query::Query::default(),
        mutation::Mutation::default(),
        Subscription,
    )
    .limit_depth(MAX_QUERY_DEPTH)
    .limit_complexity(MAX_QUERY_COMPLEXITY)
    // No extensions: with any, every field's resolution goes through their chain. What they
    // would do is done around the schema, in `executor`.
}

/// The schema behind its executor, the only way requests reach it.
pub fn build_executor(
    ledger: Ledger,
    events: BalanceEvents,
    signer: TokenSigner,
    stripe: Stripe,
    webhooks: Webhooks,
) -> GraphqlExecutor {
    let schema = builder()
        .data(ledger)
        .data(events)
        .data(signer)
        .data(stripe)
        .data(webhooks)
        .finish();
    GraphqlExecutor::new(schema)
}

/// The SDL, as committed in `schema.graphql` and printed by `tally schema`.
pub fn sdl() -> String {
    builder().finish().sdl()
}
