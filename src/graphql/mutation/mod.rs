mod bundles;
mod checkout;
mod corrections;
mod credits;
mod cycles;
mod holds;
mod tokens;
mod webhooks;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
pub struct Mutation(
    credits::CreditsMutation,
    holds::HoldsMutation,
    corrections::CorrectionsMutation,
    cycles::CyclesMutation,
    tokens::TokensMutation,
    bundles::BundlesMutation,
    checkout::CheckoutMutation,
    webhooks::WebhooksMutation,
);
