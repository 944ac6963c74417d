//! RFC 2544 throughput: the highest offered rate at which a forwarder
//! loses nothing over a trial, found by binary search, and the latency at
//! fractions of it.
//!
//! The search first tries the upper bound (the forwarder's unpaced rate,
//! a little above); then it halves the interval between the highest rate
//! that passed and the lowest that failed until the interval is within
//! `resolution` of the rate, or `max_steps` trials ran. A trial passes
//! when every packet offered came back: at a paced rate the generator
//! counts every packet due, including those the forwarder's ring refused.

/// One trial of a search.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Step {
    /// The rate asked for, Mpps per direction.
    pub rate_mpps: f64,
    /// The rate the generator offered, Mpps per direction.
    pub offered_mpps: f64,
    /// Packets offered, both directions.
    pub offered: u64,
    /// Packets that did not come back.
    pub lost: u64,
}

impl Step {
    /// Whether nothing was lost.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.offered > 0
    }
}

/// What a search found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Search {
    /// The highest rate offered with no loss, Mpps per direction (None:
    /// every trial lost packets).
    pub zero_loss_mpps: Option<f64>,
    /// Every trial, in order.
    pub steps: Vec<Step>,
}

/// Searches between 0 and `upper` Mpps per direction; `trial(rate)` runs
/// one trial at `rate` and says what it offered and lost.
pub fn search<E>(
    upper: f64,
    resolution: f64,
    max_steps: usize,
    mut trial: impl FnMut(f64) -> Result<Step, E>,
) -> Result<Search, E> {
    let mut steps = Vec::new();
    // (rate asked, rate offered) of the best pass.
    let mut best: Option<(f64, f64)> = None;
    let (mut lo, mut hi) = (0.0f64, upper.max(1e-3));
    let mut rate = hi;
    while steps.len() < max_steps.max(1) {
        let s = trial(rate)?;
        if s.passed() {
            lo = rate;
            // The generator may fall short of the rate asked: the result is
            // the most it offered without loss.
            if best.is_none_or(|b| s.offered_mpps > b.1) {
                best = Some((rate, s.offered_mpps));
            }
        } else {
            hi = rate;
        }
        steps.push(s);
        if lo >= hi || hi - lo <= resolution * hi {
            break;
        }
        rate = (lo + hi) / 2.0;
    }
    Ok(Search { zero_loss_mpps: best.map(|b| b.1), steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model forwarder that loses packets above `capacity` Mpps.
    fn model(capacity: f64) -> impl FnMut(f64) -> Result<Step, ()> {
        move |rate| {
            let offered = (rate * 2e6) as u64;
            let lost = if rate > capacity { ((rate - capacity) * 2e6) as u64 + 1 } else { 0 };
            Ok(Step { rate_mpps: rate, offered_mpps: rate, offered, lost })
        }
    }

    /// The search lands within its resolution below the model's
    /// capacity, never above it, and every trial it reports as passing
    /// was at or below the capacity.
    #[test]
    fn finds_the_capacity_within_the_resolution() {
        for (upper, cap) in [(10.0, 3.3), (10.0, 9.99), (5.0, 0.7), (20.0, 17.5)] {
            let s = search(upper, 0.01, 30, model(cap)).unwrap();
            let z = s.zero_loss_mpps.unwrap();
            assert!(z <= cap && z >= cap * 0.98, "upper {upper} capacity {cap}: found {z}");
            assert!(s.steps.iter().all(|st| st.passed() == (st.rate_mpps <= cap)));
            assert!(s.steps.len() < 30, "{} steps", s.steps.len());
        }
    }

    /// A forwarder that keeps up with the upper bound passes at once;
    /// one that loses at any rate has no zero-loss rate.
    #[test]
    fn bounds() {
        let s = search(4.0, 0.01, 30, model(100.0)).unwrap();
        assert_eq!((s.zero_loss_mpps, s.steps.len()), (Some(4.0), 1));
        let s = search(4.0, 0.01, 12, model(-1.0)).unwrap();
        assert_eq!((s.zero_loss_mpps, s.steps.len()), (None, 12));
    }

    /// The reported rate is what the generator offered, not what was
    /// asked (a generator that cannot reach the rate).
    #[test]
    fn reports_the_offered_rate() {
        let s = search(10.0, 0.01, 30, |rate: f64| -> Result<Step, ()> {
            let offered_mpps = rate.min(2.0);
            Ok(Step { rate_mpps: rate, offered_mpps, offered: (offered_mpps * 2e6) as u64, lost: 0 })
        })
        .unwrap();
        assert_eq!(s.zero_loss_mpps, Some(2.0));
    }
}
