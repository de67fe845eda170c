//! Setting an end user's balance-alert thresholds (`setBalanceAlerts`).

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::json;

use super::end_user_text;
use super::store::parse_numbers;
use crate::entities::balance_alert;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::ledger::types::{EndUserId, MAX_CREDITS};

/// Most thresholds one end user may have.
pub const MAX_THRESHOLDS: usize = 20;

/// An end user's thresholds as they now apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceAlerts {
    pub end_user_id: EndUserId,
    /// Highest first.
    pub thresholds: Vec<i64>,
    /// Whether these are the default thresholds (the end user has none of their own).
    pub uses_default: bool,
}

/// Distinct whole numbers from 1 to `MAX_CREDITS`, at most `MAX_THRESHOLDS`, highest first.
pub fn parse_thresholds(values: &[i64]) -> Result<Vec<i64>> {
    if values.len() > MAX_THRESHOLDS {
        return Err(Error::bad_input(
            "thresholds",
            format!("at most {MAX_THRESHOLDS} thresholds"),
        ));
    }
    if let Some(bad) = values.iter().find(|v| !(1..=MAX_CREDITS).contains(*v)) {
        return Err(Error::bad_input(
            "thresholds",
            format!("{bad} is not a whole number of credits from 1 to {MAX_CREDITS}"),
        ));
    }
    let mut thresholds = values.to_vec();
    thresholds.sort_unstable_by(|a, b| b.cmp(a));
    thresholds.dedup();
    Ok(thresholds)
}

impl Ledger {
    /// Gives the end user their own thresholds (`None`: back to the default ones). Alerts that
    /// fired for a threshold kept stay fired; the others are forgotten. Runs under the account
    /// lock, so no write decides alerts against half of it.
    pub async fn set_balance_alerts(
        &self,
        end_user_id: EndUserId,
        thresholds: Option<Vec<i64>>,
    ) -> Result<BalanceAlerts> {
        let own = thresholds.as_deref().map(parse_thresholds).transpose()?;
        let write = self.begin_write(&end_user_id).await?;
        let user = end_user_text(&end_user_id);
        let stored = balance_alert::Entity::find_by_id(user.clone())
            .one(&write.txn)
            .await?;
        let applying = own
            .clone()
            .unwrap_or_else(|| self.outbound.default_thresholds().to_vec());
        let fired: Vec<i64> = stored
            .as_ref()
            .map(|row| parse_numbers(&row.fired))
            .unwrap_or_default()
            .into_iter()
            .filter(|t| applying.contains(t))
            .collect();
        balance_alert::Entity::insert(balance_alert::ActiveModel {
            end_user_id: Set(user),
            thresholds: Set(own.as_ref().map(|t| json!(t))),
            fired: Set(json!(fired)),
            depleted: Set(stored.as_ref().is_some_and(|row| row.depleted)),
            updated_at: Set(self.clock.now()),
        })
        .on_conflict(
            OnConflict::column(balance_alert::Column::EndUserId)
                .update_columns([
                    balance_alert::Column::Thresholds,
                    balance_alert::Column::Fired,
                    balance_alert::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&write.txn)
        .await?;
        write.commit_even_if_empty(&self.events).await?;
        Ok(BalanceAlerts {
            end_user_id,
            thresholds: applying,
            uses_default: own.is_none(),
        })
    }

    /// The thresholds that apply to the end user now.
    pub async fn balance_alerts(&self, end_user_id: EndUserId) -> Result<BalanceAlerts> {
        let own = balance_alert::Entity::find_by_id(end_user_text(&end_user_id))
            .one(self.db())
            .await?
            .and_then(|row| row.thresholds.as_ref().map(parse_numbers));
        Ok(BalanceAlerts {
            end_user_id,
            uses_default: own.is_none(),
            thresholds: own.unwrap_or_else(|| self.outbound.default_thresholds().to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_checked_and_sorted() {
        assert_eq!(parse_thresholds(&[10, 100, 10]).unwrap(), [100, 10]);
        assert!(parse_thresholds(&[0]).is_err());
        assert!(parse_thresholds(&[-1]).is_err());
        assert!(parse_thresholds(&[MAX_CREDITS + 1]).is_err());
        assert!(parse_thresholds(&(1..=21).collect::<Vec<_>>()).is_err());
        assert!(parse_thresholds(&[]).unwrap().is_empty());
    }
}
