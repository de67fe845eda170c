//! For people operating Tally (the admin console): end users, most recently active first, and an
//! end user's open holds. Secret keys only.

use async_graphql::connection::{Connection, CursorType, Edge, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::transactions::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::error::Error;
use crate::graphql::context::ledger_for_secret_key;
use crate::graphql::scalars::end_user_id as parse_end_user_id;
use crate::graphql::types::{Balance, Hold};
use crate::ledger::EndUserId;
use crate::ledger::end_users::{ActivityPosition, EndUserSummary};

/// Position of an end user in the most-recently-active-first order, opaque to clients.
#[derive(Clone, Serialize, Deserialize)]
pub struct UserPosition {
    last_active_at: DateTime<Utc>,
    end_user_id: String,
}

type UserCursor = OpaqueCursor<UserPosition>;

/// An end user with an account (one who has been written to at least once).
pub struct EndUser(EndUserSummary);

#[Object]
impl EndUser {
    async fn end_user_id(&self) -> ID {
        ID::from(self.0.balance.end_user_id.as_str())
    }

    /// When the end user's account last changed (their latest write).
    async fn last_active_at(&self) -> DateTime<Utc> {
        self.0.last_active_at
    }

    /// The balance now: available and held credits, active grants.
    async fn balance(&self) -> Balance {
        Balance(self.0.balance.clone())
    }
}

#[derive(Default)]
pub struct EndUsersQuery;

#[Object]
impl EndUsersQuery {
    /// End users with an account, most recently active first (a Relay connection), each with
    /// their balance; `endUserId` finds one (an empty list when it was never written to).
    /// Secret keys only.
    async fn end_users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only this end user.")] end_user_id: Option<ID>,
        #[graphql(desc = "Page size, 0 to 100 (default 20).")] first: Option<i32>,
        #[graphql(desc = "Cursor of the last end user of the previous page.")] after: Option<
            String,
        >,
    ) -> Result<Connection<UserCursor, EndUser, EmptyFields, EmptyFields>> {
        let ledger = ledger_for_secret_key(ctx)?;
        let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(0..=MAX_PAGE_SIZE).contains(&first) {
            return Err(
                Error::bad_input("first", format!("must be from 0 to {MAX_PAGE_SIZE}")).into(),
            );
        }
        let only = end_user_id.as_ref().map(parse_end_user_id).transpose()?;
        let after = after
            .map(|cursor| {
                let not_ours = || Error::bad_input("after", "is not a cursor this API returned");
                let position = UserCursor::decode_cursor(&cursor)
                    .map_err(|_| not_ours())?
                    .0;
                Ok::<_, Error>(ActivityPosition {
                    last_active_at: position.last_active_at,
                    end_user_id: EndUserId::parse("after", &position.end_user_id)
                        .map_err(|_| not_ours())?,
                })
            })
            .transpose()?;
        let has_previous_page = after.is_some();
        let mut users = ledger.end_users(only, after, first as u64 + 1).await?;
        let has_next_page = users.len() > first as usize;
        users.truncate(first as usize);
        let mut connection = Connection::new(has_previous_page, has_next_page);
        connection.edges.extend(users.into_iter().map(|user| {
            let cursor = OpaqueCursor(UserPosition {
                last_active_at: user.last_active_at,
                end_user_id: user.balance.end_user_id.to_string(),
            });
            Edge::new(cursor, EndUser(user))
        }));
        Ok(connection)
    }

    /// The end user's open holds, soonest deadline first. Secret keys only.
    async fn open_holds(&self, ctx: &Context<'_>, end_user_id: ID) -> Result<Vec<Hold>> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .open_holds(parse_end_user_id(&end_user_id)?)
            .await?
            .into_iter()
            .map(Hold)
            .collect())
    }
}
