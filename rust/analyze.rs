//! One sweep, all at once: stop, smoothing, gradient, every suggestion and the diagnosis.

use crate::auto::AutoParams;
use crate::cancel::Cancel;
use crate::diagnose::{diagnose_checked, Arch, DiagnoseConfig, Diagnosis};
use crate::diverge::{detect, DivergenceConfig, DivergenceDetector, StopReason, Watch};
use crate::error::{check_sweep, param, Result};
use crate::gradient::gradient_into;
use crate::suggest::{
    count, number, set_detector, suggest_checked, text, usable, Method, Param, Reason, Scratch, Suggestion,
};

/// Which series the suggestions (and `min_loss`) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestOn {
    /// The raw losses, as the seed.
    Raw,
    /// The EMA-smoothed losses, as the peers.
    Smoothed,
}

impl SuggestOn {
    /// Parses `"raw"` or `"smoothed"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "raw" => Ok(Self::Raw),
            "smoothed" => Ok(Self::Smoothed),
            other => Err(param("suggest_on", "\"raw\" or \"smoothed\"", format!("{other:?}"))),
        }
    }
}

/// Everything `analyze` needs to know; `Default` is the seed's stop rule with `auto`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeConfig {
    /// When the sweep stopped (the EMA settings also make `smoothed`).
    pub detector: DivergenceConfig,
    /// Suggestion methods; the first is the main one (`suggested_lr`, diagnosis).
    pub methods: Vec<Method>,
    /// The series the suggestions read.
    pub suggest_on: SuggestOn,
    /// Diagnosis thresholds.
    pub diagnose: DiagnoseConfig,
}

impl Default for AnalyzeConfig {
    /// The seed's stop rule (raw loss above 10x the best) and `auto` on the raw points.
    fn default() -> Self {
        let detector = DivergenceConfig::default();
        Self {
            methods: vec![Method::from_params("auto", &[], detector).expect("defaults are valid")],
            detector,
            suggest_on: SuggestOn::Raw,
            diagnose: DiagnoseConfig::default(),
        }
    }
}

impl AnalyzeConfig {
    /// Sets one option by its keyword name: the divergence rule (`threshold`, `watch`, `alpha`,
    /// `debias`, `patience`, `min_steps`), `suggest_on`, `arch`, and the diagnosis thresholds
    /// (`min_points`, `immediate_steps`, `flat_tol`, `noise_tol`, `improving_tail`,
    /// `range_drop`). `Ok(false)` if `key` is none of them; `methods` are set directly.
    pub fn set(&mut self, key: &str, value: Param<'_>) -> Result<bool> {
        if set_detector(&mut self.detector, key, value)? {
            return Ok(true);
        }
        let share = |name: &'static str| number(name, value, "in (0, 1)", |v| v > 0.0 && v < 1.0);
        let d = &mut self.diagnose;
        match key {
            "suggest_on" => self.suggest_on = SuggestOn::parse(text("suggest_on", value, "\"raw\" or \"smoothed\"")?)?,
            "arch" => d.arch = Some(Arch::parse(text("arch", value, "an architecture name")?)?),
            "min_points" => d.min_points = count("min_points", value, 0)?,
            "immediate_steps" => d.immediate_steps = count("immediate_steps", value, 0)?,
            "flat_tol" => d.flat_tol = share("flat_tol")?,
            "improving_tail" => d.improving_tail = share("improving_tail")?,
            "range_drop" => d.range_drop = share("range_drop")?,
            "noise_tol" => d.noise_tol = number("noise_tol", value, "finite and > 0", |v| v.is_finite() && v > 0.0)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Checks every part.
    pub fn validate(&self) -> Result<()> {
        self.detector.validate()?;
        self.diagnose.validate()?;
        if self.methods.is_empty() {
            return Err(param("methods", "at least one method", "none"));
        }
        Ok(())
    }
}

/// The full reading of one sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Index of the point that stopped the sweep and why; the curve is the points before it.
    pub stop: Option<(usize, StopReason)>,
    /// EMA of the losses before the stop.
    pub smoothed: Vec<f64>,
    /// The lag-free curve the suggestions read: `auto`'s smoothing (a 5-point running median,
    /// then a Gaussian kernel, `smooth` decades wide: the first `auto` method's, else its
    /// default) of the suggestion series before the stop. What a plot should draw.
    pub trend: Vec<f64>,
    /// `np.gradient(series, np.log(lrs))` of the suggestion series before the stop (empty below 2 points).
    pub gradient: Vec<f64>,
    /// One suggestion per configured method, in order.
    pub suggestions: Vec<Suggestion>,
    /// Lowest loss of the suggestion series before the stop (NaN if there is no point).
    pub min_loss: f64,
    /// LR at that loss (NaN if there is no point).
    pub lr_at_min: f64,
    /// The verdict.
    pub diagnosis: Diagnosis,
}

impl Analysis {
    /// The main method's suggested LR.
    pub fn suggested_lr(&self) -> Option<f64> {
        self.suggestions.first().and_then(|s| s.lr)
    }
}

/// What `analyze` and `analyze_batch` share for one sweep; the curves stay in [`Work`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub stop: Option<(usize, StopReason)>,
    pub min_loss: f64,
    pub lr_at_min: f64,
    pub diagnosis: Diagnosis,
}

