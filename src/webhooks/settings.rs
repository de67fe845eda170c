//! The webhook settings (`TALLY_WEBHOOK_*`, `TALLY_BALANCE_ALERT_THRESHOLDS`), each listed
//! with its default in `.env.example` and the README.

use std::time::Duration;

use crate::config::{ConfigError, parse_number};
use crate::ledger::MAX_CREDITS;

use crate::ledger::outbound::thresholds::MAX_THRESHOLDS;

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookSettings {
    /// `http://` URLs on loopback addresses are accepted (development and tests).
    pub allow_http_loopback: bool,
    /// Longest wait for an endpoint's answer.
    pub timeout: Duration,
    /// The first retry's delay; each next one doubles, up to `retry_max_delay`.
    pub retry_base: Duration,
    pub retry_max_delay: Duration,
    /// How long after its first attempt a delivery is retried before it is marked failed.
    pub retry_window: Duration,
    /// An endpoint whose every attempt failed for this long is disabled.
    pub disable_after: Duration,
    /// Deliveries in flight at once per process.
    pub concurrency: usize,
    /// How often the worker looks for due deliveries when nothing woke it.
    pub poll_interval: Duration,
    /// How long the old secret keeps signing after a rotation.
    pub secret_grace: Duration,
    /// Balance-alert thresholds of end users without their own.
    pub default_thresholds: Vec<i64>,
    /// Events older than this, with nothing left to send, are deleted with their deliveries.
    pub retention: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow_http_loopback: false,
            timeout: Duration::from_millis(10_000),
            retry_base: Duration::from_millis(30_000),
            retry_max_delay: Duration::from_secs(6 * 3600),
            retry_window: Duration::from_secs(3 * 24 * 3600),
            disable_after: Duration::from_secs(5 * 24 * 3600),
            concurrency: 8,
            poll_interval: Duration::from_millis(1_000),
            secret_grace: Duration::from_secs(24 * 3600),
            default_thresholds: Vec::new(),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

impl WebhookSettings {
    pub fn parse(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let millis = |name, default: Duration, range| {
            parse_number(get, name, default.as_millis() as u64, range).map(Duration::from_millis)
        };
        let seconds = |name, default: Duration, range| {
            parse_number(get, name, default.as_secs(), range).map(Duration::from_secs)
        };
        let allow_http_loopback = match get("TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK")
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: "TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK",
                    problem: format!("'{other}' is not true or false"),
                });
            }
        };
        Ok(Self {
            allow_http_loopback,
            timeout: millis("TALLY_WEBHOOK_TIMEOUT_MS", defaults.timeout, 100..=120_000)?,
            retry_base: millis(
                "TALLY_WEBHOOK_RETRY_BASE_MS",
                defaults.retry_base,
                10..=3_600_000,
            )?,
            retry_max_delay: seconds(
                "TALLY_WEBHOOK_RETRY_MAX_DELAY_SECONDS",
                defaults.retry_max_delay,
                1..=7 * 24 * 3600,
            )?,
            retry_window: seconds(
                "TALLY_WEBHOOK_RETRY_WINDOW_SECONDS",
                defaults.retry_window,
                1..=30 * 24 * 3600,
            )?,
            disable_after: seconds(
                "TALLY_WEBHOOK_DISABLE_AFTER_SECONDS",
                defaults.disable_after,
                1..=90 * 24 * 3600,
            )?,
            concurrency: parse_number(get, "TALLY_WEBHOOK_CONCURRENCY", 8, 1..=256)? as usize,
            poll_interval: millis("TALLY_WEBHOOK_POLL_MS", defaults.poll_interval, 10..=60_000)?,
            secret_grace: seconds(
                "TALLY_WEBHOOK_SECRET_GRACE_SECONDS",
                defaults.secret_grace,
                0..=30 * 24 * 3600,
            )?,
            retention: parse_number(get, "TALLY_WEBHOOK_RETENTION_DAYS", 30, 1..=3650)
                .map(|days| Duration::from_secs(days * 24 * 3600))?,
            default_thresholds: match get("TALLY_BALANCE_ALERT_THRESHOLDS") {
                None => Vec::new(),
                Some(text) => parse_thresholds(&text).map_err(|problem| ConfigError {
                    variable: "TALLY_BALANCE_ALERT_THRESHOLDS",
                    problem,
                })?,
            },
        })
    }
}

