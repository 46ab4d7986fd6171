//! What a sweep says about the training setup: the seed's "Interpreting Results" as a classifier.

use std::fmt;

use crate::auto::{from_key, total_key};
use crate::diverge::StopReason;
use crate::error::{param, Result};
use crate::suggest::Suggestion;

/// The kind of curve, after the seed's summary table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagnosisKind {
    /// A clear descent before the explosion: the range of good LRs is known.
    Good,
    /// The loss barely moves: the model is not learning.
    Flat,
    /// The loss exploded at the start, or before it ever fell: a broken setup.
    ImmediateExplosion,
    /// Still improving at the largest LR: the range is too low.
    NoDivergence,
    /// The noise is large against the descent: the reading is unreliable.
    Noisy,
    /// Too few points to read anything.
    TooShort,
}

impl DiagnosisKind {
    /// Every kind, in code order (`code()` indexes this).
    pub const ALL: [DiagnosisKind; 6] = [
        DiagnosisKind::Good,
        DiagnosisKind::Flat,
        DiagnosisKind::ImmediateExplosion,
        DiagnosisKind::NoDivergence,
        DiagnosisKind::Noisy,
        DiagnosisKind::TooShort,
    ];

    /// `"good"`, `"flat"`, `"immediate_explosion"`, `"no_divergence"`, `"noisy"`, `"too_short"`.
    pub fn name(self) -> &'static str {
        match self {
            DiagnosisKind::Good => "good",
            DiagnosisKind::Flat => "flat",
            DiagnosisKind::ImmediateExplosion => "immediate_explosion",
            DiagnosisKind::NoDivergence => "no_divergence",
            DiagnosisKind::Noisy => "noisy",
            DiagnosisKind::TooShort => "too_short",
        }
    }

    /// Small integer code for columnar output, the position in [`DiagnosisKind::ALL`].
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether the sweep gives an LR to train at. A flat sweep (nothing is learned) or an
    /// immediate explosion (a broken setup) does not: a suggestion read off it is kept, but
    /// flagged, and the message says what to fix instead.
    pub fn gives_lr(self) -> bool {
        !matches!(self, DiagnosisKind::Flat | DiagnosisKind::ImmediateExplosion)
    }
}

/// Architecture hint: the seed's table of common LR ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// Multi-layer perceptron: 1e-4 to 1e-2.
    Mlp,
    /// Convolutional network: 1e-4 to 1e-2.
    Cnn,
    /// Transformer: 1e-5 to 1e-3.
    Transformer,
    /// Fine-tuning a pretrained model: 1e-6 to 1e-4.
    FineTuning,
    /// Large-batch training: 1e-3 to 1e-1.
    LargeBatch,
}

impl Arch {
    /// Parses `"mlp"`, `"cnn"`, `"transformer"`, `"fine-tuning"` or `"large-batch"`.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "mlp" => Arch::Mlp,
            "cnn" => Arch::Cnn,
            "transformer" => Arch::Transformer,
            "fine-tuning" => Arch::FineTuning,
            "large-batch" => Arch::LargeBatch,
            other => {
                return Err(param(
                    "arch",
                    "one of mlp, cnn, transformer, fine-tuning, large-batch",
                    format!("{other:?}"),
                ))
            }
        })
    }

    /// The typical LR range (low, high) from the seed's table.
    pub fn typical_range(self) -> (f64, f64) {
        match self {
            Arch::Mlp | Arch::Cnn => (1e-4, 1e-2),
            Arch::Transformer => (1e-5, 1e-3),
            Arch::FineTuning => (1e-6, 1e-4),
            Arch::LargeBatch => (1e-3, 1e-1),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Arch::Mlp => "an MLP",
            Arch::Cnn => "a CNN",
            Arch::Transformer => "a transformer",
            Arch::FineTuning => "fine-tuning",
            Arch::LargeBatch => "large-batch training",
        }
    }
}