/// Per-worker buffers: a batch allocates them once per thread, not once per sweep.
#[derive(Debug, Default)]
pub(crate) struct Work {
    /// The points before the stop.
    pub lrs: Vec<f64>,
    pub raw: Vec<f64>,
    /// Their EMA, when asked for (see [`Work::read`]).
    pub smoothed: Vec<f64>,
    pub suggest: Scratch,
    pub diag: crate::diagnose::Scratch,
}

impl Work {
    /// Validates the sweep, finds the stop and keeps the points before it; the EMA is computed
    /// only when the rule watches it or `smoothed` asks for it. The sweep comes from memory
    /// once: the passes after the first read it from the cache.
    fn read<L, F>(
        &mut self,
        lrs: &[L],
        losses: &[F],
        config: DivergenceConfig,
        smoothed: bool,
    ) -> Result<Option<(usize, StopReason)>>
    where
        L: Copy + Into<f64>,
        F: Copy + Into<f64>,
    {
        check_sweep(lrs, losses)?;
        let mut detector = DivergenceDetector::checked(config);
        self.smoothed.clear();
        if smoothed || config.watch == Watch::Smoothed {
            for &loss in losses {
                if detector.update(loss.into()) {
                    break;
                }
                self.smoothed.push(detector.smoothed().unwrap_or(f64::NAN));
            }
        } else {
            for &loss in losses {
                if detector.update_raw(loss.into()) {
                    break;
                }
            }
        }
        let stop = detector.stop();
        // With patience > 1 the stop lies before the point that decided it.
        let kept = stop.map_or(lrs.len(), |(i, _)| i);
        self.smoothed.truncate(kept);
        self.lrs.clear();
        self.lrs.extend(lrs[..kept].iter().map(|&v| v.into()));
        self.raw.clear();
        self.raw.extend(losses[..kept].iter().map(|&v| v.into()));
        Ok(stop)
    }
}

/// Reads one sweep: LRs finite, positive and strictly increasing; losses may hold NaN/inf.
/// Linear or n log n time in the sweep's length, whatever the methods.
pub fn analyze<L, F>(lrs: &[L], losses: &[F], config: &AnalyzeConfig) -> Result<Analysis>
where
    L: Copy + Into<f64>,
    F: Copy + Into<f64>,
{
    analyze_cancellable(lrs, losses, config, &Cancel::new())
}

