//! Gaussian kernel smoothing over an increasing x (`auto`'s log10 LR), in linear time.
//!
//! The direct sum costs one term per pair of points less than 3 sigma apart: nothing on a
//! 100-point sweep, a million terms per point on a 10-million-point one. Dense data goes
//! through a fast Gauss transform instead (Greengard and Strain, 1991, here in 1-D): the
//! points are grouped in boxes sigma wide, a box's weighted sum at any target is a Taylor
//! series whose coefficients (the box's moments) are computed once, and the boxes that lie
//! wholly inside the windows of a box's points are re-expanded about that box's centre, so a
//! point costs three short series and three `exp`s. With [`TERMS`] terms the series are exact
//! to about 1e-17 of a box's weight, so both paths agree to rounding. The 3-sigma cut is kept
//! exactly: a box that it splits is summed directly when small, or from moments that grow
//! point by point as the window's edge moves through it.

use rayon::prelude::*;

use crate::cancel::Cancel;
use crate::error::Result;

/// Smooths `y` over increasing `x` with a Gaussian of standard deviation `sigma`, cut at
/// 3 sigma, weights renormalised at the ends (so there is no lag and no pull towards zero);
/// `sigma <= 0` copies `y`. Linear time (see the module docs); `y` must be finite.
pub(crate) fn gaussian(
    x: &[f64],
    y: &[f64],
    sigma: f64,
    s: &mut Scratch,
    out: &mut Vec<f64>,
    cancel: &Cancel,
) -> Result<()> {
    out.clear();
    let (reach, inv) = (3.0 * sigma, -0.5 / (sigma * sigma));
    // sigma so small that sigma^2 underflows: the kernel is the point itself.
    if sigma <= 0.0 || inv.is_infinite() || x.is_empty() {
        out.extend_from_slice(y);
        return Ok(());
    }
    let n = x.len();
    let step = (x[n - 1] - x[0]) / (n - 1).max(1) as f64;
    // Not `all`, which stops early: a fold over every step runs several steps at once.
    let steps = x[1..].iter().zip(x).map(|(b, a)| b - a);
    let even = n >= 2 && steps.fold(true, |even, d| even & ((d - step).abs() <= 1e-9 * step));
    // The direct sums cost a multiply-add (even spacing) or an `exp` (any spacing) per pair,
    // the transform about 400 multiply-adds per point: it wins above these window sizes.
    let direct_up_to = if even { 512 } else { 32 };
    // No point has more than n points in reach.
    if n <= direct_up_to || pairs_per_point(x, reach) <= direct_up_to {
        if even {
            direct_even(x, y, step, reach, inv, s, out, cancel)
        } else {
            direct(x, y, reach, inv, out, cancel)
        }
    } else {
        fast(x, y, sigma, s, out, cancel)
    }
}

/// Reusable buffers.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    weights: Vec<f64>,
    window: Vec<f64>,
    pad: Vec<f64>,
    one: Vec<f64>,
    cells: Vec<Cell>,
    moments: Vec<Moments>,
    den: Vec<f64>,
}

/// Terms of every series: `(2 t s)^k / k!` with `|2 t s| <= 1.75` (see [`fast`]) is below
/// 1e-17 from k = 24 on.
const TERMS: usize = 24;

/// A box with fewer points is summed directly: its series costs as much as that many `exp`s.
const MIN_CELL: usize = 16;

/// Targets per parallel task of the transform: enough to amortise a task's set-up.
const TARGETS_PER_TASK: usize = 1 << 18;

/// `2^k / k!`: the series' coefficients.
const COEF: [f64; TERMS] = {
    let mut c = [1.0; TERMS];
    let mut k = 1;
    while k < TERMS {
        c[k] = c[k - 1] * 2.0 / k as f64;
        k += 1;
    }
    c
};

/// The points `start..end` in the box `[x0 + g sigma, x0 + (g + 1) sigma)` of a grid from the
/// first point; only boxes holding points are kept.
#[derive(Debug, Clone, Copy)]
struct Cell {
    g: i64,
    start: usize,
    end: usize,
    /// Index of its moments, or `NO_MOMENTS` for a small box.
    slot: usize,
}

