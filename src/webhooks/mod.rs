//! Outbound webhooks: endpoints the application registers, and the delivery of the events the
//! ledger writes to its outbox (see `ledger::outbound`) to them, signed per Standard Webhooks.
//!
//! `endpoints` manages the endpoints, `deliveries` answers what was sent and sends again,
//! `worker` (a task on every process) fans events out into deliveries, claims due ones with a
//! lease and POSTs them; `retry` is the back-off schedule, `signing` the signatures.

pub mod deliveries;
pub mod endpoints;
pub mod retry;
pub mod settings;
pub mod signing;
mod sql;
pub mod url;
pub mod worker;

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::ledger::clock::Clock;
use crate::ledger::outbound::Outbound;
use settings::WebhookSettings;

/// The webhook service the GraphQL resolvers and the worker share.
#[derive(Clone)]
pub struct Webhooks {
    db: DatabaseConnection,
    settings: Arc<WebhookSettings>,
    outbound: Arc<Outbound>,
    clock: Clock,
}

impl Webhooks {
    pub fn new(
        db: DatabaseConnection,
        settings: WebhookSettings,
        outbound: Arc<Outbound>,
        clock: Clock,
    ) -> Self {
        Self {
            db,
            settings: Arc::new(settings),
            outbound,
            clock,
        }
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }
}
