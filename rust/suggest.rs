//! Suggested LRs read off a loss curve: the seed's steepest descent with back-off, fastai's four
//! rules, and the seed's rule of thumb (10x below the explosion).
//!
//! Every method works on exactly the series it is given (raw or smoothed: smoothing is a separate
//! step) and returns an index into that series. Where a method reproduces a peer it returns the
//! peer's own index on the same curve; the peers compute in float32 in places, which can only
//! matter on near-ties.

use std::fmt;

use crate::auto::{auto, Auto, AutoParams, AutoReading, MIN_POINTS};
use crate::cancel::Cancel;
use crate::diverge::{detect, DivergenceConfig, Watch};
use crate::error::{check_sweep, param, Error, Result};
use crate::gradient::{gradient_into, gradient_uniform_into};

/// The x-axis the `steepest` method differentiates against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// ln(lr): the seed's `np.gradient(losses, np.log(lrs))`.
    Log,
    /// The point index: torch-lr-finder's `np.gradient(losses)`.
    Index,
    /// The LR itself: Lightning 2.5.3+'s `torch.gradient(losses, spacing=[lrs])`.
    Linear,
}

/// A suggestion method with its parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// Steepest descent of the loss over the window, then back off `floor(backoff * n)` points
    /// (n = window length, not below the window start).
    Steepest {
        /// Points skipped at the start of the series.
        skip_start: usize,
        /// Points skipped at the end of the series.
        skip_end: usize,
        /// Share of the window length to back off from the steepest point, in [0, 1).
        backoff: f64,
        /// Axis of the gradient.
        space: Space,
    },
    /// fastai `minimum`: the LR at the lowest loss divided by `factor`.
    Minimum {
        /// Points skipped at the start.
        skip_start: usize,
        /// Points skipped at the end.
        skip_end: usize,
        /// Divisor of the LR at the minimum.
        factor: f64,
    },
    /// fastai `steep`: left end of the steepest segment in log space.
    Steep {
        /// Points skipped at the start.
        skip_start: usize,
        /// Points skipped at the end.
        skip_end: usize,
    },
    /// fastai `valley` (its default): about halfway along the longest strictly decreasing run.
    Valley {
        /// Points skipped at the start.
        skip_start: usize,
        /// Points skipped at the end.
        skip_end: usize,
    },
    /// fastai `slide`: interval slide rule on the index-space gradient.
    Slide {
        /// Points skipped at the start.
        skip_start: usize,
        /// Points skipped at the end.
        skip_end: usize,
        /// Distance in points between the two ends of the sliding interval.
        lr_diff: usize,
        /// Stop sliding when the gradients at both ends differ by at most this.
        thresh: f64,
        /// Multiplier of the found LR.
        adjust_value: f64,
    },
    /// lrfind's default: the LR where the robustly smoothed loss has made a share of its final
    /// descent, with a confidence and a range (see [`AutoParams`]).
    Auto(AutoParams),
    /// The seed's rule of thumb: `factor` below the LR where the loss exploded.
    Explosion {
        /// Divisor of the LR at the explosion point.
        factor: f64,
        /// How an explosion is detected.
        detector: DivergenceConfig,
    },
}

/// A parameter value as it arrives from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// Any number (integers arrive as floats and are checked to be whole).
    Num(f64),
    /// A name, e.g. `space="log"`.
    Str(&'a str),
}

/// The method names `suggest` knows, in the order `analyze` reports them by default.
pub const METHOD_NAMES: [&str; 7] = ["auto", "steepest", "minimum", "steep", "valley", "slide", "explosion"];

