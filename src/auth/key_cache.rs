//! The live secret keys, held in memory and refreshed from the database.
//!
//! Every request presents a credential; looking its key up in the database made authentication
//! a round trip of its own. Here each process keeps the hashes of the live (unrevoked) keys and
//! reloads them every `REFRESH_INTERVAL`, so a valid key is checked without the database, and a
//! key revoked anywhere (the CLI, another process) is refused on every process within a second.
//! End-user tokens name the key that minted them and are checked against the same set.
//!
//! A key the set does not know yet (created by the CLI since the last reload) is looked up in the
//! database, so a new key works at once; unknown and revoked keys cost that look-up, as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::api_keys;
use crate::entities::api_key;
use crate::error::Result;

/// How often the set is reloaded: twice a second, so a revocation reaches every process within
/// one second even when a reload takes a while.
pub const REFRESH_INTERVAL: Duration = Duration::from_millis(500);

/// A set older than this (its reloads failing) is not trusted: the database is asked instead,
/// so a revoked key is never accepted for longer than this.
const TRUSTED_FOR: Duration = Duration::from_secs(1);

/// The live keys: SHA-256 hash (hex) → key id, and the ids, as loaded at `loaded_at`.
struct LiveKeys {
    by_hash: HashMap<String, Uuid>,
    ids: HashSet<Uuid>,
    loaded_at: Instant,
}

impl LiveKeys {
    fn empty() -> Self {
        Self {
            by_hash: HashMap::new(),
            ids: HashSet::new(),
            loaded_at: Instant::now() - TRUSTED_FOR,
        }
    }

    fn trusted(&self) -> bool {
        self.loaded_at.elapsed() < TRUSTED_FOR
    }
}

#[derive(Clone)]
pub struct KeyCache {
    db: DatabaseConnection,
    live: Arc<RwLock<Arc<LiveKeys>>>,
}

impl KeyCache {
    /// Loads the live keys once; `run_refresher` keeps them current.
    pub async fn load(db: DatabaseConnection) -> Result<Self> {
        let cache = Self {
            db,
            live: Arc::new(RwLock::new(Arc::new(LiveKeys::empty()))),
        };
        cache.refresh().await?;
        Ok(cache)
    }

    /// Reloads the live keys (one statement).
    pub async fn refresh(&self) -> Result<()> {
        let started = Instant::now();
        let rows: Vec<(Uuid, String)> = api_key::Entity::find()
            .select_only()
            .column(api_key::Column::Id)
            .column(api_key::Column::KeyHash)
            .filter(api_key::Column::RevokedAt.is_null())
            .into_tuple()
            .all(&self.db)
            .await?;
        let live = LiveKeys {
            ids: rows.iter().map(|(id, _)| *id).collect(),
            by_hash: rows.into_iter().map(|(id, hash)| (hash, id)).collect(),
            loaded_at: started,
        };
        *self.live.write().expect("key cache lock") = Arc::new(live);
        Ok(())
    }

    fn snapshot(&self) -> Arc<LiveKeys> {
        self.live.read().expect("key cache lock").clone()
    }

    /// The id of the live key `presented` is, or `None` when it is unknown or revoked.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<Uuid>> {
        let hash = api_keys::hash_key(presented);
        let live = self.snapshot();
        if live.trusted()
            && let Some(id) = live.by_hash.get(&hash)
        {
            return Ok(Some(*id));
        }
        api_keys::authenticate(&self.db, presented).await
    }

    /// Whether the key `key_id` is live (not revoked).
    pub async fn is_live(&self, key_id: Uuid) -> Result<bool> {
        let live = self.snapshot();
        if live.trusted() && live.ids.contains(&key_id) {
            return Ok(true);
        }
        api_keys::is_live(&self.db, key_id).await
    }
}

/// Reloads the cache every `REFRESH_INTERVAL`, for as long as the process runs. A failed reload
/// keeps the last set and is retried at the next tick.
pub async fn run_refresher(cache: KeyCache) {
    let mut tick = tokio::time::interval(REFRESH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = cache.refresh().await {
            tracing::warn!(error = error.detail(), "reloading the secret keys failed");
        }
    }
}
