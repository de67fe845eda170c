//! Registering, changing and listing webhook endpoints. Every input is checked before anything
//! is written; a refusal is `BAD_USER_INPUT` (or `NOT_FOUND`) and writes nothing.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder,
};
use serde_json::json;
use uuid::Uuid;

use super::Webhooks;
use super::signing::new_secret;
use super::url::parse_endpoint_url;
use crate::entities::webhook_endpoint;
use crate::error::{Error, Result};
use crate::ledger::outbound::EventType;
use crate::ledger::types::Description;

/// Most endpoints one installation may register.
pub const MAX_ENDPOINTS: usize = 100;

#[derive(Clone, Debug, PartialEq)]
pub struct Endpoint {
    pub id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Until when the secret before the last rotation still signs.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    pub fn from_model(model: &webhook_endpoint::Model) -> Self {
        Self {
            id: model.id,
            url: model.url.clone(),
            description: model.description.clone(),
            event_types: event_types_of(&model.event_types),
            enabled: model.enabled,
            disabled_reason: model.disabled_reason.clone(),
            previous_secret_expires_at: model.previous_secret_expires_at,
            failing_since: model.failing_since,
            created_at: model.created_at,
            updated_at: model.updated_at,
        }
    }
}

pub fn event_types_of(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An endpoint with the secret that signs for it, shown only when created or rotated.
pub struct WithSecret {
    pub endpoint: Endpoint,
    pub secret: String,
}

pub struct EndpointInput {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
}

/// Known, distinct event types, at least one.
fn parse_event_types(values: &[String]) -> Result<Vec<String>> {
    if values.is_empty() {
        return Err(Error::bad_input(
            "eventTypes",
            "must name at least one event type",
        ));
    }
    let mut parsed: Vec<String> = Vec::with_capacity(values.len());
    for value in values {
        let Some(kind) = EventType::parse(value) else {
            let known: Vec<&str> = EventType::SUBSCRIBABLE.iter().map(|k| k.as_str()).collect();
            let shown: String = value
                .chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string();
            return Err(Error::bad_input(
                "eventTypes",
                format!("'{shown}' is not one of {}", known.join(", ")),
            ));
        };
        if !parsed.iter().any(|p| p == kind.as_str()) {
            parsed.push(kind.as_str().to_owned());
        }
    }
    Ok(parsed)
}

impl Webhooks {
    pub async fn create_endpoint(&self, input: EndpointInput) -> Result<WithSecret> {
        let url = parse_endpoint_url(&input.url, self.settings.allow_http_loopback)?;
        let description = Description::parse(input.description)?;
        let event_types = parse_event_types(&input.event_types)?;
        let count = webhook_endpoint::Entity::find().all(&self.db).await?.len();
        if count >= MAX_ENDPOINTS {
            return Err(Error::bad_input(
                "url",
                format!("at most {MAX_ENDPOINTS} endpoints; delete one first"),
            ));
        }
        let now = self.clock.now();
        let secret = new_secret();
        let model = webhook_endpoint::ActiveModel {
            id: Set(Uuid::now_v7()),
            url: Set(url.to_string()),
            description: Set(description.map(|d| d.as_str().to_owned())),
            event_types: Set(json!(event_types)),
            enabled: Set(true),
            disabled_reason: Set(None),
            secret: Set(secret.clone()),
            previous_secret: Set(None),
            previous_secret_expires_at: Set(None),
            failing_since: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&self.db)
        .await?;
        self.refresh_debits_wanted().await?;
        Ok(WithSecret {
            endpoint: Endpoint::from_model(&model),
            secret,
        })
    }

    /// Changes what is given; `None` leaves a field as it is (an empty description clears it).
    pub async fn update_endpoint(
        &self,
        id: Uuid,
        url: Option<String>,
        description: Option<String>,
        event_types: Option<Vec<String>>,
    ) -> Result<Endpoint> {
        let url = url
            .map(|url| parse_endpoint_url(&url, self.settings.allow_http_loopback))
            .transpose()?;
        let description = Description::parse(description)?;
        let event_types = event_types.as_deref().map(parse_event_types).transpose()?;
        let model = self.find(id).await?;
        let mut active = model.into_active_model();
        if let Some(url) = url {
            active.url = Set(url.to_string());
        }
        if let Some(description) = description {
            let text = description.as_str();
            active.description = Set((!text.is_empty()).then(|| text.to_owned()));
        }
        if let Some(event_types) = event_types {
            active.event_types = Set(json!(event_types));
        }
        active.updated_at = Set(self.clock.now());
        let model = active.update(&self.db).await?;
        self.refresh_debits_wanted().await?;
        Ok(Endpoint::from_model(&model))
    }

    /// Stops deliveries to it (they wait, and resume when it is enabled again).
    pub async fn set_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        reason: Option<String>,
    ) -> Result<Endpoint> {
        let reason = Description::parse_as("reason", reason)?;
        let model = self.find(id).await?;
        let mut active = model.into_active_model();
        active.enabled = Set(enabled);
        active.disabled_reason = Set(if enabled {
            None
        } else {
            Some(reason.map_or_else(
                || "disabled by an API call".to_owned(),
                |r| r.as_str().to_owned(),
            ))
        });
        if enabled {
            active.failing_since = Set(None);
        }
        active.updated_at = Set(self.clock.now());
        let model = active.update(&self.db).await?;
        self.refresh_debits_wanted().await?;
        Ok(Endpoint::from_model(&model))
    }

    /// A new secret; the old one keeps signing for `TALLY_WEBHOOK_SECRET_GRACE_SECONDS`.
    pub async fn rotate_secret(&self, id: Uuid) -> Result<WithSecret> {
        let model = self.find(id).await?;
        let now = self.clock.now();
        let secret = new_secret();
        let grace = Duration::from_std(self.settings.secret_grace)
            .map_err(|_| Error::Internal("secret grace out of range".into()))?;
        let mut active = model.clone().into_active_model();
        active.previous_secret = Set(Some(model.secret));
        active.previous_secret_expires_at = Set(Some(now + grace));
        active.secret = Set(secret.clone());
        active.updated_at = Set(now);
        let model = active.update(&self.db).await?;
        Ok(WithSecret {
            endpoint: Endpoint::from_model(&model),
            secret,
        })
    }

    /// Deletes it with its deliveries.
    pub async fn delete_endpoint(&self, id: Uuid) -> Result<Endpoint> {
        let model = self.find(id).await?;
        crate::entities::webhook_delivery::Entity::delete_many()
            .filter(crate::entities::webhook_delivery::Column::EndpointId.eq(id))
            .exec(&self.db)
            .await?;
        webhook_endpoint::Entity::delete_by_id(id)
            .exec(&self.db)
            .await?;
        self.refresh_debits_wanted().await?;
        Ok(Endpoint::from_model(&model))
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        Ok(webhook_endpoint::Entity::find()
            .order_by_asc(webhook_endpoint::Column::CreatedAt)
            .order_by_asc(webhook_endpoint::Column::Id)
            .all(&self.db)
            .await?
            .iter()
            .map(Endpoint::from_model)
            .collect())
    }

    pub(super) async fn find(&self, id: Uuid) -> Result<webhook_endpoint::Model> {
        webhook_endpoint::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no webhook endpoint {id}")))
    }

    /// Tells this process's writes whether to generate `credits.debited` (the worker does the
    /// same on every poll, for changes made on other processes).
    pub async fn refresh_debits_wanted(&self) -> Result<()> {
        let wanted = webhook_endpoint::Entity::find()
            .filter(webhook_endpoint::Column::Enabled.eq(true))
            .all(&self.db)
            .await?
            .iter()
            .any(|e| {
                event_types_of(&e.event_types)
                    .iter()
                    .any(|t| t == EventType::CreditsDebited.as_str())
            });
        self.outbound.set_debits_wanted(wanted);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_must_be_known_and_are_deduplicated() {
        assert!(parse_event_types(&[]).is_err());
        assert!(parse_event_types(&["balance.lo".into()]).is_err());
        assert!(parse_event_types(&["test".into()]).is_err());
        assert_eq!(
            parse_event_types(&["balance.low".into(), "balance.low".into()]).unwrap(),
            ["balance.low"]
        );
    }
}