impl Method {
    /// The method's name as used by `suggest`.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Steepest { .. } => "steepest",
            Method::Minimum { .. } => "minimum",
            Method::Steep { .. } => "steep",
            Method::Valley { .. } => "valley",
            Method::Slide { .. } => "slide",
            Method::Explosion { .. } => "explosion",
            Method::Auto(_) => "auto",
        }
    }

    /// Builds a method from its name and parameters; a parameter the method does not take is an
    /// error. `detector` is the default divergence rule for `"explosion"`.
    pub fn from_params(name: &str, params: &[(&str, Param<'_>)], detector: DivergenceConfig) -> Result<Method> {
        let (skip_start, skip_end) = if matches!(name, "steepest" | "explosion") { (0, 0) } else { (10, 5) };
        let mut m = match name {
            "steepest" => Method::Steepest { skip_start, skip_end, backoff: 0.1, space: Space::Log },
            "minimum" => Method::Minimum { skip_start, skip_end, factor: 10.0 },
            "steep" => Method::Steep { skip_start, skip_end },
            "valley" => Method::Valley { skip_start, skip_end },
            "slide" => Method::Slide { skip_start, skip_end, lr_diff: 15, thresh: 0.005, adjust_value: 1.0 },
            "explosion" => Method::Explosion { factor: 10.0, detector },
            "auto" => Method::Auto(AutoParams::default()),
            other => {
                return Err(param(
                    "method",
                    "one of auto, steepest, minimum, steep, valley, slide, explosion",
                    format!("{other:?}"),
                ))
            }
        };
        for &(key, value) in params {
            m.set(key, value)?;
        }
        if let Method::Explosion { detector, .. } = &m {
            detector.validate()?;
        }
        Ok(m)
    }

    fn set(&mut self, key: &str, value: Param<'_>) -> Result<()> {
        match (self, key) {
            (
                Method::Steepest { skip_start, .. }
                | Method::Minimum { skip_start, .. }
                | Method::Steep { skip_start, .. }
                | Method::Valley { skip_start, .. }
                | Method::Slide { skip_start, .. },
                "skip_start",
            ) => *skip_start = count("skip_start", value, 0)?,
            (
                Method::Steepest { skip_end, .. }
                | Method::Minimum { skip_end, .. }
                | Method::Steep { skip_end, .. }
                | Method::Valley { skip_end, .. }
                | Method::Slide { skip_end, .. },
                "skip_end",
            ) => *skip_end = count("skip_end", value, 0)?,
            (Method::Steepest { backoff, .. }, "backoff") => {
                *backoff = number("backoff", value, "a number in [0, 1)", |v| (0.0..1.0).contains(&v))?
            }
            (Method::Steepest { space, .. }, "space") => {
                const SPACES: &str = "\"log\", \"index\" or \"linear\"";
                *space = match text("space", value, SPACES)? {
                    "log" => Space::Log,
                    "index" => Space::Index,
                    "linear" => Space::Linear,
                    other => return Err(param("space", SPACES, format!("{other:?}"))),
                }
            }
            // A divisor moves the pick down from the minimum or the explosion, never up; six
            // decades down is already below any sweep's useful range.
            (Method::Minimum { factor, .. } | Method::Explosion { factor, .. }, "factor") => {
                *factor = number("factor", value, "in [1, 1e6]", |v| (1.0..=1e6).contains(&v))?
            }
            (Method::Slide { lr_diff, .. }, "lr_diff") => *lr_diff = count("lr_diff", value, 1)?,
            (Method::Slide { thresh, .. }, "thresh") => {
                *thresh = number("thresh", value, "finite and >= 0", |v| v.is_finite() && v >= 0.0)?
            }
            (Method::Slide { adjust_value, .. }, "adjust_value") => {
                *adjust_value = number("adjust_value", value, "in [1e-6, 1e6]", |v| (1e-6..=1e6).contains(&v))?
            }
            // Decades of log10(LR); wider than any sweep is meaningless.
            (Method::Auto(p), "smooth") => {
                p.smooth =
                    number("smooth", value, "0 or in [1e-6, 3] (decades)", |v| v == 0.0 || (1e-6..=3.0).contains(&v))?
            }
            (Method::Auto(p), "drop") => p.drop = number("drop", value, "in (0, 1]", |v| v > 0.0 && v <= 1.0)?,
            (Method::Auto(p), "shift") => {
                p.shift = number("shift", value, "in [-3, 6] (decades)", |v| (-3.0..=6.0).contains(&v))?
            }
            (Method::Auto(p), "spread") => {
                p.spread = number("spread", value, "in [0, 6] (decades)", |v| (0.0..=6.0).contains(&v))?
            }
            (Method::Explosion { detector, .. }, key) => {
                if !set_detector(detector, key, value)? {
                    return Err(unknown(key, "explosion"));
                }
            }
            (m, key) => return Err(unknown(key, m.name())),
        }
        Ok(())
    }
}

fn unknown(key: &str, method: &str) -> crate::Error {
    param("method parameter", "one the method takes", format!("{key:?} for method {method:?}"))
}

/// Sets one divergence-rule parameter by name (`threshold`, `watch`, `alpha`, `debias`,
/// `patience`, `min_steps`); `Ok(false)` if `key` is none of them. Used by `"explosion"` and
/// by [`AnalyzeConfig::set`](crate::AnalyzeConfig::set).
pub fn set_detector(d: &mut DivergenceConfig, key: &str, value: Param<'_>) -> Result<bool> {
    match key {
        "threshold" => d.threshold = number("threshold", value, "finite and > 1", |v| v.is_finite() && v > 1.0)?,
        "watch" => d.watch = Watch::parse(text("watch", value, "\"raw\" or \"smoothed\"")?)?,
        "alpha" => d.alpha = number("alpha", value, "in (0, 1]", |v| v > 0.0 && v <= 1.0)?,
        "debias" => d.debias = number("debias", value, "a bool", |v| v == 0.0 || v == 1.0)? == 1.0,
        "patience" => d.patience = count("patience", value, 1)?,
        "min_steps" => d.min_steps = count("min_steps", value, 0)?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// A number parameter in the range `ok` accepts; text is a [`Error::Type`].
pub(crate) fn number(
    name: &'static str,
    value: Param<'_>,
    expected: &'static str,
    ok: impl Fn(f64) -> bool,
) -> Result<f64> {
    match value {
        Param::Num(v) if ok(v) => Ok(v),
        Param::Num(v) => Err(param(name, expected, v)),
        Param::Str(s) => Err(Error::Type { name, expected: "a number", value: format!("{s:?}") }),
    }
}

/// A text parameter (a name); a number is a [`Error::Type`].
pub(crate) fn text<'a>(name: &'static str, value: Param<'a>, expected: &'static str) -> Result<&'a str> {
    match value {
        Param::Str(s) => Ok(s),
        Param::Num(v) => Err(Error::Type { name, expected, value: v.to_string() }),
    }
}

pub(crate) fn count(name: &'static str, value: Param<'_>, min: usize) -> Result<usize> {
    let expected = if min == 0 { "a whole number >= 0" } else { "a whole number >= 1" };
    let v = number(name, value, expected, |v| v.fract() == 0.0 && v >= min as f64 && v < 1e15)?;
    Ok(v as usize)
}

/// Why a suggestion was made, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// Not enough finite points in the window.
    TooFewPoints {
        /// Points the method needs.
        needed: usize,
        /// Finite points in the window.
        got: usize,
    },
    /// Every loss in the window is the same.
    Flat,
    /// The sweep never exploded (for `explosion`).
    NeverExploded,
    /// The smoothed loss never fell below its start (for `auto`).
    NoDescent,
    /// `auto`'s reading of the descent.
    Auto(AutoReading),
    /// Steepest descent found.
    Steepest {
        /// Index of the steepest point.
        at: usize,
        /// Its slope (loss per unit of the space).
        slope: f64,
        /// Points backed off.
        backoff: usize,
    },
    /// Lowest loss found.
    Minimum {
        /// Index of the minimum.
        at: usize,
        /// Divisor applied.
        factor: f64,
    },
    /// Steepest segment found.
    Steep {
        /// Its slope per e-fold of the LR.
        slope: f64,
    },
    /// Longest strictly decreasing run found.
    Valley {
        /// First index of the run.
        start: usize,
        /// Last index of the run.
        end: usize,
    },
    /// Slide rule settled.
    Slide {
        /// Multiplier applied.
        adjust_value: f64,
    },
    /// The rule gave an LR that is not a finite positive number (an extreme parameter on an
    /// extreme sweep).
    Unusable {
        /// The LR the rule gave.
        lr: f64,
    },
    /// Explosion found.
    Explosion {
        /// Index of the explosion point.
        at: usize,
        /// Divisor applied.
        factor: f64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::TooFewPoints { needed, got } => {
                write!(f, "too few points: the window holds {got} finite point(s), the method needs {needed}")
            }
            Reason::Flat => write!(f, "the loss is flat over the window: nothing to choose from"),
            Reason::NeverExploded => write!(f, "the loss never exploded: extend max_lr to find the explosion"),
            Reason::NoDescent => write!(f, "the smoothed loss never falls below its start: nothing was learned"),
            Reason::Auto(reading) => write!(f, "{reading}"),
            Reason::Steepest { at, slope, backoff } => {
                write!(
                    f,
                    "steepest descent at point {at} (slope {slope:.3e}), backed off {backoff} point(s) for safety"
                )
            }
            Reason::Minimum { at, factor } => write!(f, "lowest loss at point {at}, LR divided by {factor}"),
            Reason::Steep { slope } => {
                write!(f, "left end of the steepest segment (slope {slope:.3e} per e-fold of LR)")
            }
            Reason::Valley { start, end } => {
                write!(f, "about halfway along the longest strictly decreasing run, points {start} to {end}")
            }
            Reason::Slide { adjust_value } => {
                write!(f, "slide rule: where the gradient stops changing (x{adjust_value})")
            }
            Reason::Explosion { at, factor } => write!(f, "the loss exploded at point {at}; LR divided by {factor}"),
            Reason::Unusable { lr } => write!(f, "the rule gives LR {lr:e}, not a usable LR: no suggestion"),
        }
    }
}

