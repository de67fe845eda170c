//! The set-based statements of a batch: one statement per table, whatever the batch's size
//! (chunked only where a statement would pass the databases' bind-parameter limits: 32,766 on
//! SQLite, 65,535 on PostgreSQL). The two hand-written updates exist because an
//! `UPDATE … FROM (VALUES …)` list is one statement where the ORM would need a `CASE` per row;
//! both databases run them in the tests. On PostgreSQL the writes that follow the decisions go
//! to the database as one statement (`merged_checked`), with the commit (see `postgres`), and
//! the lock and load are statements of their own there (also `postgres`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryTrait, Statement,
    Value,
};
use uuid::Uuid;

use super::connection::BatchTransaction;
use super::decide::{Changes, LoadedAccount, StoredKey};
use crate::entities::{account, grant, idempotency_key, ledger_allocation, ledger_entry};
use crate::error::{Error, Result};
use crate::ledger::grant::Grant;
use crate::ledger::outbound::{self, BatchEvents, StoredAlerts};
use crate::ledger::store;
use crate::ledger::types::EndUserId;

/// Rows per multi-row statement: 13 columns × 1,000 rows stays under both parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

/// A batch's accounts, locked and loaded, and the alert rows of those that have one.
pub struct Loaded {
    pub accounts: Vec<LoadedAccount>,
    pub alerts: HashMap<String, StoredAlerts>,
}

/// Locks the accounts of `users` (sorted, distinct) in that order, creating the missing ones,
/// tells `locked`, then loads each one's newest sequence number, open grants and alert row, and
/// which of `keys` earlier writes stored. The fixed order means two batches (on any processes)
/// that share accounts lock them in the same order and cannot deadlock.
///
/// The load cannot be part of the lock's statement on PostgreSQL: it must see what the
/// transactions that held these locks before wrote, and a statement's snapshot is taken when
/// it starts, before the lock waited.
pub async fn lock_and_load(
    txn: &mut BatchTransaction,
    users: &[EndUserId],
    keys: &[&str],
    now: DateTime<Utc>,
    locked: impl FnOnce(),
) -> Result<(Loaded, HashMap<String, StoredKey>)> {
    debug_assert!(users.windows(2).all(|pair| pair[0] < pair[1]));
    let read = txn.lock_and_load(users, keys, now, locked).await?;
    let stored = read
        .keys
        .into_iter()
        .map(|row| {
            (
                row.key,
                StoredKey {
                    operation: row.operation,
                    request_hash: row.request_hash,
                    entry_id: row.entry_id,
                },
            )
        })
        .collect();
    Ok((loaded(users, read.rows)?, stored))
}

/// SQLite: the statements that lock (and create) the accounts of `users`, in order.
pub(super) fn lock_statements(users: &[EndUserId], now: DateTime<Utc>) -> Vec<Statement> {
    users
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            account::Entity::insert_many(
                chunk
                    .iter()
                    .map(|user| store::new_account_row(user, 0, now)),
            )
            .on_conflict(
                // An existing account is locked and left as it is (`WHERE false`: no update).
                // Its `updated_at` moves with its `last_seq`, when the batch writes an entry of
                // it (`set_last_seqs`).
                OnConflict::column(account::Column::EndUserId)
                    .update_column(account::Column::UpdatedAt)
                    .action_and_where(Expr::cust("false"))
                    .to_owned(),
            )
            .build(DbBackend::Sqlite)
        })
        .collect()
}

/// SQLite: the statements that load the locked accounts of `users` (`load_locked`).
pub(super) fn load_statements(users: &[EndUserId]) -> Vec<Statement> {
    users.chunks(ROWS_PER_STATEMENT).map(load_locked).collect()
}

/// SQLite: the statements that read which of `keys` are stored.
pub(super) fn key_statements(keys: &[&str]) -> Vec<Statement> {
    keys.chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            idempotency_key::Entity::find()
                .filter(idempotency_key::Column::Key.is_in(chunk.iter().copied()))
                .build(DbBackend::Sqlite)
        })
        .collect()
}

