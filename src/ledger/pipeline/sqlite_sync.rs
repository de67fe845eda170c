//! SQLite only: the write lane's connection, driven synchronously (rusqlite) on the lane's own
//! thread, so a batch's statements run one after another without leaving that thread.
//!
//! Why not sqlx here as everywhere else: sqlx runs each SQLite connection on a worker thread of
//! its own, and every statement, `BEGIN` and `COMMIT` is a request to that thread and an answer
//! back. On two busy cores each such hop cost 0.25–0.4 ms (a timed profile: `BEGIN`, which
//! SQLite does in microseconds, took 0.26–0.37 ms), five per batch, while the writer held
//! SQLite's one write lock. The lane's thread now runs the whole batch itself.
//!
//! The statements are the ORM's, as on PostgreSQL (`sql`). Values are bound as sqlx binds them
//! (UUIDs as 16-byte blobs, times as RFC 3339 text, JSON as text, booleans as 0/1) and read
//! back as sqlx reads them, so what the lane writes reads the same through the pool's
//! connections, and the other way round (`tests` compare both drivers on every grant column).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, Value as Sql, ValueRef};
use sea_orm::sqlx::sqlite::SqliteConnectOptions;
use sea_orm::{DbErr, RuntimeErr, Statement, Value};
use uuid::Uuid;

use super::sql::LockedRow;
use crate::entities::{grant, idempotency_key};
use crate::error::Result;

/// Statements kept prepared: a batch's statements differ by their row counts.
const STATEMENT_CACHE_CAPACITY: usize = 1_024;

/// The lane's settings, on top of what the database file already has (WAL, set by the pool).
pub struct WriterSettings {
    /// FULL, as the pool's connections (`crate::db`): an acknowledged write survives power loss.
    pub synchronous: &'static str,
    pub busy_timeout: Duration,
    /// The one writer keeping one connection keeps its page cache (SQLite drops a connection's
    /// cache whenever another has written), so it may as well be a large one.
    pub cache_kib: i64,
    /// Only a backstop: the log is checkpointed beside the lane (`wal_checkpoint`).
    pub autocheckpoint_pages: u32,
}

impl Default for WriterSettings {
    fn default() -> Self {
        Self {
            synchronous: "FULL",
            busy_timeout: crate::db::SQLITE_BUSY_TIMEOUT,
            cache_kib: crate::db::SQLITE_WRITER_CACHE_KIB,
            autocheckpoint_pages: super::wal_checkpoint::LANE_AUTOCHECKPOINT_PAGES,
        }
    }
}

/// Opens the lane's connection to the database of `options` (a file, or sqlx's shared
/// in-memory database).
pub fn open(
    options: &SqliteConnectOptions,
    settings: &WriterSettings,
) -> Result<rusqlite::Connection, DbErr> {
    use rusqlite::OpenFlags;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let filename = options.get_filename().to_string_lossy();
    // sqlx names an in-memory database `file:sqlx-in-memory-N` and opens it shared.
    let path = if filename.starts_with("file:sqlx-in-memory-") {
        format!("{filename}?mode=memory&cache=shared")
    } else {
        filename.into_owned()
    };
    let connection = rusqlite::Connection::open_with_flags(path, flags).map_err(conn_error)?;
    connection
        .busy_timeout(settings.busy_timeout)
        .map_err(conn_error)?;
    connection
        .execute_batch(&format!(
            "PRAGMA foreign_keys = ON; PRAGMA synchronous = {}; PRAGMA cache_size = -{}; \
             PRAGMA wal_autocheckpoint = {};",
            settings.synchronous, settings.cache_kib, settings.autocheckpoint_pages
        ))
        .map_err(conn_error)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(connection)
}

/// Runs a statement that returns no rows; the rows it changed.
pub fn execute(
    connection: &rusqlite::Connection,
    sql: &str,
    values: &[Value],
) -> Result<u64, DbErr> {
    let mut statement = connection.prepare_cached(sql).map_err(exec_error)?;
    bind(&mut statement, values).map_err(exec_error)?;
    let rows = statement.raw_execute().map_err(exec_error)?;
    Ok(rows as u64)
}

