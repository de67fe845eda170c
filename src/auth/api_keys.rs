//! Secret API keys: created and revoked by the CLI, stored as SHA-256 hashes.
//!
//! Keys are 256 random bits, so a fast hash is enough (nothing to brute-force), and it lets the
//! key be found by an indexed look-up. The found hash is still compared in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::entities::api_key;
use crate::error::{Error, Result, is_unique_violation};

/// Every generated key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "tally_sk_";
const SHOWN_PREFIX_CHARS: usize = 13;

#[derive(Clone, Debug)]
pub struct ApiKeySummary {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeySummary {
    fn from(model: api_key::Model) -> Self {
        Self {
            id: model.id,
            name: model.name,
            prefix: model.prefix,
            created_at: model.created_at,
            revoked_at: model.revoked_at,
        }
    }
}

pub(super) fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn generate_key() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret))
}

/// Creates a key and returns it with its summary. The key is shown this once and never again.
pub async fn create(db: &impl ConnectionTrait, name: &str) -> Result<(String, ApiKeySummary)> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::bad_input("name", "must be 1 to 100 characters"));
    }
    crate::ledger::types::check_text("name", name)?;
    let key = generate_key();
    let summary = store(db, name, &key).await?;
    Ok((key, summary))
}

async fn store(db: &impl ConnectionTrait, name: &str, key: &str) -> Result<ApiKeySummary> {
    let model = api_key::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name.to_owned()),
        prefix: Set(key.chars().take(SHOWN_PREFIX_CHARS).collect()),
        key_hash: Set(hash_key(key)),
        created_at: Set(system_now()),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(model.into())
}

/// Makes sure `key` (from `TALLY_ADMIN_API_KEY`) exists. A key that was revoked stays revoked:
/// seeding must not undo an operator's revocation.
pub async fn ensure(db: &impl ConnectionTrait, name: &str, key: &str) -> Result<()> {
    let existing = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(hash_key(key)))
        .one(db)
        .await?;
    match existing {
        Some(model) if model.revoked_at.is_some() => {
            tracing::warn!(key_id = %model.id, "TALLY_ADMIN_API_KEY names a revoked key; it stays revoked");
            Ok(())
        }
        Some(_) => Ok(()),
        None => match store(db, name, key).await {
            // Another process seeded the same key at the same moment.
            Err(error) if is_unique_violation(&error) => Ok(()),
            other => other.map(|_| ()),
        },
    }
}

pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<ApiKeySummary>> {
    Ok(api_key::Entity::find()
        .order_by_asc(api_key::Column::CreatedAt)
        .all(db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Revokes a key; revoking a revoked key changes nothing. Unknown ids are `NOT_FOUND`.
pub async fn revoke(db: &impl ConnectionTrait, id: Uuid) -> Result<ApiKeySummary> {
    let model = api_key::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no API key with id {id}")))?;
    if model.revoked_at.is_some() {
        return Ok(model.into());
    }
    let mut active: api_key::ActiveModel = model.into();
    active.revoked_at = Set(Some(system_now()));
    Ok(active.update(db).await?.into())
}

/// The id of the live key `presented` is, or `None` when it is unknown or revoked.
pub async fn authenticate(db: &impl ConnectionTrait, presented: &str) -> Result<Option<Uuid>> {
    let presented_hash = hash_key(presented);
    let Some(model) = api_key::Entity::find()
        .filter(api_key::Column::KeyHash.eq(presented_hash.clone()))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let matches: bool = model
        .key_hash
        .as_bytes()
        .ct_eq(presented_hash.as_bytes())
        .into();
    Ok((matches && model.revoked_at.is_none()).then_some(model.id))
}

/// Whether the key `id` exists and is not revoked.
pub async fn is_live(db: &impl ConnectionTrait, id: Uuid) -> Result<bool> {
    Ok(api_key::Entity::find_by_id(id)
        .one(db)
        .await?
        .is_some_and(|model| model.revoked_at.is_none()))
}

/// Keys are bookkeeping, never compared with the ledger's instants: stamped by the system clock
/// (the CLI manages them without a running service).
fn system_now() -> chrono::DateTime<chrono::Utc> {
    crate::ledger::clock::Clock::system().now()
}
