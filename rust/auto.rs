//! `auto`: lrfind's default suggestion, chosen and tuned on the quality benchmark
//! (`benches/quality/`), with a confidence and a range.
//!
//! The peers read a slope or a minimum off an EMA, which lags and lets one spike or wiggle move
//! the pick. `auto` smooths without lag and without letting single points through (a 5-point
//! running median, then a Gaussian kernel in log10(LR)), measures the final descent (from the
//! highest loss before the lowest one down to the lowest), and reads the LR where the loss has
//! made a share `drop` of that descent, moved `shift` decades down for safety. Reading a level
//! crossing instead of a slope makes the pick insensitive to where exactly the slope peaks.

use std::fmt;

use crate::cancel::{Cancel, CHECK_EVERY};
use crate::error::Result;
use crate::kernel::gaussian;

/// Tunable parameters of `auto`; the defaults were fitted on 4 of the benchmark's tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoParams {
    /// Standard deviation of the Gaussian smoothing kernel, in decades of LR (0 = median only).
    pub smooth: f64,
    /// Share of the descent made at the suggested point, in (0, 1]; 1 is the lowest point.
    pub drop: f64,
    /// Decades subtracted from the crossing point's log10(LR) (negative moves up).
    pub shift: f64,
    /// Half-width of the suggested range around the suggestion, in decades.
    pub spread: f64,
}

impl Default for AutoParams {
    fn default() -> Self {
        // Fitted by benches/quality/fit.py on 4 tasks of the benchmark's first version (8 tasks);
        // `spread` is the 10th-90th percentile of the oracle LR's distance from the suggestion
        // on those tasks. On the 14 tasks of the current one that the fit never saw, they beat
        // the all-family refit held out (benches/README.md), so they stay.
        Self { smooth: 0.25, drop: 0.95, shift: 0.75, spread: 0.75 }
    }
}

/// How sure `auto` is, in words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confidence {
    /// A clean descent, far above the noise, that turns up before the sweep ends.
    High,
    /// A readable descent with some noise or ambiguity.
    Medium,
    /// A shallow or noisy descent, or one still going at the end of the sweep.
    Low,
}

impl Confidence {
    /// From the score in [0, 1].
    pub fn from_score(score: f64) -> Self {
        if score >= 0.7 {
            Confidence::High
        } else if score >= 0.4 {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    }

    /// "high", "medium" or "low".
    pub fn name(self) -> &'static str {
        match self {
            Confidence::High => "high",
            Confidence::Medium => "medium",
            Confidence::Low => "low",
        }
    }
}

/// What `auto` read off the curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoReading {
    /// Confidence score in [0, 1].
    pub confidence: f64,
    /// Share of the starting loss that the descent removes.
    pub drop_share: f64,
    /// Width of the descent (10% to 100% of it) in decades of LR.
    pub width: f64,
    /// The descent over the noise (robust standard deviation of the raw loss about the smoothed).
    pub snr: f64,
    /// Whether the smoothed loss was lowest at the end of a sweep that did not explode.
    pub still_falling: bool,
    /// Decades from the suggestion up to the last point before the explosion: how far the edge
    /// is (None when the sweep did not explode).
    pub margin: Option<f64>,
    /// Index of the lowest smoothed loss.
    pub at_min: usize,
}

impl fmt::Display for AutoReading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = Confidence::from_score(self.confidence).name();
        write!(
            f,
            "{level} confidence ({:.2}): the loss falls {:.0}% over {:.1} decade(s), {:.0}x the noise",
            self.confidence,
            100.0 * self.drop_share,
            self.width,
            self.snr
        )?;
        if self.still_falling {
            write!(f, ", and is still falling at the end of the sweep (raise max_lr)")
        } else if self.snr < 10.0 {
            write!(f, "; a noisy curve: a larger batch or parallel runs would sharpen it")
        } else if let Some(margin) = self.margin.filter(|&m| m < SAFE_MARGIN && self.confidence < 0.7) {
            write!(
                f,
                "; the loss blows up {margin:.1} decade(s) above the suggestion: a sharp edge, where a somewhat \
                 higher LR costs much"
            )
        } else {
            write!(f, ", then turns up at point {}", self.at_min)
        }
    }
}