/// The rows of `sql::load_locked`.
pub fn load_locked(
    connection: &rusqlite::Connection,
    statement: &Statement,
) -> Result<Vec<LockedRow>> {
    query(connection, statement, |row, columns| {
        let grant_id: Option<Stored<Uuid>> = columns.get(row, "id")?;
        Ok(LockedRow {
            end_user_id: columns.get(row, "locked_end_user_id")?,
            last_seq: columns.get(row, "locked_last_seq")?,
            alert_thresholds: json(row, columns, "alert_thresholds")?,
            alert_fired: json(row, columns, "alert_fired")?,
            alert_depleted: columns.get(row, "alert_depleted")?,
            grant: match grant_id {
                Some(_) => Some(grant_model(row, columns)?),
                None => None,
            },
        })
    })
}

/// The rows of a `SELECT` of every idempotency key column.
pub fn stored_keys(
    connection: &rusqlite::Connection,
    statement: &Statement,
) -> Result<Vec<idempotency_key::Model>> {
    query(connection, statement, |row, columns| {
        Ok(idempotency_key::Model {
            key: columns.get(row, "key")?,
            operation: columns.get(row, "operation")?,
            request_hash: columns.get(row, "request_hash")?,
            end_user_id: columns.get(row, "end_user_id")?,
            entry_id: columns.get::<Stored<Uuid>>(row, "entry_id")?.0,
            created_at: columns.get::<Stored<DateTime<Utc>>>(row, "created_at")?.0,
        })
    })
}

/// A grant, from a row holding every column of `grants` by name.
fn grant_model(row: &rusqlite::Row<'_>, columns: &Columns) -> rusqlite::Result<grant::Model> {
    Ok(grant::Model {
        id: columns.get::<Stored<Uuid>>(row, "id")?.0,
        end_user_id: columns.get(row, "end_user_id")?,
        amount: columns.get(row, "amount")?,
        remaining: columns.get(row, "remaining")?,
        source: columns.get(row, "source")?,
        effective_at: columns.get::<Stored<DateTime<Utc>>>(row, "effective_at")?.0,
        expires_at: optional(columns.get(row, "expires_at")?),
        priority: columns.get(row, "priority")?,
        description: columns.get(row, "description")?,
        metadata: json(row, columns, "metadata")?,
        created_at: columns.get::<Stored<DateTime<Utc>>>(row, "created_at")?.0,
        voided_at: optional(columns.get(row, "voided_at")?),
        held: columns.get(row, "held")?,
        cycle_id: optional(columns.get(row, "cycle_id")?),
        reference: columns.get(row, "reference")?,
        payment_reference: columns.get(row, "payment_reference")?,
        paid_amount: columns.get(row, "paid_amount")?,
        paid_currency: columns.get(row, "paid_currency")?,
    })
}

fn query<T>(
    connection: &rusqlite::Connection,
    statement: &Statement,
    mut read: impl FnMut(&rusqlite::Row<'_>, &Columns) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let values = statement.values.as_ref().map_or(&[][..], |v| &v.0[..]);
    let mut prepared = connection
        .prepare_cached(&statement.sql)
        .map_err(query_error)?;
    bind(&mut prepared, values).map_err(query_error)?;
    let columns = Columns::of(&prepared);
    let mut rows = prepared.raw_query();
    let mut read_rows = Vec::new();
    while let Some(row) = rows.next().map_err(query_error)? {
        read_rows.push(read(row, &columns).map_err(query_error)?);
    }
    Ok(read_rows)
}

/// A statement's column positions by name, found once per statement: rusqlite's lookup by name
/// compares the name with every column's on each call, and decoding a batch's locked rows by
/// name that way took about 8% of the write lane's thread.
struct Columns(HashMap<String, usize>);

impl Columns {
    fn of(statement: &rusqlite::Statement<'_>) -> Self {
        let mut positions = HashMap::new();
        for (index, name) in statement.column_names().into_iter().enumerate() {
            // The first of two columns of one name, as rusqlite's own lookup finds.
            positions.entry(name.to_owned()).or_insert(index);
        }
        Self(positions)
    }

    fn get<T: FromSql>(&self, row: &rusqlite::Row<'_>, name: &str) -> rusqlite::Result<T> {
        let index = *self
            .0
            .get(name)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_owned()))?;
        row.get(index)
    }
}

/// A value as sqlx stores it, read back as sqlx reads it.
struct Stored<T>(T);

impl FromSql for Stored<Uuid> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Blob(bytes) => Uuid::from_slice(bytes),
            ValueRef::Text(text) => Uuid::try_parse_ascii(text),
            _ => return Err(FromSqlError::InvalidType),
        }
        .map(Stored)
        .map_err(|error| FromSqlError::Other(Box::new(error)))
    }
}