/// `100,50,10`: distinct whole numbers from 1 to the largest balance, at most `MAX_THRESHOLDS`.
fn parse_thresholds(text: &str) -> Result<Vec<i64>, String> {
    let mut thresholds = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.parse::<i64>() {
            Ok(value) if (1..=MAX_CREDITS).contains(&value) => thresholds.push(value),
            _ => {
                return Err(format!(
                    "'{part}' is not a whole number from 1 to {MAX_CREDITS}"
                ));
            }
        }
    }
    thresholds.sort_unstable_by(|a, b| b.cmp(a));
    thresholds.dedup();
    if thresholds.len() > MAX_THRESHOLDS {
        return Err(format!("at most {MAX_THRESHOLDS} thresholds"));
    }
    Ok(thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_env_example_shows_the_defaults() {
        let lines: Vec<(&str, &str)> = include_str!("../../.env.example")
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| line.split_once('='))
            .collect();
        for name in [
            "TALLY_BALANCE_ALERT_THRESHOLDS",
            "TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK",
            "TALLY_WEBHOOK_TIMEOUT_MS",
            "TALLY_WEBHOOK_RETRY_BASE_MS",
            "TALLY_WEBHOOK_RETRY_MAX_DELAY_SECONDS",
            "TALLY_WEBHOOK_RETRY_WINDOW_SECONDS",
            "TALLY_WEBHOOK_DISABLE_AFTER_SECONDS",
            "TALLY_WEBHOOK_CONCURRENCY",
            "TALLY_WEBHOOK_POLL_MS",
            "TALLY_WEBHOOK_SECRET_GRACE_SECONDS",
            "TALLY_WEBHOOK_RETENTION_DAYS",
        ] {
            assert!(
                lines.iter().any(|(n, _)| *n == name),
                "{name} in .env.example"
            );
        }
        let get = |name: &str| {
            lines
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .filter(|v| !v.is_empty())
        };
        assert_eq!(
            WebhookSettings::parse(&get).unwrap(),
            WebhookSettings::default()
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let bad = |name: &'static str, value: &'static str| {
            let get = move |n: &str| (n == name).then(|| value.to_owned());
            WebhookSettings::parse(&get).unwrap_err().variable
        };
        assert_eq!(
            bad("TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK", "yes please"),
            "TALLY_WEBHOOK_ALLOW_HTTP_LOOPBACK"
        );
        assert_eq!(
            bad("TALLY_WEBHOOK_TIMEOUT_MS", "0"),
            "TALLY_WEBHOOK_TIMEOUT_MS"
        );
        assert_eq!(
            bad("TALLY_WEBHOOK_CONCURRENCY", "0"),
            "TALLY_WEBHOOK_CONCURRENCY"
        );
        assert_eq!(
            bad("TALLY_BALANCE_ALERT_THRESHOLDS", "5,x"),
            "TALLY_BALANCE_ALERT_THRESHOLDS"
        );
    }

    #[test]
    fn thresholds_are_sorted_highest_first_and_checked() {
        assert_eq!(parse_thresholds("10, 100,50,10").unwrap(), [100, 50, 10]);
        assert!(parse_thresholds("0").is_err());
        assert!(parse_thresholds("-5").is_err());
        assert!(parse_thresholds("ten").is_err());
        let many: Vec<String> = (1..=21).map(|n| n.to_string()).collect();
        assert!(parse_thresholds(&many.join(",")).is_err());
    }
}