/// The thresholds of the classifier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiagnoseConfig {
    /// Fewer points before the stop than this is `too_short` (default 10).
    pub min_points: usize,
    /// A stop at a point index below this is `immediate_explosion` (default 5).
    pub immediate_steps: usize,
    /// A loss (centred moving average) whose total range is below this share of its first value is `flat`;
    /// a sweep that stops before its loss fell by this share is `immediate_explosion` (default 0.02).
    pub flat_tol: f64,
    /// Noise (robust standard deviation of the raw loss) above this share of the loss drop is
    /// `noisy` (default 0.25).
    pub noise_tol: f64,
    /// With no stop, a loss minimum in the last `improving_tail` share of the points is
    /// `no_divergence` (default 0.1).
    pub improving_tail: f64,
    /// The good range starts where the loss has made this share of its drop, and ends
    /// at its minimum (default 0.2).
    pub range_drop: f64,
    /// Checks the suggestion against the typical range of this architecture.
    pub arch: Option<Arch>,
}

impl Default for DiagnoseConfig {
    fn default() -> Self {
        Self {
            min_points: 10,
            immediate_steps: 5,
            flat_tol: 0.02,
            noise_tol: 0.25,
            improving_tail: 0.1,
            range_drop: 0.2,
            arch: None,
        }
    }
}

impl DiagnoseConfig {
    /// Checks every threshold.
    pub fn validate(&self) -> Result<()> {
        let share = |name, v: f64| if v > 0.0 && v < 1.0 { Ok(()) } else { Err(param(name, "in (0, 1)", v)) };
        share("flat_tol", self.flat_tol)?;
        share("improving_tail", self.improving_tail)?;
        share("range_drop", self.range_drop)?;
        if !(self.noise_tol.is_finite() && self.noise_tol > 0.0) {
            return Err(param("noise_tol", "finite and > 0", self.noise_tol));
        }
        if self.min_points < 2 {
            return Err(param("min_points", ">= 2", self.min_points));
        }
        Ok(())
    }
}

/// The verdict on one sweep, with what its message needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Diagnosis {
    /// The kind of curve.
    pub kind: DiagnosisKind,
    /// The descent: the LRs (low, high) over which the loss falls, from where it has made
    /// `range_drop` of its drop to its lowest point, when there is a descent to read. Not the
    /// range to train in: that is the suggestion's (`auto`'s `range`).
    pub descent: Option<(f64, f64)>,
    /// Points before the stop.
    pub points: usize,
    /// Stop index, reason and LR, if the sweep stopped.
    pub stop: Option<(usize, StopReason, f64)>,
    /// Largest LR before the stop.
    pub last_lr: f64,
    /// Noise as a share of the loss drop.
    pub noise_ratio: f64,
    /// Set when the suggestion falls outside the architecture's typical range.
    pub arch_warning: Option<(Arch, f64)>,
    /// What the main suggestion offers, which a good curve's advice points to.
    pub offer: Offer,
}

/// What the main suggestion offers to train at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// An LR and a range to train in (`auto`).
    LrAndRange,
    /// An LR only (the peers' rules).
    Lr,
    /// No LR (its reason says why).
    Nothing,
    /// No suggestion was asked for.
    Unknown,
}

impl Offer {
    /// What `main`, the main suggestion (None: none asked for), offers.
    pub fn of(main: Option<&Suggestion>) -> Self {
        match main {
            None => Offer::Unknown,
            Some(s) if s.lr.is_none() => Offer::Nothing,
            Some(s) if s.range.is_some() => Offer::LrAndRange,
            Some(_) => Offer::Lr,
        }
    }
}

impl Diagnosis {
    /// The human message for the kind (and the architecture warning, if any).
    pub fn message(&self) -> String {
        let mut m = self.to_string();
        if let Some((arch, lr)) = self.arch_warning {
            let (lo, hi) = arch.typical_range();
            m.push_str(&format!(
                " Note: the curve's suggested LR {lr:.1e} is outside the usual range for {} ({lo:.0e} to {hi:.0e}); double-check it.",
                arch.name()
            ));
        }
        m
    }
}

