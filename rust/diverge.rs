//! Divergence detection: when to stop a sweep because the loss exploded.

use crate::error::{param, Result};
use crate::smooth::Ema;

/// Which series the threshold rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The raw loss, as the seed.
    Raw,
    /// The EMA-smoothed loss, as every peer.
    Smoothed,
}

impl Watch {
    /// Parses `"raw"` or `"smoothed"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "raw" => Ok(Self::Raw),
            "smoothed" => Ok(Self::Smoothed),
            other => Err(param("watch", "\"raw\" or \"smoothed\"", format!("{other:?}"))),
        }
    }
}

/// Why a sweep stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The loss was NaN.
    Nan,
    /// The loss was +inf or -inf.
    Inf,
    /// The watched loss exceeded the threshold rule.
    Threshold,
}

impl StopReason {
    /// Every reason, in code order (`code()` indexes this).
    pub const ALL: [StopReason; 3] = [StopReason::Nan, StopReason::Inf, StopReason::Threshold];

    /// `"nan"`, `"inf"` or `"threshold"`.
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Nan => "nan",
            StopReason::Inf => "inf",
            StopReason::Threshold => "threshold",
        }
    }

    /// Small integer code for columnar output: 1, 2, 3 (0 means "did not stop").
    pub fn code(self) -> u8 {
        self as u8 + 1
    }
}

/// Settings of a [`DivergenceDetector`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DivergenceConfig {
    /// Stop when `watched > best + (threshold - 1) * max(|best|, ZERO_FLOOR * peak)`, `peak`
    /// being the largest `|watched|` so far. For a positive `best` that is
    /// `watched > threshold * best`, the seed's rule; it stays meaningful for negative losses,
    /// and for a best of (nearly) exactly zero, which would otherwise make any later positive
    /// loss, however small, an explosion. Must be > 1.
    pub threshold: f64,
    /// The series the rule watches.
    pub watch: Watch,
    /// EMA weight of the newest loss, for the smoothed series.
    pub alpha: f64,
    /// fastai-style debiased EMA.
    pub debias: bool,
    /// How many consecutive violations stop the sweep (>= 1).
    pub patience: usize,
    /// Violations before this step index do not count (NaN and infinity always stop).
    pub min_steps: usize,
}

impl Default for DivergenceConfig {
    /// The seed's rule: raw loss above 10x the best so far.
    fn default() -> Self {
        Self { threshold: 10.0, watch: Watch::Raw, alpha: 0.05, debias: false, patience: 1, min_steps: 0 }
    }
}

impl DivergenceConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if !(self.threshold.is_finite() && self.threshold > 1.0) {
            return Err(param("threshold", "finite and > 1", self.threshold));
        }
        Ema::new(self.alpha, self.debias)?;
        if self.patience < 1 {
            return Err(param("patience", ">= 1", self.patience));
        }
        Ok(())
    }
}

/// A best loss within float32 resolution of zero, relative to the largest loss seen, counts as
/// that resolution (`f32::EPSILON` of the largest loss) in the threshold rule: losses are
/// computed in float32, so a best of 0 after a start of 2.3 is a best of about 3e-7, not an
/// infinitely small one that a loss of 1e-12 would be "infinitely many times".
pub const ZERO_FLOOR: f64 = f32::EPSILON as f64;

/// Streaming divergence detector and loss tracker: one `update` per step, O(1) time and memory.
///
/// The point that stops the sweep is the explosion point: the points before it are the curve.
/// With `patience > 1` the stop index is the first point of the run of violations, so the
/// curve holds no exploded point.
#[derive(Debug, Clone, PartialEq)]
pub struct DivergenceDetector {
    config: DivergenceConfig,
    ema: Ema,
    smoothed: f64,
    best: f64,
    /// Largest `|watched|` so far: the scale a best near zero is measured against.
    peak: f64,
    count: usize,
    violations: usize,
    run_start: usize,
    stop: Option<(usize, StopReason)>,
}

