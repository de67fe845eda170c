mod balance;
mod transactions;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
pub struct Query(balance::BalanceQuery, transactions::TransactionsQuery);
