//! Many sweeps at once: ragged sweeps in flat buffers, analysed in parallel into columns.

use rayon::join;
use rayon::prelude::*;

use crate::analyze::{analyze_into, AnalyzeConfig, Work};
use crate::cancel::Cancel;
use crate::error::{param, Error, Result};

/// Column-wise results of [`analyze_batch`], one entry per sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchAnalysis {
    /// Index of the point that stopped each sweep, -1 if none.
    pub stop_index: Vec<i64>,
    /// [`StopReason::code`](crate::StopReason::code), 0 if the sweep did not stop.
    pub stop_reason: Vec<u8>,
    /// [`DiagnosisKind::code`](crate::DiagnosisKind::code).
    pub diagnosis: Vec<u8>,
    /// Lowest loss of the suggestion series before the stop (NaN if none).
    pub min_loss: Vec<f64>,
    /// LR at that loss (NaN if none).
    pub lr_at_min: Vec<f64>,
    /// Low end of the diagnosis's descent, where the loss falls (NaN if none).
    pub descent_low: Vec<f64>,
    /// High end of the descent (NaN if none).
    pub descent_high: Vec<f64>,
    /// Per method (config order): the suggested LR of each sweep (NaN if none).
    pub lr: Vec<Vec<f64>>,
    /// Per method (config order): the index of each suggestion (-1 if none).
    pub index: Vec<Vec<i64>>,
    /// Per method (config order): the confidence of each suggestion (NaN if none).
    pub confidence: Vec<Vec<f64>>,
    /// Per method (config order): the low end of each suggestion's range (NaN if none).
    pub range_low: Vec<Vec<f64>>,
    /// Per method (config order): the high end of each suggestion's range (NaN if none).
    pub range_high: Vec<Vec<f64>>,
}

/// Sweeps per task: enough to amortise rayon's scheduling, few enough to balance two cores.
const GRAIN: usize = 512;

/// Analyses `offsets.len() - 1` sweeps stored back to back: sweep `i` is
/// `lrs[offsets[i]..offsets[i + 1]]` (Arrow-style offsets, starting at 0, non-decreasing,
/// ending at the buffers' length). Row `i` equals [`analyze`](crate::analyze) on sweep `i`.
/// Runs on rayon's pool; extra memory per worker is one sweep's buffers.
pub fn analyze_batch<L, F>(lrs: &[L], losses: &[F], offsets: &[i64], config: &AnalyzeConfig) -> Result<BatchAnalysis>
where
    L: Copy + Into<f64> + Sync,
    F: Copy + Into<f64> + Sync,
{
    analyze_batch_cancellable(lrs, losses, offsets, config, &Cancel::new())
}

/// [`analyze_batch`] that stops with [`Error::Interrupted`] when `cancel` is set.
pub fn analyze_batch_cancellable<L, F>(
    lrs: &[L],
    losses: &[F],
    offsets: &[i64],
    config: &AnalyzeConfig,
    cancel: &Cancel,
) -> Result<BatchAnalysis>
where
    L: Copy + Into<f64> + Sync,
    F: Copy + Into<f64> + Sync,
{
    config.validate()?;
    check_offsets(offsets, lrs.len(), losses.len())?;
    let n = offsets.len() - 1;
    let m = config.methods.len();
    let mut out = BatchAnalysis {
        stop_index: vec![-1; n],
        stop_reason: vec![0; n],
        diagnosis: vec![0; n],
        min_loss: vec![f64::NAN; n],
        lr_at_min: vec![f64::NAN; n],
        descent_low: vec![f64::NAN; n],
        descent_high: vec![f64::NAN; n],
        lr: vec![vec![f64::NAN; n]; m],
        index: vec![vec![-1; n]; m],
        confidence: vec![vec![f64::NAN; n]; m],
        range_low: vec![vec![f64::NAN; n]; m],
        range_high: vec![vec![f64::NAN; n]; m],
    };
    let rows = Rows {
        first: 0,
        stop_index: &mut out.stop_index,
        stop_reason: &mut out.stop_reason,
        diagnosis: &mut out.diagnosis,
        min_loss: &mut out.min_loss,
        lr_at_min: &mut out.lr_at_min,
        descent_low: &mut out.descent_low,
        descent_high: &mut out.descent_high,
        lr: out.lr.iter_mut().map(|c| c.as_mut_slice()).collect(),
        index: out.index.iter_mut().map(|c| c.as_mut_slice()).collect(),
        confidence: out.confidence.iter_mut().map(|c| c.as_mut_slice()).collect(),
        range_low: out.range_low.iter_mut().map(|c| c.as_mut_slice()).collect(),
        range_high: out.range_high.iter_mut().map(|c| c.as_mut_slice()).collect(),
    };
    fill(rows, lrs, losses, offsets, config, cancel)?;
    Ok(out)
}

