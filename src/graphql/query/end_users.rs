//! For people operating Tally (the admin console): end users, most recently active first, and an
//! end user's open holds. Secret keys only.

use async_graphql::connection::{Connection, EmptyFields, OpaqueCursor};
use async_graphql::{Context, ID, Object, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::graphql::context::ledger_for_secret_key;
use crate::graphql::paging::Page;
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
        self.0.balance.clone().into()
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
        let page = Page::<UserPosition>::parse(first, after)?;
        let only = end_user_id.as_ref().map(parse_end_user_id).transpose()?;
        // A cursor is opaque, not trusted: the id it carries is parsed like any other.
        let after = page
            .after
            .as_ref()
            .map(|position| {
                EndUserId::parse("after", &position.end_user_id)
                    .map(|end_user_id| ActivityPosition {
                        last_active_at: position.last_active_at,
                        end_user_id,
                    })
                    .map_err(|_| Error::bad_input("after", "is not a cursor this API returned"))
            })
            .transpose()?;
        let users = ledger.end_users(only, after, page.fetch_limit()).await?;
        Ok(page.connection(
            users,
            |user| UserPosition {
                last_active_at: user.last_active_at,
                end_user_id: user.balance.end_user_id.to_string(),
            },
            EndUser,
        ))
    }

    /// The end user's open holds, soonest deadline first. Secret keys only.
    async fn open_holds(&self, ctx: &Context<'_>, end_user_id: ID) -> Result<Vec<Hold>> {
        let ledger = ledger_for_secret_key(ctx)?;
        Ok(ledger
            .open_holds(parse_end_user_id(&end_user_id)?)
            .await?
            .into_iter()
            .map(Hold::from)
            .collect())
    }
}