impl FromSql for Stored<DateTime<Utc>> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = std::str::from_utf8(value.as_bytes()?)
            .map_err(|error| FromSqlError::Other(Box::new(error)))?;
        parse_time(text)
            .map(Stored)
            .ok_or_else(|| FromSqlError::Other(format!("not a time: {text:?}").into()))
    }
}

fn optional<T>(stored: Option<Stored<T>>) -> Option<T> {
    stored.map(|Stored(value)| value)
}

fn json(
    row: &rusqlite::Row<'_>,
    columns: &Columns,
    column: &str,
) -> rusqlite::Result<Option<serde_json::Value>> {
    let text: Option<String> = columns.get(row, column)?;
    text.map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, error.into())
        })
}

/// A stored time: RFC 3339 as sqlx writes it, or SQLite's own `YYYY-MM-DD HH:MM:SS[.f]`, with
/// or without an offset (UTC without).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Some(time.with_timezone(&Utc));
    }
    if let Ok(time) = DateTime::parse_from_str(text, "%F %T%.f%:z") {
        return Some(time.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%F %T%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

/// Binds `values` in order, as sqlx would.
fn bind(statement: &mut rusqlite::Statement<'_>, values: &[Value]) -> rusqlite::Result<()> {
    let expected = statement.parameter_count();
    if expected != values.len() {
        return Err(rusqlite::Error::InvalidParameterCount(
            values.len(),
            expected,
        ));
    }
    for (index, value) in values.iter().enumerate() {
        statement.raw_bind_parameter(index + 1, sql_value(value)?)?;
    }
    Ok(())
}

/// A value as sqlx's SQLite driver stores it.
fn sql_value(value: &Value) -> rusqlite::Result<Sql> {
    Ok(match value {
        Value::Bool(b) => b.map_or(Sql::Null, |b| Sql::Integer(b.into())),
        Value::TinyInt(i) => i.map_or(Sql::Null, |i| Sql::Integer(i.into())),
        Value::SmallInt(i) => i.map_or(Sql::Null, |i| Sql::Integer(i.into())),
        Value::Int(i) => i.map_or(Sql::Null, |i| Sql::Integer(i.into())),
        Value::BigInt(i) => i.map_or(Sql::Null, Sql::Integer),
        Value::TinyUnsigned(i) => i.map_or(Sql::Null, |i| Sql::Integer(i.into())),
        Value::SmallUnsigned(i) => i.map_or(Sql::Null, |i| Sql::Integer(i.into())),
        Value::Unsigned(i) => i.map_or(Sql::Null, |i| Sql::Integer(i.into())),
        Value::String(s) => s.as_ref().map_or(Sql::Null, |s| Sql::Text(s.clone())),
        Value::Bytes(b) => b.as_ref().map_or(Sql::Null, |b| Sql::Blob(b.clone())),
        Value::Uuid(u) => u.map_or(Sql::Null, |u| Sql::Blob(u.as_bytes().to_vec())),
        Value::ChronoDateTimeUtc(t) => t.map_or(Sql::Null, |t| {
            Sql::Text(t.to_rfc3339_opts(SecondsFormat::AutoSi, false))
        }),
        Value::Json(j) => match j {
            Some(json) => Sql::Text(
                serde_json::to_string(json)
                    .map_err(|error| rusqlite::Error::ToSqlConversionFailure(error.into()))?,
            ),
            None => Sql::Null,
        },
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("the write lane does not bind {other:?}").into(),
            ));
        }
    })
}

fn conn_error(error: rusqlite::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::Internal(error.to_string()))
}

fn exec_error(error: rusqlite::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::Internal(error.to_string()))
}

fn query_error(error: rusqlite::Error) -> DbErr {
    DbErr::Query(RuntimeErr::Internal(error.to_string()))
}

#[cfg(test)]
mod tests {
    use sea_orm::ActiveValue::Set;
    use sea_orm::{
        ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IntoActiveModel, QueryFilter,
        QueryTrait,
    };

    use super::*;
    use crate::entities::account;
    use crate::ledger::WriterOptions;
    use crate::ledger::types::EndUserId;

