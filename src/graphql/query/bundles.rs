use async_graphql::{Context, Object, Result};

use crate::graphql::context::{caller, stripe_for_any_caller};
use crate::graphql::types::Bundle;

#[derive(Default)]
pub struct BundlesQuery;

#[Object]
impl BundlesQuery {
    /// The bundles for sale, fewest credits first. Any credential; `includeArchived` (archived
    /// bundles too) needs a secret key.
    async fn bundles(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_archived: bool,
    ) -> Result<Vec<Bundle>> {
        let stripe = stripe_for_any_caller(ctx)?;
        if include_archived {
            caller(ctx).require_secret_key()?;
        }
        Ok(stripe
            .catalog()
            .list(include_archived)
            .await?
            .into_iter()
            .map(Bundle::from)
            .collect())
    }
}