/// A suggested LR: `lr` and `index` are both `None` when there is no suggestion.
///
/// `index` points into the given series; for `minimum` and `explosion` it is the point whose LR
/// was divided by `factor`, so `lr = lrs[index] / factor`; otherwise `lr = lrs[index]` (times
/// `adjust_value` for `slide`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Suggestion {
    /// The suggested LR.
    pub lr: Option<f64>,
    /// The point it was read from.
    pub index: Option<usize>,
    /// The method's name.
    pub method: &'static str,
    /// Why, in words (via `Display`).
    pub reason: Reason,
    /// `auto` only: how sure it is, in [0, 1] (0.7 and up reads "high", below 0.4 "low").
    pub confidence: Option<f64>,
    /// `auto` only: the LRs (low, high) that should train about as well.
    pub range: Option<(f64, f64)>,
}

/// Reusable buffers so a batch of sweeps allocates once per worker.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub g: Vec<f64>,
    pub tails: Vec<f64>,
    pub logs: Logs,
    pub auto: crate::auto::Scratch,
}

/// ln and log10 of one sweep's LRs, each computed once for all the methods that read it:
/// [`Logs::clear`] before each sweep.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    ln: Vec<f64>,
    log10: Vec<f64>,
    has_ln: bool,
    has_log10: bool,
}