/// The words of each sweep that [`analyze_batch`] leaves out, for reports that print them: per
/// method (config order) the suggestion's reason, and the diagnosis message; each as
/// [`analyze`](crate::analyze) gives it on that sweep. Runs on rayon's pool.
pub fn analyze_texts<L, F>(
    lrs: &[L],
    losses: &[F],
    offsets: &[i64],
    config: &AnalyzeConfig,
    cancel: &Cancel,
) -> Result<Vec<SweepTexts>>
where
    L: Copy + Into<f64> + Sync,
    F: Copy + Into<f64> + Sync,
{
    config.validate()?;
    check_offsets(offsets, lrs.len(), losses.len())?;
    (0..offsets.len() - 1)
        .into_par_iter()
        .with_min_len(GRAIN)
        .map_init(
            || (Work::default(), Vec::with_capacity(config.methods.len())),
            |(work, suggestions), sweep| {
                cancel.check()?;
                let (a, b) = (offsets[sweep] as usize, offsets[sweep + 1] as usize);
                suggestions.clear();
                let s =
                    analyze_into(&lrs[a..b], &losses[a..b], config, true, work, suggestions, cancel).map_err(|e| {
                        match e {
                            Error::Interrupted => e,
                            e => Error::Sweep { index: sweep, source: Box::new(e) },
                        }
                    })?;
                let reasons = suggestions.iter().map(|sg| sg.reason.to_string()).collect();
                Ok(SweepTexts { reasons, message: s.diagnosis.message() })
            },
        )
        .collect()
}

/// One sweep's texts from [`analyze_texts`].
#[derive(Debug, Clone, PartialEq)]
pub struct SweepTexts {
    /// Per method (config order): why it suggests what it does, or nothing.
    pub reasons: Vec<String>,
    /// The diagnosis message.
    pub message: String,
}

fn check_offsets(offsets: &[i64], len: usize, losses_len: usize) -> Result<()> {
    if len != losses_len {
        return Err(Error::Length { name: "lrs", other: "losses", len, other_len: losses_len });
    }
    match offsets.first() {
        None => return Err(param("offsets", "at least one entry (N sweeps need N + 1)", "an empty array")),
        Some(&first) if first != 0 => return Err(param("offsets[0]", "0", first)),
        _ => {}
    }
    if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
        return Err(Error::Element {
            name: "offsets",
            index: i + 1,
            expected: "non-decreasing",
            value: format!("{} after {}", offsets[i + 1], offsets[i]),
        });
    }
    let last = offsets[offsets.len() - 1];
    if last != len as i64 {
        return Err(Error::Element {
            name: "offsets",
            index: offsets.len() - 1,
            expected: "the buffers' length",
            value: format!("{last} for buffers of length {len}"),
        });
    }
    Ok(())
}

/// Mutable views of a contiguous block of output rows, split in halves for `rayon::join`.
struct Rows<'a> {
    first: usize,
    stop_index: &'a mut [i64],
    stop_reason: &'a mut [u8],
    diagnosis: &'a mut [u8],
    min_loss: &'a mut [f64],
    lr_at_min: &'a mut [f64],
    descent_low: &'a mut [f64],
    descent_high: &'a mut [f64],
    lr: Vec<&'a mut [f64]>,
    index: Vec<&'a mut [i64]>,
    confidence: Vec<&'a mut [f64]>,
    range_low: Vec<&'a mut [f64]>,
    range_high: Vec<&'a mut [f64]>,
}

