//! Parsed GraphQL documents, kept by their text: an application sends the same few documents
//! over and over with different variables, and parsing one cost about a tenth of the server's
//! CPU on a balance read (a profile of `bench/ledger.sh`). Validation and every schema
//! extension still run on each request; only the parse is skipped.
//!
//! Bounded twice: at most `CAPACITY` documents, least recently used out first, and only
//! documents of at most `MAX_QUERY_BYTES` of text, so a client sending ever-new documents
//! costs a bounded amount of memory and evicts nobody for long.

use std::sync::Mutex;

use async_graphql::Request;
use async_graphql::parser::types::ExecutableDocument;
use hashlink::LruCache;

/// Documents kept.
pub const CAPACITY: usize = 256;
/// Longest document text kept (a parsed document takes several times its text).
pub const MAX_QUERY_BYTES: usize = 4_096;

pub struct DocumentCache {
    documents: Mutex<LruCache<String, ExecutableDocument>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl DocumentCache {
    /// Gives `request` its parsed document: a copy of the one parsed for the same text before,
    /// or one parsed now (and kept). A document that is too long, nests too deeply to be parsed
    /// safely (see `nesting`) or does not parse is left to the schema, which reports it as usual.
    pub fn parse(&self, mut request: Request) -> Request {
        let query = &request.query;
        if query.len() > MAX_QUERY_BYTES {
            return request;
        }
        if let Some(document) = self.lock().get(query.as_str()).cloned() {
            request.set_parsed_query(document);
            return request;
        }
        if super::nesting::first_excess_nesting(query, super::nesting::MAX_NESTING_DEPTH).is_some()
        {
            return request;
        }
        let query = query.clone();
        if let Ok(document) = request.parsed_query() {
            let document = document.clone();
            self.lock().insert(query, document);
        }
        request
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn holds(&self, query: &str) -> bool {
        self.lock().contains_key(query)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, ExecutableDocument>> {
        // A panic while holding the lock leaves a map of whole documents: still usable.
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BALANCE: &str = "query($u: ID!) { balance(endUserId: $u) { available } }";

    #[test]
    fn a_document_is_parsed_once_and_reused() {
        let cache = DocumentCache::default();
        let mut first = cache.parse(Request::new(BALANCE));
        assert_eq!(cache.len(), 1);
        let mut second = cache.parse(Request::new(BALANCE));
        assert_eq!(cache.len(), 1);
        let (first, second) = (
            first.parsed_query().unwrap(),
            second.parsed_query().unwrap(),
        );
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }

    #[test]
    fn long_broken_and_deeply_nested_documents_are_left_to_the_schema() {
        let cache = DocumentCache::default();
        let long = format!("{{ __typename }}{}", " ".repeat(MAX_QUERY_BYTES));
        let nested = format!("{{ a(x: {}1{}) }}", "[".repeat(1_000), "]".repeat(1_000));
        for query in [long.as_str(), "{ balance(", nested.as_str()] {
            let _ = cache.parse(Request::new(query));
        }
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_least_recently_used_document_goes_first() {
        let cache = DocumentCache::default();
        let query = |n: usize| format!("{{ f{n} }}");
        for n in 0..CAPACITY {
            let _ = cache.parse(Request::new(query(n)));
        }
        let _ = cache.parse(Request::new(query(0)));
        let _ = cache.parse(Request::new(query(CAPACITY)));
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.holds(&query(0)), "used again just now");
        assert!(!cache.holds(&query(1)), "the least recently used");
        assert!(cache.holds(&query(CAPACITY)));
    }
}
