//! SeaORM models of the tables `migration/` creates. Plain data: the rules live in `ledger`.

pub mod account;
pub mod api_key;
pub mod balance_alert;
pub mod bundle;
pub mod cycle;
pub mod grant;
pub mod hold;
pub mod hold_allocation;
pub mod idempotency_key;
pub mod ledger_allocation;
pub mod ledger_entry;
pub mod setting;
pub mod stripe_event;
pub mod stripe_payment;
pub mod stripe_refund;
pub mod webhook_attempt;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod webhook_event;