impl<'a> Rows<'a> {
    fn split(self, mid: usize) -> (Rows<'a>, Rows<'a>) {
        let (lr_a, lr_b): (Vec<_>, Vec<_>) = self.lr.into_iter().map(|c| c.split_at_mut(mid)).unzip();
        let (ix_a, ix_b): (Vec<_>, Vec<_>) = self.index.into_iter().map(|c| c.split_at_mut(mid)).unzip();
        let (cf_a, cf_b): (Vec<_>, Vec<_>) = self.confidence.into_iter().map(|c| c.split_at_mut(mid)).unzip();
        let (lo_a, lo_b): (Vec<_>, Vec<_>) = self.range_low.into_iter().map(|c| c.split_at_mut(mid)).unzip();
        let (hi_a, hi_b): (Vec<_>, Vec<_>) = self.range_high.into_iter().map(|c| c.split_at_mut(mid)).unzip();
        let (si_a, si_b) = self.stop_index.split_at_mut(mid);
        let (sr_a, sr_b) = self.stop_reason.split_at_mut(mid);
        let (dg_a, dg_b) = self.diagnosis.split_at_mut(mid);
        let (ml_a, ml_b) = self.min_loss.split_at_mut(mid);
        let (lm_a, lm_b) = self.lr_at_min.split_at_mut(mid);
        let (dl_a, dl_b) = self.descent_low.split_at_mut(mid);
        let (dh_a, dh_b) = self.descent_high.split_at_mut(mid);
        (
            Rows {
                first: self.first,
                stop_index: si_a,
                stop_reason: sr_a,
                diagnosis: dg_a,
                min_loss: ml_a,
                lr_at_min: lm_a,
                descent_low: dl_a,
                descent_high: dh_a,
                lr: lr_a,
                index: ix_a,
                confidence: cf_a,
                range_low: lo_a,
                range_high: hi_a,
            },
            Rows {
                first: self.first + mid,
                stop_index: si_b,
                stop_reason: sr_b,
                diagnosis: dg_b,
                min_loss: ml_b,
                lr_at_min: lm_b,
                descent_low: dl_b,
                descent_high: dh_b,
                lr: lr_b,
                index: ix_b,
                confidence: cf_b,
                range_low: lo_b,
                range_high: hi_b,
            },
        )
    }
}