impl fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DiagnosisKind::Good => {
                let (lo, hi) = self.descent.unwrap_or((f64::NAN, f64::NAN));
                let advice = match self.offer {
                    Offer::LrAndRange | Offer::Unknown => "train at the suggested LR, or anywhere in the suggested range",
                    Offer::Lr => "train at the suggested LR",
                    Offer::Nothing => "the main method gives no LR here (its reason says why): read another method's",
                };
                write!(
                    f,
                    "Good: a clear descent (the loss falls between LR {lo:.1e} and {hi:.1e}) before the explosion; \
                     {advice}."
                )
            }
            DiagnosisKind::Flat => write!(
                f,
                "Flat: the loss barely moves across the whole sweep, so the model is not learning. Check for bugs: \
                 parameters missing from the optimizer, a detached graph, frozen layers, or labels that do not match the outputs."
            ),
            DiagnosisKind::ImmediateExplosion => match self.stop {
                Some((i, reason, lr)) => write!(
                    f,
                    "Immediate explosion: the loss blew up ({}) at point {i}, LR {lr:.1e}, before it ever fell. Something is very \
                     wrong: check the initialisation and the data normalisation, or start the sweep at a lower min_lr.",
                    reason.name()
                ),
                None => write!(
                    f,
                    "Immediate explosion: the loss rises from the first point on and never falls, so the sweep starts above \
                     the LRs that train. Start it at a lower min_lr, and check the initialisation and the data normalisation."
                ),
            },
            DiagnosisKind::NoDivergence => write!(
                f,
                "No divergence: the loss was still falling at the largest LR tried ({:.1e}). The best LR may be higher: \
                 extend max_lr until the loss explodes.",
                self.last_lr
            ),
            DiagnosisKind::Noisy => write!(
                f,
                "Noisy: the batch-to-batch noise is {:.0}% of the loss drop, so the suggestion is unreliable. Use a larger \
                 batch, more smoothing (a smaller alpha), or several sweeps.",
                100.0 * self.noise_ratio
            ),
            DiagnosisKind::TooShort => write!(
                f,
                "Too short: only {} point(s) before the sweep stopped, too few to read. Use more steps or a wider LR range.",
                self.points
            ),
        }
    }
}

/// Classifies a sweep from its points before the stop.
///
/// `lrs` and `raw` hold those points (validated, finite); `stop` is the stop of the whole sweep
/// with the LR of the explosion point; `suggested` is the main suggestion. The shape is read
/// off a centred moving average of the raw loss: unlike the EMA it does not lag, so the range
/// and the minimum sit where the loss really is. `noise_ratio` is NaN unless the kind is noisy
/// or `noise_ratio` asks for it (a batch reports only the kind).
pub(crate) fn diagnose_checked(
    lrs: &[f64],
    raw: &[f64],
    stop: Option<(usize, StopReason, f64)>,
    main: Option<&Suggestion>,
    cfg: &DiagnoseConfig,
    noise_ratio: bool,
    scratch: &mut Scratch,
) -> Diagnosis {
    let suggested = main.and_then(|s| s.lr);
    let n = raw.len();
    let mut d = Diagnosis {
        kind: DiagnosisKind::Good,
        descent: None,
        points: n,
        stop,
        last_lr: lrs.last().copied().unwrap_or(f64::NAN),
        noise_ratio: f64::NAN,
        arch_warning: None,
        offer: Offer::of(main),
    };
    if let (Some(arch), Some(lr)) = (cfg.arch, suggested) {
        let (lo, hi) = arch.typical_range();
        if !(lo..=hi).contains(&lr) {
            d.arch_warning = Some((arch, lr));
        }
    }
    if stop.is_some_and(|(i, _, _)| i < cfg.immediate_steps) {
        d.kind = DiagnosisKind::ImmediateExplosion;
        return d;
    }
    if n < cfg.min_points {
        d.kind = DiagnosisKind::TooShort;
        return d;
    }
    centred_mean(raw, (n / 40).max(1), &mut scratch.centred);
    let smoothed = &scratch.centred;
    let first = smoothed[0];
    let (at_min, lo, hi) = extremes(smoothed);
    let scale = first.abs().max(f64::MIN_POSITIVE);
    if (hi - lo) / scale < cfg.flat_tol {
        d.kind = DiagnosisKind::Flat;
        return d;
    }
    let drop = first - lo;
    // It rises from the start and never falls (whether or not it got to explode): the sweep
    // starts above the LRs that train.
    if drop / scale < cfg.flat_tol {
        d.kind = DiagnosisKind::ImmediateExplosion;
        return d;
    }
    let low = smoothed.iter().position(|&v| v <= first - cfg.range_drop * drop).unwrap_or(at_min);
    d.descent = Some((lrs[low], lrs[at_min]));
    let tail = ((cfg.improving_tail * n as f64).ceil() as usize).max(1);
    d.kind = if stop.is_none() && at_min >= n - tail {
        DiagnosisKind::NoDivergence
    } else if noisy(raw, drop, cfg.noise_tol, &mut scratch.noise) {
        DiagnosisKind::Noisy
    } else {
        DiagnosisKind::Good
    };
    if noise_ratio || d.kind == DiagnosisKind::Noisy {
        d.noise_ratio = robust_noise(raw, &mut scratch.noise) / drop;
    }
    d
}

