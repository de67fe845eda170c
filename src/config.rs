//! Settings, read once from the environment (and an optional `.env`) at start-up.
//! Every setting is listed with its default in `.env.example`; a bad value stops start-up with a
//! message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::ledger::clock::Clock;
use crate::ledger::pipeline::{DEFAULT_BATCHES_IN_FLIGHT, DEFAULT_MAX_BATCH, PipelineSettings};
use crate::webhooks::settings::WebhookSettings;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://tally.db?mode=rwc";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_REQUEST_TIMEOUT_SECONDS: u64 = 30;
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 16;
/// A seeded admin key shorter than this is refused: it would be guessable.
pub const MIN_ADMIN_API_KEY_CHARS: usize = 24;
pub const MIN_TOKEN_SECRET_CHARS: usize = 32;
pub const DEFAULT_WS_INIT_TIMEOUT_SECONDS: u64 = 10;
pub const DEFAULT_WS_KEEPALIVE_SECONDS: u64 = 20;
pub const DEFAULT_LIVE_MIN_INTERVAL_MS: u64 = 50;
pub const DEFAULT_STRIPE_WEBHOOK_TOLERANCE_SECONDS: u64 = 300;

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    /// Serve `/metrics` only here (`TALLY_METRICS_LISTEN`) instead of beside the API.
    pub metrics_listen: Option<SocketAddr>,
    /// A secret key to make sure exists at start-up (development and first boot).
    pub admin_api_key: Option<String>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub db_max_connections: u32,
    /// Secret that signs end-user tokens; `None`: generated once and kept in the database.
    pub token_secret: Option<String>,
    /// A WebSocket that has not completed `connection_init` by then is closed.
    pub ws_init_timeout: Duration,
    /// How often idle WebSockets are pinged; one silent for three intervals is closed.
    pub ws_keepalive_interval: Duration,
    /// Least time between two balances sent to one `balanceChanged` subscriber
    /// (`TALLY_LIVE_MIN_INTERVAL_MS`; zero: every change).
    pub live_min_interval: Duration,
    pub stripe: StripeConfig,
    /// A TOML file of bundles upserted at start-up.
    pub bundles_file: Option<PathBuf>,
    /// How debits and grants are batched (`TALLY_WRITE_LANES`, `TALLY_MAX_BATCH`).
    pub pipeline: PipelineSettings,
    /// Outbound webhooks and balance alerts (`TALLY_WEBHOOK_*`).
    pub webhooks: WebhookSettings,
    /// The system clock, except in tests, which move an adjustable one forward instead of
    /// sleeping (not read from the environment).
    pub clock: Clock,
}

/// How Tally talks to Stripe.
#[derive(Clone, Debug)]
pub struct StripeConfig {
    /// `sk_…` or `rk_…`: creates Checkout Sessions and reads their line items. `None`: Stripe
    /// API calls are refused.
    pub secret_key: Option<String>,
    /// Webhook signing secrets (`whsec_…`); a signature made with any of them is accepted, so
    /// a secret can be rotated. Empty: the webhook answers 503.
    pub webhook_secrets: Vec<String>,
    /// Stripe's API base URL (`None`: https://api.stripe.com/), for a local stand-in.
    pub api_base: Option<String>,
    /// Signatures older or further in the future than this are refused.
    pub webhook_tolerance: Duration,
}