/// Fills `rows`, halving until a block is one task; the first error by sweep index wins (an
/// interruption wins over any).
fn fill<L, F>(
    mut rows: Rows<'_>,
    lrs: &[L],
    losses: &[F],
    offsets: &[i64],
    config: &AnalyzeConfig,
    cancel: &Cancel,
) -> Result<()>
where
    L: Copy + Into<f64> + Sync,
    F: Copy + Into<f64> + Sync,
{
    let len = rows.stop_index.len();
    if len > GRAIN {
        let (a, b) = rows.split(len / 2);
        let (ra, rb) =
            join(|| fill(a, lrs, losses, offsets, config, cancel), || fill(b, lrs, losses, offsets, config, cancel));
        return match (ra, rb) {
            (_, Err(Error::Interrupted)) => Err(Error::Interrupted),
            (ra, rb) => ra.and(rb),
        };
    }
    let mut work = Work::default();
    let mut suggestions = Vec::with_capacity(config.methods.len());
    for r in 0..len {
        let sweep = rows.first + r;
        cancel.check()?;
        // Offsets were checked: in range and non-decreasing.
        let (a, b) = (offsets[sweep] as usize, offsets[sweep + 1] as usize);
        suggestions.clear();
        let s = analyze_into(&lrs[a..b], &losses[a..b], config, false, &mut work, &mut suggestions, cancel).map_err(
            |e| match e {
                Error::Interrupted => e,
                e => Error::Sweep { index: sweep, source: Box::new(e) },
            },
        )?;
        if let Some((i, reason)) = s.stop {
            rows.stop_index[r] = i as i64;
            rows.stop_reason[r] = reason.code();
        }
        rows.diagnosis[r] = s.diagnosis.kind.code();
        rows.min_loss[r] = s.min_loss;
        rows.lr_at_min[r] = s.lr_at_min;
        if let Some((lo, hi)) = s.diagnosis.descent {
            rows.descent_low[r] = lo;
            rows.descent_high[r] = hi;
        }
        for (j, sg) in suggestions.iter().enumerate() {
            rows.lr[j][r] = sg.lr.unwrap_or(f64::NAN);
            rows.index[j][r] = sg.index.map_or(-1, |i| i as i64);
            rows.confidence[j][r] = sg.confidence.unwrap_or(f64::NAN);
            if let Some((lo, hi)) = sg.range {
                rows.range_low[j][r] = lo;
                rows.range_high[j][r] = hi;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze;
    use crate::suggest::Method;
    use crate::DivergenceConfig;
    use proptest::prelude::*;

    fn config() -> AnalyzeConfig {
        let d = DivergenceConfig::default();
        let methods = crate::METHOD_NAMES.iter().map(|n| Method::from_params(n, &[], d).unwrap()).collect();
        AnalyzeConfig { methods, ..Default::default() }
    }

    #[test]
    fn offsets_are_checked() {
        let cfg = AnalyzeConfig::default();
        let x = [1e-3, 1e-2, 1e-1];
        let err = |o: &[i64]| analyze_batch(&x, &x, o, &cfg).unwrap_err().to_string();
        assert_eq!(err(&[]), "offsets must be at least one entry (N sweeps need N + 1), got an empty array");
        assert_eq!(err(&[1, 3]), "offsets[0] must be 0, got 1");
        assert_eq!(err(&[0, 2, 1, 3]), "offsets[2] must be non-decreasing, got 1 after 2");
        assert_eq!(err(&[0, 2]), "offsets[1] must be the buffers' length, got 2 for buffers of length 3");
        let e = analyze_batch(&[1e-3, 1e-2, 1e-3], &x, &[0, 1, 3], &cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            "sweep 1: lrs[1] must be strictly greater than the previous LR, got 0.001 after 0.01"
        );
        assert_eq!(
            analyze_batch(&x, &x, &[0, 0, 3], &cfg).unwrap().stop_index,
            vec![-1, 2],
            "empty sweep, then 0.1 > 10 x 0.001"
        );
    }

    proptest! {
        /// Every row of the batch equals `analyze` on that sweep, across many blocks.
        #[test]
        fn rows_equal_analyze(lens in prop::collection::vec(0usize..40, 1..1500), seed in 0u64..1000) {
            let mut lrs = vec![];
            let mut losses = vec![];
            let mut offsets = vec![0i64];
            let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            for &n in &lens {
                for i in 0..n {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let noise = (state >> 11) as f64 / (1u64 << 53) as f64;
                    lrs.push(1e-6 * 1.5f64.powi(i as i32));
                    losses.push(if noise > 0.97 { f64::NAN } else { 2.0 - (i as f64 / 10.0).tanh() + noise * (1.0 + i as f64 / 4.0) });
                }
                offsets.push(lrs.len() as i64);
            }
            let cfg = config();
            let batch = analyze_batch(&lrs, &losses, &offsets, &cfg).unwrap();
            let texts = analyze_texts(&lrs, &losses, &offsets, &cfg, &Cancel::new()).unwrap();
            prop_assert_eq!(texts.len(), lens.len());
            for (k, w) in offsets.windows(2).enumerate() {
                let (a, b) = (w[0] as usize, w[1] as usize);
                let one = analyze(&lrs[a..b], &losses[a..b], &cfg).unwrap();
                let reasons: Vec<String> = one.suggestions.iter().map(|s| s.reason.to_string()).collect();
                prop_assert_eq!(&texts[k], &SweepTexts { reasons, message: one.diagnosis.message() });
                prop_assert_eq!(batch.stop_index[k], one.stop.map_or(-1, |(i, _)| i as i64));
                prop_assert_eq!(batch.diagnosis[k], one.diagnosis.kind.code());
                for (j, s) in one.suggestions.iter().enumerate() {
                    prop_assert_eq!(batch.index[j][k], s.index.map_or(-1, |i| i as i64));
                    let c = s.confidence.unwrap_or(f64::NAN);
                    prop_assert!(batch.confidence[j][k] == c || (c.is_nan() && batch.confidence[j][k].is_nan()));
                    prop_assert!(batch.lr[j][k] == s.lr.unwrap_or(f64::NAN) || (batch.lr[j][k].is_nan() && s.lr.is_none()));
                    let (lo, hi) = s.range.unwrap_or((f64::NAN, f64::NAN));
                    prop_assert!(batch.range_low[j][k] == lo || (lo.is_nan() && batch.range_low[j][k].is_nan()));
                    prop_assert!(batch.range_high[j][k] == hi || (hi.is_nan() && batch.range_high[j][k].is_nan()));
                }
                prop_assert!(batch.min_loss[k] == one.min_loss || (batch.min_loss[k].is_nan() && one.min_loss.is_nan()));
                let (lo, hi) = one.diagnosis.descent.unwrap_or((f64::NAN, f64::NAN));
                prop_assert!(batch.descent_low[k] == lo || (lo.is_nan() && batch.descent_low[k].is_nan()));
                prop_assert!(batch.descent_high[k] == hi || (hi.is_nan() && batch.descent_high[k].is_nan()));
            }
        }
    }
}