/// The outcome of `auto` on a window with at least [`MIN_POINTS`] finite points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Auto {
    /// The smoothed loss never falls below its start.
    NoDescent,
    /// A suggestion: `lr` read at point `index`, a range, and the reading.
    Found { index: usize, lr: f64, range: (f64, f64), reading: AutoReading },
}

/// Decades between the suggestion and the explosion from which the edge no longer lowers the
/// confidence; at half of it or less the confidence is halved (a clean curve then reads "medium").
/// Set on the fit tasks of the quality benchmark's first version, where the runs with an edge
/// under 1.5 decades away had the large regrets.
const SAFE_MARGIN: f64 = 2.0;

/// Points `auto` needs.
pub(crate) const MIN_POINTS: usize = 5;

/// Reusable buffers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    median: Vec<f64>,
    smooth: Vec<f64>,
    keys: Vec<i64>,
    kernel: crate::kernel::Scratch,
}

/// Runs `auto` on finite `losses` at `x`, the log10 of validated LRs (`MIN_POINTS` or more);
/// `exploded` says whether the sweep ended in an explosion (then a minimum at the end is no sign
/// of a range too low). Linear time; only a cancelled call fails.
pub(crate) fn auto(
    x: &[f64],
    losses: &[f64],
    exploded: bool,
    p: &AutoParams,
    s: &mut Scratch,
    cancel: &Cancel,
) -> Result<Auto> {
    let n = losses.len();
    debug_assert!(n >= MIN_POINTS && x.len() == n);
    lag_free(x, losses, p.smooth, s, cancel)?;
    let sm = &s.smooth;

    let at_min = argmin(sm);
    let start = argmax(&sm[..=at_min]);
    let (top, bottom) = (sm[start], sm[at_min]);
    let depth = top - bottom;
    // Smoothing a constant can leave an ulp of wiggle: a drop must stand out of rounding.
    if depth <= 1e-9 * top.abs().max(bottom.abs()) {
        return Ok(Auto::NoDescent);
    }
    let crossing = |share: f64| crossing(x, sm, start, at_min, top - share * depth);
    let (index, x_pick) = crossing(p.drop);
    let (_, x_10) = crossing(0.1);

    // Noise: robust spread of the raw loss about the smoothed one, up to the minimum.
    s.keys.clear();
    s.keys.extend(losses[..=at_min].iter().zip(&sm[..=at_min]).map(|(a, b)| total_key(a - b)));
    let noise = 1.4826 * mad(&mut s.keys);
    let snr = depth / noise.max(1e-12 * top.abs().max(1e-300));
    let still_falling = !exploded && at_min + (n / 20).max(2) >= n;
    let width = x[at_min] - x_10;
    let x_lr = x_pick - p.shift;
    let margin = exploded.then_some(x[n - 1] - x_lr);
    // 3x the noise scores 0, 30x scores 1; a descent still going at the end is worth less, and
    // so is one whose explosion lies close above the suggestion.
    let clean = ((snr / 3.0).ln() / 10f64.ln()).clamp(0.0, 1.0);
    let edge = margin.map_or(1.0, |m| (m / SAFE_MARGIN).clamp(0.5, 1.0));
    let score = clean * edge * if still_falling { 0.5 } else { 1.0 };
    let reading = AutoReading {
        confidence: score,
        drop_share: if top != 0.0 { depth / top.abs() } else { f64::INFINITY },
        width,
        snr,
        still_falling,
        margin,
        at_min,
    };
    let range = (10f64.powf(x_lr - p.spread), 10f64.powf(x_lr + p.spread));
    let lr = 10f64.powf(x_lr);
    Ok(Auto::Found { index, lr, range, reading })
}

/// The lag-free curve `auto` reads, into `s.smooth`: a 5-point running median, so that no
/// single point gets through, then a Gaussian kernel `smooth` decades wide in `x`, log10(LR),
/// which, unlike an EMA, does not lag. Linear time.
pub(crate) fn lag_free<'s>(
    x: &[f64],
    losses: &[f64],
    smooth: f64,
    s: &'s mut Scratch,
    cancel: &Cancel,
) -> Result<&'s [f64]> {
    running_median5(losses, &mut s.keys, &mut s.median, cancel)?;
    gaussian(x, &s.median, smooth, &mut s.kernel, &mut s.smooth, cancel)?;
    Ok(&s.smooth)
}