impl Logs {
    pub fn clear(&mut self) {
        (self.has_ln, self.has_log10) = (false, false);
    }

    /// `ln` of every LR, computed on the first call after [`Logs::clear`].
    pub fn ln(&mut self, lrs: &[f64]) -> &[f64] {
        fill(&mut self.ln, &mut self.has_ln, lrs, f64::ln)
    }

    /// `log10` of every LR, computed on the first call after [`Logs::clear`].
    pub fn log10(&mut self, lrs: &[f64]) -> &[f64] {
        fill(&mut self.log10, &mut self.has_log10, lrs, f64::log10)
    }
}

fn fill<'a>(v: &'a mut Vec<f64>, done: &mut bool, lrs: &[f64], f: fn(f64) -> f64) -> &'a [f64] {
    if !*done {
        v.clear();
        v.extend(lrs.iter().map(|&x| f(x)));
        *done = true;
    }
    v
}

/// Suggests an LR from `losses` at `lrs` with `method`.
///
/// LRs must be finite, positive and strictly increasing; losses may hold NaN or infinity, which
/// end every method's window (`explosion` looks for them). Every method takes linear or
/// n log n time.
pub fn suggest<L: Copy + Into<f64>, F: Copy + Into<f64>>(
    lrs: &[L],
    losses: &[F],
    method: &Method,
) -> Result<Suggestion> {
    suggest_cancellable(lrs, losses, method, &Cancel::new())
}

/// [`suggest`] that stops with [`Error::Interrupted`](crate::Error::Interrupted) when `cancel`
/// is set.
pub fn suggest_cancellable<L: Copy + Into<f64>, F: Copy + Into<f64>>(
    lrs: &[L],
    losses: &[F],
    method: &Method,
    cancel: &Cancel,
) -> Result<Suggestion> {
    check_sweep(lrs, losses)?;
    let lrs: Vec<f64> = lrs.iter().map(|&v| v.into()).collect();
    let losses: Vec<f64> = losses.iter().map(|&v| v.into()).collect();
    let stop = match method {
        Method::Explosion { detector, .. } => detect(&losses, *detector)?.map(|(i, _)| i),
        _ => None,
    };
    suggest_checked(&lrs, &losses, method, stop, &mut Scratch::default(), cancel)
}

