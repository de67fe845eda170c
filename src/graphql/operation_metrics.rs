//! Counts and times every GraphQL request by operation and outcome, and describes the operation
//! and end user for the request's tracing span (`executor` records both).
//!
//! The operation is the root field (`subtractCredits`), or `multiple` when a document selects
//! several: field names are fixed by the schema, so the label set stays bounded. Only documents
//! that passed validation get their field name; others are `invalid`. The outcome is `ok` or
//! the first error's `extensions.code`.

use std::time::Duration;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection,
};
use async_graphql::{Response, Value, Variables};

use super::error_codes;
use crate::observability::metrics;

/// What a request's operation is about.
pub struct Described {
    /// The root field, `multiple` or `none`.
    pub operation: String,
    /// The end user an argument names (`endUserId`, or `input.endUserId`), first 64 characters.
    pub end_user: Option<String>,
}

/// The operation `operation_name` selects in `document` (the only one, when there is one),
/// described; `None` when the name selects nothing (the schema then refuses the request).
pub fn chosen(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Option<Described> {
    let operation = match &document.operations {
        DocumentOperations::Single(operation) => &operation.node,
        DocumentOperations::Multiple(operations) if operations.len() == 1 => {
            &operations.values().next()?.node
        }
        DocumentOperations::Multiple(operations) => &operations.get(operation_name?)?.node,
    };
    Some(describe(operation, variables))
}

/// Counts and times one answered request. `described` names the operation only when the
/// schema ran it: a document it refused counts as `invalid`, so arbitrary field names never
/// become labels. The answer's errors are coded by then (`error_codes::answered`).
pub fn record(described: Option<&Described>, response: &Response, elapsed: Duration) {
    let operation = match described {
        Some(described) if !error_codes::refused_before_execution(response) => {
            described.operation.as_str()
        }
        _ => "invalid",
    };
    let outcome = match response.errors.first() {
        None => "ok",
        Some(error) => match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(Value::String(code)) => code.as_str(),
            _ => "INTERNAL_SERVER_ERROR",
        },
    };
    metrics::graphql_request(operation, outcome, elapsed);
}

fn describe(operation: &OperationDefinition, variables: &Variables) -> Described {
    let mut fields: Vec<&str> = Vec::new();
    let mut end_user = None;
    for selection in &operation.selection_set.node.items {
        if let Selection::Field(field) = &selection.node {
            let field = &field.node;
            if !fields.contains(&field.name.node.as_str()) {
                fields.push(field.name.node.as_str());
            }
            for (argument, value) in &field.arguments {
                let value = value
                    .node
                    .clone()
                    .into_const_with(|variable| variables.get(&variable).cloned().ok_or(()));
                let Ok(value) = value else { continue };
                let found = match (argument.node.as_str(), value) {
                    ("endUserId", Value::String(id)) => Some(id),
                    ("input", Value::Object(input)) => match input.get("endUserId") {
                        Some(Value::String(id)) => Some(id.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                end_user = end_user.or(found);
            }
        }
    }
    let operation = match fields.as_slice() {
        [one] => (*one).to_owned(),
        [] => "none".to_owned(),
        _ => "multiple".to_owned(),
    };
    Described {
        operation,
        end_user: end_user.map(|id| id.chars().take(64).collect()),
    }
}
