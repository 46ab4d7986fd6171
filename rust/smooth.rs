//! Streaming exponential moving average of the loss.

use crate::error::{param, Result};

/// Exponential moving average where `alpha` is the weight of the newest value.
///
/// Without debiasing the first output is the first input (the seed, torch-lr-finder):
/// `s_1 = x_1`, `s_t = alpha * x_t + (1 - alpha) * s_{t-1}`.
/// With debiasing it is fastai's: `v_t = beta * v_{t-1} + (1 - beta) * x_t` from `v_0 = 0`,
/// `s_t = v_t / (1 - beta^t)`, `beta = 1 - alpha`; the first output again equals the first input.
/// A NaN or infinite input propagates to every later output: it is never hidden.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ema {
    alpha: f64,
    debias: bool,
    value: f64,
    /// `1 - beta^t` for the debiased form, by the recursion `beta * norm + alpha`.
    norm: f64,
    count: u64,
}

impl Ema {
    /// An empty average; `alpha` must be in (0, 1].
    pub fn new(alpha: f64, debias: bool) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(param("alpha", "in (0, 1]", alpha));
        }
        Ok(Self::checked(alpha, debias))
    }

    /// [`Ema::new`] for an `alpha` already checked.
    pub(crate) fn checked(alpha: f64, debias: bool) -> Self {
        Self { alpha, debias, value: 0.0, norm: 0.0, count: 0 }
    }

    /// Adds `x` and returns the smoothed value.
    #[inline]
    pub fn update(&mut self, x: f64) -> f64 {
        let beta = 1.0 - self.alpha;
        self.count += 1;
        if self.debias {
            // s_t = v_t / (1 - beta^t), kept as s_t = (1 - w) s_{t-1} + w x_t with
            // w = alpha / (1 - beta^t) and 1 - beta^t by its own recursion: the same values, but
            // an alpha so small that 1 - alpha rounds to 1 (or alpha * x to 0) gives the running
            // mean instead of 0 / 0. w is 1 at the first step.
            self.norm = beta * self.norm + self.alpha;
            let w = self.alpha / self.norm;
            self.value = if w >= 1.0 { x } else { (1.0 - w) * self.value + w * x };
            self.value
        } else {
            self.value = if self.count == 1 { x } else { self.alpha * x + beta * self.value };
            self.value
        }
    }

    /// The current smoothed value, `None` before the first update.
    pub fn value(&self) -> Option<f64> {
        match self.count {
            0 => None,
            _ => Some(self.value),
        }
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The smoothed series of `values` (see [`Ema`]), written into `out` (same length).
pub(crate) fn ema_into<T: Copy + Into<f64>>(values: &[T], alpha: f64, debias: bool, out: &mut [f64]) -> Result<()> {
    let mut e = Ema::new(alpha, debias)?;
    for (o, &x) in out.iter_mut().zip(values) {
        *o = e.update(x.into());
    }
    Ok(())
}

/// The smoothed series of `values` (see [`Ema`]).
pub fn ema<T: Copy + Into<f64>>(values: &[T], alpha: f64, debias: bool) -> Result<Vec<f64>> {
    let mut out = vec![0.0; values.len()];
    ema_into(values, alpha, debias, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_starts_at_first_value() {
        let s = ema(&[2.0, 4.0, 4.0], 0.5, false).unwrap();
        assert_eq!(s, vec![2.0, 3.0, 3.5]);
    }

    #[test]
    fn debiased_matches_fastai_formula() {
        let xs = [2.3, 2.2, 2.5, 1.9, 1.7];
        let beta: f64 = 0.98;
        let mut v = 0.0;
        let expected: Vec<f64> = xs
            .iter()
            .enumerate()
            .map(|(t, &x)| {
                v = beta * v + (1.0 - beta) * x;
                v / (1.0 - beta.powi(t as i32 + 1))
            })
            .collect();
        let got = ema(&xs, 0.02, true).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-12 * e.abs(), "{g} vs {e}");
        }
        assert!((got[0] - 2.3).abs() < 1e-12);
    }

    #[test]
    fn nan_propagates_and_alpha_is_checked() {
        let s = ema(&[1.0, f64::NAN, 1.0], 0.1, false).unwrap();
        assert!(s[1].is_nan() && s[2].is_nan());
        assert_eq!(Ema::new(0.0, false).unwrap_err().to_string(), "alpha must be in (0, 1], got 0");
        assert_eq!(Ema::new(1.5, true).unwrap_err().to_string(), "alpha must be in (0, 1], got 1.5");
        assert!(Ema::new(f64::NAN, true).is_err());
        let mut e = Ema::new(1.0, false).unwrap();
        assert_eq!(e.value(), None);
        assert_eq!(e.update(3.0), 3.0);
        assert_eq!(e.update(5.0), 5.0, "alpha = 1 is no smoothing");
    }

    proptest! {
        #[test]
        fn stays_within_input_range(xs in prop::collection::vec(-1e6f64..1e6, 1..200), alpha in 0.001f64..=1.0, debias: bool) {
            let s = ema(&xs, alpha, debias).unwrap();
            let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let tol = 1e-9 * (lo.abs().max(hi.abs()) + 1.0);
            for v in s {
                prop_assert!(v >= lo - tol && v <= hi + tol);
            }
        }
    }
}
