//! Exactly-once writes (ledger rule 3 in docs/ledger.md).
//!
//! A write made with a key records `(key, operation, request hash, entry)` in the same
//! transaction as the entry. A later write with the key, looked up under the account lock, finds
//! it: the same request is answered from the recorded entry (a replay, nothing changes); any other
//! request is `IDEMPOTENCY_CONFLICT`. Two writers racing with one key on different end users
//! collide on the primary key: the loser rolls back and retries, and then finds the record.

use chrono::{DateTime, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Ledger;
use super::account_write::AccountWrite;
use super::entry::Entry;
use super::types::{EndUserId, IdempotencyKey};
use crate::entities::idempotency_key;
use crate::error::{Error, Result};

/// The canonical fingerprint of a request: SHA-256 over its JSON form. `serde_json` keeps
/// object keys sorted, so equal requests hash equally whatever order their fields came in.
pub fn request_hash(operation: &str, request: &impl serde::Serialize) -> Result<String> {
    let request = serde_json::to_value(request)
        .map_err(|e| Error::Internal(format!("hashing a request: {e}")))?;
    let canonical = serde_json::json!({ "operation": operation, "request": request });
    Ok(hex::encode(Sha256::digest(
        canonical.to_string().as_bytes(),
    )))
}

/// What an earlier write with this key means for the current one.
pub enum Prior {
    /// No write used this key yet: go ahead.
    None,
    /// The same request already ran; answer from this entry.
    Replay { entry_id: Uuid },
}

pub async fn check(
    conn: &impl ConnectionTrait,
    key: &IdempotencyKey,
    operation: &str,
    hash: &str,
) -> Result<Prior> {
    let Some(record) = idempotency_key::Entity::find_by_id(key.as_str().to_owned())
        .one(conn)
        .await?
    else {
        return Ok(Prior::None);
    };
    if record.operation != operation || record.request_hash != hash {
        return Err(Error::IdempotencyConflict {
            key: key.as_str().to_owned(),
        });
    }
    Ok(Prior::Replay {
        entry_id: record.entry_id,
    })
}

/// The entry an idempotency record names: the first result, rebuilt for a replay.
pub async fn replayed_entry(conn: &impl ConnectionTrait, entry_id: Uuid) -> Result<Entry> {
    super::store::find_entry(conn, entry_id)
        .await?
        .ok_or_else(|| {
            Error::Internal(format!("idempotency record names missing entry {entry_id}"))
        })
}

pub async fn record(
    txn: &impl ConnectionTrait,
    key: &IdempotencyKey,
    operation: &str,
    hash: &str,
    end_user_id: &EndUserId,
    entry_id: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        key: Set(key.as_str().to_owned()),
        operation: Set(operation.to_owned()),
        request_hash: Set(hash.to_owned()),
        end_user_id: Set(end_user_id.to_string()),
        entry_id: Set(entry_id),
        created_at: Set(now),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// What makes one write idempotent: the caller's key (if any), the operation and the request's
/// hash. Every keyed write goes through `Ledger::begin_keyed_write` and `Keyed::record`.
#[derive(Clone, Copy)]
pub struct Keyed<'a> {
    pub key: Option<&'a IdempotencyKey>,
    pub operation: &'static str,
    pub hash: &'a str,
}

/// How a keyed write starts.
pub enum Start {
    /// No write used the key: go ahead, the account is locked.
    Write(AccountWrite),
    /// The key names an earlier identical request: answer from this entry. Nothing was written
    /// and the lock is released.
    Replay(Uuid),
}

impl Ledger {
    /// The one way a keyed write begins: lock the account, then look the key up under the lock
    /// (a key used for another request is `IDEMPOTENCY_CONFLICT`).
    pub(super) async fn begin_keyed_write(
        &self,
        end_user_id: &EndUserId,
        keyed: Keyed<'_>,
    ) -> Result<Start> {
        let write = self.begin_write(end_user_id).await?;
        if let Some(key) = keyed.key
            && let Prior::Replay { entry_id } =
                check(&write.txn, key, keyed.operation, keyed.hash).await?
        {
            write.txn.rollback().await?;
            return Ok(Start::Replay(entry_id));
        }
        Ok(Start::Write(write))
    }
}

impl<'a> Keyed<'a> {
    pub fn new(key: Option<&'a IdempotencyKey>, operation: &'static str, hash: &'a str) -> Self {
        Self {
            key,
            operation,
            hash,
        }
    }

    /// Records the key (when the write has one) for the entry that answers it, in the write's
    /// transaction: committed together, or not at all.
    pub async fn record(&self, write: &AccountWrite, entry_id: Uuid) -> Result<()> {
        match self.key {
            Some(key) => {
                record(
                    &write.txn,
                    key,
                    self.operation,
                    self.hash,
                    &write.end_user_id,
                    entry_id,
                    write.now,
                )
                .await
            }
            None => Ok(()),
        }
    }
}
