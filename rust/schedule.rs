//! Training schedules built from a found LR: the seed's warmup + cosine and one-cycle.
//!
//! Each has a per-step form (`*_at`) for a training loop and a whole-array form for steps
//! `0..total_steps`. Both keep the seed's formulas; the edge cases the seed leaves open
//! (no warmup, all warmup, steps past the end) have defined values and never give NaN.

use crate::error::{param, Result};
use crate::sweep::MAX_LEN;

/// Warmup + cosine decay: the seed's `warmup_cosine_schedule` with an optional floor `min_lr`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WarmupCosine {
    total_steps: u64,
    warmup_steps: u64,
    base_lr: f64,
    min_lr: f64,
}

impl WarmupCosine {
    /// Validates the parameters: `total_steps >= 1`, `0 <= warmup_steps <= total_steps`,
    /// `base_lr` finite and > 0, `0 <= min_lr <= base_lr`.
    pub fn new(total_steps: i64, warmup_steps: i64, base_lr: f64, min_lr: f64) -> Result<Self> {
        let total = check_total(total_steps)?;
        if !(0..=total_steps).contains(&warmup_steps) {
            return Err(param("warmup_steps", "in [0, total_steps]", warmup_steps));
        }
        check_lr("base_lr", base_lr)?;
        if !(min_lr.is_finite() && (0.0..=base_lr).contains(&min_lr)) {
            return Err(param("min_lr", "finite and in [0, base_lr]", min_lr));
        }
        Ok(Self { total_steps: total, warmup_steps: warmup_steps as u64, base_lr, min_lr })
    }

    /// The LR at `step`: linear warmup from 0 to `base_lr` over `warmup_steps` steps (the seed's),
    /// then cosine decay from `base_lr` to `min_lr` at `total_steps`; `min_lr` from there on
    /// (`base_lr` if the whole schedule is warmup).
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * step as f64 / self.warmup_steps as f64;
        }
        if self.warmup_steps == self.total_steps {
            return self.base_lr;
        }
        // The differences in integers, as the seed's Python ints: exact past 2^53 too.
        let done = (step - self.warmup_steps) as f64;
        let progress = (done / (self.total_steps - self.warmup_steps) as f64).min(1.0);
        self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The LRs of steps `0..total_steps` (at most 100,000,000 of them).
    pub fn to_vec(&self) -> Result<Vec<f64>> {
        check_len(self.total_steps)?;
        Ok((0..self.total_steps).map(|s| self.at(s)).collect())
    }
}

/// One-cycle: the seed's `one_cycle_schedule` with the warmup share `pct_start` as a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OneCycle {
    total_steps: u64,
    base_lr: f64,
    max_lr: f64,
    pct_start: f64,
}

impl OneCycle {
    /// Validates the parameters: `total_steps >= 1`, `base_lr` finite and > 0,
    /// `max_lr` finite and >= `base_lr`, `pct_start` in [0, 1).
    pub fn new(total_steps: i64, base_lr: f64, max_lr: f64, pct_start: f64) -> Result<Self> {
        let total = check_total(total_steps)?;
        check_lr("base_lr", base_lr)?;
        if !(max_lr.is_finite() && max_lr >= base_lr) {
            return Err(param("max_lr", "finite and >= base_lr", max_lr));
        }
        if !(0.0..1.0).contains(&pct_start) {
            return Err(param("pct_start", "in [0, 1)", pct_start));
        }
        Ok(Self { total_steps: total, base_lr, max_lr, pct_start })
    }

    /// The LR at `step`: linear from `base_lr` to `max_lr` over the first `pct_start` of the
    /// steps, then `max_lr * (1 - p) ** 2` down to 0 at `total_steps`; 0 from there on.
    pub fn at(&self, step: u64) -> f64 {
        let pct = (step as f64 / self.total_steps as f64).min(1.0);
        if pct < self.pct_start {
            self.base_lr + (self.max_lr - self.base_lr) * (pct / self.pct_start)
        } else {
            self.max_lr * (1.0 - (pct - self.pct_start) / (1.0 - self.pct_start)).powi(2)
        }
    }

    /// The LRs of steps `0..total_steps` (at most 100,000,000 of them).
    pub fn to_vec(&self) -> Result<Vec<f64>> {
        check_len(self.total_steps)?;
        Ok((0..self.total_steps).map(|s| self.at(s)).collect())
    }
}

