use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{Html, IntoResponse};

use super::AppState;
use crate::auth::{self, Caller};
use crate::error::Error;

pub async fn graphiql() -> impl IntoResponse {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql")
            .title("Tally GraphiQL")
            .finish(),
    )
}

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let caller = match identify_caller(&state, &headers).await {
        Ok(caller) => caller,
        Err(error) => {
            return async_graphql::Response::from_errors(vec![
                async_graphql::Error::from(error).into_server_error(Default::default()),
            ])
            .into();
        }
    };
    state
        .schema
        .execute(request.into_inner().data(caller))
        .await
        .into()
}

async fn identify_caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, Error> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
    };
    let Some(token) = value.to_str().ok().and_then(auth::bearer_token) else {
        return Ok(Caller::Invalid);
    };
    Ok(
        match auth::api_keys::authenticate(&state.db, token).await? {
            Some(key_id) => Caller::SecretKey { key_id },
            None => Caller::Invalid,
        },
    )
}