/// [`suggest`] on validated input; `stop` is the explosion point (`explosion` reads it, `auto`
/// notes that there was one). Only a cancelled call fails.
pub(crate) fn suggest_checked(
    lrs: &[f64],
    losses: &[f64],
    method: &Method,
    stop: Option<usize>,
    s: &mut Scratch,
    cancel: &Cancel,
) -> Result<Suggestion> {
    let name = method.name();
    let none = |reason| Suggestion { lr: None, index: None, method: name, reason, confidence: None, range: None };
    let pick = |index: usize, lr: f64, reason| Suggestion {
        lr: Some(lr),
        index: Some(index),
        method: name,
        reason,
        confidence: None,
        range: None,
    };
    let needed = match method {
        Method::Steepest { .. } | Method::Steep { .. } => 2,
        Method::Minimum { .. } | Method::Valley { .. } => 1,
        Method::Slide { lr_diff, .. } => lr_diff + 1,
        Method::Auto(_) => MIN_POINTS,
        Method::Explosion { factor, .. } => {
            return Ok(usable(match stop {
                Some(at) => pick(at, lrs[at] / factor, Reason::Explosion { at, factor: *factor }),
                None => none(Reason::NeverExploded),
            }));
        }
    };
    let (start, end) = window(losses, method);
    let n = end - start;
    if n < needed {
        return Ok(none(Reason::TooFewPoints { needed, got: n }));
    }
    let (wl, wf) = (&lrs[start..end], &losses[start..end]);
    if matches!(method, Method::Steepest { .. } | Method::Steep { .. } | Method::Slide { .. })
        && wf.iter().all(|&v| v == wf[0])
    {
        return Ok(none(Reason::Flat));
    }
    Ok(usable(match *method {
        Method::Steepest { backoff, space, .. } => {
            s.g.resize(n, 0.0);
            match space {
                Space::Index => gradient_uniform_into(wf, 1.0, &mut s.g),
                Space::Log => gradient_into(&s.logs.ln(lrs)[start..end], wf, &mut s.g),
                Space::Linear => gradient_into(wl, wf, &mut s.g),
            }
            let Some(m) = argmin(&s.g) else { return Ok(none(Reason::Flat)) };
            let back = (backoff * n as f64).floor() as usize;
            let i = start + m.saturating_sub(back);
            pick(i, lrs[i], Reason::Steepest { at: start + m, slope: s.g[m], backoff: start + m - i })
        }
        Method::Minimum { factor, .. } => {
            let m = start + argmin(wf).unwrap_or(0);
            pick(m, lrs[m] / factor, Reason::Minimum { at: m, factor })
        }
        Method::Steep { .. } => {
            let x = &s.logs.ln(lrs)[start..end];
            s.g.clear();
            s.g.extend(x.windows(2).zip(wf.windows(2)).map(|(x, f)| (f[1] - f[0]) / (x[1] - x[0])));
            let Some(m) = argmin(&s.g) else { return Ok(none(Reason::Flat)) };
            pick(start + m, lrs[start + m], Reason::Steep { slope: s.g[m] })
        }
        Method::Valley { .. } => {
            let (ms, me) = longest_valley(wf, &mut s.tails, cancel)?;
            let sections = (me - ms) as f64 / 3.0;
            let idx = ms + sections as isize + (sections / 2.0) as isize;
            // fastai indexes with a Python int: -1 is the last point of the window.
            let i = start + if idx < 0 { n - 1 } else { idx as usize };
            pick(i, lrs[i], Reason::Valley { start: start + ms.max(0) as usize, end: start + me as usize })
        }
        Method::Slide { lr_diff, thresh, adjust_value, .. } => {
            s.g.resize(n, 0.0);
            gradient_uniform_into(wf, 1.0, &mut s.g);
            // fastai walks Python negative indices: r = -1, l = r - lr_diff, both moving left.
            let (mut r, mut l) = (n - 1, n - 1 - lr_diff);
            let mut cand = l;
            while (s.g[r] - s.g[l]).abs() > thresh {
                cand = l;
                if l == 0 {
                    break;
                }
                r -= 1;
                l -= 1;
            }
            pick(start + cand, lrs[start + cand] * adjust_value, Reason::Slide { adjust_value })
        }
        Method::Auto(p) => match auto(
            &s.logs.log10(lrs)[start..end],
            wf,
            stop.is_some() || end < losses.len(),
            &p,
            &mut s.auto,
            cancel,
        )? {
            Auto::NoDescent => none(Reason::NoDescent),
            Auto::Found { index, lr, range, reading } => Suggestion {
                confidence: Some(reading.confidence),
                range: Some(range),
                ..pick(start + index, lr, Reason::Auto(reading))
            },
        },
        Method::Explosion { .. } => unreachable!("handled above"),
    }))
}

/// `s`, or no suggestion when its LR or range is not finite and positive.
pub(crate) fn usable(s: Suggestion) -> Suggestion {
    let good = |v: f64| v.is_finite() && v > 0.0;
    match s.lr {
        Some(lr) if !good(lr) || s.range.is_some_and(|(lo, hi)| !good(lo) || !good(hi)) => {
            Suggestion { lr: None, index: None, reason: Reason::Unusable { lr }, confidence: None, range: None, ..s }
        }
        _ => s,
    }
}

/// The window a method reads: `[skip_start, len - skip_end)`, cut at the first non-finite loss.
fn window(losses: &[f64], method: &Method) -> (usize, usize) {
    let (skip_start, skip_end) = match *method {
        Method::Steepest { skip_start, skip_end, .. }
        | Method::Minimum { skip_start, skip_end, .. }
        | Method::Steep { skip_start, skip_end }
        | Method::Valley { skip_start, skip_end }
        | Method::Slide { skip_start, skip_end, .. } => (skip_start, skip_end),
        Method::Explosion { .. } | Method::Auto(_) => (0, 0),
    };
    let start = skip_start.min(losses.len());
    let end = losses.len().saturating_sub(skip_end).max(start);
    let end = losses[start..end].iter().position(|v| !v.is_finite()).map_or(end, |p| start + p);
    (start, end)
}

/// Index of the first smallest value, skipping NaN; `None` if all are NaN.
pub(crate) fn argmin(v: &[f64]) -> Option<usize> {
    // The smallest value first, over independent lanes (no loop-carried wait), then where it
    // first occurs; -0 and +0 compare equal, as in a scan that keeps the first of equal values.
    let mut lanes = [f64::INFINITY; 4];
    let chunks = v.chunks_exact(4);
    for x in chunks.remainder() {
        lanes[0] = if *x < lanes[0] { *x } else { lanes[0] };
    }
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x < *m { x } else { *m };
        }
    }
    let min = lanes.into_iter().fold(f64::INFINITY, |m, x| if x < m { x } else { m });
    // All NaN or +inf: the first value that is not NaN, if any.
    let first = if min == f64::INFINITY { v.iter().position(|x| !x.is_nan()) } else { None };
    first.or_else(|| v.iter().position(|&x| x == min))
}

