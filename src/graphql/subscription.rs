use async_graphql::{Context, Result, Subscription as SubscriptionObject};
use futures::Stream;
use uuid::Uuid;

use crate::events::BalanceEvents;
use crate::graphql::context::ledger_for_reader;
use crate::graphql::types::Balance;
use crate::ledger::EndUserId;
use crate::observability::metrics::GaugeGuard;

#[derive(Default)]
pub struct Subscription;

#[SubscriptionObject]
impl Subscription {
    /// The end user's balance now, then again after every committed change (debit, grant,
    /// expiry…), made by any Tally process. A slow client may skip intermediate balances but
    /// always ends on the latest. Secret keys, or that end user's own token.
    async fn balance_changed(
        &self,
        ctx: &Context<'_>,
        end_user_id: Uuid,
    ) -> Result<impl Stream<Item = Result<Balance>> + use<>> {
        let end_user_id = EndUserId(end_user_id);
        let ledger = ledger_for_reader(ctx, end_user_id)?.clone();
        let watch = ctx.data_unchecked::<BalanceEvents>().subscribe(end_user_id);
        // Counted while the stream lives; dropped with it when the client stops or leaves.
        let live = GaugeGuard::new("tally_live_subscriptions");
        Ok(futures::stream::unfold(
            (ledger, watch, true, live),
            move |(ledger, mut watch, first, live)| async move {
                if !first && !watch.changed().await {
                    return None;
                }
                // Changes from here on trigger another read, so the last read is the latest.
                let balance = watch
                    .latest(first, || ledger.balance(end_user_id))
                    .await
                    .map(|balance| Balance(balance.as_ref().clone()))
                    .map_err(Into::into);
                Some((balance, (ledger, watch, false, live)))
            },
        ))
    }
}
