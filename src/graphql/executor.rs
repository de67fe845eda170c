//! The one way into the schema, for HTTP requests and WebSocket operations alike. Before the
//! schema: the document is parsed and checked (`document_cache`: nesting, syntax, repeated
//! input fields) and its operation described for the request's span. After it: every answer is
//! redacted and coded (`error_codes::answered`), and HTTP requests are counted
//! (`operation_metrics`).
//!
//! This work wraps the schema rather than living in schema extensions because async-graphql
//! sends every field's resolution through the extension chain as soon as one extension is
//! registered: with four, that chain took 9% of the server's CPU on balance reads, for hooks
//! that only ever needed to see whole requests.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::{Data, Executor, Request, Response, ServerError};
use futures::StreamExt;
use futures::stream::{self, BoxStream};

use super::document_cache::DocumentCache;
use super::operation_metrics::{self, Described};
use super::{TallySchema, error_codes};
use crate::observability::request;

#[derive(Clone)]
pub struct GraphqlExecutor {
    schema: TallySchema,
    documents: Arc<DocumentCache>,
}

impl GraphqlExecutor {
    pub fn new(schema: TallySchema) -> Self {
        Self {
            schema,
            documents: Arc::default(),
        }
    }

    /// `request` with its document parsed and checked, and what its operation is about; or the
    /// error refusing it.
    fn prepare(&self, mut request: Request) -> Result<(Request, Option<Described>), ServerError> {
        let document = self.documents.parse(&request.query)?;
        let described = operation_metrics::chosen(
            &document,
            request.operation_name.as_deref(),
            &request.variables,
        );
        if let Some(described) = &described {
            // Names from a document that parsed: GraphQL names, at most 64 characters of id.
            request::record_operation(&described.operation, described.end_user.as_deref());
        }
        request.set_parsed_query(document);
        Ok((request, described))
    }
}

impl Executor for GraphqlExecutor {
    async fn execute(&self, request: Request) -> Response {
        let started = Instant::now();
        let (response, described) = match self.prepare(request) {
            Ok((request, described)) => (self.schema.execute(request).await, described),
            Err(refusal) => (Response::from_errors(vec![refusal]), None),
        };
        let response = error_codes::answered(response);
        operation_metrics::record(described.as_ref(), &response, started.elapsed());
        response
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        match self.prepare(request) {
            Ok((request, _)) => Executor::execute_stream(&self.schema, request, session_data)
                .map(error_codes::answered)
                .boxed(),
            Err(refusal) => {
                let answer = error_codes::answered(Response::from_errors(vec![refusal]));
                stream::once(async move { answer }).boxed()
            }
        }
    }
}
