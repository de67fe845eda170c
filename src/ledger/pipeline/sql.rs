//! The set-based statements of a batch: one statement per table, whatever the batch's size
//! (chunked only where a statement would pass the databases' bind-parameter limits: 32,766 on
//! SQLite, 65,535 on PostgreSQL). The two hand-written updates exist because an
//! `UPDATE … FROM (VALUES …)` list is one statement where the ORM would need a `CASE` per row;
//! both databases run them in the tests.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, Statement,
    Value,
};
use uuid::Uuid;

use super::decide::{KeyRecord, LoadedAccount, StoredKey};
use crate::entities::{account, grant, idempotency_key, ledger_allocation, ledger_entry};
use crate::error::{Error, Result};
use crate::ledger::entry::Entry;
use crate::ledger::grant::Grant;
use crate::ledger::store;
use crate::ledger::types::EndUserId;

/// Rows per multi-row statement: 13 columns × 1,000 rows stays under both parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Locks the accounts of `users` (sorted, distinct) in one statement, creating the missing ones,
/// and loads their open grants with one more. The fixed order means two batches (on any
/// processes) that share accounts lock them in the same order and cannot deadlock.
pub async fn lock_and_load(
    txn: &impl ConnectionTrait,
    users: &[EndUserId],
    now: DateTime<Utc>,
) -> Result<Vec<LoadedAccount>> {
    debug_assert!(users.windows(2).all(|pair| pair[0] < pair[1]));
    let mut last_seqs: HashMap<String, i64> = HashMap::with_capacity(users.len());
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let rows = account::Entity::insert_many(chunk.iter().map(|user| account::ActiveModel {
            end_user_id: Set(user.to_string()),
            last_seq: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }))
        .on_conflict(
            OnConflict::column(account::Column::EndUserId)
                .update_column(account::Column::UpdatedAt)
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await?;
        last_seqs.extend(rows.into_iter().map(|row| (row.end_user_id, row.last_seq)));
    }
    let mut grants_of: HashMap<EndUserId, Vec<Grant>> = HashMap::with_capacity(users.len());
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let rows = grant::Entity::find()
            .filter(grant::Column::EndUserId.is_in(chunk.iter().map(EndUserId::as_str)))
            .filter(grant::Column::Remaining.gt(0))
            .filter(grant::Column::VoidedAt.is_null())
            .all(txn)
            .await?;
        for row in rows {
            let grant = Grant::from_model(row)?;
            grants_of
                .entry(grant.end_user_id.clone())
                .or_default()
                .push(grant);
        }
    }
    users
        .iter()
        .map(|user| {
            let last_seq = *last_seqs
                .get(user.as_str())
                .ok_or_else(|| Error::Internal(format!("account {user} was not locked")))?;
            Ok(LoadedAccount {
                end_user_id: user.clone(),
                last_seq,
                grants: grants_of.remove(user).unwrap_or_default(),
            })
        })
        .collect()
}

/// The idempotency keys among `keys` that earlier writes recorded.
pub async fn stored_keys(
    txn: &impl ConnectionTrait,
    keys: &[&str],
) -> Result<HashMap<String, StoredKey>> {
    let mut stored = HashMap::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let rows = idempotency_key::Entity::find()
            .filter(idempotency_key::Column::Key.is_in(chunk.iter().copied()))
            .all(txn)
            .await?;
        stored.extend(rows.into_iter().map(|row| {
            (
                row.key,
                StoredKey {
                    operation: row.operation,
                    request_hash: row.request_hash,
                    entry_id: row.entry_id,
                },
            )
        }));
    }
    Ok(stored)
}

