//! Operating Tally: Prometheus metrics and per-request tracing (request ids, spans).
//! Every metric is listed with its meaning in README "Metrics".

pub mod metrics;
pub mod request;
