//! End users are named by the application's own ids (any text of 1 to 255 characters) instead
//! of UUIDs: every `end_user_id` column becomes text. Existing end users keep working under
//! their UUID written the one canonical way, lower case with hyphens, and no entry changes.
//!
//! PostgreSQL: the columns become `text COLLATE "C"`, which compares bytes (exact, and cheaper
//! than a language collation); the two foreign keys onto `accounts` are dropped while the types
//! change and added back. SQLite: the columns were declared `uuid_text` (text affinity) and held
//! 16-byte blobs; they are rewritten in place as text. Either way the whole change is one
//! transaction: a database is converted entirely or not at all.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Every column that names an end user.
const COLUMNS: [(&str, &str); 7] = [
    ("accounts", "end_user_id"),
    ("grants", "end_user_id"),
    ("ledger_entries", "end_user_id"),
    ("idempotency_keys", "end_user_id"),
    ("holds", "end_user_id"),
    ("cycles", "end_user_id"),
    ("stripe_events", "end_user_id"),
];

/// The tables whose `end_user_id` references `accounts`.
const REFERENCING_ACCOUNTS: [&str; 2] = ["grants", "ledger_entries"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => postgres_up(db).await,
            DbBackend::Sqlite => sqlite_up(db).await,
            backend => Err(DbErr::Migration(format!("unsupported backend {backend:?}"))),
        }
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // Going back would have to refuse every end user whose id is not a UUID.
        Err(DbErr::Migration(
            "end-user ids cannot be turned back into UUIDs".to_owned(),
        ))
    }
}

async fn postgres_up(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    // The foreign keys were created unnamed, so their names are looked up.
    let foreign_keys = db
        .query_all_raw(sea_orm_migration::sea_orm::Statement::from_string(
            DbBackend::Postgres,
            "SELECT conrelid::regclass::text AS table_name, conname::text AS name \
             FROM pg_constraint WHERE contype = 'f' AND confrelid = 'accounts'::regclass"
                .to_owned(),
        ))
        .await?;
    for row in &foreign_keys {
        let table: String = row.try_get("", "table_name")?;
        let name: String = row.try_get("", "name")?;
        db.execute_unprepared(&format!(
            "ALTER TABLE {table} DROP CONSTRAINT \"{}\"",
            name.replace('"', "\"\"")
        ))
        .await?;
    }
    for (table, column) in COLUMNS {
        db.execute_unprepared(&format!(
            "ALTER TABLE {table} ALTER COLUMN {column} TYPE text COLLATE \"C\" \
             USING {column}::text"
        ))
        .await?;
    }
    for table in REFERENCING_ACCOUNTS {
        db.execute_unprepared(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT fk_{table}_end_user \
             FOREIGN KEY (end_user_id) REFERENCES accounts (end_user_id)"
        ))
        .await?;
    }
    Ok(())
}

async fn sqlite_up(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    // The parent key and its references change in one transaction: checked at commit.
    db.execute_unprepared("PRAGMA defer_foreign_keys = ON")
        .await?;
    for (table, column) in COLUMNS {
        db.execute_unprepared(&format!(
            "UPDATE {table} SET {column} = {text} WHERE {column} IS NOT NULL",
            text = uuid_as_text(column)
        ))
        .await?;
    }
    Ok(())
}

/// SQL turning a stored UUID (16 bytes, as sqlx writes them, or text) into its canonical text.
fn uuid_as_text(column: &str) -> String {
    let hex = format!("hex({column})");
    format!(
        "CASE WHEN typeof({column}) = 'blob' AND length({column}) = 16 THEN lower(\
         substr({hex}, 1, 8) || '-' || substr({hex}, 9, 4) || '-' || substr({hex}, 13, 4) || '-' \
         || substr({hex}, 17, 4) || '-' || substr({hex}, 21, 12)) \
         ELSE lower({column}) END"
    )
}
