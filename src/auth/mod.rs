//! Who is calling. Secret API keys (for the customer's backend) are the only credential so far.

pub mod api_keys;

use uuid::Uuid;

use crate::error::{Error, Result};

/// The credential a request presented, resolved once per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No `Authorization` header.
    Anonymous,
    /// A credential that is malformed, unknown or revoked.
    Invalid,
    /// A live secret key: full access.
    SecretKey { key_id: Uuid },
}

impl Caller {
    /// Data operations need a credential; with the current credential types, a valid one is a
    /// secret key and may do everything.
    pub fn require_secret_key(&self) -> Result<()> {
        match self {
            Self::SecretKey { .. } => Ok(()),
            Self::Anonymous => Err(Error::Unauthenticated(
                "missing credential: send Authorization: Bearer <secret key>",
            )),
            Self::Invalid => Err(Error::Unauthenticated("invalid or revoked credential")),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
