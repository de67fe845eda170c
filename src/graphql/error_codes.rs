//! Gives every error an `extensions.code`, and redacts resolvers' errors.
//!
//! A resolver's `?` on our `Error` goes through async-graphql's conversion of anything `Display`,
//! which keeps the full text as the message and our `Error` as the source. Every answer, of a
//! request over HTTP and of a socket (anything sent over graphql-ws, subscription events
//! included), passes `answered` on its way out of `executor`, where each error holding our
//! `Error` is replaced by what `Error::public` lets the caller see: message, code, `field`,
//! `available`/`requested`. The errors async-graphql itself raises carry no code: syntax errors
//! become `GRAPHQL_PARSE_FAILED`, values that do not fit their type (an amount of 1.5, a
//! malformed UUID) `BAD_USER_INPUT`, other invalid documents `GRAPHQL_VALIDATION_FAILED`, the
//! codes GraphQL clients (Apollo's conventions) know.
//!
//! These are plain functions, not a schema extension: with any extension registered,
//! async-graphql sends every field's resolution through the extension chain (a profile of
//! balance reads put that at 9% of the server's CPU, with four extensions).
//!
//! It also caps how many errors one answer reports: a 29 KB document of 3,000 unknown arguments
//! would otherwise be answered with 3,000 errors (half a megabyte).

use async_graphql::{Response, ServerError, Value};

use crate::error::{Error, PublicError};

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

/// A syntax error (or one found while parsing), coded.
pub fn parse_failed(error: ServerError) -> ServerError {
    with_default_code(error, "GRAPHQL_PARSE_FAILED")
}

/// Whether the schema refused the request before running any resolver: it then answers with
/// no data and errors that point at no field. Resolvers' errors always carry a path.
pub fn refused_before_execution(response: &Response) -> bool {
    !response.errors.is_empty()
        && response.data == Value::Null
        && response.errors.iter().all(|error| error.path.is_empty())
}

/// The code for an error the schema raised before execution that has none yet.
fn code_before_execution(error: &ServerError) -> &'static str {
    let message = error.message.as_str();
    if message.starts_with("The recursion depth of the query") {
        // async-graphql checks this while it takes the parsed document: a parse failure.
        "GRAPHQL_PARSE_FAILED"
    } else if message.starts_with("Unknown operation named")
        || message.starts_with("Operation name required")
        || is_bad_value(error)
    {
        // The request's operationName or variables are wrong, not the document.
        "BAD_USER_INPUT"
    } else {
        "GRAPHQL_VALIDATION_FAILED"
    }
}

/// An answer as the caller may see it, whichever way it leaves (an HTTP response, a socket's
/// message, a subscription's event): our errors redacted, every error coded, at most
/// `MAX_ERRORS` of them.
pub fn answered(mut response: Response) -> Response {
    let before_execution = refused_before_execution(&response);
    response.errors = capped(
        std::mem::take(&mut response.errors)
            .into_iter()
            .map(|error| {
                let error = redacted(error);
                let code = if before_execution {
                    code_before_execution(&error)
                } else {
                    "BAD_USER_INPUT"
                };
                with_default_code(error, code)
            })
            .collect(),
    );
    response
}
