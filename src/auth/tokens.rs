//! End-user tokens: short-lived signed JWTs (HS256) naming one end user, for frontends.
//!
//! The signing secret is `TALLY_TOKEN_SECRET`, or else one generated once and kept in the
//! database (`settings`), so that every process shares it.
//!
//! A token names the secret key that minted it (claim `key`): it is refused as soon as that key
//! is revoked (see `key_cache`). Tokens without the claim (minted before it existed) are refused.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::entities::setting;
use crate::error::{Error, Result};
use crate::ledger::EndUserId;
use crate::ledger::clock::Clock;

pub const DEFAULT_TTL_SECONDS: i64 = 15 * 60;
pub const MAX_TTL_SECONDS: i64 = 24 * 60 * 60;
const ISSUER: &str = "tally";
const AUDIENCE: &str = "tally:end-user";
const SECRET_SETTING: &str = "end_user_token_secret";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// The id of the secret key that minted the token.
    key: Uuid,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
}

/// What a valid token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub end_user_id: EndUserId,
    /// The secret key that minted it.
    pub key_id: Uuid,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// What tokens are issued at and expire against (see `Authenticator`).
    clock: Clock,
}

impl TokenSigner {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            clock: Clock::system(),
        }
    }

    /// Issues and expires tokens by `clock` instead of the system clock.
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The configured secret, or the one stored in the database (generated on first use).
    pub async fn load(
        db: &impl ConnectionTrait,
        configured: Option<&str>,
        clock: Clock,
    ) -> Result<Self> {
        if let Some(secret) = configured {
            return Ok(Self::from_secret(secret.as_bytes()).with_clock(clock));
        }
        let mut fresh = [0u8; 32];
        rand::rng().fill_bytes(&mut fresh);
        // First process wins; the others read what it stored.
        setting::Entity::insert(setting::ActiveModel {
            name: Set(SECRET_SETTING.to_owned()),
            value: Set(URL_SAFE_NO_PAD.encode(fresh)),
            created_at: Set(clock.now()),
        })
        .on_conflict(
            OnConflict::column(setting::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
        let stored = setting::Entity::find_by_id(SECRET_SETTING.to_owned())
            .one(db)
            .await?
            .ok_or_else(|| Error::Internal("token secret missing after insert".into()))?;
        Ok(Self::from_secret(stored.value.as_bytes()).with_clock(clock))
    }

    /// A token for `end_user_id`, valid `ttl_seconds` (1 to `MAX_TTL_SECONDS`), minted by the
    /// secret key `key_id`.
    pub fn issue(
        &self,
        end_user_id: EndUserId,
        ttl_seconds: i64,
        key_id: Uuid,
    ) -> Result<(String, DateTime<Utc>)> {
        if !(1..=MAX_TTL_SECONDS).contains(&ttl_seconds) {
            return Err(Error::bad_input(
                "ttlSeconds",
                format!("must be from 1 to {MAX_TTL_SECONDS}"),
            ));
        }
        let issued_at = self.clock.now();
        let expires_at = issued_at + Duration::seconds(ttl_seconds);
        let claims = Claims {
            sub: end_user_id.into_string(),
            key: key_id,
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Internal(format!("signing a token: {e}")))?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at);
        Ok((token, expires_at))
    }

    /// What a valid token says; `None` when it is expired, tampered with, foreign or names no
    /// minting key. (Whether that key is still live is the caller's check.)
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        Some(TokenClaims {
            end_user_id: EndUserId::parse("sub", &data.claims.sub).ok()?,
            key_id: data.claims.key,
            expires_at: DateTime::from_timestamp(data.claims.exp, 0)?,
        })
    }
}

/// JWTs are three base64url parts, the first a JSON header (`eyJ…`); secret keys are not.
pub fn looks_like_token(credential: &str) -> bool {
    credential.starts_with("eyJ") && credential.split('.').count() == 3
}