impl Default for StripeConfig {
    fn default() -> Self {
        Self {
            secret_key: None,
            webhook_secrets: Vec::new(),
            api_base: None,
            webhook_tolerance: Duration::from_secs(DEFAULT_STRIPE_WEBHOOK_TOLERANCE_SECONDS),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    /// Defaults for everything; what tests and embedders start from.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses"),
            metrics_listen: None,
            admin_api_key: None,
            request_timeout: Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECONDS),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
            token_secret: None,
            ws_init_timeout: Duration::from_secs(DEFAULT_WS_INIT_TIMEOUT_SECONDS),
            ws_keepalive_interval: Duration::from_secs(DEFAULT_WS_KEEPALIVE_SECONDS),
            live_min_interval: Duration::from_millis(DEFAULT_LIVE_MIN_INTERVAL_MS),
            stripe: StripeConfig::default(),
            bundles_file: None,
            pipeline: PipelineSettings::default(),
            webhooks: WebhookSettings::default(),
            clock: Clock::system(),
        }
    }

    /// Reads the process environment. Call `dotenvy::dotenv()` first to honour a `.env` file.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so the parsing is testable without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());

        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                problem: "must start with sqlite:, postgres:// or postgresql://".into(),
            });
        }

        let listen_text = get("TALLY_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| ConfigError {
            variable: "TALLY_LISTEN",
            problem: format!("'{listen_text}' is not an address like 127.0.0.1:8080"),
        })?;

        let metrics_listen = get("TALLY_METRICS_LISTEN")
            .map(|text| {
                text.trim().parse().map_err(|_| ConfigError {
                    variable: "TALLY_METRICS_LISTEN",
                    problem: format!("'{text}' is not an address like 127.0.0.1:9090"),
                })
            })
            .transpose()?;

        let admin_api_key = get("TALLY_ADMIN_API_KEY");
        if let Some(key) = &admin_api_key
            && (key.chars().count() < MIN_ADMIN_API_KEY_CHARS
                || key.chars().any(char::is_whitespace))
        {
            return Err(ConfigError {
                variable: "TALLY_ADMIN_API_KEY",
                problem: format!(
                    "must be at least {MIN_ADMIN_API_KEY_CHARS} characters with no spaces \
                     (generate one with `tally keys create`)"
                ),
            });
        }

        let request_timeout_seconds = parse_number(
            &get,
            "TALLY_REQUEST_TIMEOUT_SECONDS",
            DEFAULT_REQUEST_TIMEOUT_SECONDS,
            1..=3600,
        )?;
        let max_body_bytes = parse_number(
            &get,
            "TALLY_MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES as u64,
            1024..=16 * 1024 * 1024,
        )? as usize;
        let db_max_connections = parse_number(
            &get,
            "TALLY_DB_MAX_CONNECTIONS",
            u64::from(DEFAULT_DB_MAX_CONNECTIONS),
            1..=1000,
        )? as u32;

        let token_secret = get("TALLY_TOKEN_SECRET");
        if token_secret
            .as_ref()
            .is_some_and(|secret| secret.chars().count() < MIN_TOKEN_SECRET_CHARS)
        {
            return Err(ConfigError {
                variable: "TALLY_TOKEN_SECRET",
                problem: format!("must be at least {MIN_TOKEN_SECRET_CHARS} characters"),
            });
        }
        let ws_init_timeout_seconds = parse_number(
            &get,
            "TALLY_WS_INIT_TIMEOUT_SECONDS",
            DEFAULT_WS_INIT_TIMEOUT_SECONDS,
            1..=300,
        )?;
        let ws_keepalive_seconds = parse_number(
            &get,
            "TALLY_WS_KEEPALIVE_SECONDS",
            DEFAULT_WS_KEEPALIVE_SECONDS,
            1..=3600,
        )?;
        let live_min_interval_ms = parse_number(
            &get,
            "TALLY_LIVE_MIN_INTERVAL_MS",
            DEFAULT_LIVE_MIN_INTERVAL_MS,
            0..=60_000,
        )?;

        // 0: the default for the database (one lane on SQLite; on PostgreSQL one more than the
        // cores, two to eight: `default_postgres_lanes`).
        let lanes = parse_number(&get, "TALLY_WRITE_LANES", 0, 0..=64)? as usize;
        let max_batch = parse_number(
            &get,
            "TALLY_MAX_BATCH",
            DEFAULT_MAX_BATCH as u64,
            1..=10_000,
        )? as usize;
        let batches_in_flight = parse_number(
            &get,
            "TALLY_BATCHES_IN_FLIGHT",
            DEFAULT_BATCHES_IN_FLIGHT as u64,
            1..=16,
        )? as usize;
        let pipeline = PipelineSettings {
            lanes: (lanes > 0).then_some(lanes),
            max_batch,
            batches_in_flight,
        };

        let stripe = parse_stripe(&get)?;
        let bundles_file = get("TALLY_BUNDLES_FILE").map(|path| PathBuf::from(path.trim()));
        let webhooks = WebhookSettings::parse(&get)?;

        Ok(Self {
            database_url,
            listen,
            metrics_listen,
            admin_api_key,
            request_timeout: Duration::from_secs(request_timeout_seconds),
            max_body_bytes,
            db_max_connections,
            token_secret,
            ws_init_timeout: Duration::from_secs(ws_init_timeout_seconds),
            ws_keepalive_interval: Duration::from_secs(ws_keepalive_seconds),
            live_min_interval: Duration::from_millis(live_min_interval_ms),
            stripe,
            bundles_file,
            pipeline,
            webhooks,
            clock: Clock::system(),
        })
    }
}

fn parse_stripe(get: &impl Fn(&str) -> Option<String>) -> Result<StripeConfig, ConfigError> {
    let secret_key = get("STRIPE_SECRET_KEY").map(|key| key.trim().to_owned());
    if let Some(key) = &secret_key
        && (!(key.starts_with("sk_") || key.starts_with("rk_"))
            || !key.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ConfigError {
            variable: "STRIPE_SECRET_KEY",
            problem: "must be a Stripe secret or restricted key (sk_… or rk_…) without spaces"
                .into(),
        });
    }
    let webhook_secrets: Vec<String> = get("STRIPE_WEBHOOK_SECRET")
        .map(|value| value.split(',').map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default();
    if webhook_secrets
        .iter()
        .any(|secret| !secret.starts_with("whsec_") || secret.len() <= "whsec_".len())
    {
        return Err(ConfigError {
            variable: "STRIPE_WEBHOOK_SECRET",
            problem: "must be one or more comma-separated webhook signing secrets (whsec_…)".into(),
        });
    }
    let api_base = get("STRIPE_API_BASE").map(|url| url.trim().to_owned());
    if let Some(url) = &api_base
        && !((url.starts_with("https://") || url.starts_with("http://"))
            && url.len() > "https://".len()
            && url.chars().all(|c| c.is_ascii_graphic()))
    {
        return Err(ConfigError {
            variable: "STRIPE_API_BASE",
            problem: format!("'{url}' is not an http(s) URL such as https://api.stripe.com/"),
        });
    }
    let tolerance = parse_number(
        get,
        "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
        DEFAULT_STRIPE_WEBHOOK_TOLERANCE_SECONDS,
        1..=86_400,
    )?;
    Ok(StripeConfig {
        secret_key,
        webhook_secrets,
        api_base,
        webhook_tolerance: Duration::from_secs(tolerance),
    })
}

