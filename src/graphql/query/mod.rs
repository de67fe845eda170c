mod balance;
mod bundles;
mod end_users;
mod stripe_events;
pub(crate) mod transactions;
mod webhooks;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
pub struct Query(
    balance::BalanceQuery,
    transactions::TransactionsQuery,
    bundles::BundlesQuery,
    stripe_events::StripeEventsQuery,
    end_users::EndUsersQuery,
    webhooks::WebhooksQuery,
);
