//! Tally's black-box tests, one test binary: each test starts Tally (in this process, or as a
//! `tally serve` process) on a fresh database and talks HTTP and WebSocket to it, on SQLite
//! and, when `TEST_DATABASE_URL` names a server, on PostgreSQL. One module per area; `helpers`
//! is the harness they share.

#[macro_use]
mod helpers;

mod bad_input;
mod bundles;
mod concurrency;
mod credentials;
mod credits;
mod end_user_ids;
mod fuzz;
mod heavy_user;
mod hostile_input;
mod live;
mod metrics;
mod model;
mod pipeline;
mod postgres_lanes;
mod redaction;
mod refused_writes;
mod rest;
mod service;
mod stripe;
mod webhooks;