const NO_MOMENTS: usize = usize::MAX;

/// Series coefficients, value-weighted and plain (the normaliser) interleaved, so that one
/// SIMD multiply-add steps both sums.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Moments([f64; 2 * TERMS]);

impl Moments {
    const ZERO: Moments = Moments([0.0; 2 * TERMS]);

    /// Adds a point at `s` (its distance from the centre over `h`) with value `y`:
    /// `coef_k * s^k * exp(-s^2)` times `y` and times 1.
    #[inline]
    fn add(&mut self, s: f64, y: f64) {
        let mut p = (-s * s).exp();
        for (pair, c) in self.0.chunks_exact_mut(2).zip(COEF) {
            let w = c * p;
            pair[0] += w * y;
            pair[1] += w;
            p *= s;
        }
    }

    /// `sum_k m_k t^k` for both sums. Times `exp(-t^2)`, it is the (weighted sum, sum of
    /// weights) of the points at a target `t` (its distance from the centre over `h`), since
    /// `exp(-(t - s)^2) = exp(-t^2) exp(-s^2) sum_k 2^k t^k s^k / k!`; the same formula with
    /// target and points swapped makes a local expansion about a target box's centre.
    #[inline]
    fn series(&self, t: f64) -> (f64, f64) {
        let m = &self.0;
        let (mut a, mut b) = (m[2 * TERMS - 2], m[2 * TERMS - 1]);
        for k in (0..TERMS - 1).rev() {
            a = a * t + m[2 * k];
            b = b * t + m[2 * k + 1];
        }
        (a, b)
    }

    /// Adds the local coefficients of a box with moments `from` about another centre;
    /// `shift` is [`shift_matrix`] of the distance between the centres.
    fn add_shifted(&mut self, from: &Moments, shift: &[[f64; TERMS]; TERMS]) {
        for (k, row) in shift.iter().enumerate() {
            let (mut a, mut b) = (0.0, 0.0);
            for (p, t) in row.iter().enumerate() {
                a += t * from.0[2 * p];
                b += t * from.0[2 * p + 1];
            }
            self.0[2 * k] += a;
            self.0[2 * k + 1] += b;
        }
    }
}

/// The matrix that turns a box's moments into local coefficients about a centre `d h` to the
/// box's left (`d < 0`: to its right). A point at `s` from its box centre is at `r = s + d`
/// from the new one, and `r^k exp(-r^2) = exp(-d^2) exp(-s^2) (s + d)^k exp(-2 s d)`, whose
/// power series in `s` has the coefficients `sum_q C(k, q) d^(k - q) (-2 d)^(p - q) / (p - q)!`;
/// its terms beyond the moments' [`TERMS`] add below 1e-17 for `|s| <= 0.36`, `|d| <= 1.42`.
fn shift_matrix(d: f64) -> [[f64; TERMS]; TERMS] {
    let e = (-d * d).exp();
    let mut t = [[0.0; TERMS]; TERMS];
    for (k, row) in t.iter_mut().enumerate() {
        for (p, cell) in row.iter_mut().enumerate() {
            let mut a = 0.0;
            let mut binom = 1.0; // C(k, q)
            for q in 0..=k.min(p) {
                let l = p - q;
                let power_of_exp = (-2.0 * d).powi(l as i32) / (1..=l).map(|v| v as f64).product::<f64>();
                a += binom * d.powi((k - q) as i32) * power_of_exp;
                binom *= (k - q) as f64 / (q + 1) as f64;
            }
            *cell = e * COEF[k] * a / COEF[p];
        }
    }
    t
}

/// The mean number of points within `reach` of a point (itself included): what the direct
/// sum costs per point.
fn pairs_per_point(x: &[f64], reach: f64) -> usize {
    let (mut hi, mut pairs) = (0, 0usize);
    for i in 0..x.len() {
        hi = hi.max(i);
        while hi + 1 < x.len() && x[hi + 1] - x[i] <= reach {
            hi += 1;
        }
        pairs += hi - i;
    }
    (2 * pairs + x.len()) / x.len()
}

