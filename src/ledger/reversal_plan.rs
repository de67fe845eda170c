//! The reversal plan: what a reversal gives back, and to which grants. Pure, so the rule is
//! tested on its own; `Ledger::reverse_debit` applies it under the account lock.
//!
//! A reversal gives back to the grants the debit took from, newest allocation first (the
//! credits spent last come back first), never more per grant than the debit took less what
//! earlier reversals of it gave back. Without an amount it gives back all that is left.

use std::collections::HashMap;

use uuid::Uuid;

use super::burn_down::Allocation;

/// Nothing (or less than asked) is left to reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotReversible {
    /// Credits the debit took that earlier reversals have not given back.
    pub left: i64,
}

/// The allocations a reversal gives back (positive amounts, newest allocation of the debit
/// first), summing to `requested` or, when absent, to everything left.
pub fn plan_reversal(
    taken: &[Allocation],
    returned_earlier: &HashMap<Uuid, i64>,
    requested: Option<i64>,
) -> Result<Vec<Allocation>, NotReversible> {
    let returnable: Vec<Allocation> = taken
        .iter()
        .rev()
        .map(|allocation| {
            let returned = returned_earlier
                .get(&allocation.grant_id)
                .copied()
                .unwrap_or(0);
            debug_assert!(returned <= allocation.amount, "never more back than taken");
            Allocation {
                grant_id: allocation.grant_id,
                amount: allocation.amount - returned,
            }
        })
        .filter(|allocation| allocation.amount > 0)
        .collect();
    let left: i64 = returnable.iter().map(|a| a.amount).sum();
    let amount = requested.unwrap_or(left);
    if amount <= 0 || amount > left {
        return Err(NotReversible { left });
    }
    let mut still = amount;
    let plan: Vec<Allocation> = returnable
        .into_iter()
        .map_while(|allocation| {
            (still > 0).then(|| {
                let give = allocation.amount.min(still);
                still -= give;
                Allocation {
                    grant_id: allocation.grant_id,
                    amount: give,
                }
            })
        })
        .collect();
    debug_assert_eq!(plan.iter().map(|a| a.amount).sum::<i64>(), amount);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::burn_down::allocations_of as taken;

    #[test]
    fn gives_back_the_last_credits_spent_first() {
        let debit = taken(&[10, 20, 30]);
        let plan = plan_reversal(&debit, &HashMap::new(), Some(35)).unwrap();
        assert_eq!(
            plan,
            vec![
                Allocation {
                    grant_id: debit[2].grant_id,
                    amount: 30
                },
                Allocation {
                    grant_id: debit[1].grant_id,
                    amount: 5
                },
            ]
        );
    }

    #[test]
    fn without_an_amount_gives_back_all_that_is_left() {
        let debit = taken(&[10, 20]);
        let earlier = HashMap::from([(debit[1].grant_id, 15)]);
        let plan = plan_reversal(&debit, &earlier, None).unwrap();
        assert_eq!(
            plan,
            vec![
                Allocation {
                    grant_id: debit[1].grant_id,
                    amount: 5
                },
                Allocation {
                    grant_id: debit[0].grant_id,
                    amount: 10
                },
            ]
        );
    }

    #[test]
    fn never_gives_back_more_than_is_left() {
        let debit = taken(&[10, 20]);
        let earlier = HashMap::from([(debit[0].grant_id, 10), (debit[1].grant_id, 20)]);
        assert_eq!(
            plan_reversal(&debit, &earlier, None),
            Err(NotReversible { left: 0 })
        );
        assert_eq!(
            plan_reversal(&debit, &HashMap::new(), Some(31)),
            Err(NotReversible { left: 30 })
        );
        assert_eq!(
            plan_reversal(&debit, &HashMap::new(), Some(0)),
            Err(NotReversible { left: 30 })
        );
    }
}