/// fastai's longest-valley scan in O(n log n): `(max_start, max_end)` of fastai's quadratic loop,
/// where `max_end` is the first point whose longest strictly decreasing subsequence (ending
/// there) is longer than every earlier one's, and `max_start = max_end - that length`, which
/// can be -1. fastai updates the best run inside its inner loop, but an earlier best is at
/// most one shorter than a new one, so that order never changes the result. With no
/// decreasing pair at all, fastai keeps its initial `(0, 0)`.
fn longest_valley(losses: &[f64], tails: &mut Vec<f64>, cancel: &Cancel) -> Result<(isize, isize)> {
    // tails[k]: the largest last value of a strictly decreasing subsequence of length k + 1
    // (patience sorting); it is strictly decreasing in k, so a binary search places each loss.
    tails.clear();
    let (mut best, mut me) = (1, 0);
    for (i, &v) in losses.iter().enumerate() {
        cancel.every(i)?;
        let k = tails.partition_point(|&t| t > v);
        if k == tails.len() {
            tails.push(v);
        } else {
            tails[k] = v;
        }
        if k + 1 > best {
            (best, me) = (k + 1, i);
        }
    }
    if best == 1 {
        return Ok((0, 0));
    }
    Ok((me as isize - best as isize, me as isize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn method(name: &str, params: &[(&str, Param<'_>)]) -> Method {
        Method::from_params(name, params, DivergenceConfig::default()).unwrap()
    }

    fn pick(lrs: &[f64], losses: &[f64], name: &str, params: &[(&str, Param<'_>)]) -> Suggestion {
        suggest(lrs, losses, &method(name, params)).unwrap()
    }

    /// The seed's `_find_suggested_lr`, written out independently.
    fn seed_index(lrs: &[f64], losses: &[f64]) -> usize {
        let x: Vec<f64> = lrs.iter().map(|v| v.ln()).collect();
        let n = losses.len();
        let mut g = vec![0.0; n];
        g[0] = (losses[1] - losses[0]) / (x[1] - x[0]);
        g[n - 1] = (losses[n - 1] - losses[n - 2]) / (x[n - 1] - x[n - 2]);
        for i in 1..n - 1 {
            let (h1, h2) = (x[i] - x[i - 1], x[i + 1] - x[i]);
            g[i] = (h1 * h1 * losses[i + 1] - h2 * h2 * losses[i - 1] + (h2 * h2 - h1 * h1) * losses[i])
                / (h1 * h2 * (h1 + h2));
        }
        let m = (0..n).fold(0, |b, i| if g[i] < g[b] { i } else { b });
        m.saturating_sub(n / 10)
    }

    fn seed_curve(n: usize) -> (Vec<f64>, Vec<f64>) {
        let lrs = crate::sweep_lrs(1e-7, 10.0, n, crate::SweepMode::Exp).unwrap();
        let losses =
            lrs.iter().map(|&lr: &f64| 2.3 - 0.8 / (1.0 + (-(lr.log10() + 3.0) * 2.0).exp()) + 0.3 * lr).collect();
        (lrs, losses)
    }

    #[test]
    fn steepest_is_the_seed() {
        let (lrs, losses) = seed_curve(100);
        let s = pick(&lrs, &losses, "steepest", &[]);
        assert_eq!(s.index, Some(seed_index(&lrs, &losses)));
        assert_eq!(s.lr, Some(lrs[s.index.unwrap()]));
        let Reason::Steepest { at, backoff, .. } = s.reason else { panic!() };
        assert_eq!((at - backoff, backoff), (s.index.unwrap(), 10));
    }

    #[test]
    fn no_suggestion_cases() {
        let lrs = [1e-3, 1e-2, 1e-1];
        assert_eq!(pick(&lrs, &[1.0, 1.0, 1.0], "steepest", &[]).reason, Reason::Flat);
        assert_eq!(pick(&lrs[..1], &[1.0], "steepest", &[]).reason, Reason::TooFewPoints { needed: 2, got: 1 });
        let s = pick(&lrs, &[1.0, f64::NAN, 0.5], "steepest", &[]);
        assert_eq!((s.lr, s.reason), (None, Reason::TooFewPoints { needed: 2, got: 1 }), "NaN ends the window");
        assert_eq!(pick(&lrs, &[1.0, 0.5, 0.4], "explosion", &[]).reason, Reason::NeverExploded);
        assert!(pick(&lrs, &[1.0, 0.5, 0.4], "slide", &[]).lr.is_none());
    }

    #[test]
    fn minimum_and_explosion_divide() {
        let lrs = [1e-4, 1e-3, 1e-2, 1e-1];
        let s = pick(
            &lrs,
            &[2.0, 1.0, 0.5, 50.0],
            "minimum",
            &[("skip_start", Param::Num(0.0)), ("skip_end", Param::Num(0.0))],
        );
        assert_eq!((s.index, s.lr), (Some(2), Some(1e-3)));
        let s = pick(&lrs, &[2.0, 1.0, 0.5, 50.0], "explosion", &[]);
        assert_eq!((s.index, s.lr), (Some(3), Some(1e-2)));
        let s = pick(&lrs, &[2.0, 1.0, 0.5, 50.0], "explosion", &[("threshold", Param::Num(200.0))]);
        assert_eq!(s.lr, None);
    }

    #[test]
    fn spaces_and_windows() {
        // Index space ignores the LR spacing: a linear ramp in index has equal slopes, first wins.
        let lrs = [1e-3, 2e-3, 1e-1, 2e-1];
        let s = pick(
            &lrs,
            &[4.0, 3.0, 2.0, 1.0],
            "steepest",
            &[("space", Param::Str("index")), ("backoff", Param::Num(0.0))],
        );
        assert_eq!(s.index, Some(0));
        // Log space: the big LR jump between points 1 and 2 makes that slope per e-fold small.
        let s = pick(&lrs, &[4.0, 3.0, 2.0, 1.0], "steepest", &[("backoff", Param::Num(0.0))]);
        assert_eq!(s.index, Some(3));
        let s = pick(&lrs, &[4.0, 3.0, 2.0, 1.0], "steepest", &[("skip_start", Param::Num(3.0))]);
        assert_eq!(s.reason, Reason::TooFewPoints { needed: 2, got: 1 });
    }

    #[test]
    fn valley_follows_fastai() {
        // Strictly decreasing from the start: fastai's max_start is -1.
        let lrs = [1e-3, 1e-2];
        let two = [("skip_start", Param::Num(0.0)), ("skip_end", Param::Num(0.0))];
        assert_eq!(pick(&lrs, &[2.0, 1.0], "valley", &two).index, Some(1), "idx -1 is the last point");
        let lrs: Vec<f64> = (1..=10).map(|i| i as f64 * 1e-3).collect();
        let losses = [5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 2.0, 9.0];
        // Run 0..=7 (lds 8), me = 7, ms = -1, sections = 8/3, idx = -1 + 2 + 1 = 2.
        assert_eq!(pick(&lrs, &losses, "valley", &two).index, Some(2));
    }

    #[test]
    fn slide_walks_left_until_gradients_agree() {
        let lrs: Vec<f64> = (1..=40).map(|i| i as f64 * 1e-3).collect();
        // Flat for 30 points, then rising by 0.5 a point. Index-space gradient: 0 up to 28,
        // 0.25 at 29, 0.5 from 30. The interval [l, l + 15] slides left while its ends differ:
        // it passes r = 30 (l = 15), r = 29 (l = 14, |0.25 - 0| > thresh), stops at r = 28.
        let losses: Vec<f64> = (0..40).map(|i| if i < 30 { 1.0 } else { 1.0 + 0.5 * (i - 29) as f64 }).collect();
        let s = pick(&lrs, &losses, "slide", &[("skip_start", Param::Num(0.0)), ("skip_end", Param::Num(0.0))]);
        assert_eq!(s.index, Some(14));
        // Already agreeing at the start: the first left end.
        let falling: Vec<f64> = (0..40).map(|i| 1.0 - 0.01 * i as f64).collect();
        let s = pick(&lrs, &falling, "slide", &[("skip_start", Param::Num(0.0)), ("skip_end", Param::Num(0.0))]);
        assert_eq!(s.index, Some(24));
    }

    #[test]
    fn bad_parameters_are_named() {
        let err = |name: &str, params: &[(&str, Param<'_>)]| {
            Method::from_params(name, params, DivergenceConfig::default()).unwrap_err().to_string()
        };
        assert_eq!(err("steepest", &[("backoff", Param::Num(1.0))]), "backoff must be a number in [0, 1), got 1");
        assert_eq!(
            err("steepest", &[("skip_start", Param::Num(-1.0))]),
            "skip_start must be a whole number >= 0, got -1"
        );
        assert_eq!(err("steepest", &[("skip_end", Param::Num(1.5))]), "skip_end must be a whole number >= 0, got 1.5");
        assert_eq!(
            err("steepest", &[("space", Param::Str("log10"))]),
            "space must be \"log\", \"index\" or \"linear\", got \"log10\""
        );
        assert_eq!(
            err("valley", &[("factor", Param::Num(2.0))]),
            "method parameter must be one the method takes, got \"factor\" for method \"valley\""
        );
        assert_eq!(err("explosion", &[("threshold", Param::Num(0.5))]), "threshold must be finite and > 1, got 0.5");
        // Ranges that keep every suggestion a usable LR.
        assert_eq!(err("minimum", &[("factor", Param::Num(1e-300))]), "factor must be in [1, 1e6], got 1e-300");
        assert_eq!(
            err("auto", &[("shift", Param::Num(-1e300))]).split(", got").next(),
            Some("shift must be in [-3, 6] (decades)")
        );
        assert!(err("auto", &[("smooth", Param::Num(1e-9))]).starts_with("smooth must be 0 or in [1e-6, 3]"));
        assert!(err("slide", &[("adjust_value", Param::Num(1e9))]).starts_with("adjust_value must be in [1e-6, 1e6]"));
        // Text where a number goes, or the reverse, is an error of kind.
        let kind = |name: &str, params: &[(&str, Param<'_>)]| {
            Method::from_params(name, params, DivergenceConfig::default()).unwrap_err()
        };
        assert!(matches!(kind("explosion", &[("threshold", Param::Str("x"))]), Error::Type { name: "threshold", .. }));
        assert!(matches!(kind("steepest", &[("space", Param::Num(3.0))]), Error::Type { name: "space", .. }));
        assert_eq!(
            err("magic", &[]),
            "method must be one of auto, steepest, minimum, steep, valley, slide, explosion, got \"magic\""
        );
    }

    /// fastai's quadratic valley loop, transcribed: the reference for `longest_valley`.
    fn fastai_valley(losses: &[f64]) -> (isize, isize) {
        let n = losses.len();
        let mut lds = vec![1usize; n];
        let (mut ms, mut me) = (0isize, 0usize);
        for i in 1..n {
            for j in 0..i {
                if losses[i] < losses[j] && lds[i] < lds[j] + 1 {
                    lds[i] = lds[j] + 1;
                }
                if lds[me] < lds[i] {
                    me = i;
                    ms = me as isize - lds[me] as isize;
                }
            }
        }
        (ms, me as isize)
    }

    proptest! {
        /// Every method either picks a point inside the series or says why not; never panics.
        #[test]
        fn picks_are_inside_the_series(
            losses in prop::collection::vec(prop_oneof![-5.0f64..50.0, Just(f64::NAN), Just(f64::INFINITY)], 0..120),
            name in prop::sample::select(METHOD_NAMES.to_vec()),
            skip_start in 0usize..20, skip_end in 0usize..20,
        ) {
            let lrs: Vec<f64> = (0..losses.len()).map(|i| 1e-7 * 1.2f64.powi(i as i32)).collect();
            let mut params = vec![];
            if !matches!(name, "explosion" | "auto") {
                params = vec![("skip_start", Param::Num(skip_start as f64)), ("skip_end", Param::Num(skip_end as f64))];
            }
            let s = pick(&lrs, &losses, name, &params);
            prop_assert_eq!(s.lr.is_some(), s.index.is_some());
            if let (Some(i), Some(lr)) = (s.index, s.lr) {
                prop_assert!(i < losses.len() && lr.is_finite() && lr > 0.0);
                if name != "explosion" {
                    prop_assert!(losses[i].is_finite());
                }
            }
        }

        /// The O(n log n) valley equals fastai's quadratic loop, ties and plateaus included.
        #[test]
        fn valley_equals_fastais_loop(
            small in prop::collection::vec(0u8..6, 1..80),
            wide in prop::collection::vec(-1e3f64..1e3, 1..300),
        ) {
            let small: Vec<f64> = small.into_iter().map(f64::from).collect();
            // A noisy descent: long runs, as on a real curve.
            let descent: Vec<f64> = wide.iter().enumerate().map(|(i, v)| 1e-3 * v - i as f64).collect();
            for losses in [&small, &wide, &descent] {
                prop_assert_eq!(longest_valley(losses, &mut vec![], &Cancel::new()).unwrap(), fastai_valley(losses));
            }
        }

        /// `argmin` keeps the first of equal values, -0 and +0 included, and skips NaN.
        #[test]
        fn argmin_is_the_first_smallest(v in prop::collection::vec(prop_oneof![
            -3.0f64..3.0, Just(0.0), Just(-0.0), Just(1.0), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY),
        ], 0..40)) {
            let mut scan: Option<usize> = None;
            for (i, &x) in v.iter().enumerate() {
                if !x.is_nan() && scan.is_none_or(|b| x < v[b]) {
                    scan = Some(i);
                }
            }
            prop_assert_eq!(argmin(&v), scan);
        }

        #[test]
        fn steepest_matches_the_seed(seed_losses in prop::collection::vec(0.0f64..10.0, 2..150)) {
            let lrs: Vec<f64> = (0..seed_losses.len()).map(|i| 1e-6 * 1.1f64.powi(i as i32)).collect();
            let s = pick(&lrs, &seed_losses, "steepest", &[]);
            if seed_losses.iter().all(|&v| v == seed_losses[0]) {
                prop_assert_eq!(s.lr, None);
            } else {
                prop_assert_eq!(s.index, Some(seed_index(&lrs, &seed_losses)));
            }
        }
    }
}