/// The direct sum on evenly spaced points: the same weights at every point, one `exp` per
/// offset instead of one per pair.
#[allow(clippy::too_many_arguments)]
fn direct_even(
    x: &[f64],
    y: &[f64],
    step: f64,
    reach: f64,
    inv: f64,
    s: &mut Scratch,
    out: &mut Vec<f64>,
    cancel: &Cancel,
) -> Result<()> {
    let n = x.len();
    let half = &mut s.weights;
    half.clear();
    half.extend((0..n).map(|d| d as f64 * step).take_while(|&d| d <= reach).map(|d| (d * d * inv).exp()));
    let k = half.len() - 1;
    // The weight of each offset -k..=k, in the order a point's window adds them.
    s.window.clear();
    s.window.extend((0..=2 * k).map(|o| half[o.abs_diff(k)]));
    out.clear();
    out.resize(n, 0.0);
    even_sums(y, &s.window, &mut s.pad, &mut s.one, out, cancel)
}

widest! {
    /// The sums of [`direct_even`] with the weights `w` of a whole window (odd length).
    fn even_sums(
        y: &[f64],
        w: &[f64],
        pad: &mut Vec<f64>,
        one: &mut Vec<f64>,
        out: &mut [f64],
        cancel: &Cancel,
    ) -> Result<()> => sums
}

/// [`even_sums`]' body. Point i sums j = i - k..=i + k in that order, cut at the ends. Groups of
/// points add each offset's term together, reading y padded with k zeros either side: the same
/// additions in the same order, plus terms of 0 that change no sum (a sum from +0 is never -0),
/// and the points no longer wait on each other's sums. Where no window is cut, the weights' sum
/// is the same for every point.
#[inline(always)]
fn sums(y: &[f64], w: &[f64], pad: &mut Vec<f64>, one: &mut Vec<f64>, out: &mut [f64], cancel: &Cancel) -> Result<()> {
    let (n, k) = (y.len(), w.len() / 2);
    let whole_den = w.iter().fold(0.0, |den, &w| den + w);
    for first in (0..n).step_by(BLOCK) {
        cancel.check()?;
        let m = BLOCK.min(n - first);
        // pad[t] = y[first + t - k] where the sweep has that point, else 0; one[t] 1 or 0.
        let len = m.next_multiple_of(LANES) + 2 * k;
        let (at, from) = (k.saturating_sub(first), first.saturating_sub(k));
        let count = (n - from).min(len - at);
        pad.clear();
        pad.resize(len, 0.0);
        pad[at..at + count].copy_from_slice(&y[from..from + count]);
        one.clear();
        one.resize(len, 0.0);
        one[at..at + count].fill(1.0);
        for t in (0..m).step_by(LANES) {
            let num = group(w, &pad[t..t + 2 * k + LANES]);
            let den = if first + t < k || first + t + LANES + k > n {
                group(w, &one[t..t + 2 * k + LANES])
            } else {
                [whole_den; LANES]
            };
            for (l, v) in out[first + t..first + (t + LANES).min(m)].iter_mut().enumerate() {
                *v = num[l] / den[l];
            }
        }
    }
    Ok(())
}

/// `sum_o w[o] v[l + o]` for each of the `LANES` points `l`, the terms in order of `o`.
#[inline(always)]
fn group(w: &[f64], v: &[f64]) -> [f64; LANES] {
    let mut sum = [0.0; LANES];
    for (o, &w) in w.iter().enumerate() {
        let v: &[f64; LANES] = v[o..o + LANES].try_into().expect("LANES values");
        for (s, &v) in sum.iter_mut().zip(v) {
            *s += w * v;
        }
    }
    sum
}

/// Points per group of [`even_sums`], their sums held in registers.
const LANES: usize = 16;

/// Points per block of [`direct_even`]: its padded copy of the values stays in the L1 cache.
const BLOCK: usize = 512;