impl DivergenceDetector {
    /// A detector that has seen nothing yet.
    pub fn new(config: DivergenceConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::checked(config))
    }

    /// [`DivergenceDetector::new`] for a config validated once for many sweeps.
    pub(crate) fn checked(config: DivergenceConfig) -> Self {
        Self {
            ema: Ema::checked(config.alpha, config.debias),
            config,
            smoothed: f64::NAN,
            best: f64::INFINITY,
            peak: 0.0,
            count: 0,
            violations: 0,
            run_start: 0,
            stop: None,
        }
    }

    /// Adds the loss of the next step; `true` means stop. Once stopped, it stays stopped and
    /// ignores further losses.
    #[inline]
    pub fn update(&mut self, loss: f64) -> bool {
        if self.stop.is_some() {
            return true;
        }
        self.smoothed = self.ema.update(loss);
        let watched = match self.config.watch {
            Watch::Raw => loss,
            Watch::Smoothed => self.smoothed,
        };
        self.judge(loss, watched)
    }

    /// [`DivergenceDetector::update`] without the EMA, whose serial multiply-add is most of the
    /// detector's time: for a `Watch::Raw` rule whose caller never reads `smoothed`.
    #[inline]
    pub(crate) fn update_raw(&mut self, loss: f64) -> bool {
        debug_assert!(self.config.watch == Watch::Raw);
        if self.stop.is_some() {
            return true;
        }
        self.judge(loss, loss)
    }

    /// The stop rule on the next loss and the value it watches.
    #[inline]
    fn judge(&mut self, loss: f64, watched: f64) -> bool {
        let i = self.count;
        self.count += 1;
        if !loss.is_finite() {
            self.stop = Some((i, if loss.is_nan() { StopReason::Nan } else { StopReason::Inf }));
            return true;
        }
        // `best` and `peak` are never NaN, so plain comparisons give what `f64::min` and
        // `f64::max` give (ties keep the old value), without their NaN handling.
        let (floor, zero) = (self.best.abs(), ZERO_FLOOR * self.peak);
        let limit = self.best + (self.config.threshold - 1.0) * if zero > floor { zero } else { floor };
        if self.best.is_finite() && watched > limit && i >= self.config.min_steps {
            if self.violations == 0 {
                self.run_start = i;
            }
            self.violations += 1;
            if self.violations >= self.config.patience {
                self.stop = Some((self.run_start, StopReason::Threshold));
                return true;
            }
        } else {
            self.violations = 0;
        }
        if watched < self.best {
            self.best = watched;
        }
        if watched.abs() > self.peak {
            self.peak = watched.abs();
        }
        false
    }

    /// Index and reason of the stop, if it stopped.
    pub fn stop(&self) -> Option<(usize, StopReason)> {
        self.stop
    }

    /// Lowest watched value so far (`None` before the first finite loss).
    pub fn best(&self) -> Option<f64> {
        self.best.is_finite().then_some(self.best)
    }

    /// Current EMA of the loss, whatever `watch` is (`None` before the first loss).
    pub fn smoothed(&self) -> Option<f64> {
        (self.count > 0).then_some(self.smoothed)
    }

    /// Number of losses seen (those after the stop are not counted).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The settings.
    pub fn config(&self) -> &DivergenceConfig {
        &self.config
    }
}

