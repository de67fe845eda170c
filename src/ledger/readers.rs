//! Balance reads on connections of their own (see `direct` for why not the pool's): a read
//! takes an idle one (or opens one, up to the limit), runs its one statement, and puts it back.

use std::sync::Mutex;

use sea_orm::sqlx::{self, Row};
use tokio::sync::Semaphore;

use super::direct::{DirectConnection, DirectOptions};
use super::grant::{Grant, Payment};
use super::types::{EndUserId, GrantSource};
use crate::error::{Error, Result};

/// The end user's grants that may still hold credits (as `store::load_open_grants`). The
/// columns are listed so that decoding goes by position; sqlx reads `$1` on SQLite too.
const OPEN_GRANTS: &str = "SELECT id, end_user_id, amount, remaining, source, \
     effective_at, expires_at, priority, description, metadata, created_at, voided_at, held, \
     cycle_id, reference, payment_reference, paid_amount, paid_currency \
     FROM grants WHERE end_user_id = $1 AND remaining > 0 AND voided_at IS NULL";

pub struct Readers {
    options: DirectOptions,
    idle: Mutex<Vec<DirectConnection>>,
    /// One per connection that may be open at once.
    permits: Semaphore,
}

impl Readers {
    pub fn new(options: DirectOptions, connections: usize) -> Self {
        assert!(connections > 0, "a reader needs a connection");
        Self {
            options,
            idle: Mutex::new(Vec::with_capacity(connections)),
            permits: Semaphore::new(connections),
        }
    }

    /// The end user's open grants, read with one statement.
    pub async fn open_grants(&self, end_user_id: &EndUserId) -> Result<Vec<Grant>> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Error::Internal("the balance readers were closed".into()))?;
        let kept = self.idle().pop();
        let (connection, grants) = match kept {
            Some(mut connection) => match open_grants(&mut connection, end_user_id).await {
                Ok(grants) => (connection, grants),
                // A kept connection may have been cut while it sat idle (the database
                // restarted, a proxy timed it out): the read is tried once more on a new one.
                Err(error) => {
                    tracing::debug!(error = error.detail(), "a kept reader failed; reopening");
                    self.read_on_new(end_user_id).await?
                }
            },
            None => self.read_on_new(end_user_id).await?,
        };
        // Back only now: after an error, or if this future was dropped mid-read, the
        // connection is dropped with it instead.
        self.idle().push(connection);
        Ok(grants)
    }

    async fn read_on_new(&self, end_user_id: &EndUserId) -> Result<(DirectConnection, Vec<Grant>)> {
        let mut connection = self.options.connect().await?;
        let grants = open_grants(&mut connection, end_user_id).await?;
        Ok((connection, grants))
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<DirectConnection>> {
        // A panic while holding the lock leaves a list of whole connections: still usable.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn open_grants(
    connection: &mut DirectConnection,
    end_user_id: &EndUserId,
) -> Result<Vec<Grant>> {
    let end_user_id = end_user_id.as_str();
    // The same decoding for both databases' rows: the types differ, the positions do not.
    macro_rules! grants {
        ($connection:expr) => {{
            let rows = sqlx::query(OPEN_GRANTS)
                .bind(end_user_id)
                .fetch_all($connection)
                .await
                .map_err(query_error)?;
            rows.iter()
                .map(|row| {
                    let reference: Option<String> = row.try_get(14).map_err(query_error)?;
                    let payment = match reference {
                        Some(reference) => Some(Payment {
                            reference,
                            payment_reference: row.try_get(15).map_err(query_error)?,
                            amount: row.try_get(16).map_err(query_error)?,
                            currency: row.try_get(17).map_err(query_error)?,
                        }),
                        None => None,
                    };
                    let source: String = row.try_get(4).map_err(query_error)?;
                    Ok(Grant {
                        id: row.try_get(0).map_err(query_error)?,
                        end_user_id: EndUserId::from_stored(row.try_get(1).map_err(query_error)?),
                        amount: row.try_get(2).map_err(query_error)?,
                        remaining: row.try_get(3).map_err(query_error)?,
                        source: GrantSource::from_stored(&source)?,
                        effective_at: row.try_get(5).map_err(query_error)?,
                        expires_at: row.try_get(6).map_err(query_error)?,
                        priority: row.try_get(7).map_err(query_error)?,
                        description: row.try_get(8).map_err(query_error)?,
                        metadata: row.try_get(9).map_err(query_error)?,
                        created_at: row.try_get(10).map_err(query_error)?,
                        voided_at: row.try_get(11).map_err(query_error)?,
                        held: row.try_get(12).map_err(query_error)?,
                        cycle_id: row.try_get(13).map_err(query_error)?,
                        payment,
                    })
                })
                .collect()
        }};
    }
    match connection {
        DirectConnection::Sqlite(connection) => grants!(connection),
        DirectConnection::Postgres(connection) => grants!(connection),
    }
}

fn query_error(error: sqlx::Error) -> Error {
    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(error))).into()
}
