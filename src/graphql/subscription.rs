use async_graphql::{Context, ID, Result, Subscription as SubscriptionObject};
use futures::Stream;

use crate::events::BalanceEvents;
use crate::graphql::context::ledger_for_reader;
use crate::graphql::scalars::end_user_id as parse_end_user_id;
use crate::graphql::types::Balance;
use crate::observability::metrics::GaugeGuard;

#[derive(Default)]
pub struct Subscription;

#[SubscriptionObject]
impl Subscription {
    /// The end user's balance now, then again after every committed change (debit, grant,
    /// expiry…), made by any Tally process, whenever it differs from the last one sent. A slow
    /// client may skip intermediate balances but always ends on the latest; changes closer
    /// together than the server's pacing interval (50 ms unless configured) arrive as one
    /// balance, the latest. Secret keys, or that end user's own token.
    async fn balance_changed(
        &self,
        ctx: &Context<'_>,
        end_user_id: ID,
    ) -> Result<impl Stream<Item = Result<Balance>> + use<>> {
        let end_user_id = parse_end_user_id(&end_user_id)?;
        let ledger = ledger_for_reader(ctx, &end_user_id)?.clone();
        let watch = ctx
            .data_unchecked::<BalanceEvents>()
            .subscribe(end_user_id.clone());
        // Counted while the stream lives; dropped with it when the client stops or leaves.
        let live = GaugeGuard::new("tally_live_subscriptions");
        Ok(futures::stream::unfold(
            (ledger, watch, true, None, live),
            move |(ledger, mut watch, first, last, live)| {
                let end_user_id = end_user_id.clone();
                async move {
                    let mut fresh = first;
                    loop {
                        if !fresh && !watch.changed().await {
                            return None;
                        }
                        // Changes from here on trigger another read, so the last read is the
                        // latest.
                        let read = watch
                            .latest(fresh, || ledger.balance(end_user_id.clone()))
                            .await;
                        fresh = false;
                        match read {
                            // The balance last sent: a change it already held, announced after
                            // it was read (the first snapshot races the notification of the
                            // write before it), or changes that cancelled out. Nothing to tell.
                            Ok(balance) if last.as_ref() == Some(&balance) => continue,
                            Ok(balance) => {
                                let sent = Balance::from(balance.as_ref().clone());
                                return Some((
                                    Ok(sent),
                                    (ledger, watch, false, Some(balance), live),
                                ));
                            }
                            Err(error) => {
                                return Some((
                                    Err(error.into()),
                                    (ledger, watch, false, last, live),
                                ));
                            }
                        }
                    }
                }
            },
        ))
    }
}
