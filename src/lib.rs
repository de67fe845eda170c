//! Tally: a self-hosted prepaid-credits ledger.
//!
//! The crate is split the way requests flow: `http` (axum, a thin adapter) hands GraphQL requests
//! to `graphql` (schema and resolvers, also thin), which calls `ledger` (the domain: every money
//! rule lives there) and `auth`. `entities` are the SeaORM table models; `migration` (a separate
//! crate) owns the schema.

pub mod app;
pub mod auth;
pub mod bundles;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod ledger;
pub mod observability;
pub mod rest;
pub mod stripe;
pub mod webhooks;

pub use app::Application;
pub use config::Config;
pub use error::{Error, Result};