fn check_len(total_steps: u64) -> Result<()> {
    if total_steps > MAX_LEN as u64 {
        return Err(param("total_steps", "at most 100000000 for the whole array (use the per-step form)", total_steps));
    }
    Ok(())
}

fn check_total(total_steps: i64) -> Result<u64> {
    u64::try_from(total_steps).ok().filter(|&t| t >= 1).ok_or_else(|| param("total_steps", ">= 1", total_steps))
}

fn check_lr(name: &'static str, lr: f64) -> Result<()> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(param(name, "finite and > 0", lr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn warmup_cosine_shape() {
        let s = WarmupCosine::new(100, 10, 1.0, 0.0).unwrap();
        assert_eq!(s.at(0), 0.0);
        assert_eq!(s.at(5), 0.5);
        assert_eq!(s.at(10), 1.0);
        assert!((s.at(55) - 0.5).abs() < 1e-15);
        assert_eq!(s.at(100), 0.0);
        assert_eq!(s.at(1000), 0.0, "past the end stays at the floor instead of rising again");
        let floored = WarmupCosine::new(100, 0, 1.0, 0.1).unwrap();
        assert_eq!(floored.at(0), 1.0);
        assert!((floored.at(100) - 0.1).abs() < 1e-15);
        let all_warmup = WarmupCosine::new(10, 10, 2.0, 0.0).unwrap();
        assert_eq!(all_warmup.to_vec().unwrap()[9], 1.8);
        assert_eq!(all_warmup.at(10), 2.0);
    }

    #[test]
    fn one_cycle_shape() {
        let s = OneCycle::new(100, 0.1, 1.0, 0.3).unwrap();
        assert_eq!(s.at(0), 0.1);
        assert_eq!(s.at(30), 1.0);
        assert_eq!(s.at(100), 0.0);
        assert_eq!(s.at(500), 0.0);
        let no_warmup = OneCycle::new(10, 0.1, 1.0, 0.0).unwrap();
        assert_eq!(no_warmup.at(0), 1.0);
    }

    #[test]
    fn warmup_cosine_counts_steps_in_integers_past_2_pow_53() {
        // Halfway through the decay, as the seed's Python ints give; in f64 the step and the
        // warmup round to the same value and the decay had not begun.
        let big = 1u64 << 53;
        let s = WarmupCosine::new(big as i64 + 2, big as i64, 1.0, 0.0).unwrap();
        assert!((s.at(big + 1) - 0.5).abs() < 1e-12, "{}", s.at(big + 1));
    }

    #[test]
    fn rejects_bad_input() {
        let msg = |e: Error| e.to_string();
        use crate::Error;
        assert_eq!(msg(WarmupCosine::new(0, 0, 1.0, 0.0).unwrap_err()), "total_steps must be >= 1, got 0");
        assert_eq!(
            msg(WarmupCosine::new(10, 11, 1.0, 0.0).unwrap_err()),
            "warmup_steps must be in [0, total_steps], got 11"
        );
        assert_eq!(
            msg(WarmupCosine::new(10, -1, 1.0, 0.0).unwrap_err()),
            "warmup_steps must be in [0, total_steps], got -1"
        );
        assert_eq!(
            msg(WarmupCosine::new(10, 1, f64::NAN, 0.0).unwrap_err()),
            "base_lr must be finite and > 0, got NaN"
        );
        assert_eq!(
            msg(WarmupCosine::new(10, 1, 1.0, 2.0).unwrap_err()),
            "min_lr must be finite and in [0, base_lr], got 2"
        );
        assert_eq!(msg(OneCycle::new(10, 1.0, 0.5, 0.3).unwrap_err()), "max_lr must be finite and >= base_lr, got 0.5");
        assert_eq!(msg(OneCycle::new(10, 0.1, 1.0, 1.0).unwrap_err()), "pct_start must be in [0, 1), got 1");
    }

    proptest! {
        #[test]
        fn finite_and_bounded(total in 1i64..2000, warm_frac in 0.0f64..=1.0, base in 1e-8f64..10.0, pct in 0.0f64..0.99, step in 0u64..5000) {
            let warmup = (warm_frac * total as f64) as i64;
            let wc = WarmupCosine::new(total, warmup, base, base / 10.0).unwrap();
            let v = wc.at(step);
            prop_assert!(v.is_finite() && (0.0..=base).contains(&v));
            let oc = OneCycle::new(total, base, base * 10.0, pct).unwrap();
            let v = oc.at(step);
            prop_assert!(v.is_finite() && (0.0..=base * 10.0).contains(&v));
        }
    }
}