/// The last point in `[start, end)` at or above `level`, and the log10 LR where the line from it
/// to the next point crosses `level`. `sm[start] >= level > sm[end]` must hold.
fn crossing(x: &[f64], sm: &[f64], start: usize, end: usize, level: f64) -> (usize, f64) {
    let j = (start..end).rev().find(|&j| sm[j] >= level).unwrap_or(start);
    let t = ((sm[j] - level) / (sm[j] - sm[j + 1])).clamp(0.0, 1.0);
    (j, x[j] + t * (x[j + 1] - x[j]))
}

/// Median of each point and its two neighbours either side (fewer at the ends), in the order
/// of `f64::total_cmp`.
fn running_median5(v: &[f64], keys: &mut Vec<i64>, out: &mut Vec<f64>, cancel: &Cancel) -> Result<()> {
    let n = v.len();
    out.clear();
    out.resize(n, 0.0);
    // Inside, a min/max network on integer keys: no sort, no branch.
    keys.clear();
    keys.extend(v.iter().map(|&v| total_key(v)));
    if n >= 5 {
        for first in (0..n - 4).step_by(CHECK_EVERY) {
            cancel.check()?;
            let end = (first + CHECK_EVERY).min(n - 4);
            medians5(&keys[first..end + 4], &mut out[first + 2..end + 2]);
        }
    }
    let mut w = [0.0; 5];
    for i in (0..n.min(2)).chain(n.saturating_sub(2).max(2)..n) {
        let (lo, hi) = (i.saturating_sub(2), (i + 2).min(n - 1));
        let k = hi - lo + 1;
        w[..k].copy_from_slice(&v[lo..=hi]);
        w[..k].sort_unstable_by(f64::total_cmp);
        out[i] = if k % 2 == 1 { w[k / 2] } else { 0.5 * (w[k / 2 - 1] + w[k / 2]) };
    }
    Ok(())
}

widest! {
    /// `out[i]` is the median of `keys[i..i + 5]`, as a value.
    fn medians5(keys: &[i64], out: &mut [f64]) => each_median5
}

#[inline(always)]
fn each_median5(keys: &[i64], out: &mut [f64]) {
    // Slices of one length: the loop runs without bounds checks, several points at once.
    let m = out.len();
    let (a, b, c, d, e) = (&keys[..m], &keys[1..m + 1], &keys[2..m + 2], &keys[3..m + 3], &keys[4..m + 4]);
    for (i, o) in out.iter_mut().enumerate() {
        *o = from_key(median5([a[i], b[i], c[i], d[i], e[i]]));
    }
}

/// The median of five: the middle of `e` and the two middle values of the other four.
#[inline(always)]
fn median5([a, b, c, d, e]: [i64; 5]) -> i64 {
    let (lo, hi) = (a.min(b).max(c.min(d)), a.max(b).min(c.max(d)));
    lo.min(hi).max(lo.max(hi).min(e))
}

/// Index of the first lowest value (0 if the first is NaN: nothing is below it).
fn argmin(v: &[f64]) -> usize {
    if v[0].is_nan() {
        0
    } else {
        crate::suggest::argmin(v).unwrap_or(0)
    }
}

/// Index of the last largest value (the descent starts after it; 0 if the first is NaN).
fn argmax(v: &[f64]) -> usize {
    if v[0].is_nan() {
        return 0;
    }
    // The largest value over lanes that do not wait on each other, then where it last occurs.
    let mut lanes = [v[0]; 4];
    let chunks = v.chunks_exact(4);
    for &x in chunks.remainder() {
        lanes[0] = if x > lanes[0] { x } else { lanes[0] };
    }
    for c in chunks {
        for (m, &x) in lanes.iter_mut().zip(c) {
            *m = if x > *m { x } else { *m };
        }
    }
    let max = lanes.into_iter().fold(v[0], |m, x| if x > m { x } else { m });
    v.iter().rposition(|&x| x == max).unwrap_or(0)
}

/// Median absolute deviation from the median of the values whose [`total_key`]s are `v`
/// (reorders `v`).
fn mad(v: &mut [i64]) -> f64 {
    let med = median(v);
    for a in v.iter_mut() {
        *a = total_key((from_key(*a) - med).abs());
    }
    median(v)
}

/// Median by selection in the order of `f64::total_cmp`, O(n), of the values whose
/// [`total_key`]s are `v` (reorders `v`, which must not be empty).
fn median(v: &mut [i64]) -> f64 {
    let n = v.len();
    let (below, &mut upper, _) = v.select_nth_unstable(n / 2);
    let upper = from_key(upper);
    if n % 2 == 1 {
        upper
    } else {
        0.5 * (below.iter().map(|&k| from_key(k)).fold(f64::NEG_INFINITY, f64::max) + upper)
    }
}

