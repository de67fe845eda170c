use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::UPGRADE;
use axum::response::{Html, IntoResponse, Response};

use super::{AppState, subscriptions};

/// GET: a WebSocket upgrade carries subscriptions; anything else is a browser, shown GraphiQL.
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    let is_upgrade = request
        .headers()
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return graphiql().into_response();
    }
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(upgrade) => subscriptions::upgrade(state, &parts.headers, upgrade),
        Err(rejection) => rejection.into_response(),
    }
}

/// GraphiQL, with subscriptions that authenticate from the headers editor (see the page).
fn graphiql() -> Html<&'static str> {
    Html(include_str!("graphiql.html"))
}

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> GraphQLResponse {
    let caller = match state
        .auth
        .identify(super::authorization_header(&headers))
        .await
    {
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
