//! PostgreSQL `LISTEN`: every process hears every committed change, its own included.

use std::time::Duration;

use sea_orm::sqlx::PgPool;
use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::oneshot;

use super::{BalanceEvents, CHANNEL};

const RETRY_DELAY: Duration = Duration::from_secs(1);

pub async fn listen(events: BalanceEvents, pool: PgPool, listening: oneshot::Sender<()>) {
    let mut listening = Some(listening);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "balance listener cannot connect; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "balance listener cannot LISTEN; retrying");
            tokio::time::sleep(RETRY_DELAY).await;
            continue;
        }
        // Notifications sent while no connection listened are lost: everyone re-reads.
        events.wake_all();
        if let Some(listening) = listening.take() {
            let _ = listening.send(());
        }
        tracing::debug!("balance listener connected");
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match super::parse_payload(notification.payload()) {
                    Some(end_user_ids) => end_user_ids.into_iter().for_each(|id| events.wake(&id)),
                    None => tracing::warn!(payload = notification.payload(), "odd notification"),
                },
                Ok(None) => {
                    tracing::warn!("balance listener lost its connection; reconnecting");
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "balance listener failed; reconnecting");
                    tokio::time::sleep(RETRY_DELAY).await;
                    break;
                }
            }
        }
    }
}
