//! Who has an account, for people operating Tally: end users most recently active first, each
//! with their balance, and an end user's open holds.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::Ledger;
use super::balance::Balance;
use super::grant::Grant;
use super::holds::Hold;
use super::types::EndUserId;
use crate::entities::{account, grant, hold};
use crate::error::Result;

/// An end user as listed: when their account last changed, and their balance now.
#[derive(Clone, Debug)]
pub struct EndUserSummary {
    pub last_active_at: DateTime<Utc>,
    pub balance: Balance,
}

/// A position in the most-recently-active-first order: where the next page starts after.
#[derive(Clone, Debug)]
pub struct ActivityPosition {
    pub last_active_at: DateTime<Utc>,
    pub end_user_id: EndUserId,
}

impl Ledger {
    /// Up to `limit` end users with an account, most recently active first (ties: the lower id
    /// first), after `after` when given. `only` restricts the list to one end user (a search by
    /// id; an end user never written to is not listed).
    pub async fn end_users(
        &self,
        only: Option<EndUserId>,
        after: Option<ActivityPosition>,
        limit: u64,
    ) -> Result<Vec<EndUserSummary>> {
        let mut query = account::Entity::find()
            .order_by_desc(account::Column::UpdatedAt)
            .order_by_asc(account::Column::EndUserId)
            .limit(limit);
        if let Some(user) = only {
            query = query.filter(account::Column::EndUserId.eq(user.as_str()));
        }
        if let Some(after) = after {
            query = query.filter(
                Condition::any()
                    .add(account::Column::UpdatedAt.lt(after.last_active_at))
                    .add(
                        Condition::all()
                            .add(account::Column::UpdatedAt.eq(after.last_active_at))
                            .add(account::Column::EndUserId.gt(after.end_user_id.as_str())),
                    ),
            );
        }
        let accounts = query.all(&self.db).await?;
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        // One query for every listed user's open grants, rather than one per user.
        let mut grants_of: HashMap<String, Vec<Grant>> = HashMap::new();
        for model in grant::Entity::find()
            .filter(grant::Column::EndUserId.is_in(accounts.iter().map(|a| a.end_user_id.as_str())))
            .filter(grant::Column::Remaining.gt(0))
            .filter(grant::Column::VoidedAt.is_null())
            .all(&self.db)
            .await?
        {
            grants_of
                .entry(model.end_user_id.clone())
                .or_default()
                .push(Grant::from_model(model)?);
        }
        let now = self.clock.now();
        Ok(accounts
            .into_iter()
            .map(|account| {
                let grants = grants_of.remove(&account.end_user_id).unwrap_or_default();
                EndUserSummary {
                    last_active_at: account.updated_at,
                    balance: Balance::from_grants(
                        EndUserId::from_stored(account.end_user_id),
                        &grants,
                        now,
                    ),
                }
            })
            .collect())
    }

    /// The end user's open holds, soonest deadline first.
    pub async fn open_holds(&self, end_user_id: EndUserId) -> Result<Vec<Hold>> {
        hold::Entity::find()
            .filter(hold::Column::EndUserId.eq(end_user_id.as_str()))
            .filter(hold::Column::Status.eq(super::holds::HoldStatus::Open.as_str()))
            .order_by_asc(hold::Column::ExpiresAt)
            .order_by_asc(hold::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Hold::from_model)
            .collect()
    }
}
