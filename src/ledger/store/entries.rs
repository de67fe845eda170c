//! Ledger entries and their allocations (entries are only ever inserted).

use chrono::{DateTime, Utc};

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::{ledger_allocation, ledger_entry};
use crate::error::Result;
use crate::ledger::burn_down::Allocation;
use crate::ledger::entry::Entry;
use crate::ledger::types::EndUserId;

/// Appends an entry and its allocations. Entries are only ever inserted.
pub async fn insert_entry(txn: &impl ConnectionTrait, entry: &Entry) -> Result<()> {
    ledger_entry::Entity::insert(entry_row(entry))
        .exec_without_returning(txn)
        .await?;
    if !entry.allocations.is_empty() {
        ledger_allocation::Entity::insert_many(allocation_rows(entry))
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// An entry as a row to insert (its allocations are rows of their own).
pub fn entry_row(entry: &Entry) -> ledger_entry::ActiveModel {
    ledger_entry::ActiveModel {
        id: Set(entry.id),
        end_user_id: Set(entry.end_user_id.to_string()),
        seq: Set(entry.seq),
        kind: Set(entry.kind.as_str().to_owned()),
        amount: Set(entry.amount),
        balance_after: Set(entry.balance_after),
        grant_id: Set(entry.grant_id),
        description: Set(entry.description.clone()),
        metadata: Set(entry.metadata.clone()),
        idempotency_key: Set(entry.idempotency_key.clone()),
        created_at: Set(entry.created_at),
        hold_id: Set(entry.hold_id),
        reversed_entry_id: Set(entry.reversed_entry_id),
    }
}

/// An entry's allocations as rows, numbered in the order the grants were drawn on.
pub fn allocation_rows(entry: &Entry) -> impl Iterator<Item = ledger_allocation::ActiveModel> {
    entry
        .allocations
        .iter()
        .zip(0..)
        .map(|(allocation, position)| ledger_allocation::ActiveModel {
            entry_id: Set(entry.id),
            grant_id: Set(allocation.grant_id),
            amount: Set(allocation.amount),
            position: Set(position),
        })
}

pub async fn find_entry(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Entry>> {
    let Some(model) = ledger_entry::Entity::find_by_id(id).one(conn).await? else {
        return Ok(None);
    };
    let mut entries = attach_allocations(conn, vec![model]).await?;
    Ok(entries.pop())
}

/// Loads the allocations of many entries in one query.
pub async fn entries_with_allocations(
    conn: &impl ConnectionTrait,
    models: Vec<ledger_entry::Model>,
) -> Result<Vec<Entry>> {
    attach_allocations(conn, models).await
}

async fn attach_allocations(
    conn: &impl ConnectionTrait,
    models: Vec<ledger_entry::Model>,
) -> Result<Vec<Entry>> {
    if models.is_empty() {
        return Ok(Vec::new());
    }
    let allocations = ledger_allocation::Entity::find()
        .filter(ledger_allocation::Column::EntryId.is_in(models.iter().map(|m| m.id)))
        .all(conn)
        .await?;
    models
        .into_iter()
        .map(|model| {
            let mut own: Vec<&ledger_allocation::Model> = allocations
                .iter()
                .filter(|a| a.entry_id == model.id)
                .collect();
            own.sort_by_key(|a| a.position);
            let own = own
                .into_iter()
                .map(|a| Allocation {
                    grant_id: a.grant_id,
                    amount: a.amount,
                })
                .collect();
            Entry::from_model(model, own)
        })
        .collect()
}

/// When the end user's newest entry was made.
pub async fn latest_entry_at(
    conn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
) -> Result<Option<DateTime<Utc>>> {
    use sea_orm::QuerySelect;
    Ok(ledger_entry::Entity::find()
        .select_only()
        .column(ledger_entry::Column::CreatedAt)
        .filter(ledger_entry::Column::EndUserId.eq(end_user_id.as_str()))
        .order_by_desc(ledger_entry::Column::Seq)
        .limit(1)
        .into_tuple::<DateTime<Utc>>()
        .one(conn)
        .await?)
}
