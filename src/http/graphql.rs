use async_graphql::Executor;
use async_graphql::parser::types::{DocumentOperations, OperationType};
use async_graphql_axum::GraphQLResponse;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Request, State, WebSocketUpgrade};
use axum::http::header::{CONTENT_TYPE, UPGRADE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::{AppState, subscriptions};

/// GET: a WebSocket upgrade carries subscriptions; a `?query=` runs a query (GraphQL over HTTP:
/// mutations only by POST); anything else is a browser, shown GraphiQL.
pub async fn get(State(state): State<AppState>, request: Request) -> Response {
    let is_upgrade = request
        .headers()
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return match request.uri().query() {
            Some(query_string) if has_query_parameter(query_string) => {
                execute_get(&state, request.headers(), query_string).await
            }
            _ => graphiql().into_response(),
        };
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

/// POST: the body (already read within TALLY_MAX_BODY_BYTES) is a JSON GraphQL request, or a
/// multipart one. A JSON body giving one key twice in an object is refused before it is read.
pub async fn execute(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let multipart = content_type
        .as_deref()
        .is_some_and(|value| value.trim_start().starts_with("multipart/"));
    if !multipart && let Some(key) = super::unique_keys::first_duplicate_key(&body) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("the JSON body gives the key \"{key}\" twice in one object"),
        );
    }
    let request = match async_graphql::http::receive_body(
        content_type,
        futures::io::Cursor::new(body),
        Default::default(),
    )
    .await
    {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("malformed GraphQL request: {error}"),
            );
        }
    };
    GraphQLResponse::from(run(&state, &headers, request).await).into_response()
}

/// Runs one request as the caller its `Authorization` header names.
async fn run(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
) -> async_graphql::Response {
    let caller = match state
        .auth
        .identify(super::authorization_header(headers))
        .await
    {
        Ok(caller) => caller,
        Err(error) => {
            // Refused before the schema (and its metrics extension) sees the request.
            crate::observability::metrics::graphql_request(
                "unidentified",
                error.code(),
                std::time::Duration::ZERO,
            );
            return async_graphql::Response::from_errors(vec![
                crate::graphql::error_codes::server_error(&error),
            ]);
        }
    };
    // Only a caller that got in reaches the document cache (in the executor).
    state.graphql.execute(request.data(caller)).await
}

fn has_query_parameter(query_string: &str) -> bool {
    query_string
        .split('&')
        .any(|pair| pair == "query" || pair.starts_with("query="))
}

/// A query sent as `GET /graphql?query=…&variables=…&operationName=…`.
async fn execute_get(state: &AppState, headers: &HeaderMap, query_string: &str) -> Response {
    let mut request = match async_graphql::http::parse_query_string(query_string) {
        Ok(request) => request,
        Err(error) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("malformed GraphQL GET request: {error}"),
            );
        }
    };
    // Parsing happens here, before the schema's own guard would run: check the nesting first.
    if let Err(error) = crate::graphql::nesting::check(&request.query) {
        return GraphQLResponse::from(async_graphql::Response::from_errors(vec![error]))
            .into_response();
    }
    let operation_name = request.operation_name.clone();
    let document = match request.parsed_query() {
        Ok(document) => document,
        Err(_) => {
            // Let the schema report the syntax error the usual way.
            return GraphQLResponse::from(run(state, headers, request).await).into_response();
        }
    };
    let selected_is_query = match (&document.operations, operation_name.as_deref()) {
        (DocumentOperations::Single(operation), _) => is_query(&operation.node.ty),
        (DocumentOperations::Multiple(operations), Some(name)) => operations
            .get(name)
            .is_none_or(|operation| is_query(&operation.node.ty)),
        (DocumentOperations::Multiple(operations), None) => operations
            .values()
            .all(|operation| is_query(&operation.node.ty)),
    };
    if !selected_is_query {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "only queries may be sent by GET: send mutations by POST, subscriptions over WebSocket",
        );
    }
    GraphQLResponse::from(run(state, headers, request).await).into_response()
}

fn is_query(ty: &OperationType) -> bool {
    matches!(ty, OperationType::Query)
}

/// A GraphQL-shaped error answer for requests refused before they reach the schema.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": message, "extensions": { "code": code } }],
    });
    (status, axum::Json(body)).into_response()
}
