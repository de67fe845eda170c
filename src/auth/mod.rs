//! Who is calling, and what they may do.
//!
//! Secret API keys (the customer's backend) may do everything. End-user tokens (frontends) may
//! only read their own end user's balance, history, cycle and live balance, list the active bundles,
//! and start a Stripe Checkout for their own end user. Nothing else gets in.

pub mod api_keys;
pub mod key_cache;
pub mod tokens;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::ledger::EndUserId;
use key_cache::KeyCache;
use tokens::TokenSigner;

/// The credential a request presented, resolved once per request (or per socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No credential.
    Anonymous,
    /// A credential that is malformed, unknown, revoked, expired or tampered with.
    Invalid,
    /// A live secret key: full access.
    SecretKey { key_id: Uuid },
    /// A valid end-user token: read access to that end user, and buying for it. Valid until
    /// `expires_at`, and while the key that minted it (`key_id`) is not revoked.
    EndUser {
        end_user_id: EndUserId,
        key_id: Uuid,
        expires_at: DateTime<Utc>,
    },
}

impl Caller {
    fn unauthenticated(&self) -> Option<Error> {
        match self {
            Self::Anonymous => Some(Error::Unauthenticated(
                "missing credential: send Authorization: Bearer <secret key or end-user token>",
            )),
            Self::Invalid => Some(Error::Unauthenticated(
                "invalid, expired or revoked credential",
            )),
            _ => None,
        }
    }

    /// Writes and administration: secret keys only.
    pub fn require_secret_key(&self) -> Result<()> {
        if let Some(error) = self.unauthenticated() {
            return Err(error);
        }
        match self {
            Self::SecretKey { .. } => Ok(()),
            _ => Err(Error::Forbidden(
                "end-user tokens are read-only: this needs a secret key",
            )),
        }
    }

    /// Any valid credential: a secret key or an end-user token.
    pub fn require_authenticated(&self) -> Result<()> {
        match self.unauthenticated() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Acting on behalf of one end user (starting a purchase): a secret key, or that end
    /// user's own token.
    pub fn require_acting_for(&self, end_user_id: &EndUserId) -> Result<()> {
        self.require_authenticated()?;
        match self {
            Self::EndUser {
                end_user_id: own, ..
            } if own != end_user_id => Err(Error::Forbidden(
                "this token may only act for its own end user",
            )),
            _ => Ok(()),
        }
    }

    /// Reading one end user's data: a secret key, or that end user's own token.
    pub fn require_read(&self, end_user_id: &EndUserId) -> Result<()> {
        if let Some(error) = self.unauthenticated() {
            return Err(error);
        }
        match self {
            Self::EndUser {
                end_user_id: own, ..
            } if own != end_user_id => Err(Error::Forbidden(
                "this token may only read its own end user's data",
            )),
            _ => Ok(()),
        }
    }
}

/// Why a credential accepted earlier no longer is (a long-lived WebSocket checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lapse {
    Expired,
    Revoked,
}

/// Turns credentials into callers. Secret keys (and the keys behind tokens) are checked
/// against the in-memory `KeyCache`.
#[derive(Clone)]
pub struct Authenticator {
    keys: KeyCache,
    signer: TokenSigner,
}

impl Authenticator {
    pub fn new(keys: KeyCache, signer: TokenSigner) -> Self {
        Self { keys, signer }
    }

    pub fn signer(&self) -> &TokenSigner {
        &self.signer
    }

    /// The caller an `Authorization` header value (or `None`) names.
    pub async fn identify(&self, authorization: Option<&str>) -> Result<Caller> {
        let Some(value) = authorization else {
            return Ok(Caller::Anonymous);
        };
        let Some(credential) = bearer_token(value) else {
            return Ok(Caller::Invalid);
        };
        if tokens::looks_like_token(credential) {
            let Some(claims) = self.signer.verify(credential) else {
                return Ok(Caller::Invalid);
            };
            // Valid up to, not including, `exp` (the JWT check alone allows its whole second):
            // the same instant a socket holding the token is closed at.
            if claims.expires_at <= self.signer.clock().now()
                || !self.keys.is_live(claims.key_id).await?
            {
                return Ok(Caller::Invalid);
            }
            return Ok(Caller::EndUser {
                end_user_id: claims.end_user_id,
                key_id: claims.key_id,
                expires_at: claims.expires_at,
            });
        }
        Ok(match self.keys.authenticate(credential).await? {
            Some(key_id) => Caller::SecretKey { key_id },
            None => Caller::Invalid,
        })
    }

    /// Whether a caller accepted earlier still would be: its token not expired, its key (or the
    /// key that minted its token) not revoked.
    pub async fn lapse(&self, caller: &Caller) -> Result<Option<Lapse>> {
        let key_id = match caller {
            Caller::EndUser { expires_at, .. } if *expires_at <= self.signer.clock().now() => {
                return Ok(Some(Lapse::Expired));
            }
            Caller::EndUser { key_id, .. } | Caller::SecretKey { key_id } => *key_id,
            Caller::Anonymous | Caller::Invalid => return Ok(None),
        };
        Ok((!self.keys.is_live(key_id).await?).then_some(Lapse::Revoked))
    }
}

/// The credential of an `Authorization: Bearer <credential>` value (scheme case-insensitive).
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

    #[test]
    fn tokens_verify_until_they_expire_or_are_altered() {
        let signer = TokenSigner::from_secret(b"a test secret of enough length!!");
        let user = EndUserId::from_stored(Uuid::new_v4().to_string());
        let key = Uuid::new_v4();
        let (token, expires_at) = signer.issue(user.clone(), 60, key).unwrap();
        assert!(tokens::looks_like_token(&token));
        let claims = signer.verify(&token).unwrap();
        assert_eq!(
            (claims.end_user_id, claims.key_id, claims.expires_at),
            (user.clone(), key, expires_at)
        );
        let other = TokenSigner::from_secret(b"another secret of enough length!");
        assert_eq!(other.verify(&token), None);
        let mut tampered = token.clone();
        tampered.insert(token.len() - 3, 'x');
        assert_eq!(signer.verify(&tampered), None);
        assert!(signer.issue(user.clone(), 0, key).is_err());
        assert!(
            signer
                .issue(user, tokens::MAX_TTL_SECONDS + 1, key)
                .is_err()
        );
    }

    #[test]
    fn tokens_read_only_their_own_end_user() {
        let user = EndUserId::from_stored(Uuid::new_v4().to_string());
        let caller = Caller::EndUser {
            end_user_id: user.clone(),
            key_id: Uuid::new_v4(),
            expires_at: Utc::now(),
        };
        assert!(caller.require_read(&user).is_ok());
        assert!(matches!(
            caller.require_read(&EndUserId::from_stored(Uuid::new_v4().to_string())),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            caller.require_secret_key(),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            Caller::Anonymous.require_read(&user),
            Err(Error::Unauthenticated(_))
        ));
        assert!(caller.require_acting_for(&user).is_ok());
        assert!(matches!(
            caller.require_acting_for(&EndUserId::from_stored(Uuid::new_v4().to_string())),
            Err(Error::Forbidden(_))
        ));
        assert!(caller.require_authenticated().is_ok());
        assert!(matches!(
            Caller::Invalid.require_authenticated(),
            Err(Error::Unauthenticated(_))
        ));
    }
}
