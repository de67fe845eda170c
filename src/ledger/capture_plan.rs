//! The capture split: closing a hold spends `capture` of it from the grants it earmarked (in the
//! order they were earmarked, which was burn-down order when the hold was made) and frees the
//! rest. Pure, so the rule is tested on its own; `AccountWrite::close_hold` applies it.

use super::burn_down::Allocation;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureSplit {
    /// What the capture takes from each grant (positive amounts).
    pub captured: Vec<Allocation>,
    /// What stops being earmarked on each grant: all of the hold (negative amounts).
    pub unearmarked: Vec<Allocation>,
    /// Credits the hold gives back to the available balance.
    pub released: i64,
}

/// Splits a hold of `earmarks` into what `capture` spends and what it releases. `capture` is
/// at most the hold's amount (callers check it against the request first).
pub fn split_capture(earmarks: &[Allocation], capture: i64) -> CaptureSplit {
    let held: i64 = earmarks.iter().map(|e| e.amount).sum();
    assert!(
        (0..=held).contains(&capture),
        "a capture of {capture} from a hold of {held}"
    );
    let mut still = capture;
    let mut captured = Vec::new();
    for earmark in earmarks {
        let taken = earmark.amount.min(still);
        if taken > 0 {
            captured.push(Allocation {
                grant_id: earmark.grant_id,
                amount: taken,
            });
            still -= taken;
        }
    }
    debug_assert_eq!(still, 0);
    CaptureSplit {
        captured,
        unearmarked: earmarks
            .iter()
            .map(|e| Allocation {
                grant_id: e.grant_id,
                amount: -e.amount,
            })
            .collect(),
        released: held - capture,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::burn_down::allocations_of as earmarks;

    #[test]
    fn a_partial_capture_spends_in_earmark_order_and_releases_the_rest() {
        let held = earmarks(&[30, 50]);
        let split = split_capture(&held, 40);
        assert_eq!(
            split.captured,
            vec![
                Allocation {
                    grant_id: held[0].grant_id,
                    amount: 30
                },
                Allocation {
                    grant_id: held[1].grant_id,
                    amount: 10
                },
            ]
        );
        assert_eq!(split.released, 40);
        assert_eq!(split.unearmarked.iter().map(|a| a.amount).sum::<i64>(), -80);
    }

    #[test]
    fn a_release_captures_nothing_and_a_full_capture_releases_nothing() {
        let held = earmarks(&[30, 50]);
        let release = split_capture(&held, 0);
        assert!(release.captured.is_empty());
        assert_eq!(release.released, 80);
        let full = split_capture(&held, 80);
        assert_eq!(full.captured, held);
        assert_eq!(full.released, 0);
    }

    #[test]
    #[should_panic(expected = "a capture of 81 from a hold of 80")]
    fn a_capture_beyond_the_hold_is_a_bug() {
        split_capture(&earmarks(&[30, 50]), 81);
    }
}
