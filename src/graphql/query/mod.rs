mod balance;
mod bundles;
mod end_users;
mod stripe_events;
mod transactions;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
pub struct Query(
    balance::BalanceQuery,
    transactions::TransactionsQuery,
    bundles::BundlesQuery,
    stripe_events::StripeEventsQuery,
    end_users::EndUsersQuery,
);