/// The direct sum on any increasing points.
fn direct(x: &[f64], y: &[f64], reach: f64, inv: f64, out: &mut Vec<f64>, cancel: &Cancel) -> Result<()> {
    let mut lo = 0;
    for i in 0..x.len() {
        cancel.every(i)?;
        while x[i] - x[lo] > reach {
            lo += 1;
        }
        let (mut num, mut den) = (0.0, 0.0);
        for j in lo..x.len() {
            let d = x[j] - x[i];
            if d > reach {
                break;
            }
            let w = (d * d * inv).exp();
            num += w * y[j];
            den += w;
        }
        out.push(num / den);
    }
    Ok(())
}

/// The fast Gauss transform on a grid of boxes sigma wide. A point lies within `sigma / 2` of
/// its box centre, so `|s| <= 0.36` in units of `h = sqrt(2) sigma`. The window `[x - 3 sigma,
/// x + 3 sigma]` of a point in box `g` covers boxes `g - 2 ..= g + 2` and cuts `g - 3` and
/// `g + 3`, whose centres are within `3.5 sigma`, so `|t| <= 2.48` and `|2 t s| <= 1.75`; the
/// covered boxes are re-expanded about box `g`'s centre (`|2 t r| <= 1.25` there). The targets
/// are split in tasks run in parallel.
fn fast(x: &[f64], y: &[f64], sigma: f64, s: &mut Scratch, out: &mut Vec<f64>, cancel: &Cancel) -> Result<()> {
    let n = x.len();
    let (reach, inv) = (3.0 * sigma, -0.5 / (sigma * sigma));
    // Values scaled to at most 1, so no moment can overflow.
    let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return direct(x, y, reach, inv, out, cancel);
    }
    let grid = Grid { x, y, scale, x0: x[0], sigma, h: std::f64::consts::SQRT_2 * sigma, reach, inv };

    s.cells.clear();
    let mut start = 0;
    while start < n {
        let g = grid.cell_of(x[start]);
        let end = start + x[start..].partition_point(|&v| grid.cell_of(v) == g);
        s.cells.push(Cell { g, start, end, slot: NO_MOMENTS });
        start = end;
    }
    let mut slots = 0;
    for c in s.cells.iter_mut().filter(|c| c.end - c.start >= MIN_CELL) {
        (c.slot, slots) = (slots, slots + 1);
    }
    s.moments.clear();
    s.moments.resize(slots, Moments::ZERO);
    let large: Vec<&Cell> = s.cells.iter().filter(|c| c.slot != NO_MOMENTS).collect();
    s.moments.par_iter_mut().zip(large).try_for_each(|(m, c)| {
        for j in c.start..c.end {
            cancel.every(j - c.start)?;
            m.add(grid.offset(j, c.g), grid.value(j));
        }
        Ok(())
    })?;

    let shifts: [[[f64; TERMS]; TERMS]; 5] =
        std::array::from_fn(|k| shift_matrix((k as f64 - 2.0) / std::f64::consts::SQRT_2));
    let (cells, moments) = (&s.cells, &s.moments);
    out.clear();
    out.resize(n, 0.0);
    s.den.clear();
    s.den.resize(n, 0.0);
    out.par_chunks_mut(TARGETS_PER_TASK).zip(s.den.par_chunks_mut(TARGETS_PER_TASK)).enumerate().try_for_each(
        |(task, (num, den))| {
            let first = task * TARGETS_PER_TASK;
            grid.forward(first, num, den, cells, moments, &shifts, cancel)?;
            grid.backward(first, num, den, cells, cancel)
        },
    )?;
    out.par_iter_mut().zip(&s.den).for_each(|(v, w)| *v = *v / w * scale);
    Ok(())
}

/// The data and the geometry of the transform.
struct Grid<'a> {
    x: &'a [f64],
    y: &'a [f64],
    scale: f64,
    x0: f64,
    sigma: f64,
    h: f64,
    reach: f64,
    inv: f64,
}

