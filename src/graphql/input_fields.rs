//! Refuses input objects that give one field twice: `{amount: 1, amount: 7}`.
//!
//! GraphQL's "Input Object Field Uniqueness" rule forbids it, but async-graphql's parser keeps an
//! object value's fields in a map, so the last one silently wins and nothing after parsing can
//! tell. So once a document has parsed (its tokens are then known to be well formed), its text is
//! scanned here: one flat pass over its tokens that tracks which brackets open object values (a
//! `{` after `:` or `=`, or inside a list) and the field names given in each. It covers every
//! input: arguments, nested objects and lists, variable defaults and directive arguments.
//! The nesting guard has capped the depth of brackets at 64 before this runs.

use std::collections::HashSet;

use async_graphql::{Pos, ServerError, ServerResult};

use super::nesting::{skip_block_string, skip_string};

/// What an open bracket is.
enum Frame<'a> {
    /// A selection set, arguments, variable definitions.
    Other,
    List,
    /// An object value: the field names given so far, and whether a name comes next (else the
    /// value of the last name).
    Object {
        names: HashSet<&'a str>,
        expecting_name: bool,
    },
}

/// A value ended: in an object, the next token is a field name again.
fn value_done(frames: &mut [Frame<'_>]) {
    if let Some(Frame::Object { expecting_name, .. }) = frames.last_mut() {
        *expecting_name = true;
    }
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The first field name given twice in one object value, with its byte offset.
pub fn first_duplicate_field(document: &str) -> Option<(&str, usize)> {
    let bytes = document.as_bytes();
    let mut frames: Vec<Frame<'_>> = Vec::new();
    // The last punctuator, or 0 after a name or a value.
    let mut previous = 0u8;
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        match byte {
            b'#' => {
                while at < bytes.len() && bytes[at] != b'\n' && bytes[at] != b'\r' {
                    at += 1;
                }
                continue;
            }
            b'"' => {
                at = if bytes[at..].starts_with(b"\"\"\"") {
                    skip_block_string(bytes, at + 3)
                } else {
                    skip_string(bytes, at + 1)
                };
                value_done(&mut frames);
                previous = 0;
                continue;
            }
            b'{' => {
                let is_value =
                    matches!(previous, b':' | b'=') || matches!(frames.last(), Some(Frame::List));
                frames.push(if is_value {
                    Frame::Object {
                        names: HashSet::new(),
                        expecting_name: true,
                    }
                } else {
                    Frame::Other
                });
            }
            b'[' => frames.push(Frame::List),
            b'(' => frames.push(Frame::Other),
            b'}' | b']' | b')' => {
                frames.pop();
                value_done(&mut frames);
            }
            b'$' => {
                at += 1;
                while at < bytes.len() && is_name_byte(bytes[at]) {
                    at += 1;
                }
                value_done(&mut frames);
                previous = 0;
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'_' => {
                let start = at;
                while at < bytes.len() && is_name_byte(bytes[at]) {
                    at += 1;
                }
                let name = &document[start..at];
                match frames.last_mut() {
                    Some(Frame::Object {
                        names,
                        expecting_name,
                    }) if *expecting_name => {
                        if !names.insert(name) {
                            return Some((name, start));
                        }
                        *expecting_name = false;
                    }
                    // A value (an enum, `true`, `null`), or a name outside object values.
                    _ => value_done(&mut frames),
                }
                previous = 0;
                continue;
            }
            b'0'..=b'9' | b'-' => {
                while at < bytes.len()
                    && (bytes[at].is_ascii_alphanumeric()
                        || matches!(bytes[at], b'.' | b'+' | b'-'))
                {
                    at += 1;
                }
                value_done(&mut frames);
                previous = 0;
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                at += 1;
                continue;
            }
            _ => {}
        }
        previous = byte;
        at += 1;
    }
    None
}

/// Line and column (1-based, in characters) of a byte offset.
fn position(document: &str, offset: usize) -> Pos {
    let before = &document[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

/// The error a document with a repeated input field gets: a validation error, as the rule is one.
fn duplicate_error(document: &str, name: &str, offset: usize) -> ServerError {
    let mut error = ServerError::new(
        format!("There can be only one input field named \"{name}\""),
        Some(position(document, offset)),
    );
    error
        .extensions
        .get_or_insert_with(Default::default)
        .set("code", "GRAPHQL_VALIDATION_FAILED");
    error
}

/// Refuses a document (one that parsed) giving an input field twice in one object value.
pub fn check(document: &str) -> ServerResult<()> {
    match first_duplicate_field(document) {
        Some((name, offset)) => Err(duplicate_error(document, name, offset)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::first_duplicate_field;

    fn duplicate(document: &str) -> Option<&str> {
        first_duplicate_field(document).map(|(name, _)| name)
    }

    #[test]
    fn finds_a_field_given_twice_in_an_argument() {
        assert_eq!(
            duplicate(
                "mutation { subtractCredits(input: {endUserId: \"u\", amount: 1, amount: 7}) { replayed } }"
            ),
            Some("amount")
        );
        assert_eq!(duplicate("{ a(x: {b: 1, c: 2}) { d } }"), None);
    }

    #[test]
    fn looks_into_nested_objects_lists_defaults_and_directives() {
        assert_eq!(duplicate("{ a(x: {m: {k: 1, k: 2}}) }"), Some("k"));
        assert_eq!(duplicate("{ a(x: [{k: 1}, {k: 2, k: 3}]) }"), Some("k"));
        assert_eq!(duplicate("{ a(x: [[{k: 1 k: 2}]]) }"), Some("k"));
        assert_eq!(
            duplicate("query($v: In = {a: 1, a: 2}) { a(x: $v) }"),
            Some("a")
        );
        assert_eq!(duplicate("{ a @d(x: {q: 1, q: 1}) }"), Some("q"));
        // The same name in sibling objects, or as a value, is fine.
        assert_eq!(
            duplicate("{ a(x: [{k: 1}, {k: 2}], y: {k: k, j: k}) }"),
            None
        );
        assert_eq!(duplicate("{ a(x: {k: {k: {k: 1}}}) }"), None);
        assert_eq!(duplicate("{ a(x: {k: $k, j: $k}) }"), None);
    }

    #[test]
    fn selection_sets_aliases_strings_and_comments_do_not_count() {
        assert_eq!(duplicate("{ a { b b } c: a { b } }"), None);
        assert_eq!(
            duplicate("{ a(x: {s: \"k: 1, k: 2 {\", t: \"\"\"k k\"\"\"}) }"),
            None
        );
        assert_eq!(duplicate("{ a(x: {k: 1 # k: 2\n}) }"), None);
        assert_eq!(
            duplicate("{ a(x: {n: -1.5e3, m: 2}) ... on T { b } ... { c } }"),
            None
        );
    }
}
