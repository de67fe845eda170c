mod credits;

use async_graphql::MergedObject;

#[derive(MergedObject, Default)]
pub struct Mutation(credits::CreditsMutation);
