//! Refuses documents that nest brackets too deeply, before anything parses them.
//!
//! async-graphql's parser descends recursively into list values, object values and type
//! references, and nothing bounds how deep: a 3 KB argument of 1,600 `[` overflows a worker
//! thread's stack and aborts the whole process. The selection-set depth limit acts only after
//! parsing, too late. So every document (POST, GET and WebSocket operations alike, as all of
//! them go through `executor`) is first scanned here: a flat loop over its bytes that counts
//! open `{`, `[` and `(` outside strings and comments.

use async_graphql::{ServerError, ServerResult};

/// Deepest bracket nesting a document may have. GraphiQL's introspection query needs about 12,
/// a query at the selection-depth limit (16) with nested input objects a few dozen more.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Where a document first nests deeper than `max_depth`: the byte offset of the bracket that
/// went one too deep, or `None` when the document stays within it. Brackets inside strings,
/// block strings and comments do not count; unbalanced closing brackets never go below zero
/// (the parser reports those).
pub fn first_excess_nesting(document: &str, max_depth: usize) -> Option<usize> {
    let bytes = document.as_bytes();
    let mut depth: usize = 0;
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
                continue;
            }
            b'"' if bytes[at..].starts_with(b"\"\"\"") => {
                at = skip_block_string(bytes, at + 3);
                continue;
            }
            b'"' => {
                at = skip_string(bytes, at + 1);
                continue;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > max_depth {
                    return Some(at);
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    None
}

/// The offset just past a string's closing quote (or the end, for an unterminated one).
pub(super) fn skip_string(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        match bytes[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            // A string ends at the line; the parser reports the error.
            b'\n' | b'\r' => return at,
            _ => at += 1,
        }
    }
    bytes.len()
}

/// The offset just past a block string's closing `"""`; `\"""` does not close it.
pub(super) fn skip_block_string(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        if bytes[at..].starts_with(b"\\\"\"\"") {
            at += 4;
        } else if bytes[at..].starts_with(b"\"\"\"") {
            return at + 3;
        } else {
            at += 1;
        }
    }
    bytes.len()
}

/// The error a too-deep document gets, coded like any other syntax error.
pub fn too_deep_error() -> ServerError {
    let mut error = ServerError::new(
        format!("the document nests brackets more than {MAX_NESTING_DEPTH} levels deep"),
        None,
    );
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", "GRAPHQL_PARSE_FAILED");
    error
}

/// Checks a document before it is parsed (see the module comment).
pub fn check(document: &str) -> ServerResult<()> {
    match first_excess_nesting(document, MAX_NESTING_DEPTH) {
        Some(_) => Err(too_deep_error()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_kind_of_bracket() {
        assert_eq!(first_excess_nesting("{ a(b: [{c: 1}]) }", 4), None);
        assert_eq!(first_excess_nesting("{ a(b: [{c: 1}]) }", 3), Some(8));
    }

    #[test]
    fn closing_brackets_lower_the_depth() {
        let siblings = "{ a { b } c { d } e { f } }";
        assert_eq!(first_excess_nesting(siblings, 2), None);
        assert_eq!(first_excess_nesting("]]]]{{", 2), None);
        assert_eq!(first_excess_nesting("]]]]{{{", 2), Some(6));
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let document = format!(
            "{{ a(s: \"{}\", t: \"\\\"[[\", u: \"\"\"{} \\\"\"\" [[\"\"\") # {}\n }}",
            "[".repeat(100),
            "{".repeat(100),
            "(".repeat(100)
        );
        assert_eq!(first_excess_nesting(&document, 2), None);
    }

    #[test]
    fn an_unterminated_string_or_comment_ends_the_scan() {
        assert_eq!(first_excess_nesting("{ a(s: \"[[[[[[", 2), None);
        assert_eq!(first_excess_nesting("{ a(s: \"\"\"[[[[[[", 2), None);
        assert_eq!(first_excess_nesting("# [[[[[[", 2), None);
        // A string ends at the line: what follows is counted again.
        assert_eq!(first_excess_nesting("\"[[\n[[[", 2), Some(6));
    }

    #[test]
    fn deep_values_are_found_without_recursion() {
        let deep = format!(
            "{{ balance(endUserId: {}1) {{ available }} }}",
            "[".repeat(200_000)
        );
        assert!(first_excess_nesting(&deep, MAX_NESTING_DEPTH).is_some());
        assert!(check(&deep).is_err());
    }

    #[test]
    fn the_introspection_query_passes() {
        // GraphiQL's type-reference fragment, the deepest part of its introspection query.
        let of_type = (0..8).fold(String::from("kind name"), |inner, _| {
            format!("kind name ofType {{ {inner} }}")
        });
        let introspection = format!(
            "query IntrospectionQuery {{ __schema {{ types {{ ...FullType }} }} }} \
             fragment FullType on __Type {{ fields(includeDeprecated: true) {{ args {{ ...InputValue }} type {{ ...TypeRef }} }} }} \
             fragment InputValue on __InputValue {{ name type {{ ...TypeRef }} }} \
             fragment TypeRef on __Type {{ {of_type} }}"
        );
        assert_eq!(
            first_excess_nesting(&introspection, MAX_NESTING_DEPTH),
            None
        );
        // The fragment's braces plus eight `ofType { … }`: nine levels.
        assert!(first_excess_nesting(&introspection, 8).is_some());
    }
}
