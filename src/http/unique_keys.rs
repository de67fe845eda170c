//! Refuses JSON bodies that give one key twice in an object: `{"amount": 1, "amount": 7}`.
//!
//! serde_json keeps the last of two equal keys, silently, so `{"amount": 1, "amount": 7}` in a
//! GraphQL request's variables or a Creduse REST body would mean 7, as duplicate fields in a
//! GraphQL document used to. The JSON specification leaves such objects undefined; Tally refuses
//! them. The check walks the body with serde's streaming deserializer (whose recursion limit
//! bounds the depth) and stops at the first repeated key.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The first key given twice in one object of `body`; `None` when there is none, or when the
/// body is not JSON at all (the parser that reads it then reports that).
pub fn first_duplicate_key(body: &[u8]) -> Option<String> {
    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = Walk { found: &mut found }.deserialize(&mut deserializer);
    found
}

/// Visits a value; records the first repeated key and stops there (with an error).
struct Walk<'a> {
    found: &'a mut Option<String>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                *self.found = Some(key);
                return Err(serde::de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Walk {
                found: &mut *self.found,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walk {
                found: &mut *self.found,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::first_duplicate_key;

    #[test]
    fn finds_keys_given_twice_at_any_depth() {
        assert_eq!(
            first_duplicate_key(br#"{"amount": 1, "amount": 7}"#).as_deref(),
            Some("amount")
        );
        assert_eq!(
            first_duplicate_key(
                br#"{"variables": {"input": [{"a": 1}, {"b": {"c": 1, "c": 2}}]}}"#
            )
            .as_deref(),
            Some("c")
        );
        // Escapes are compared decoded.
        assert_eq!(
            first_duplicate_key(br#"{"a": 1, "\u0061": 2}"#).as_deref(),
            Some("a")
        );
    }

    #[test]
    fn siblings_and_non_json_pass() {
        assert_eq!(
            first_duplicate_key(br#"{"a": {"k": 1}, "b": {"k": 1}, "c": [1, "k", null]}"#),
            None
        );
        assert_eq!(first_duplicate_key(b"not json"), None);
        assert_eq!(first_duplicate_key(b""), None);
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(first_duplicate_key(deep.as_bytes()), None);
    }
}
