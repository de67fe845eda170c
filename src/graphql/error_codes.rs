//! Gives every error an `extensions.code`, and redacts resolvers' errors.
//!
//! A resolver's `?` on our `Error` goes through async-graphql's conversion of anything `Display`,
//! which keeps the full text as the message and our `Error` as the source. Every answer, of a
//! request (`request`: queries, mutations, each request of a batch) and of a socket (`subscribe`:
//! anything sent over graphql-ws, subscription events included), passes here, where each error
//! holding our `Error` is replaced by what `Error::public` lets the caller see: message, code,
//! `field`, `available`/`requested`. The errors async-graphql itself raises carry no code:
//! syntax errors become `GRAPHQL_PARSE_FAILED`, values that do not fit their type (an amount of
//! 1.5, a malformed UUID) `BAD_USER_INPUT`, other invalid documents `GRAPHQL_VALIDATION_FAILED`,
//! the codes GraphQL clients (Apollo's conventions) know.
//!
//! It also caps how many errors one answer reports: a 29 KB document of 3,000 unknown arguments
//! would otherwise be answered with 3,000 errors (half a megabyte).

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextSubscribe,
    NextValidation,
};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};

use crate::error::{Error, PublicError};

pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

fn with_default_code(mut error: ServerError, code: &str) -> ServerError {
    let extensions = error.extensions.get_or_insert_with(Default::default);
    if extensions.get("code").is_none() {
        extensions.set("code", code);
    }
    error
}

/// `error` as the caller may see it, when it holds our `Error`; any other error as it is.
fn redacted(mut error: ServerError) -> ServerError {
    let Some(public) = error.source::<Error>().map(Error::public) else {
        return error;
    };
    // Answered now: nothing downstream should find (or log) the detail again.
    error.source = None;
    show(&mut error, public);
    error
}

/// An error raised before the schema runs (the credential could not be checked), answered as a
/// resolver's would be.
pub fn server_error(error: &Error) -> ServerError {
    let mut answer = ServerError::new(String::new(), None);
    show(&mut answer, error.public());
    answer
}

fn show(error: &mut ServerError, public: PublicError) {
    error.message = public.message;
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", public.code);
    if let Some(field) = public.field {
        extensions.set("field", field);
    }
    if let Some((available, requested)) = public.shortfall {
        extensions.set("available", available);
        extensions.set("requested", requested);
    }
}

/// Most errors one answer reports; the rest are summed up in one more error.
pub const MAX_ERRORS: usize = 20;

/// The first `MAX_ERRORS` errors, and one that says how many more there were (coded like the
/// first of those it stands for, with `extensions.omittedErrors`).
fn capped(mut errors: Vec<ServerError>) -> Vec<ServerError> {
    if errors.len() <= MAX_ERRORS {
        return errors;
    }
    let omitted = errors.len() - MAX_ERRORS;
    let code = errors[MAX_ERRORS]
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get("code"))
        .cloned();
    errors.truncate(MAX_ERRORS);
    let mut summary = ServerError::new(
        format!("{omitted} more errors not reported (an answer reports at most {MAX_ERRORS})"),
        None,
    );
    let extensions = summary.extensions.get_or_insert_with(Default::default);
    if let Some(code) = code {
        extensions.set("code", code);
    }
    extensions.set("omittedErrors", omitted);
    errors.push(summary);
    errors
}

/// Validation errors that are about a value rather than the shape of the document.
fn is_bad_value(error: &ServerError) -> bool {
    let message = error.message.as_str();
    message.starts_with("Invalid value for argument")
        || message.starts_with("Failed to parse")
        || message.contains("Variable \"")
}

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        response.errors = capped(
            std::mem::take(&mut response.errors)
                .into_iter()
                .map(|error| with_default_code(redacted(error), "BAD_USER_INPUT"))
                .collect(),
        );
        response
    }

    /// A socket's answers (subscription events, and queries or mutations sent over it) come
    /// through a stream, not `request`: redact and cap each of them too.
    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                response.errors = capped(
                    std::mem::take(&mut response.errors)
                        .into_iter()
                        .map(redacted)
                        .collect(),
                );
                response
            })
            .boxed()
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables)
            .await
            .map_err(|error| with_default_code(error, "GRAPHQL_PARSE_FAILED"))
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|error| {
                    let code = if is_bad_value(&error) {
                        "BAD_USER_INPUT"
                    } else {
                        "GRAPHQL_VALIDATION_FAILED"
                    };
                    with_default_code(error, code)
                })
                .collect()
        })
    }
}
