use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use uuid::Uuid;

use crate::graphql::context::stripe_acting_for;
use crate::graphql::scalars::end_user_id;
use crate::stripe::CheckoutRequest;

#[derive(InputObject)]
pub struct CreateCheckoutSessionInput {
    /// An active bundle.
    pub bundle_id: Uuid,
    /// Who receives the credits once Stripe reports the payment.
    pub end_user_id: ID,
    /// Where Stripe sends the end user after paying; an absolute http(s) URL (Stripe's
    /// {CHECKOUT_SESSION_ID} template is allowed).
    pub success_url: String,
    /// Where Stripe sends the end user who cancels.
    pub cancel_url: String,
}

#[derive(SimpleObject)]
pub struct CheckoutSession {
    /// The Stripe Checkout Session id (cs_…).
    pub id: String,
    /// Stripe's payment page: redirect the end user there.
    pub url: String,
}

#[derive(Default)]
pub struct CheckoutMutation;

#[Object]
impl CheckoutMutation {
    /// Starts a Stripe Checkout for one bundle. The credits are granted when Stripe's webhook
    /// reports the payment. Secret keys, or the end user's own token.
    async fn create_checkout_session(
        &self,
        ctx: &Context<'_>,
        input: CreateCheckoutSessionInput,
    ) -> Result<CheckoutSession> {
        let end_user_id = end_user_id(&input.end_user_id)?;
        let stripe = stripe_acting_for(ctx, &end_user_id)?;
        let session = stripe
            .create_checkout_session(CheckoutRequest {
                bundle_id: input.bundle_id,
                end_user_id,
                success_url: input.success_url,
                cancel_url: input.cancel_url,
            })
            .await?;
        Ok(CheckoutSession {
            id: session.id,
            url: session.url,
        })
    }
}
