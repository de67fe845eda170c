//! Building and running the service: what `tally serve` and the tests start.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::auth::key_cache::{KeyCache, run_refresher};
use crate::auth::tokens::TokenSigner;
use crate::auth::{Authenticator, api_keys};
use crate::bundles::{self, Catalog};
use crate::config::Config;
use crate::db;
use crate::events::BalanceEvents;
use crate::graphql::build_executor;
use crate::http::{
    AppState, Limits, MetricsRoute, Services, WebSocketSettings, metrics_router, router,
};
use crate::ledger::outbound::Outbound;
use crate::ledger::{Ledger, run_expiry_scheduler};
use crate::stripe::Stripe;
use crate::webhooks::Webhooks;
use crate::webhooks::worker::run_delivery_worker;

pub const ADMIN_KEY_NAME: &str = "admin (TALLY_ADMIN_API_KEY)";

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    port: u16,
    /// `/metrics` on its own listener (`TALLY_METRICS_LISTEN`).
    metrics: Option<(TcpListener, axum::Router)>,
}

impl Application {
    /// Connects to the database, migrates it, seeds the admin key and binds the listener.
    /// Port 0 binds a random free port (tests); `port()` tells which.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = db::connect(&config.database_url, config.db_max_connections)
            .await
            .context("DATABASE_URL: cannot open the database")?;
        db::migrate(&db).await.context("applying migrations")?;
        if let Some(key) = &config.admin_api_key {
            api_keys::ensure(&db, ADMIN_KEY_NAME, key)
                .await
                .map_err(|error| anyhow::anyhow!("TALLY_ADMIN_API_KEY: {}", error.detail()))?;
        }
        let catalog = Catalog::new(db.clone(), config.clock.clone());
        if let Some(path) = &config.bundles_file {
            let loaded = bundles::file::load(&catalog, path)
                .await
                .map_err(|error| anyhow::anyhow!("TALLY_BUNDLES_FILE: {error:#}"))?;
            tracing::info!(
                created = loaded.created,
                updated = loaded.updated,
                "bundles loaded from TALLY_BUNDLES_FILE"
            );
        }
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("TALLY_LISTEN: cannot listen on {}", config.listen))?;
        let port = listener.local_addr()?.port();
        let metrics_listener =
            match config.metrics_listen {
                Some(address) => Some(TcpListener::bind(address).await.with_context(|| {
                    format!("TALLY_METRICS_LISTEN: cannot listen on {address}")
                })?),
                None => None,
            };
        crate::observability::metrics::install();
        let events = BalanceEvents::new(db.get_database_backend(), config.live_min_interval);
        events.start(&db).await?;
        let outbound = Arc::new(Outbound::new(config.webhooks.default_thresholds.clone()));
        let ledger = Ledger::new(
            db.clone(),
            db::writer_options(&db).map_err(|error| anyhow::anyhow!("DATABASE_URL: {error}"))?,
            db::readers(&db),
            Arc::new(events.clone()),
            config.pipeline,
            outbound.clone(),
            config.clock.clone(),
        );
        let stripe = Stripe::new(&config.stripe, ledger.clone(), catalog)?;
        tokio::spawn(run_expiry_scheduler(ledger.clone()));
        let webhooks = Webhooks::new(
            db.clone(),
            config.webhooks.clone(),
            outbound,
            config.clock.clone(),
        );
        tokio::spawn(run_delivery_worker(webhooks.clone()));
        let signer = TokenSigner::load(&db, config.token_secret.as_deref(), config.clock.clone())
            .await
            .map_err(|error| anyhow::anyhow!("TALLY_TOKEN_SECRET: {}", error.detail()))?;
        let keys = KeyCache::load(db.clone())
            .await
            .map_err(|error| anyhow::anyhow!("loading the secret keys: {}", error.detail()))?;
        tokio::spawn(run_refresher(keys.clone()));
        let state = AppState::new(Services {
            graphql: build_executor(
                ledger.clone(),
                events,
                signer.clone(),
                stripe.clone(),
                webhooks,
            ),
            ledger,
            auth: Authenticator::new(keys, signer),
            db,
            websocket: WebSocketSettings {
                init_timeout: config.ws_init_timeout,
                keepalive_interval: config.ws_keepalive_interval,
            },
            stripe,
        });
        let limits = Limits {
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
        };
        let metrics_route = match metrics_listener {
            Some(_) => MetricsRoute::Separate,
            None => MetricsRoute::Main,
        };
        let metrics = metrics_listener.map(|listener| (listener, metrics_router(state.clone())));
        Ok(Self {
            listener,
            router: router(state, limits, metrics_route),
            port,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the separate `/metrics` listener, when `TALLY_METRICS_LISTEN` set one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
            .map(|address| address.port())
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use futures::FutureExt as _;
        let shutdown = shutdown.shared();
        if let Some((listener, router)) = self.metrics {
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.clone())
                    .into_future(),
            );
        }
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Serves until Ctrl-C or SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