/// Runs a detector over a whole series: index and reason of the stop, if any.
pub fn detect<T: Copy + Into<f64>>(losses: &[T], config: DivergenceConfig) -> Result<Option<(usize, StopReason)>> {
    let mut d = DivergenceDetector::new(config)?;
    for &x in losses {
        if d.update(x.into()) {
            break;
        }
    }
    Ok(d.stop())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stop(losses: &[f64], config: DivergenceConfig) -> Option<(usize, StopReason)> {
        detect(losses, config).unwrap()
    }

    #[test]
    fn seed_rule_ten_times_best() {
        let c = DivergenceConfig::default();
        assert_eq!(stop(&[2.3, 2.0, 1.0, 10.0, 10.5], c), Some((4, StopReason::Threshold)));
        assert_eq!(stop(&[2.3, 2.0, 1.0, 10.0], c), None, "exactly 10x the best is not an explosion");
        assert_eq!(stop(&[2.3, 5.0, f64::NAN], c), Some((2, StopReason::Nan)));
        assert_eq!(stop(&[2.3, f64::NEG_INFINITY], c), Some((1, StopReason::Inf)));
        assert_eq!(stop(&[f64::NAN], c), Some((0, StopReason::Nan)));
    }

    #[test]
    fn zero_and_negative_losses() {
        let c = DivergenceConfig { threshold: 4.0, ..Default::default() };
        // best -2: limit -2 + 3 * 2 = 4.
        assert_eq!(stop(&[-1.0, -2.0, 3.9, 4.1], c), Some((3, StopReason::Threshold)));
        // best 0 after a start of 1: measured against float32 resolution, 1.2e-7, so the limit
        // is 3.6e-7; a loss of 1e-12 or 1e-9 is still zero there, 1e-6 is an explosion.
        assert_eq!(stop(&[1.0, 0.0, 0.0, 1e-12, 1e-9, 3e-7], c), None);
        assert_eq!(stop(&[1.0, 0.0, 1e-6], c), Some((2, StopReason::Threshold)));
        // Zero from the start: no scale yet, so any rise is an explosion.
        assert_eq!(stop(&[0.0, 0.0, 1e-12], c), Some((2, StopReason::Threshold)));
    }

    #[test]
    fn patience_min_steps_and_smoothing() {
        let c = DivergenceConfig { patience: 2, ..Default::default() };
        assert_eq!(stop(&[1.0, 20.0, 1.0, 20.0, 30.0], c), Some((3, StopReason::Threshold)), "the run starts at 3");
        let c = DivergenceConfig { min_steps: 3, ..Default::default() };
        assert_eq!(stop(&[1.0, 20.0, 1.0, 20.0], c), Some((3, StopReason::Threshold)));
        let c = DivergenceConfig { watch: Watch::Smoothed, alpha: 0.5, threshold: 2.0, ..Default::default() };
        // Smoothed: 1, 2.5 (> 2 * 1), ...
        assert_eq!(stop(&[1.0, 4.0], c), Some((1, StopReason::Threshold)));
        assert_eq!(stop(&[1.0, 2.9], c), None);
    }

    #[test]
    fn stays_stopped_and_reports_state() {
        let mut d = DivergenceDetector::new(DivergenceConfig::default()).unwrap();
        assert_eq!((d.best(), d.smoothed()), (None, None));
        assert!(!d.update(2.0));
        assert!(!d.update(1.0));
        assert_eq!(d.best(), Some(1.0));
        assert!(d.update(f64::NAN));
        assert!(d.update(0.5));
        assert_eq!((d.count(), d.stop()), (3, Some((2, StopReason::Nan))));
    }

    #[test]
    fn rejects_bad_config() {
        let bad = |c: DivergenceConfig| DivergenceDetector::new(c).unwrap_err().to_string();
        assert_eq!(
            bad(DivergenceConfig { threshold: 1.0, ..Default::default() }),
            "threshold must be finite and > 1, got 1"
        );
        assert_eq!(bad(DivergenceConfig { patience: 0, ..Default::default() }), "patience must be >= 1, got 0");
        assert_eq!(bad(DivergenceConfig { alpha: 0.0, ..Default::default() }), "alpha must be in (0, 1], got 0");
        assert!(Watch::parse("ema").is_err());
    }

    proptest! {
        /// Everything before the stop stays under the limit of the best before it; the stop point breaks it.
        #[test]
        fn points_before_stop_are_within_limit(xs in prop::collection::vec(-10.0f64..100.0, 1..200), threshold in 1.01f64..20.0) {
            let c = DivergenceConfig { threshold, ..Default::default() };
            let s = stop(&xs, c);
            let end = s.map_or(xs.len(), |(i, _)| i);
            let (mut best, mut peak) = (f64::INFINITY, 0.0f64);
            let limit = |best: f64, peak: f64| best + (threshold - 1.0) * best.abs().max(f64::from(f32::EPSILON) * peak);
            for &x in &xs[..end] {
                prop_assert!(!(best.is_finite() && x > limit(best, peak)));
                best = best.min(x);
                peak = peak.max(x.abs());
            }
            if let Some((i, reason)) = s {
                prop_assert_eq!(reason, StopReason::Threshold);
                prop_assert!(xs[i] > limit(best, peak));
            }
        }
    }
}
