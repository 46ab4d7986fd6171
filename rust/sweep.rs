//! The LR ladder of a range test: `num_steps` LRs from `min_lr` to `max_lr`, both ends exact.

use crate::error::{param, Result};

/// The longest array a generator returns: 800 MB of float64, a guard against a typo that
/// would otherwise abort the process on allocation.
pub const MAX_LEN: usize = 100_000_000;

/// How the LR moves from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMode {
    /// Geometric: `min_lr * (max_lr / min_lr) ** (i / (n - 1))`, the seed's and every peer's default.
    Exp,
    /// Arithmetic: `min_lr + i / (n - 1) * (max_lr - min_lr)`.
    Linear,
}

impl SweepMode {
    /// Parses `"exp"` or `"linear"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "exp" => Ok(Self::Exp),
            "linear" => Ok(Self::Linear),
            other => Err(param("mode", "\"exp\" or \"linear\"", format!("{other:?}"))),
        }
    }
}

/// The `num_steps` LRs of a sweep; the first is exactly `min_lr`, the last exactly `max_lr`.
///
/// `Exp` equals the seed's `np.exp(np.linspace(np.log(min_lr), np.log(max_lr), n))` to a few ulp,
/// `Linear` equals `np.linspace(min_lr, max_lr, n)`.
pub fn sweep_lrs(min_lr: f64, max_lr: f64, num_steps: usize, mode: SweepMode) -> Result<Vec<f64>> {
    if !(min_lr.is_finite() && min_lr > 0.0) {
        return Err(param("min_lr", "finite and > 0", min_lr));
    }
    if !(max_lr.is_finite() && max_lr > min_lr) {
        return Err(param("max_lr", "finite and > min_lr", max_lr));
    }
    if !(2..=MAX_LEN).contains(&num_steps) {
        return Err(param("num_steps", "in [2, 100000000]", num_steps));
    }
    let last = (num_steps - 1) as f64;
    let mut lrs: Vec<f64> = match mode {
        // As np.linspace: start + i * step, then exp.
        SweepMode::Exp => {
            let (lo, hi) = (min_lr.ln(), max_lr.ln());
            let step = (hi - lo) / last;
            (0..num_steps).map(|i| (lo + i as f64 * step).exp()).collect()
        }
        SweepMode::Linear => {
            let step = (max_lr - min_lr) / last;
            (0..num_steps).map(|i| min_lr + i as f64 * step).collect()
        }
    };
    lrs[0] = min_lr;
    lrs[num_steps - 1] = max_lr;
    // Ends a few ulps apart cannot hold num_steps distinct LRs: the sweep would repeat one, and
    // every analysis refuses LRs that do not increase.
    if lrs.windows(2).any(|w| w[1] <= w[0]) {
        return Err(param("max_lr", "far enough above min_lr for num_steps distinct LRs", max_lr));
    }
    Ok(lrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_too_close_for_the_steps_are_refused() {
        let next = f64::from_bits(1f64.to_bits() + 1);
        let err = sweep_lrs(1.0, next, 3, SweepMode::Exp).unwrap_err().to_string();
        assert!(err.starts_with("max_lr must be far enough above min_lr"), "{err}");
        assert_eq!(sweep_lrs(1.0, next, 2, SweepMode::Linear).unwrap(), vec![1.0, next]);
    }
    use proptest::prelude::*;

    #[test]
    fn seed_default_ladder() {
        let lrs = sweep_lrs(1e-7, 10.0, 100, SweepMode::Exp).unwrap();
        assert_eq!(lrs.len(), 100);
        assert_eq!((lrs[0], lrs[99]), (1e-7, 10.0));
        // Eight decades over 99 intervals: each step is a factor 10^(8/99).
        let ratio = 10f64.powf(8.0 / 99.0);
        for w in lrs.windows(2) {
            assert!((w[1] / w[0] / ratio - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn linear_ladder() {
        let lrs = sweep_lrs(0.1, 1.0, 10, SweepMode::Linear).unwrap();
        assert_eq!((lrs[0], lrs[9]), (0.1, 1.0));
        assert!((lrs[5] - 0.6).abs() < 1e-15);
    }

    #[test]
    fn rejects_bad_input() {
        let msg = |r: Result<Vec<f64>>| r.unwrap_err().to_string();
        assert_eq!(msg(sweep_lrs(0.0, 1.0, 10, SweepMode::Exp)), "min_lr must be finite and > 0, got 0");
        assert_eq!(msg(sweep_lrs(1.0, 1.0, 10, SweepMode::Exp)), "max_lr must be finite and > min_lr, got 1");
        assert_eq!(
            msg(sweep_lrs(1e-3, f64::INFINITY, 10, SweepMode::Exp)),
            "max_lr must be finite and > min_lr, got inf"
        );
        assert_eq!(msg(sweep_lrs(1e-3, 1.0, 1, SweepMode::Exp)), "num_steps must be in [2, 100000000], got 1");
        assert_eq!(SweepMode::parse("log").unwrap_err().to_string(), "mode must be \"exp\" or \"linear\", got \"log\"");
    }

    proptest! {
        #[test]
        fn ends_exact_and_strictly_increasing(lo in -12.0f64..2.0, span in 0.01f64..12.0, n in 2usize..500, linear: bool) {
            let (min_lr, max_lr) = (10f64.powf(lo), 10f64.powf(lo + span));
            let mode = if linear { SweepMode::Linear } else { SweepMode::Exp };
            let lrs = sweep_lrs(min_lr, max_lr, n, mode).unwrap();
            prop_assert_eq!(lrs.len(), n);
            prop_assert_eq!(lrs[0], min_lr);
            prop_assert_eq!(lrs[n - 1], max_lr);
            prop_assert!(lrs.windows(2).all(|w| w[1] > w[0]));
        }
    }
}