impl Grid<'_> {
    fn cell_of(&self, v: f64) -> i64 {
        ((v - self.x0) / self.sigma).floor() as i64
    }

    /// Point `j`'s distance from the centre of box `g`, over `h`.
    fn offset(&self, j: usize, g: i64) -> f64 {
        (self.x[j] - (self.x0 + (g as f64 + 0.5) * self.sigma)) / self.h
    }

    fn value(&self, j: usize) -> f64 {
        self.y[j] / self.scale
    }

    /// The direct sum over points `from..to` at target `i`.
    fn direct(&self, i: usize, from: usize, to: usize) -> (f64, f64) {
        (from..to).fold((0.0, 0.0), |(num, den), j| {
            let d = self.x[j] - self.x[i];
            let w = (d * d * self.inv).exp();
            (num + w * self.value(j), den + w)
        })
    }

    /// The first point within reach left of point `i`, and the last one right of it.
    fn window(&self, i: usize) -> (usize, usize) {
        let x = self.x;
        let lo = x[..=i].partition_point(|&v| x[i] - v > self.reach);
        let hi = i + x[i..].partition_point(|&v| v - x[i] <= self.reach) - 1;
        (lo, hi)
    }

    /// The sums at targets `first..first + num.len()` over every box but a large one that the
    /// window's left edge cuts and its right edge does not (the backward pass adds those).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        first: usize,
        num: &mut [f64],
        den: &mut [f64],
        cells: &[Cell],
        moments: &[Moments],
        shifts: &[[[f64; TERMS]; TERMS]; 5],
        cancel: &Cancel,
    ) -> Result<()> {
        let (x, n) = (self.x, self.x.len());
        let cell_of_point = |j: usize| cells.partition_point(|c| c.end <= j);
        let (mut lo, mut hi) = self.window(first);
        let (mut left_cell, mut own, mut right_cell) = (cell_of_point(lo), cell_of_point(first), cell_of_point(hi));
        // The local expansion of the large boxes within two of the target's own, and the span
        // of points they hold.
        let (mut local, mut local_of, mut local_span) = (Moments::ZERO, NO_MOMENTS, (n, 0));
        // Moments of a large box cut by the right edge, grown as the edge moves through it.
        let (mut right, mut right_of, mut right_next) = (Moments::ZERO, NO_MOMENTS, 0);
        // exp(-m^2 / 2) for m = -3..=3: with t = tau - m / sqrt(2) (tau: the target's offset
        // from its own box centre), exp(-t^2) = exp(-tau^2) exp(sqrt(2) tau)^m exp(-m^2 / 2).
        let gauss: [f64; 7] = std::array::from_fn(|k| (-0.5 * (k as f64 - 3.0).powi(2)).exp());
        for (k, i) in (first..first + num.len()).enumerate() {
            cancel.every(k)?;
            while x[i] - x[lo] > self.reach {
                lo += 1;
            }
            while hi + 1 < n && x[hi + 1] - x[i] <= self.reach {
                hi += 1;
            }
            while cells[left_cell].end <= lo {
                left_cell += 1;
            }
            while cells[own].end <= i {
                own += 1;
            }
            while cells[right_cell].end <= hi {
                right_cell += 1;
            }
            let g = cells[own].g;
            if local_of != own {
                (local, local_span) = self.local_expansion(cells, own, moments, shifts);
                local_of = own;
            }
            let tau = self.offset(i, g);
            let (e0, e1) = ((-tau * tau).exp(), (std::f64::consts::SQRT_2 * tau).exp());
            let powers = [1.0 / (e1 * e1 * e1), 1.0 / (e1 * e1), 1.0 / e1, 1.0, e1, e1 * e1, e1 * e1 * e1];
            // The window covers the local expansion's boxes, but for a rounding at a box edge,
            // where the boxes are summed one by one instead.
            let use_local = lo <= local_span.0 && hi >= local_span.1;
            let (mut a, mut w) = if use_local { local.series(tau) } else { (0.0, 0.0) };
            (a, w) = (a * e0, w * e0);
            for (b, c) in cells.iter().enumerate().take(right_cell + 1).skip(left_cell) {
                let m = c.g - g;
                let large = c.slot != NO_MOMENTS;
                if use_local && large && m.abs() <= 2 {
                    continue;
                }
                let (from, to) = (lo.max(c.start), (hi + 1).min(c.end));
                let (cut_left, cut_right) = (from > c.start, to < c.end);
                if cut_left && !cut_right && large {
                    continue;
                }
                let (da, dw) = if !large || cut_left {
                    self.direct(i, from, to)
                } else {
                    let expansion = if cut_right {
                        if right_of != b {
                            (right, right_of, right_next) = (Moments::ZERO, b, c.start);
                        }
                        while right_next < to {
                            right.add(self.offset(right_next, c.g), self.value(right_next));
                            right_next += 1;
                        }
                        &right
                    } else {
                        &moments[c.slot]
                    };
                    let t = self.offset(i, c.g);
                    let factor = match usize::try_from(m + 3) {
                        Ok(k) if k < 7 => e0 * powers[k] * gauss[k],
                        _ => (-t * t).exp(), // a rounding at a box edge
                    };
                    let (sa, sw) = expansion.series(t);
                    (factor * sa, factor * sw)
                };
                a += da;
                w += dw;
            }
            num[k] = a;
            den[k] = w;
        }
        Ok(())
    }

    /// The local expansion about box `own`'s centre of the large boxes within two boxes of it,
    /// and the first and last point they hold.
    fn local_expansion(
        &self,
        cells: &[Cell],
        own: usize,
        moments: &[Moments],
        shifts: &[[[f64; TERMS]; TERMS]; 5],
    ) -> (Moments, (usize, usize)) {
        let g = cells[own].g;
        let (mut local, mut span) = (Moments::ZERO, (self.x.len(), 0));
        let from = cells[..own].partition_point(|c| c.g < g - 2);
        for c in cells[from..].iter().take_while(|c| c.g <= g + 2).filter(|c| c.slot != NO_MOMENTS) {
            local.add_shifted(&moments[c.slot], &shifts[(c.g - g + 2) as usize]);
            span = (span.0.min(c.start), span.1.max(c.end - 1));
        }
        (local, span)
    }

    /// Adds at targets `first..first + num.len()` the large box that the window's left edge
    /// cuts (and its right edge does not), from moments grown as the edge moves down.
    fn backward(&self, first: usize, num: &mut [f64], den: &mut [f64], cells: &[Cell], cancel: &Cancel) -> Result<()> {
        let x = self.x;
        let (mut lo, _) = self.window(first + num.len() - 1);
        let mut cell = cells.partition_point(|c| c.end <= lo);
        let (mut left, mut left_of, mut left_next) = (Moments::ZERO, NO_MOMENTS, 0);
        for k in (0..num.len()).rev() {
            cancel.every(k)?;
            let i = first + k;
            while lo > 0 && x[i] - x[lo - 1] <= self.reach {
                lo -= 1;
            }
            while cells[cell].start > lo {
                cell -= 1;
            }
            let c = &cells[cell];
            if c.slot == NO_MOMENTS || lo == c.start || x[c.end - 1] - x[i] > self.reach {
                continue;
            }
            if left_of != cell {
                (left, left_of, left_next) = (Moments::ZERO, cell, c.end);
            }
            while left_next > lo {
                left_next -= 1;
                left.add(self.offset(left_next, c.g), self.value(left_next));
            }
            let t = self.offset(i, c.g);
            let (a, w) = left.series(t);
            let factor = (-t * t).exp();
            num[k] += factor * a;
            den[k] += factor * w;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn smooth(x: &[f64], y: &[f64], sigma: f64) -> Vec<f64> {
        let mut out = vec![];
        gaussian(x, y, sigma, &mut Scratch::default(), &mut out, &Cancel::new()).unwrap();
        out
    }

    /// The direct sum, whatever the density: the reference for the transform.
    fn reference(x: &[f64], y: &[f64], sigma: f64) -> Vec<f64> {
        let mut out = vec![];
        direct(x, y, 3.0 * sigma, -0.5 / (sigma * sigma), &mut out, &Cancel::new()).unwrap();
        out
    }

    fn fast_gauss(x: &[f64], y: &[f64], sigma: f64) -> Vec<f64> {
        let mut out = vec![];
        fast(x, y, sigma, &mut Scratch::default(), &mut out, &Cancel::new()).unwrap();
        out
    }

    fn assert_close(a: &[f64], b: &[f64], scale: f64) {
        assert_eq!(a.len(), b.len());
        for (i, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-12 * scale, "point {i}: {p} vs {q}");
        }
    }

    #[test]
    fn helpers_and_ends() {
        let x = [0.0, 0.1, 0.2, 0.3];
        let out = smooth(&x, &[1.0, 1.0, 1.0, 1.0], 0.2);
        assert!(out.iter().all(|v| (v - 1.0).abs() < 1e-15), "a constant stays constant at the ends too");
        let out = smooth(&x, &[0.0, 1.0, 2.0, 3.0], 0.05);
        assert!((out[1] - 1.0).abs() < 1e-12 && out[0] > 0.0 && out[3] < 3.0, "symmetric inside, pulled at ends");
        assert_eq!(smooth(&x, &[4.0, 3.0, 2.0, 1.0], 0.0), vec![4.0, 3.0, 2.0, 1.0]);
        assert_eq!(pairs_per_point(&x, 0.15), 2, "(2 + 3 + 3 + 2) / 4");
        assert!((COEF[3] - 8.0 / 6.0).abs() < 1e-15);
    }

    #[test]
    fn even_spacing_shortcut_equals_the_general_sum() {
        // One x nudged off the grid forces the general sum.
        let even: Vec<f64> = (0..60).map(|i| -7.0 + 0.1 * i as f64).collect();
        let y: Vec<f64> = (0..60).map(|i| (i as f64 * 0.37).sin() + 0.01 * i as f64).collect();
        let mut nudged = even.clone();
        nudged[59] += 1e-7;
        assert_close(&smooth(&even, &y, 0.25)[..50], &smooth(&nudged, &y, 0.25)[..50], 1.0);
    }

    #[test]
    fn dense_sweeps_take_the_transform_and_match_the_direct_sum() {
        // 20,000 points over 7 decades: 1,400 points in a window, so `gaussian` transforms.
        let n = 20_000;
        let x: Vec<f64> = (0..n).map(|i| -7.0 + 7.0 * i as f64 / (n - 1) as f64).collect();
        let y: Vec<f64> = x.iter().enumerate().map(|(i, v)| 2.0 + v.sin() + 0.3 * ((i * 7919) % 13) as f64).collect();
        assert!(pairs_per_point(&x, 0.75) > 512);
        assert_close(&smooth(&x, &y, 0.25), &reference(&x, &y, 0.25), 5.0);
        // Linear spacing in LR: log10 spacing shrinks a thousandfold along the sweep.
        let x: Vec<f64> = (1..=n).map(|i| (1e-3 * i as f64).log10()).collect();
        assert_close(&smooth(&x, &y, 0.25), &reference(&x, &y, 0.25), 5.0);
    }

    #[test]
    fn a_cancelled_call_stops() {
        let x: Vec<f64> = (0..100_000).map(|i| i as f64 * 1e-4).collect();
        let cancel = Cancel::new();
        cancel.cancel();
        let mut out = vec![];
        let err = gaussian(&x, &x, 0.25, &mut Scratch::default(), &mut out, &cancel).unwrap_err();
        assert_eq!(err, crate::Error::Interrupted);
    }

    proptest! {
        /// The transform equals the direct sum on any increasing points: clusters, gaps, boxes
        /// of every size, cuts through every kind of box, values of any sign and size.
        #[test]
        fn transform_equals_the_direct_sum(
            gaps in prop::collection::vec(prop_oneof![1e-6f64..1e-3, 1e-3f64..0.05, 0.05f64..2.0], 1..400),
            values in prop::collection::vec(-1e6f64..1e6, 400),
            sigma in 0.01f64..0.5,
        ) {
            let mut x = vec![-3.0];
            for g in &gaps {
                x.push(x[x.len() - 1] + g);
            }
            let y = &values[..x.len()];
            let scale = y.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let (a, b) = (fast_gauss(&x, y, sigma), reference(&x, y, sigma));
            for (p, q) in a.iter().zip(&b) {
                prop_assert!((p - q).abs() <= 1e-11 * scale, "{} vs {}", p, q);
            }
        }
    }
}