pub(crate) fn parse_number(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: u64,
    allowed: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(text) = get(variable) else {
        return Ok(default);
    };
    match text.trim().parse::<u64>() {
        Ok(value) if allowed.contains(&value) => Ok(value),
        _ => Err(ConfigError {
            variable,
            problem: format!(
                "'{text}' is not a whole number from {} to {}",
                allowed.start(),
                allowed.end()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = config_from(&[]).unwrap();
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert!(config.admin_api_key.is_none());
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert!(config.stripe.secret_key.is_none());
        assert!(config.stripe.webhook_secrets.is_empty());
        assert_eq!(config.stripe.webhook_tolerance, Duration::from_secs(300));
        assert!(config.bundles_file.is_none());
    }

    #[test]
    fn live_pacing_is_read_in_milliseconds_and_zero_turns_it_off() {
        let default = config_from(&[]).unwrap();
        assert_eq!(default.live_min_interval, Duration::from_millis(50));
        let off = config_from(&[("TALLY_LIVE_MIN_INTERVAL_MS", "0")]).unwrap();
        assert_eq!(off.live_min_interval, Duration::ZERO);
        let slow = config_from(&[("TALLY_LIVE_MIN_INTERVAL_MS", "60000")]).unwrap();
        assert_eq!(slow.live_min_interval, Duration::from_secs(60));
    }

    #[test]
    fn stripe_settings_are_read() {
        let config = config_from(&[
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_new, whsec_old"),
            ("STRIPE_API_BASE", "http://127.0.0.1:12111/"),
            ("STRIPE_WEBHOOK_TOLERANCE_SECONDS", "60"),
            ("TALLY_BUNDLES_FILE", "bundles.toml"),
        ])
        .unwrap();
        assert_eq!(config.stripe.secret_key.as_deref(), Some("sk_test_123"));
        assert_eq!(
            config.stripe.webhook_secrets,
            vec!["whsec_new", "whsec_old"]
        );
        assert_eq!(
            config.stripe.api_base.as_deref(),
            Some("http://127.0.0.1:12111/")
        );
        assert_eq!(config.stripe.webhook_tolerance, Duration::from_secs(60));
        assert_eq!(config.bundles_file, Some(PathBuf::from("bundles.toml")));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (pairs, variable) in [
            (vec![("TALLY_LISTEN", "nowhere")], "TALLY_LISTEN"),
            (
                vec![("TALLY_METRICS_LISTEN", "9090")],
                "TALLY_METRICS_LISTEN",
            ),
            (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (
                vec![("TALLY_ADMIN_API_KEY", "short")],
                "TALLY_ADMIN_API_KEY",
            ),
            (
                vec![("TALLY_REQUEST_TIMEOUT_SECONDS", "0")],
                "TALLY_REQUEST_TIMEOUT_SECONDS",
            ),
            (
                vec![("TALLY_MAX_BODY_BYTES", "lots")],
                "TALLY_MAX_BODY_BYTES",
            ),
            (
                vec![("TALLY_DB_MAX_CONNECTIONS", "-1")],
                "TALLY_DB_MAX_CONNECTIONS",
            ),
            (
                vec![("STRIPE_SECRET_KEY", "pk_test_abc")],
                "STRIPE_SECRET_KEY",
            ),
            (
                vec![("STRIPE_WEBHOOK_SECRET", "whsec_abc,,whsec_def")],
                "STRIPE_WEBHOOK_SECRET",
            ),
            (
                vec![("STRIPE_WEBHOOK_SECRET", "sk_test_wrong")],
                "STRIPE_WEBHOOK_SECRET",
            ),
            (
                vec![("STRIPE_API_BASE", "localhost:12111")],
                "STRIPE_API_BASE",
            ),
            (
                vec![("STRIPE_WEBHOOK_TOLERANCE_SECONDS", "0")],
                "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
            ),
            (
                vec![("TALLY_LIVE_MIN_INTERVAL_MS", "60001")],
                "TALLY_LIVE_MIN_INTERVAL_MS",
            ),
            (
                vec![("TALLY_LIVE_MIN_INTERVAL_MS", "-1")],
                "TALLY_LIVE_MIN_INTERVAL_MS",
            ),
        ] {
            let error = config_from(&pairs).unwrap_err();
            assert_eq!(error.variable, variable);
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }
}
