//! Counts and times every GraphQL request by operation and outcome, and names the operation and
//! end user on the request's tracing span.
//!
//! The operation is the root field (`subtractCredits`), or `multiple` when a document selects
//! several: field names are fixed by the schema, so the label set stays bounded. Only documents
//! that passed validation get their field name; others are `invalid`. The outcome is `ok` or
//! the first error's `extensions.code`. Registered before `ErrorCodes`, so codes are set by the
//! time this sees the response.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationDefinition, Selection,
};
use async_graphql::{Name, Response, ServerResult, Value, Variables};

use crate::observability::{metrics, request};

pub struct OperationMetrics;

impl ExtensionFactory for OperationMetrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationMetricsExtension::default())
    }
}

/// What the document's operations are about, by operation name.
struct Described {
    name: Option<String>,
    operation: String,
    end_user: Option<String>,
}

#[derive(Default)]
struct OperationMetricsExtension {
    described: Mutex<Vec<Described>>,
    /// Set once the chosen operation runs (so it passed validation).
    chosen: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Extension for OperationMetricsExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let operation = self
            .chosen
            .lock()
            .expect("operation lock")
            .take()
            .unwrap_or_else(|| "invalid".to_owned());
        let outcome = match response.errors.first() {
            None => "ok".to_owned(),
            Some(error) => match error.extensions.as_ref().and_then(|e| e.get("code")) {
                Some(Value::String(code)) => code.clone(),
                _ => "INTERNAL_SERVER_ERROR".to_owned(),
            },
        };
        metrics::graphql_request(&operation, &outcome, started.elapsed());
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let described = match &document.operations {
            DocumentOperations::Single(operation) => {
                vec![describe(None, &operation.node, variables)]
            }
            DocumentOperations::Multiple(operations) => operations
                .iter()
                .map(|(name, operation)| describe(Some(name), &operation.node, variables))
                .collect(),
        };
        *self.described.lock().expect("described lock") = described;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let chosen = {
            let described = self.described.lock().expect("described lock");
            described
                .iter()
                .find(|d| described.len() == 1 || d.name.as_deref() == operation_name)
                .map(|d| (d.operation.clone(), d.end_user.clone()))
        };
        if let Some((operation, end_user)) = chosen {
            request::record_operation(&operation, end_user.as_deref());
            *self.chosen.lock().expect("operation lock") = Some(operation);
        }
        next.run(ctx, operation_name).await
    }
}

fn describe(
    name: Option<&Name>,
    operation: &OperationDefinition,
    variables: &Variables,
) -> Described {
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
        name: name.map(|n| n.to_string()),
        operation,
        end_user: end_user.map(|id| id.chars().take(64).collect()),
    }
}