/// The first lowest point and its value (none is below a NaN first), and the highest value
/// (NaN only if all are), from lanes that do not wait on each other.
fn extremes(v: &[f64]) -> (usize, f64, f64) {
    let first = v[0];
    let (mut lows, mut highs) = ([first; 4], [first; 4]);
    let chunks = v.chunks_exact(4);
    for &x in chunks.remainder() {
        lows[0] = if x < lows[0] { x } else { lows[0] };
        highs[0] = highs[0].max(x);
    }
    for c in chunks {
        for ((l, h), &x) in lows.iter_mut().zip(highs.iter_mut()).zip(c) {
            *l = if x < *l { x } else { *l };
            *h = h.max(x);
        }
    }
    let lowest = lows.into_iter().fold(first, |m, x| if x < m { x } else { m });
    let at_min = v.iter().position(|&x| x == lowest).unwrap_or(0);
    (at_min, v[at_min], highs.into_iter().fold(first, f64::max))
}

/// Reusable buffers of the diagnosis.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    centred: Vec<f64>,
    noise: Vec<i64>,
}

/// Mean over the window `[i - half, i + half]`, clipped at both ends, by running sums.
fn centred_mean(x: &[f64], half: usize, out: &mut Vec<f64>) {
    let n = x.len();
    out.clear();
    out.resize(n, 0.0);
    let mut sum: f64 = x[..half.min(n)].iter().sum();
    // The sums first: three stretches (the window growing, whole, shrinking) with the additions
    // of one loop; then the divisions, which no longer wait on the sums one by one.
    let (grow, whole) = ((half + 1).min(n), n.saturating_sub(half).max(half + 1).min(n));
    for (i, o) in out[..grow].iter_mut().enumerate() {
        if i + half < n {
            sum += x[i + half];
        }
        *o = sum;
    }
    for i in grow..whole {
        sum += x[i + half];
        sum -= x[i - half - 1];
        out[i] = sum;
    }
    for (i, o) in out.iter_mut().enumerate().skip(whole) {
        sum -= x[i - half - 1];
        *o = sum;
    }
    for (i, o) in out[..grow].iter_mut().enumerate() {
        *o /= ((i + half).min(n - 1) + 1) as f64;
    }
    let width = (2 * half + 1) as f64;
    for o in &mut out[grow..whole] {
        *o /= width;
    }
    for (i, o) in out.iter_mut().enumerate().skip(whole) {
        *o /= (n - (i - half)) as f64;
    }
}

/// `robust_noise(raw) / drop > tol` without selecting the median: the ratio rounds up or stays
/// as a difference grows (NaN aside), so the median's ratio is above `tol` exactly when at most
/// the median's rank of differences have a ratio at or below it. A count against two bounds that
/// bracket the threshold decides, unless a difference falls between them or is NaN.
fn noisy(raw: &[f64], drop: f64, tol: f64, scratch: &mut Vec<i64>) -> bool {
    let ratio = |v: f64| v * 1.4826 / 6f64.sqrt() / drop;
    let guess = tol * drop * 6f64.sqrt() / 1.4826;
    let (below, above) = (guess * (1.0 - 1e-9), guess * (1.0 + 1e-9));
    if raw.len() >= 3 && ratio(below) <= tol && ratio(above) > tol {
        // Slices of one length and no branch: the loop runs several differences at once.
        let m = raw.len() - 2;
        let (a, b, c) = (&raw[..m], &raw[1..=m], &raw[2..]);
        let (mut at_or_below, mut unsure) = (0, 0);
        for i in 0..m {
            let v = (c[i] - 2.0 * b[i] + a[i]).abs();
            at_or_below += usize::from(v <= below);
            unsure += usize::from(!(v <= below || v >= above));
        }
        if unsure == 0 {
            return at_or_below <= m / 2;
        }
    }
    robust_noise(raw, scratch) / drop > tol
}

