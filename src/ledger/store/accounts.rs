//! The account row: the lock every per-request write takes first, and the sequence numbers.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entities::account;
use crate::error::Result;
use crate::ledger::types::EndUserId;

/// Locks the end user's account for the rest of the transaction, creating it on first use, and
/// reserves the sequence number of the first entry this transaction will write (returned).
pub async fn lock_account_and_reserve_seq(
    txn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
    now: DateTime<Utc>,
) -> Result<i64> {
    let account = account::Entity::insert(new_account_row(end_user_id, 1, now))
        .on_conflict(
            OnConflict::column(account::Column::EndUserId)
                .value(
                    account::Column::LastSeq,
                    Expr::col((account::Entity, account::Column::LastSeq)).add(1),
                )
                .value(account::Column::UpdatedAt, now)
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await?;
    Ok(account.last_seq)
}

/// The row of an account created `now` whose newest entry is `last_seq`.
pub fn new_account_row(
    end_user_id: &EndUserId,
    last_seq: i64,
    now: DateTime<Utc>,
) -> account::ActiveModel {
    account::ActiveModel {
        end_user_id: Set(end_user_id.to_string()),
        last_seq: Set(last_seq),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Records that entries up to `last_seq` exist, when a write appended more than the one entry
/// `lock_account_and_reserve_seq` reserved (due expiries before a debit).
pub async fn set_last_seq(
    txn: &impl ConnectionTrait,
    end_user_id: &EndUserId,
    last_seq: i64,
) -> Result<()> {
    account::Entity::update_many()
        .col_expr(account::Column::LastSeq, Expr::val(last_seq))
        .filter(account::Column::EndUserId.eq(end_user_id.as_str()))
        .exec(txn)
        .await?;
    Ok(())
}

/// Whether the end user has a ledger entry. (A batch that locks a new end user's account and
/// then refuses every write leaves the account row behind with `last_seq` 0.)
pub async fn account_exists(conn: &impl ConnectionTrait, end_user_id: &EndUserId) -> Result<bool> {
    Ok(account::Entity::find_by_id(end_user_id.as_str())
        .one(conn)
        .await?
        .is_some_and(|account| account.last_seq > 0))
}
