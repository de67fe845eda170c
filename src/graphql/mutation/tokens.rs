use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::auth::Caller;
use crate::auth::tokens::DEFAULT_TTL_SECONDS;
use crate::graphql::context::{caller, signer_for_secret_key};
use crate::graphql::scalars::end_user_id;

#[derive(InputObject)]
pub struct CreateEndUserTokenInput {
    pub end_user_id: ID,
    /// Lifetime in seconds, 1 to 86400 (default 900).
    #[graphql(default = 900)]
    pub ttl_seconds: i32,
}

#[derive(SimpleObject)]
pub struct EndUserToken {
    /// Send as `Authorization: Bearer <token>` (or in `connection_init`) from a frontend.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Default)]
pub struct TokensMutation;

#[Object]
impl TokensMutation {
    /// A short-lived token that lets a frontend read one end user's balance, history and
    /// `balanceChanged`, and nothing else. Secret keys only.
    async fn create_end_user_token(
        &self,
        ctx: &Context<'_>,
        input: CreateEndUserTokenInput,
    ) -> Result<EndUserToken> {
        let signer = signer_for_secret_key(ctx)?;
        debug_assert_eq!(DEFAULT_TTL_SECONDS, 900, "keep the schema default in step");
        // The token lives only as long as the key that minted it.
        let Caller::SecretKey { key_id } = caller(ctx) else {
            return Err(crate::error::Error::Internal("a secret key without an id".into()).into());
        };
        let (token, expires_at) = signer.issue(
            end_user_id(&input.end_user_id)?,
            i64::from(input.ttl_seconds),
            *key_id,
        )?;
        Ok(EndUserToken { token, expires_at })
    }
}
