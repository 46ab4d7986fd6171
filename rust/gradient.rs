//! Slopes of the loss curve, as `np.gradient` computes them.

use crate::error::{check_sweep, param, Result};

widest! {
    /// `np.gradient(f, x)` into `out`: second-order central differences on the (possibly
    /// non-uniform) interior, first-order at both ends, and numpy's uniform formula when every
    /// spacing is exactly equal. Needs `f.len() == x.len() == out.len() >= 2`, `x` increasing.
    pub(crate) fn gradient_into(x: &[f64], f: &[f64], out: &mut [f64]) => gradient
}

#[inline(always)]
fn gradient(x: &[f64], f: &[f64], out: &mut [f64]) {
    let n = f.len();
    debug_assert!(n >= 2 && x.len() == n && out.len() == n);
    let dx0 = x[1] - x[0];
    if x.windows(2).all(|w| w[1] - w[0] == dx0) {
        return gradient_uniform_into(f, dx0, out);
    }
    out[0] = (f[1] - f[0]) / dx0;
    // Slices of one length, so that the loop runs without bounds checks, several points at once.
    let m = n - 2;
    let (x0, x1, x2, f0, f1, f2) = (&x[..m], &x[1..=m], &x[2..], &f[..m], &f[1..=m], &f[2..]);
    for (i, o) in out[1..=m].iter_mut().enumerate() {
        let (dx1, dx2) = (x1[i] - x0[i], x2[i] - x1[i]);
        let a = -dx2 / (dx1 * (dx1 + dx2));
        let b = (dx2 - dx1) / (dx1 * dx2);
        let c = dx1 / (dx2 * (dx1 + dx2));
        *o = a * f0[i] + b * f1[i] + c * f2[i];
    }
    out[n - 1] = (f[n - 1] - f[n - 2]) / (x[n - 1] - x[n - 2]);
}

/// `np.gradient(f, dx)` into `out` for a uniform spacing `dx` (1 for index space).
pub(crate) fn gradient_uniform_into(f: &[f64], dx: f64, out: &mut [f64]) {
    let n = f.len();
    out[0] = (f[1] - f[0]) / dx;
    for i in 1..n - 1 {
        out[i] = (f[i + 1] - f[i - 1]) / (2.0 * dx);
    }
    out[n - 1] = (f[n - 1] - f[n - 2]) / dx;
}

/// `np.gradient(losses, np.log(lrs))`: the slope of the loss per e-fold of the LR.
///
/// Needs at least 2 points and LRs finite, positive and strictly increasing. A non-finite loss
/// gives non-finite slopes next to it, as in numpy.
pub fn log_gradient<L: Copy + Into<f64>, F: Copy + Into<f64>>(lrs: &[L], losses: &[F]) -> Result<Vec<f64>> {
    check_sweep(lrs, losses)?;
    if lrs.len() < 2 {
        return Err(param("lrs", "at least 2 points long", format!("{} point(s)", lrs.len())));
    }
    let x: Vec<f64> = lrs.iter().map(|&v| v.into().ln()).collect();
    let f: Vec<f64> = losses.iter().map(|&v| v.into()).collect();
    let mut out = vec![0.0; f.len()];
    gradient_into(&x, &f, &mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_on_quadratic() {
        // Second-order differences are exact on a quadratic, even on a non-uniform grid.
        let x = [0.0, 0.5, 1.7, 2.0, 4.0];
        let f: Vec<f64> = x.iter().map(|v| 3.0 * v * v - v).collect();
        let mut out = [0.0; 5];
        gradient_into(&x, &f, &mut out);
        for i in 1..4 {
            assert!((out[i] - (6.0 * x[i] - 1.0)).abs() < 1e-12, "{i}: {}", out[i]);
        }
        assert_eq!(out[0], (f[1] - f[0]) / 0.5);
        assert_eq!(out[4], (f[4] - f[3]) / 2.0);
    }

    #[test]
    fn log_space_of_power_law() {
        // loss = lr^-1 is exp(-ln lr): slope per e-fold is -loss (approximately, on a fine grid).
        let lrs = crate::sweep_lrs(1e-3, 1e-1, 2001, crate::SweepMode::Exp).unwrap();
        let losses: Vec<f64> = lrs.iter().map(|l| 1.0 / l).collect();
        let g = log_gradient(&lrs, &losses).unwrap();
        assert!((g[1000] / -losses[1000] - 1.0).abs() < 1e-5);
    }

    #[test]
    fn two_points_and_errors() {
        assert_eq!(log_gradient(&[1.0, std::f64::consts::E], &[1.0, 3.0]).unwrap(), vec![2.0, 2.0]);
        assert_eq!(
            log_gradient(&[1.0], &[1.0]).unwrap_err().to_string(),
            "lrs must be at least 2 points long, got 1 point(s)"
        );
        assert!(log_gradient(&[1.0, 0.5], &[1.0, 1.0]).is_err());
    }

    proptest! {
        /// A linear function of the coordinate has the same slope everywhere.
        #[test]
        fn linear_functions_are_exact(steps in prop::collection::vec(0.01f64..2.0, 1..100), slope in -5.0f64..5.0) {
            let mut x = vec![0.0];
            for s in &steps { x.push(x.last().unwrap() + s); }
            let f: Vec<f64> = x.iter().map(|v| slope * v + 1.0).collect();
            let mut out = vec![0.0; x.len()];
            gradient_into(&x, &f, &mut out);
            for g in out { prop_assert!((g - slope).abs() < 1e-8 * (1.0 + slope.abs()) * 100.0); }
        }
    }
}