/// [`analyze`] that stops with [`Error::Interrupted`](crate::Error::Interrupted) when `cancel`
/// is set.
pub fn analyze_cancellable<L, F>(lrs: &[L], losses: &[F], config: &AnalyzeConfig, cancel: &Cancel) -> Result<Analysis>
where
    L: Copy + Into<f64>,
    F: Copy + Into<f64>,
{
    config.validate()?;
    let mut work = Work::default();
    let mut suggestions = Vec::with_capacity(config.methods.len());
    let summary = analyze_into(lrs, losses, config, true, &mut work, &mut suggestions, cancel)?;
    let smooth = config.methods.iter().find_map(|m| match m {
        Method::Auto(p) => Some(p.smooth),
        _ => None,
    });
    let smooth = smooth.unwrap_or(AutoParams::default().smooth);
    let series = match config.suggest_on {
        SuggestOn::Raw => &work.raw,
        SuggestOn::Smoothed => &work.smoothed,
    };
    let logs = &mut work.suggest.logs;
    let trend = crate::auto::lag_free(logs.log10(&work.lrs), series, smooth, &mut work.suggest.auto, cancel)?.to_vec();
    let mut gradient = vec![0.0; series.len()];
    if series.len() >= 2 {
        gradient_into(logs.ln(&work.lrs), series, &mut gradient);
    } else {
        gradient.clear();
    }
    Ok(Analysis {
        stop: summary.stop,
        smoothed: std::mem::take(&mut work.smoothed),
        trend,
        gradient,
        suggestions,
        min_loss: summary.min_loss,
        lr_at_min: summary.lr_at_min,
        diagnosis: summary.diagnosis,
    })
}