/// Robust standard deviation of white noise on a smooth curve: the median absolute second
/// difference, which is sqrt(6) sigma / 1.4826 for Gaussian noise and nearly blind to curvature.
fn robust_noise(raw: &[f64], scratch: &mut Vec<i64>) -> f64 {
    scratch.clear();
    scratch.extend(raw.windows(3).map(|w| total_key((w[2] - 2.0 * w[1] + w[0]).abs())));
    if scratch.is_empty() {
        return 0.0;
    }
    let mid = scratch.len() / 2;
    let (_, &mut median, _) = scratch.select_nth_unstable(mid);
    from_key(median) * 1.4826 / 6f64.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A main suggestion at `lr`, with a range or without.
    fn at(lr: f64, range: bool) -> Suggestion {
        Suggestion {
            lr: Some(lr),
            index: None,
            method: "test",
            reason: crate::suggest::Reason::Flat,
            confidence: None,
            range: range.then_some((lr / 5.0, lr * 5.0)),
        }
    }

    #[test]
    fn good_advice_points_to_what_the_main_suggestion_offers() {
        let lrs: Vec<f64> = (0..90).map(|i| 1e-7 * 10f64.powf(i as f64 / 12.0)).collect();
        let raw = seed_good();
        let advice = |main: Option<&Suggestion>| {
            let d = diagnose_checked(&lrs, &raw, None, main, &DiagnoseConfig::default(), true, &mut Scratch::default());
            assert_eq!(d.kind, DiagnosisKind::Good);
            d.message()
        };
        assert!(
            advice(Some(&at(1e-3, true))).ends_with("train at the suggested LR, or anywhere in the suggested range.")
        );
        assert!(advice(None).ends_with("train at the suggested LR, or anywhere in the suggested range."));
        assert!(advice(Some(&at(1e-3, false))).ends_with("; train at the suggested LR."));
        let none = Suggestion { lr: None, ..at(1e-3, false) };
        assert!(advice(Some(&none))
            .ends_with("the main method gives no LR here (its reason says why): read another method's."));
    }

    fn run(raw: &[f64], stop: Option<(usize, StopReason, f64)>) -> Diagnosis {
        let lrs: Vec<f64> = (0..raw.len()).map(|i| 1e-7 * 10f64.powf(i as f64 / 12.0)).collect();
        diagnose_checked(
            &lrs,
            raw,
            stop,
            Some(&at(1e-3, true)),
            &DiagnoseConfig::default(),
            true,
            &mut Scratch::default(),
        )
    }

    /// The seed's "good" table, 12 points a decade: plateau, descent, then up.
    fn seed_good() -> Vec<f64> {
        (0..90)
            .map(|i| {
                let x = i as f64 / 12.0 - 7.0; // log10(lr)
                2.3 - 0.8 / (1.0 + (-(x + 3.0) * 2.5).exp()) + if x > -2.0 { 1.5 * (x + 2.0).powi(2) } else { 0.0 }
            })
            .collect()
    }

    #[test]
    fn good_curve_has_a_descent() {
        let d = run(&seed_good(), Some((90, StopReason::Nan, 1.0)));
        assert_eq!(d.kind, DiagnosisKind::Good, "{}", d.message());
        let (lo, hi) = d.descent.unwrap();
        assert!(d.kind.gives_lr());
        assert!(lo > 1e-5 && lo < hi && hi < 1e-1, "{lo} {hi}");
        assert!(d.message().starts_with("Good"));
    }

    #[test]
    fn seed_problem_tables() {
        let flat = vec![2.30; 40];
        assert_eq!(run(&flat, None).kind, DiagnosisKind::Flat);
        assert!(!DiagnosisKind::Flat.gives_lr() && !DiagnosisKind::ImmediateExplosion.gives_lr());
        assert!(DiagnosisKind::Noisy.gives_lr() && DiagnosisKind::NoDivergence.gives_lr());
        assert_eq!(run(&[2.30, 5.00], Some((2, StopReason::Nan, 1e-5))).kind, DiagnosisKind::ImmediateExplosion);
        let rising: Vec<f64> = (0..30).map(|i| 2.3 + 0.05 * i as f64).collect();
        assert_eq!(run(&rising, Some((30, StopReason::Threshold, 1e-3))).kind, DiagnosisKind::ImmediateExplosion);
        // Rising without ever reaching the stop rule: the same verdict, said without a stop point.
        let d = run(&rising, None);
        assert_eq!(d.kind, DiagnosisKind::ImmediateExplosion);
        assert!(d.message().contains("rises from the first point on and never falls"), "{}", d.message());
        let falling: Vec<f64> = (0..60).map(|i| 2.3 - 0.03 * i as f64).collect();
        let d = run(&falling, None);
        assert_eq!(d.kind, DiagnosisKind::NoDivergence);
        assert!(d.message().contains("extend max_lr"));
        assert_eq!(run(&falling[..6], Some((6, StopReason::Threshold, 1.0))).kind, DiagnosisKind::TooShort);
    }

    #[test]
    fn noisy_curve() {
        // Alternating +-0.3 around a curve that only drops by 0.8.
        let noisy: Vec<f64> =
            seed_good().iter().enumerate().map(|(i, v)| v + if i % 2 == 0 { 0.3 } else { -0.3 }).collect();
        assert_eq!(run(&noisy, Some((90, StopReason::Nan, 1.0))).kind, DiagnosisKind::Noisy);
    }

    #[test]
    fn arch_warning() {
        let lrs: Vec<f64> = (0..90).map(|i| 1e-7 * 10f64.powf(i as f64 / 12.0)).collect();
        let raw = seed_good();
        let cfg = DiagnoseConfig { arch: Some(Arch::FineTuning), ..Default::default() };
        let d = diagnose_checked(&lrs, &raw, None, Some(&at(1e-2, true)), &cfg, true, &mut Scratch::default());
        assert!(d.message().contains("outside the usual range for fine-tuning (1e-6 to 1e-4)"), "{}", d.message());
        let d = diagnose_checked(&lrs, &raw, None, Some(&at(1e-5, true)), &cfg, true, &mut Scratch::default());
        assert_eq!(d.arch_warning, None);
        assert!(Arch::parse("rnn").is_err());
    }

    #[test]
    fn centred_mean_matches_a_direct_window() {
        let x: Vec<f64> = (0..23).map(|i| ((i * 7919) % 13) as f64).collect();
        for half in [1, 2, 5, 30] {
            let mut out = vec![];
            centred_mean(&x, half, &mut out);
            for (i, &v) in out.iter().enumerate() {
                let w = &x[i.saturating_sub(half)..(i + half + 1).min(x.len())];
                assert!((v - w.iter().sum::<f64>() / w.len() as f64).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn config_is_validated() {
        let bad = DiagnoseConfig { flat_tol: 0.0, ..Default::default() };
        assert_eq!(bad.validate().unwrap_err().to_string(), "flat_tol must be in (0, 1), got 0");
        assert!(DiagnoseConfig { min_points: 1, ..Default::default() }.validate().is_err());
    }

    proptest! {
        /// As the scan that keeps the first lowest point and the running maximum.
        #[test]
        fn extremes_as_one_scan(v in prop::collection::vec(prop_oneof![
            -3.0f64..3.0, Just(0.0), Just(-0.0), Just(1.0), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY),
        ], 1..40)) {
            let (mut lo, mut hi, mut at_min) = (v[0], v[0], 0);
            for (i, &x) in v.iter().enumerate() {
                if x < lo {
                    (lo, at_min) = (x, i);
                }
                hi = hi.max(x);
            }
            let (a, l, h) = extremes(&v);
            prop_assert_eq!((a, l.to_bits()), (at_min, lo.to_bits()));
            prop_assert!(h == hi || (h.is_nan() && hi.is_nan()));
        }

        /// The count decides as the median would, also with `tol` at the median's own ratio or
        /// one ulp either side of it, and with repeated values.
        #[test]
        fn noisy_is_the_medians_verdict(
            raw in prop::collection::vec(prop_oneof![-3.0f64..3.0, Just(0.5), Just(0.0)], 0..90),
            drop in prop_oneof![1e-3f64..10.0, Just(0.0), Just(f64::INFINITY)],
            tol in 1e-3f64..2.0,
        ) {
            let median = robust_noise(&raw, &mut vec![]);
            let at_median = median / drop;
            for tol in [tol, at_median, at_median.next_up(), at_median.next_down()] {
                if tol.is_finite() && tol > 0.0 {
                    prop_assert_eq!(noisy(&raw, drop, tol, &mut vec![]), median / drop > tol);
                }
            }
        }
    }
}
