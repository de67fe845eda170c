//! Balance alerts: which `balance.low`, `balance.depleted` and `balance.recovered` a change of
//! the available balance fires. A pure function of the thresholds, what has fired since the last
//! recovery, and the balance before and after, so the rules are tested on their own; callers
//! run it under the account's lock, one entry at a time, in ledger order.

use std::collections::BTreeSet;

/// What has fired and not been re-armed yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AlertState {
    /// Thresholds whose `balance.low` fired.
    pub fired: BTreeSet<i64>,
    /// Whether `balance.depleted` fired.
    pub depleted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alert {
    /// The balance fell below this threshold.
    Low(i64),
    /// The balance reached zero.
    Depleted,
    /// The balance rose above the highest threshold (above zero when there are none) after an
    /// alert fired; every alert is armed again.
    Recovered,
}

/// The alerts one change of the available balance fires, highest threshold first, and the state
/// after them. A threshold `t` is crossed when the balance goes from `t` or more to less than
/// `t`; it fires once, then not again until the balance recovers.
pub fn crossings(
    thresholds: &[i64],
    state: &mut AlertState,
    before: i64,
    after: i64,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    if after < before {
        let mut descending: Vec<i64> = thresholds.to_vec();
        descending.sort_unstable_by(|a, b| b.cmp(a));
        descending.dedup();
        for threshold in descending {
            if after < threshold && threshold <= before && state.fired.insert(threshold) {
                alerts.push(Alert::Low(threshold));
            }
        }
        if after <= 0 && before > 0 && !state.depleted {
            state.depleted = true;
            alerts.push(Alert::Depleted);
        }
    } else if after > before {
        let highest = thresholds.iter().copied().max().unwrap_or(0).max(0);
        if after > highest && (state.depleted || !state.fired.is_empty()) {
            *state = AlertState::default();
            alerts.push(Alert::Recovered);
        }
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLDS: [i64; 3] = [100, 50, 10];

    fn run(state: &mut AlertState, before: i64, after: i64) -> Vec<Alert> {
        crossings(&THRESHOLDS, state, before, after)
    }

    #[test]
    fn one_debit_crossing_several_thresholds_fires_each_once_highest_first() {
        let mut state = AlertState::default();
        assert_eq!(
            run(&mut state, 200, 5),
            [Alert::Low(100), Alert::Low(50), Alert::Low(10)]
        );
        assert_eq!(run(&mut state, 5, 0), [Alert::Depleted]);
        assert!(run(&mut state, 0, 0).is_empty());
    }

    #[test]
    fn falling_to_zero_fires_the_thresholds_crossed_then_depleted() {
        let mut state = AlertState::default();
        assert_eq!(
            run(&mut state, 60, 0),
            [Alert::Low(50), Alert::Low(10), Alert::Depleted]
        );
    }

    #[test]
    fn a_threshold_is_crossed_when_the_balance_goes_below_it() {
        let mut state = AlertState::default();
        assert!(run(&mut state, 150, 100).is_empty(), "at 100 is not below");
        assert_eq!(run(&mut state, 100, 99), [Alert::Low(100)]);
    }

    #[test]
    fn no_alert_fires_twice_until_the_balance_recovers() {
        let mut state = AlertState::default();
        assert_eq!(run(&mut state, 120, 90), [Alert::Low(100)]);
        // Back up, but not above the highest threshold: nothing re-arms.
        assert!(run(&mut state, 90, 100).is_empty());
        assert!(run(&mut state, 100, 95).is_empty());
        // Above it: recovered once, and the alerts are armed again.
        assert_eq!(run(&mut state, 95, 101), [Alert::Recovered]);
        assert!(run(&mut state, 101, 150).is_empty());
        assert_eq!(run(&mut state, 150, 40), [Alert::Low(100), Alert::Low(50)]);
    }

    #[test]
    fn rising_without_an_alert_having_fired_is_not_a_recovery() {
        let mut state = AlertState::default();
        assert!(run(&mut state, 0, 500).is_empty());
        // Granted below a threshold and spent: it was never crossed downward.
        let mut state = AlertState::default();
        assert!(run(&mut state, 0, 40).is_empty());
        assert!(run(&mut state, 40, 30).is_empty());
    }

    #[test]
    fn depleted_and_recovered_work_without_thresholds() {
        let mut state = AlertState::default();
        assert_eq!(crossings(&[], &mut state, 5, 0), [Alert::Depleted]);
        assert!(crossings(&[], &mut state, 0, 0).is_empty());
        assert_eq!(crossings(&[], &mut state, 0, 1), [Alert::Recovered]);
        assert_eq!(crossings(&[], &mut state, 1, 0), [Alert::Depleted]);
    }

    #[test]
    fn depleted_fires_once_until_recovered() {
        let mut state = AlertState::default();
        assert_eq!(run(&mut state, 20, 0), [Alert::Low(10), Alert::Depleted]);
        assert!(run(&mut state, 0, 30).is_empty(), "30 is below 100");
        assert!(run(&mut state, 30, 0).is_empty());
        assert_eq!(run(&mut state, 0, 1_000), [Alert::Recovered]);
        assert_eq!(
            run(&mut state, 1_000, 0),
            [
                Alert::Low(100),
                Alert::Low(50),
                Alert::Low(10),
                Alert::Depleted
            ]
        );
    }

    #[test]
    fn a_sequence_of_small_debits_fires_each_threshold_exactly_once() {
        let mut state = AlertState::default();
        let mut fired = Vec::new();
        let mut balance = 160;
        while balance > 0 {
            fired.extend(run(&mut state, balance, balance - 5));
            balance -= 5;
        }
        assert_eq!(
            fired,
            [
                Alert::Low(100),
                Alert::Low(50),
                Alert::Low(10),
                Alert::Depleted
            ]
        );
    }
}
