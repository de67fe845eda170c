mod bundles;
mod checkout;
mod credits;
mod tokens;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
pub struct Mutation(
    credits::CreditsMutation,
    tokens::TokensMutation,
    bundles::BundlesMutation,
    checkout::CheckoutMutation,
);