/// Each account of `users` (locked) with its alert row, once per open grant (once with no
/// grant when it has none). SQLite plans every join on an indexed column as a lookup.
pub(super) fn load_locked(users: &[EndUserId]) -> Statement {
    let placeholders = vec!["?"; users.len()].join(", ");
    let sql = format!(
        "SELECT a.end_user_id AS locked_end_user_id, a.last_seq AS locked_last_seq, \
         b.thresholds AS alert_thresholds, b.fired AS alert_fired, b.depleted AS alert_depleted, \
         g.* \
         FROM accounts a \
         LEFT JOIN balance_alerts b ON b.end_user_id = a.end_user_id \
         LEFT JOIN grants g ON g.end_user_id = a.end_user_id \
         AND g.remaining > 0 AND g.voided_at IS NULL \
         WHERE a.end_user_id IN ({placeholders})"
    );
    let values = users.iter().map(|user| Value::from(user.as_str()));
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// One row of `load_locked`: a locked account, its alert row's columns (all `None` when it has
/// none), and one of its open grants (`None` when it has none).
pub struct LockedRow {
    pub end_user_id: String,
    pub last_seq: i64,
    pub alert_thresholds: Option<serde_json::Value>,
    pub alert_fired: Option<serde_json::Value>,
    pub alert_depleted: Option<bool>,
    pub grant: Option<grant::Model>,
}

/// The accounts of `users`, in order, from the rows of `load_locked`.
fn loaded(users: &[EndUserId], rows: Vec<LockedRow>) -> Result<Loaded> {
    let mut last_seqs: HashMap<String, i64> = HashMap::with_capacity(users.len());
    let mut alerts: HashMap<String, StoredAlerts> = HashMap::new();
    let mut grants_of: HashMap<String, Vec<Grant>> = HashMap::with_capacity(users.len());
    for row in rows {
        let user = row.end_user_id;
        if !last_seqs.contains_key(&user) {
            if let Some(fired) = &row.alert_fired {
                alerts.insert(
                    user.clone(),
                    StoredAlerts::from_columns(
                        row.alert_thresholds.as_ref(),
                        fired,
                        row.alert_depleted.unwrap_or(false),
                    ),
                );
            }
            last_seqs.insert(user.clone(), row.last_seq);
        }
        if let Some(grant) = row.grant {
            grants_of
                .entry(user)
                .or_default()
                .push(Grant::from_model(grant)?);
        }
    }
    let accounts = users
        .iter()
        .map(|user| {
            let last_seq = *last_seqs
                .get(user.as_str())
                .ok_or_else(|| Error::Internal(format!("account {user} was not locked")))?;
            Ok(LoadedAccount {
                end_user_id: user.clone(),
                last_seq,
                grants: grants_of.remove(user.as_str()).unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Loaded { accounts, alerts })
}

/// One of a batch's writes, built but not yet run, and how many rows it must touch (a stale
/// plan must fail loudly, not write less).
pub struct Write {
    statement: Statement,
    expected_rows: u64,
}

impl Write {
    fn exactly(statement: Statement, rows: usize) -> Self {
        Self {
            statement,
            expected_rows: rows as u64,
        }
    }

    /// The statement, and the rows it must touch.
    pub fn into_parts(self) -> (Statement, u64) {
        (self.statement, self.expected_rows)
    }
}

/// Every write a batch makes, in order: its new grants, what it took from older ones, its
/// entries and their allocations, its idempotency records, its accounts' newest sequence
/// numbers, the alert states its entries changed and their outbound events.
pub fn batch_writes(
    backend: DbBackend,
    changes: &Changes,
    events: &BatchEvents,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let mut writes = Vec::new();
    for chunk in changes.new_grants.chunks(ROWS_PER_STATEMENT / 2) {
        let insert = grant::Entity::insert_many(chunk.iter().map(store::grant_row));
        writes.push(Write::exactly(insert.build(backend), chunk.len()));
    }
    take_from_grants(backend, &changes.taken, &mut writes);
    for chunk in changes.entries.chunks(ROWS_PER_STATEMENT / 2) {
        let insert = ledger_entry::Entity::insert_many(chunk.iter().map(store::entry_row));
        writes.push(Write::exactly(insert.build(backend), chunk.len()));
    }
    let allocations: Vec<ledger_allocation::ActiveModel> = changes
        .entries
        .iter()
        .flat_map(store::allocation_rows)
        .collect();
    let mut allocations = allocations.into_iter().peekable();
    while allocations.peek().is_some() {
        let chunk: Vec<_> = allocations.by_ref().take(ROWS_PER_STATEMENT).collect();
        let rows = chunk.len();
        writes.push(Write::exactly(
            ledger_allocation::Entity::insert_many(chunk).build(backend),
            rows,
        ));
    }
    for chunk in changes.keys.chunks(ROWS_PER_STATEMENT) {
        let insert = idempotency_key::Entity::insert_many(chunk.iter().map(|record| {
            idempotency_key::ActiveModel {
                key: Set(record.key.clone()),
                operation: Set(record.operation.to_owned()),
                request_hash: Set(record.request_hash.clone()),
                end_user_id: Set(record.end_user_id.to_string()),
                entry_id: Set(record.entry_id),
                created_at: Set(now),
            }
        }));
        writes.push(Write::exactly(insert.build(backend), chunk.len()));
    }
    set_last_seqs(backend, &changes.last_seqs, now, &mut writes);
    let alerts = outbound::alert_state_statements(backend, &events.changed, now);
    let outbox = outbound::event_statements(backend, &events.events);
    writes.extend(
        alerts
            .into_iter()
            .chain(outbox)
            .map(|(statement, rows)| Write::exactly(statement, rows)),
    );
    writes
}

/// Lowers `remaining` of every grant by what the batch took from it (negative: gave back), in
/// one statement. The `remaining >= taken` guard (and the table's CHECKs) make a stale plan fail
/// loudly instead of going negative.
fn take_from_grants(backend: DbBackend, taken: &BTreeMap<Uuid, i64>, writes: &mut Vec<Write>) {
    let taken: Vec<(Uuid, i64)> = taken.iter().map(|(id, amount)| (*id, *amount)).collect();
    for chunk in taken.chunks(ROWS_PER_STATEMENT) {
        let (values, rows) = values_list(backend, chunk, "uuid", "bigint", 0);
        let sql = format!(
            "UPDATE grants SET remaining = grants.remaining - v.amount \
             FROM (SELECT {columns} FROM (VALUES {rows}) AS t) AS v \
             WHERE grants.id = v.id AND grants.remaining >= v.amount",
            columns = value_columns("id", "amount"),
        );
        writes.push(Write::exactly(
            Statement::from_sql_and_values(backend, sql, values),
            chunk.len(),
        ));
    }
}

/// Records each account's newest sequence number and the time of its latest write, in one
/// statement.
fn set_last_seqs(
    backend: DbBackend,
    last_seqs: &[(EndUserId, i64)],
    now: DateTime<Utc>,
    writes: &mut Vec<Write>,
) {
    let pairs: Vec<(&str, i64)> = last_seqs
        .iter()
        .map(|(user, seq)| (user.as_str(), *seq))
        .collect();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        // The time is the first parameter (SQLite numbers `?` in the order of the text).
        let (list, rows) = values_list(backend, chunk, "text", "bigint", 1);
        let now_parameter = match backend {
            DbBackend::Postgres => "$1::timestamptz",
            _ => "?",
        };
        let sql = format!(
            "UPDATE accounts SET last_seq = v.seq, updated_at = {now_parameter} \
             FROM (SELECT {columns} FROM (VALUES {rows}) AS t) AS v \
             WHERE accounts.end_user_id = v.id",
            columns = value_columns("id", "seq"),
        );
        let values = std::iter::once(Value::from(now)).chain(list);
        // Every account of the batch exists (the batch locked it) and appears once.
        writes.push(Write::exactly(
            Statement::from_sql_and_values(backend, sql, values),
            chunk.len(),
        ));
    }
}

/// PostgreSQL: `writes` as one statement that fails unless every part touched the rows it must
/// (`merged`), when they fit in one statement's parameters; else `writes` back, to run one by
/// one.
pub fn merged_checked(writes: Vec<Write>) -> std::result::Result<Statement, Vec<Write>> {
    let parameters: usize = writes.iter().map(Write::parameters).sum();
    if writes.is_empty() || parameters > MAX_PG_PARAMETERS {
        return Err(writes);
    }
    Ok(merged(writes))
}

/// PostgreSQL's limit on one statement's bind parameters.
const MAX_PG_PARAMETERS: usize = 65_535;

impl Write {
    fn parameters(&self) -> usize {
        self.statement
            .values
            .as_ref()
            .map_or(0, |values| values.0.len())
    }
}

pub fn check_rows(expected_rows: u64, rows: u64) -> Result<()> {
    if rows != expected_rows {
        return Err(Error::Internal(format!(
            "a batch's plan was stale: {rows} of {expected_rows} rows written"
        )));
    }
    Ok(())
}

/// PostgreSQL statements (`$n` parameters, no literals) as one: each becomes a data-modifying
/// `WITH` part, `RETURNING 1` so that the final `SELECT` can count the rows each touched and
/// hand the counts, with the planned ones, to `tally_assert_rows` (a migration's), which fails
/// the statement, and so the transaction, unless they are equal. The check is in the statement
/// because the commit is sent with it, before its answer comes back (see `postgres`). The parts
/// see one snapshot and none sees another's rows, which a batch's writes never need: each part
/// writes rows of its own (new grants are inserted with what the batch took from them already
/// taken, see `decide`), and no foreign key joins the tables they append to on PostgreSQL
/// (migration `m20261206_000010_lean_ledger_appends`).
fn merged(writes: Vec<Write>) -> Statement {
    let mut sql = String::from("WITH ");
    let mut values = Vec::new();
    let mut counts = Vec::with_capacity(writes.len());
    let mut planned = Vec::with_capacity(writes.len());
    for (index, write) in writes.into_iter().enumerate() {
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("w{index} AS ("));
        push_renumbered(&mut sql, &write.statement.sql, values.len());
        sql.push_str(" RETURNING 1)");
        values.extend(write.statement.values.map(|v| v.0).unwrap_or_default());
        counts.push(format!("(SELECT count(*) FROM w{index})"));
        planned.push(write.expected_rows.to_string());
    }
    sql.push_str(&format!(
        " SELECT tally_assert_rows(ARRAY[{}], ARRAY[{}]::bigint[])",
        counts.join(", "),
        planned.join(", ")
    ));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Appends `statement` with each `$n` parameter moved up by `offset`. The statements merged
/// here are built by sea-query or by this module: every value is a parameter, so a `$` followed
/// by a digit is always one (asserted: no quote but an identifier's).
fn push_renumbered(sql: &mut String, statement: &str, offset: usize) {
    debug_assert!(!statement.contains('\''), "a literal in {statement}");
    let mut chars = statement.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            let mut number = 0usize;
            while let Some(digit) = chars.peek().and_then(|d| d.to_digit(10)) {
                number = number * 10 + digit as usize;
                chars.next();
            }
            sql.push('$');
            sql.push_str(&(number + offset).to_string());
        } else {
            sql.push(c);
        }
    }
}

/// `(?, ?), (?, ?)…` (PostgreSQL: `($1::uuid, $2::bigint), …`, numbered after the statement's
/// first `before` parameters) and the values to bind.
fn values_list<Id: Clone + Into<Value>>(
    backend: DbBackend,
    pairs: &[(Id, i64)],
    first_type: &str,
    second_type: &str,
    before: usize,
) -> (Vec<Value>, String) {
    let mut values = Vec::with_capacity(pairs.len() * 2);
    let mut rows = String::with_capacity(pairs.len() * 24);
    for (index, (id, amount)) in pairs.iter().enumerate() {
        if index > 0 {
            rows.push_str(", ");
        }
        match backend {
            DbBackend::Postgres => {
                let n = before + index * 2;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_writes_number_their_parameters_in_order_and_check_each_part_s_rows() {
        let first = Write::exactly(
            Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4)"#,
                [1i64.into(), 2i64.into(), 3i64.into(), 4i64.into()],
            ),
            2,
        );
        let second = Write::exactly(
            Statement::from_sql_and_values(
                DbBackend::Postgres,
                "UPDATE u SET x = $1 WHERE id = $2 AND y = $10",
                [5i64.into(), 6i64.into()],
            ),
            1,
        );
        let statement = merged(vec![first, second]);
        assert_eq!(
            statement.sql,
            r#"WITH w0 AS (INSERT INTO "t" ("a", "b") VALUES ($1, $2), ($3, $4) RETURNING 1), w1 AS (UPDATE u SET x = $5 WHERE id = $6 AND y = $14 RETURNING 1) SELECT tally_assert_rows(ARRAY[(SELECT count(*) FROM w0), (SELECT count(*) FROM w1)], ARRAY[2, 1]::bigint[])"#
        );
        let values: Vec<Value> = statement.values.unwrap().0;
        assert_eq!(values.len(), 6);
        assert_eq!(values[4], Value::from(5i64));
    }

    #[test]
    fn a_part_that_wrote_other_than_planned_fails_the_batch() {
        assert!(check_rows(3, 3).is_ok());
        assert!(check_rows(3, 2).is_err());
    }
}