pub async fn insert_grants(txn: &impl ConnectionTrait, grants: &[Grant]) -> Result<()> {
    for chunk in grants.chunks(ROWS_PER_STATEMENT / 2) {
        grant::Entity::insert_many(chunk.iter().map(store::grant_row))
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// Appends entries and their allocations: one statement for each (entries are only ever
/// inserted).
pub async fn insert_entries(txn: &impl ConnectionTrait, entries: &[Entry]) -> Result<()> {
    for chunk in entries.chunks(ROWS_PER_STATEMENT / 2) {
        ledger_entry::Entity::insert_many(chunk.iter().map(store::entry_row))
            .exec_without_returning(txn)
            .await?;
    }
    let allocations: Vec<ledger_allocation::ActiveModel> =
        entries.iter().flat_map(store::allocation_rows).collect();
    let mut allocations = allocations.into_iter().peekable();
    while allocations.peek().is_some() {
        let chunk: Vec<_> = allocations.by_ref().take(ROWS_PER_STATEMENT).collect();
        ledger_allocation::Entity::insert_many(chunk)
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

pub async fn insert_keys(
    txn: &impl ConnectionTrait,
    keys: &[KeyRecord],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        idempotency_key::Entity::insert_many(chunk.iter().map(|record| {
            idempotency_key::ActiveModel {
                key: Set(record.key.clone()),
                operation: Set(record.operation.to_owned()),
                request_hash: Set(record.request_hash.clone()),
                end_user_id: Set(record.end_user_id.to_string()),
                entry_id: Set(record.entry_id),
                created_at: Set(now),
            }
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

/// Lowers `remaining` of every grant by what the batch took from it (negative: gave back), in
/// one statement. The `remaining >= taken` guard (and the table's CHECKs) make a stale plan fail
/// loudly instead of going negative.
pub async fn take_from_grants(
    txn: &impl ConnectionTrait,
    taken: &BTreeMap<Uuid, i64>,
) -> Result<()> {
    let taken: Vec<(Uuid, i64)> = taken.iter().map(|(id, amount)| (*id, *amount)).collect();
    for chunk in taken.chunks(ROWS_PER_STATEMENT) {
        let backend = txn.get_database_backend();
        let (values, rows) = values_list(backend, chunk, "uuid", "bigint");
        let sql = format!(
            "UPDATE grants SET remaining = grants.remaining - v.amount \
             FROM (SELECT {columns} FROM (VALUES {rows}) AS t) AS v \
             WHERE grants.id = v.id AND grants.remaining >= v.amount",
            columns = value_columns("id", "amount"),
        );
        let updated = txn
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        if updated.rows_affected() != chunk.len() as u64 {
            return Err(Error::Internal(format!(
                "a batch's plan was stale: {} of {} grants updated",
                updated.rows_affected(),
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Records each account's newest sequence number, in one statement.
pub async fn set_last_seqs(
    txn: &impl ConnectionTrait,
    last_seqs: &[(EndUserId, i64)],
) -> Result<()> {
    let pairs: Vec<(&str, i64)> = last_seqs
        .iter()
        .map(|(user, seq)| (user.as_str(), *seq))
        .collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let backend = txn.get_database_backend();
        let (values, rows) = values_list(backend, chunk, "text", "bigint");
        let sql = format!(
            "UPDATE accounts SET last_seq = v.seq \
             FROM (SELECT {columns} FROM (VALUES {rows}) AS t) AS v \
             WHERE accounts.end_user_id = v.id",
            columns = value_columns("id", "seq"),
        );
        txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    }
    Ok(())
}

/// `(?, ?), (?, ?)…` (PostgreSQL: `($1::uuid, $2::bigint), …`) and the values to bind.
fn values_list<Id: Clone + Into<Value>>(
    backend: DbBackend,
    pairs: &[(Id, i64)],
    first_type: &str,
    second_type: &str,
) -> (Vec<Value>, String) {
    let mut values = Vec::with_capacity(pairs.len() * 2);
    let mut rows = String::with_capacity(pairs.len() * 24);
    for (index, (id, amount)) in pairs.iter().enumerate() {
        if index > 0 {
            rows.push_str(", ");
        }
        match backend {
            DbBackend::Postgres => {
                let n = index * 2;
                rows.push_str(&format!(
                    "(${}::{first_type}, ${}::{second_type})",
                    n + 1,
                    n + 2
                ));
            }
            _ => rows.push_str("(?, ?)"),
        }
        values.push(id.clone().into());
        values.push(Value::from(*amount));
    }
    (values, rows)
}

/// Names for a `VALUES` list's two columns, which both databases call `column1` and `column2`.
fn value_columns(first: &str, second: &str) -> String {
    format!("t.column1 AS {first}, t.column2 AS {second}")
}