/// The shared body of `analyze` and `analyze_batch`: validates the sweep (`config` must be
/// valid), fills `work` with the points before the stop, appends one suggestion per method to
/// `out`. `full` is for `analyze`, which reports more than a batch: the EMA of the kept points
/// and the diagnosis's noise ratio.
pub(crate) fn analyze_into<L, F>(
    lrs: &[L],
    losses: &[F],
    config: &AnalyzeConfig,
    full: bool,
    work: &mut Work,
    out: &mut Vec<Suggestion>,
    cancel: &Cancel,
) -> Result<Summary>
where
    L: Copy + Into<f64>,
    F: Copy + Into<f64>,
{
    let stop = work.read(lrs, losses, config.detector, full || config.suggest_on == SuggestOn::Smoothed)?;
    work.suggest.logs.clear();
    let series = match config.suggest_on {
        SuggestOn::Raw => &work.raw,
        SuggestOn::Smoothed => &work.smoothed,
    };
    for method in &config.methods {
        cancel.check()?;
        let s = match method {
            Method::Explosion { factor, detector: own } => {
                let at =
                    if own == &config.detector { stop.map(|(i, _)| i) } else { detect(losses, *own)?.map(|(i, _)| i) };
                usable(match at {
                    Some(at) => Suggestion {
                        lr: Some(lrs[at].into() / factor),
                        index: Some(at),
                        method: "explosion",
                        reason: Reason::Explosion { at, factor: *factor },
                        confidence: None,
                        range: None,
                    },
                    None => Suggestion {
                        lr: None,
                        index: None,
                        method: "explosion",
                        reason: Reason::NeverExploded,
                        confidence: None,
                        range: None,
                    },
                })
            }
            m => suggest_checked(&work.lrs, series, m, stop.map(|(i, _)| i), &mut work.suggest, cancel)?,
        };
        out.push(s);
    }
    let (min_loss, lr_at_min) = match crate::suggest::argmin(series) {
        Some(i) => (series[i], work.lrs[i]),
        None => (f64::NAN, f64::NAN),
    };
    let stop_lr = stop.map(|(i, reason)| (i, reason, lrs[i].into()));
    let diagnosis =
        diagnose_checked(&work.lrs, &work.raw, stop_lr, out.first(), &config.diagnose, full, &mut work.diag);
    Ok(Summary { stop, min_loss, lr_at_min, diagnosis })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::DiagnosisKind;
    use crate::suggest::Param;

    fn curve() -> (Vec<f64>, Vec<f64>) {
        let lrs = crate::sweep_lrs(1e-7, 10.0, 100, crate::SweepMode::Exp).unwrap();
        let losses = lrs
            .iter()
            .map(|&lr: &f64| {
                let x = lr.log10();
                if x > 0.0 {
                    f64::NAN
                } else {
                    2.3 - 0.8 / (1.0 + (-(x + 3.0) * 2.5).exp()) + if x > -2.0 { 5.0 * (x + 2.0).powi(2) } else { 0.0 }
                }
            })
            .collect();
        (lrs, losses)
    }

    #[test]
    fn seed_pipeline() {
        let (lrs, losses) = curve();
        let seed = AnalyzeConfig { methods: vec![a_method("steepest")], ..Default::default() };
        let a = analyze(&lrs, &losses, &seed).unwrap();
        let (stop, reason) = a.stop.unwrap();
        assert_eq!(reason, StopReason::Threshold);
        assert!(losses[stop] > 10.0 * losses[..stop].iter().cloned().fold(f64::INFINITY, f64::min));
        assert_eq!(a.smoothed.len(), stop);
        assert_eq!(a.gradient.len(), stop);
        let direct = crate::suggest(&lrs[..stop], &losses[..stop], &a_method("steepest")).unwrap();
        assert_eq!(a.suggestions[0], direct);
        assert_eq!(a.suggested_lr(), direct.lr);
        assert_eq!(a.diagnosis.kind, DiagnosisKind::Good);
    }

    #[test]
    fn the_trend_is_what_auto_reads() {
        let (lrs, losses) = curve();
        let a = analyze(&lrs, &losses, &AnalyzeConfig::default()).unwrap();
        assert_eq!(a.trend.len(), a.smoothed.len());
        let Reason::Auto(reading) = a.suggestions[0].reason else { panic!("{:?}", a.suggestions[0]) };
        let lowest = (0..a.trend.len()).fold(0, |b, i| if a.trend[i] < a.trend[b] { i } else { b });
        assert_eq!(lowest, reading.at_min, "auto's lowest point is the trend's");
        // Without auto among the methods, the trend is auto's default smoothing all the same.
        let seed = AnalyzeConfig { methods: vec![a_method("steepest")], ..Default::default() };
        assert_eq!(analyze(&lrs, &losses, &seed).unwrap().trend, a.trend);
    }

    #[test]
    fn auto_is_the_default() {
        let (lrs, losses) = curve();
        let a = analyze(&lrs, &losses, &AnalyzeConfig::default()).unwrap();
        let stop = a.stop.unwrap().0;
        // The sweep exploded, so auto reads the same as on a series cut by a NaN.
        let mut cut = losses[..stop].to_vec();
        cut.push(f64::NAN);
        let direct = crate::suggest(&lrs[..=stop], &cut, &a_method("auto")).unwrap();
        assert_eq!((a.suggestions[0].method, a.suggestions[0]), ("auto", direct));
    }

    fn a_method(name: &str) -> Method {
        Method::from_params(name, &[], DivergenceConfig::default()).unwrap()
    }

    #[test]
    fn explosion_uses_the_whole_sweep() {
        let (lrs, losses) = curve();
        let cfg = AnalyzeConfig { methods: vec![a_method("explosion")], ..Default::default() };
        let a = analyze(&lrs, &losses, &cfg).unwrap();
        let at = a.stop.unwrap().0;
        assert_eq!(a.suggestions[0].index, Some(at));
        assert_eq!(a.suggestions[0].lr, Some(lrs[at] / 10.0));
        // A different rule for the method is honoured.
        let own =
            Method::from_params("explosion", &[("threshold", Param::Num(1e9))], DivergenceConfig::default()).unwrap();
        let cfg = AnalyzeConfig { methods: vec![own], ..Default::default() };
        let a = analyze(&lrs, &losses, &cfg).unwrap();
        let nan_at = losses.iter().position(|v| v.is_nan()).unwrap();
        assert_eq!(a.suggestions[0].index, Some(nan_at));
    }

    #[test]
    fn empty_and_mixed_types() {
        let a = analyze::<f64, f64>(&[], &[], &AnalyzeConfig::default()).unwrap();
        assert_eq!((a.stop, a.suggested_lr(), a.diagnosis.kind), (None, None, DiagnosisKind::TooShort));
        assert!(a.min_loss.is_nan());
        let lrs = [1e-3f64, 1e-2, 1e-1];
        let a = analyze(&lrs, &[1.0f32, 0.5, 0.25], &AnalyzeConfig::default()).unwrap();
        assert_eq!((a.min_loss, a.lr_at_min), (0.25, 1e-1));
        let bad = AnalyzeConfig { methods: vec![], ..Default::default() };
        assert_eq!(analyze(&lrs, &lrs, &bad).unwrap_err().to_string(), "methods must be at least one method, got none");
    }
}