    fn a_grant(end_user_id: &str, reference: &str) -> grant::Model {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        grant::Model {
            id: Uuid::now_v7(),
            end_user_id: end_user_id.into(),
            amount: 100,
            remaining: 40,
            source: "promotion".into(),
            effective_at: at("2026-12-06T08:00:00.123456789Z"),
            expires_at: Some(at("2027-01-06T08:00:00Z")),
            priority: Some(-7),
            description: Some("every column set".into()),
            metadata: Some(serde_json::json!({ "campaign": "winter", "n": [1, 2.5] })),
            created_at: at("2026-12-06T08:00:00.5Z"),
            voided_at: Some(at("2026-12-07T00:00:00.000001Z")),
            held: 10,
            cycle_id: Some(Uuid::new_v4()),
            reference: Some(reference.into()),
            payment_reference: Some("pi_123".into()),
            paid_amount: Some(1_999),
            paid_currency: Some("eur".into()),
        }
    }

    /// What either driver writes, the other reads back equal: every grant column, and an
    /// idempotency key; the lane's connection has the durability the pool's have.
    #[tokio::test]
    async fn a_grant_reads_back_the_same_through_the_lane_and_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let pool = crate::db::connect(&url, 2).await.unwrap();
        crate::db::migrate(&pool).await.unwrap();
        let Ok(WriterOptions::Sqlite(options)) = crate::db::writer_options(&pool) else {
            panic!("a SQLite URL gives SQLite options");
        };
        let lane = open(&options, &WriterSettings::default()).unwrap();
        let pragma = |name: &str| -> i64 {
            lane.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                .unwrap()
        };
        assert_eq!(pragma("synchronous"), 2, "FULL");
        assert_eq!(pragma("foreign_keys"), 1);

        let user = "user-1";
        let now = Utc::now();
        account::Entity::insert(account::ActiveModel {
            end_user_id: Set(user.into()),
            last_seq: Set(3),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .exec(&pool)
        .await
        .unwrap();

        // Written by sqlx, read by the lane (which loads open grants only: not voided).
        let by_pool = grant::Model {
            voided_at: None,
            ..a_grant(user, "cs_1")
        };
        grant::Entity::insert(by_pool.clone().into_active_model())
            .exec(&pool)
            .await
            .unwrap();
        let users = [EndUserId::from_stored(user.into())];
        let statement = super::super::sql::load_locked(&users);
        let rows = load_locked(&lane, &statement).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].end_user_id, user);
        assert_eq!(rows[0].last_seq, 3);
        assert_eq!(rows[0].alert_fired, None);
        assert_eq!(rows[0].grant.as_ref(), Some(&by_pool));

        // Written by the lane, read by sqlx.
        let by_lane = a_grant(user, "cs_2");
        let insert =
            grant::Entity::insert(by_lane.clone().into_active_model()).build(DbBackend::Sqlite);
        let values = insert.values.clone().unwrap().0;
        assert_eq!(execute(&lane, &insert.sql, &values).unwrap(), 1);
        let read = grant::Entity::find_by_id(by_lane.id)
            .one(&pool)
            .await
            .unwrap();
        assert_eq!(read.as_ref(), Some(&by_lane));

        // An idempotency key, both ways (its entry is not needed for this).
        lane.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        let key = idempotency_key::Model {
            key: "k-1".into(),
            operation: "subtract_credits".into(),
            request_hash: "abc".into(),
            end_user_id: user.into(),
            entry_id: Uuid::now_v7(),
            created_at: now,
        };
        let insert = idempotency_key::Entity::insert(key.clone().into_active_model())
            .build(DbBackend::Sqlite);
        execute(&lane, &insert.sql, &insert.values.clone().unwrap().0).unwrap();
        let find = idempotency_key::Entity::find()
            .filter(idempotency_key::Column::Key.eq("k-1"))
            .build(DbBackend::Sqlite);
        assert_eq!(stored_keys(&lane, &find).unwrap(), vec![key.clone()]);
        let read = pool.query_one_raw(find).await.unwrap().unwrap();
        let read =
            <idempotency_key::Model as sea_orm::FromQueryResult>::from_query_result(&read, "")
                .unwrap();
        assert_eq!(read, key);
    }

    #[test]
    fn times_sqlite_writes_itself_are_read_as_utc() {
        let expected = DateTime::parse_from_rfc3339("2026-12-06T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_time("2026-12-06 08:00:00"), Some(expected));
        assert_eq!(parse_time("2026-12-06 09:00:00+01:00"), Some(expected));
        assert_eq!(parse_time("2026-12-06T08:00:00+00:00"), Some(expected));
        assert_eq!(parse_time("yesterday"), None);
    }
}
