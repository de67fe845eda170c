//! Documents parsed and checked, kept by their text: an application sends the same few
//! documents over and over with different variables, and parsing one cost about a tenth of the
//! server's CPU on a balance read (a profile of `bench/ledger.sh`). A document is kept only once
//! it passed the checks that run before the schema (`nesting`, `input_fields`), so a document
//! found here needs none of them again. Validation still runs in the schema on every request:
//! it depends on the variables.
//!
//! Bounded twice: at most `CAPACITY` documents, least recently used out first, and only
//! documents of at most `MAX_QUERY_BYTES` of text, so a client sending ever-new documents
//! costs a bounded amount of memory and evicts nobody for long.

use std::sync::{Arc, Mutex};

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;
use hashlink::LruCache;

use super::{error_codes, input_fields, nesting};

/// Documents kept.
pub const CAPACITY: usize = 256;
/// Longest document text kept (a parsed document takes several times its text).
pub const MAX_QUERY_BYTES: usize = 4_096;

pub struct DocumentCache {
    /// Shared, so a hit holds the lock only to copy a pointer; the deep copy each request
    /// needs (the schema takes its document by value) is made after the lock is released.
    documents: Mutex<LruCache<String, Arc<ExecutableDocument>>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        Self {
            documents: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl DocumentCache {
    /// `query` parsed and checked: a copy of the document kept for the same text, or one parsed
    /// and checked now (and kept, when short enough). A document that nests too deeply, does not
    /// parse or gives an input field twice gets the error the caller sees, coded.
    pub fn parse(&self, query: &str) -> Result<ExecutableDocument, ServerError> {
        let cacheable = query.len() <= MAX_QUERY_BYTES;
        if cacheable {
            let kept = self.lock().get(query).map(Arc::clone);
            if let Some(document) = kept {
                return Ok(ExecutableDocument::clone(&document));
            }
        }
        let document = parse_and_check(query)?;
        if cacheable {
            let kept = Arc::new(document.clone());
            self.lock().insert(query.to_owned(), kept);
        }
        Ok(document)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    fn holds(&self, query: &str) -> bool {
        self.lock().contains_key(query)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<ExecutableDocument>>> {
        // A panic while holding the lock leaves a map of whole documents: still usable.
        self.documents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The checks every document passes before the schema sees it, in order: bracket nesting
/// (before the recursive parser may overflow its stack), syntax, repeated input fields.
fn parse_and_check(query: &str) -> Result<ExecutableDocument, ServerError> {
    nesting::check(query)?;
    let document = async_graphql::parser::parse_query(query)
        .map_err(|error| error_codes::parse_failed(error.into()))?;
    input_fields::check(query)?;
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BALANCE: &str = "query($u: ID!) { balance(endUserId: $u) { available } }";

    fn code(error: &ServerError) -> String {
        let code = error.extensions.as_ref().and_then(|e| e.get("code"));
        match code {
            Some(async_graphql::Value::String(code)) => code.clone(),
            other => panic!("no code: {other:?}"),
        }
    }

    #[test]
    fn a_document_is_parsed_once_and_reused() {
        let cache = DocumentCache::default();
        let first = cache.parse(BALANCE).unwrap();
        assert_eq!(cache.len(), 1);
        let second = cache.parse(BALANCE).unwrap();
        assert_eq!(cache.len(), 1);
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }

    #[test]
    fn refused_documents_are_coded_and_not_kept() {
        let cache = DocumentCache::default();
        let nested = format!("{{ a(x: {}1{}) }}", "[".repeat(1_000), "]".repeat(1_000));
        let repeated = "{ a(x: {k: 1, k: 2}) }";
        let cases = [
            ("{ balance(", "GRAPHQL_PARSE_FAILED"),
            (nested.as_str(), "GRAPHQL_PARSE_FAILED"),
            (repeated, "GRAPHQL_VALIDATION_FAILED"),
        ];
        for (query, expected) in cases {
            let error = cache.parse(query).unwrap_err();
            assert_eq!(code(&error), expected, "{query:.40}");
        }
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn long_documents_are_checked_but_not_kept() {
        let cache = DocumentCache::default();
        let long = format!("{{ __typename }}{}", " ".repeat(MAX_QUERY_BYTES));
        assert!(cache.parse(&long).is_ok());
        let long_repeated = format!("{{ a(x: {{k: 1, k: 2}}) }}{}", " ".repeat(MAX_QUERY_BYTES));
        assert!(cache.parse(&long_repeated).is_err());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_least_recently_used_document_goes_first() {
        let cache = DocumentCache::default();
        let query = |n: usize| format!("{{ f{n} }}");
        for n in 0..CAPACITY {
            cache.parse(&query(n)).unwrap();
        }
        cache.parse(&query(0)).unwrap();
        cache.parse(&query(CAPACITY)).unwrap();
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.holds(&query(0)), "used again just now");
        assert!(!cache.holds(&query(1)), "the least recently used");
        assert!(cache.holds(&query(CAPACITY)));
    }
}