/// An integer in the order of `f64::total_cmp`: selections then compare integers.
#[inline]
pub(crate) fn total_key(v: f64) -> i64 {
    let bits = v.to_bits() as i64;
    bits ^ (((bits >> 63) as u64) >> 1) as i64
}

/// The value of a [`total_key`] (the map is its own inverse).
#[inline]
pub(crate) fn from_key(k: i64) -> f64 {
    f64::from_bits((k ^ (((k >> 63) as u64) >> 1) as i64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn log10(lrs: &[f64]) -> Vec<f64> {
        lrs.iter().map(|v| v.log10()).collect()
    }

    fn sigmoid_curve(n: usize, noise: f64) -> (Vec<f64>, Vec<f64>) {
        // Loss 2.0 falling to 0.5 around lr 1e-3 (log10 -3), rising after 1e-1; deterministic noise.
        let lrs: Vec<f64> = (0..n).map(|i| 1e-7 * 10f64.powf(7.0 * i as f64 / (n - 1) as f64)).collect();
        let losses = lrs
            .iter()
            .enumerate()
            .map(|(i, &lr)| {
                let x = lr.log10();
                let base = 0.5 + 1.5 / (1.0 + ((x + 3.0) * 3.0).exp()) + if x > -1.0 { 3.0 * (x + 1.0) } else { 0.0 };
                base + noise * ((i as f64 * 12.9898).sin() * 43758.5453).fract()
            })
            .collect();
        (lrs, losses)
    }

    #[test]
    fn reads_the_middle_of_a_clean_descent() {
        let (lrs, losses) = sigmoid_curve(141, 0.0);
        let p = AutoParams { smooth: 0.0, drop: 0.5, shift: 0.0, spread: 0.5 };
        let Auto::Found { lr, range, reading, .. } =
            auto(&log10(&lrs), &losses, false, &p, &mut Scratch::default(), &Cancel::new()).unwrap()
        else {
            panic!()
        };
        // The logistic's midpoint is at 1e-3 exactly; the curve starts at 2.0 and bottoms out
        // near 0.5 just before the rise at 1e-1, so the 50% crossing sits near 1e-3.
        assert!((lr.log10() + 3.0).abs() < 0.1, "{lr}");
        assert!((range.0 * 10f64.sqrt() / lr - 1.0).abs() < 1e-12 && (range.1 / 10f64.sqrt() / lr - 1.0).abs() < 1e-12);
        assert!(!reading.still_falling && reading.confidence == 1.0);
        let shifted = AutoParams { shift: 1.0, ..p };
        let Auto::Found { lr: lr2, .. } =
            auto(&log10(&lrs), &losses, false, &shifted, &mut Scratch::default(), &Cancel::new()).unwrap()
        else {
            panic!()
        };
        assert!((lr2 * 10.0 / lr - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_single_spike_does_not_move_it() {
        let (lrs, mut losses) = sigmoid_curve(100, 0.02);
        let p = AutoParams::default();
        let Auto::Found { lr: before, .. } =
            auto(&log10(&lrs), &losses, false, &p, &mut Scratch::default(), &Cancel::new()).unwrap()
        else {
            panic!()
        };
        losses[30] = 50.0; // one early spike, far above everything
        let Auto::Found { lr: after, .. } =
            auto(&log10(&lrs), &losses, false, &p, &mut Scratch::default(), &Cancel::new()).unwrap()
        else {
            panic!()
        };
        assert!((after / before - 1.0).abs() < 0.05, "{before} -> {after}");
    }

    #[test]
    fn rising_and_falling_curves() {
        let lrs: Vec<f64> = (0..20).map(|i| 1e-4 * 1.5f64.powi(i)).collect();
        let rising: Vec<f64> = (0..20).map(|i| 1.0 + 0.1 * i as f64).collect();
        assert_eq!(
            auto(&log10(&lrs), &rising, false, &AutoParams::default(), &mut Scratch::default(), &Cancel::new())
                .unwrap(),
            Auto::NoDescent
        );
        // Smoothing a constant rounds to a few ulps of wiggle, which is no descent.
        let flat = vec![0.01171875; 20];
        assert_eq!(
            auto(&log10(&lrs), &flat, false, &AutoParams::default(), &mut Scratch::default(), &Cancel::new()).unwrap(),
            Auto::NoDescent
        );
        let falling: Vec<f64> = (0..20).map(|i| 2.0 - 0.05 * i as f64).collect();
        let read = |exploded| match auto(
            &log10(&lrs),
            &falling,
            exploded,
            &AutoParams::default(),
            &mut Scratch::default(),
            &Cancel::new(),
        )
        .unwrap()
        {
            Auto::Found { reading, .. } => reading,
            Auto::NoDescent => panic!(),
        };
        assert!(read(false).still_falling && read(false).confidence <= 0.5);
        assert!(!read(true).still_falling, "a minimum right before the explosion is no range too low");
    }

    #[test]
    fn noise_lowers_the_confidence() {
        let (lrs, clean) = sigmoid_curve(100, 0.01);
        let (_, noisy) = sigmoid_curve(100, 1.0);
        let conf = |l: &[f64]| match auto(
            &log10(&lrs),
            l,
            false,
            &AutoParams::default(),
            &mut Scratch::default(),
            &Cancel::new(),
        )
        .unwrap()
        {
            Auto::Found { reading, .. } => reading.confidence,
            Auto::NoDescent => panic!(),
        };
        assert!(conf(&clean) > 0.9 && conf(&noisy) < conf(&clean), "{} {}", conf(&clean), conf(&noisy));
    }

    #[test]
    fn running_median() {
        let mut out = vec![];
        running_median5(&[5.0, 1.0, 9.0, 2.0, 3.0, 100.0, 4.0], &mut vec![], &mut out, &Cancel::new()).unwrap();
        assert_eq!(out, vec![5.0, 3.5, 3.0, 3.0, 4.0, 3.5, 4.0]);
    }

    proptest! {
        /// As sorting each window in the order of `total_cmp`, signed zeros and NaN included.
        #[test]
        fn running_median_as_sorting(v in prop::collection::vec(prop_oneof![
            -3.0f64..3.0, Just(0.0), Just(-0.0), Just(1.0), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY),
        ], 0..60)) {
            let mut out = vec![];
            running_median5(&v, &mut vec![], &mut out, &Cancel::new()).unwrap();
            for (i, o) in out.iter().enumerate() {
                let mut w = v[i.saturating_sub(2)..(i + 3).min(v.len())].to_vec();
                w.sort_unstable_by(f64::total_cmp);
                let k = w.len();
                let want = if k % 2 == 1 { w[k / 2] } else { 0.5 * (w[k / 2 - 1] + w[k / 2]) };
                prop_assert!(o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()), "{i}: {o} {want}");
            }
        }

        /// The first lowest and the last largest, as the folds over the indices find them.
        #[test]
        fn extremes_as_the_folds(v in prop::collection::vec(prop_oneof![
            -3.0f64..3.0, Just(0.0), Just(-0.0), Just(1.0), Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY),
        ], 1..40)) {
            prop_assert_eq!(argmin(&v), (0..v.len()).fold(0, |b, i| if v[i] < v[b] { i } else { b }));
            prop_assert_eq!(argmax(&v), (0..v.len()).fold(0, |b, i| if v[i] >= v[b] { i } else { b }));
        }

        #[test]
        fn pick_and_range_lie_in_order(losses in prop::collection::vec(0.0f64..10.0, MIN_POINTS..150)) {
            let lrs: Vec<f64> = (0..losses.len()).map(|i| 1e-6 * 1.2f64.powi(i as i32)).collect();
            match auto(&log10(&lrs), &losses, false, &AutoParams::default(), &mut Scratch::default(), &Cancel::new()).unwrap() {
                Auto::NoDescent => {}
                Auto::Found { index, lr, range, reading } => {
                    prop_assert!(index < losses.len());
                    // The crossing lies inside the sweep; the suggestion is `shift` decades below it.
                    let read = lr * 10f64.powf(AutoParams::default().shift);
                    prop_assert!(read >= lrs[0] * (1.0 - 1e-12) && read <= lrs[losses.len() - 1] * (1.0 + 1e-12));
                    prop_assert!(range.0 <= lr && lr <= range.1);
                    prop_assert!((0.0..=1.0).contains(&reading.confidence));
                }
            }
        }
    }
}
