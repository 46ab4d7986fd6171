//! The one error type of the core: every message names the parameter and the bad value.

/// An invalid argument given to a core function.
///
/// The Python glue maps [`Error::Type`] to `TypeError`, [`Error::Interrupted`] to the pending
/// `KeyboardInterrupt`, and every other variant to `ValueError`, with the `Display` text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A scalar parameter outside its allowed range or set.
    #[error("{name} must be {expected}, got {value}")]
    Param {
        /// Parameter name as the user wrote it.
        name: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// The rejected value, formatted.
        value: String,
    },
    /// A parameter of the wrong kind: text where a number is needed, or the reverse.
    #[error("{name} must be {expected}, got {value}")]
    Type {
        /// Parameter name as the user wrote it.
        name: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
        /// The rejected value, formatted.
        value: String,
    },
    /// One element of an array argument is invalid.
    #[error("{name}[{index}] must be {expected}, got {value}")]
    Element {
        /// Array parameter name.
        name: &'static str,
        /// Position of the first bad element.
        index: usize,
        /// What a valid element looks like.
        expected: &'static str,
        /// The rejected element, formatted.
        value: String,
    },
    /// Two arrays that must match in length do not.
    #[error("{name} and {other} must have the same length, got {len} and {other_len}")]
    Length {
        /// First array's name.
        name: &'static str,
        /// Second array's name.
        other: &'static str,
        /// First array's length.
        len: usize,
        /// Second array's length.
        other_len: usize,
    },
    /// The call was cancelled through its [`Cancel`](crate::Cancel) flag (Ctrl-C in Python).
    #[error("interrupted")]
    Interrupted,
    /// An error in one sweep of a batch.
    #[error("sweep {index}: {source}")]
    Sweep {
        /// Position of the sweep in the batch.
        index: usize,
        /// What is wrong with it.
        source: Box<Error>,
    },
}

/// Shorthand for the core's results.
pub type Result<T> = std::result::Result<T, Error>;

/// Builds an [`Error::Param`].
pub(crate) fn param(name: &'static str, expected: &'static str, value: impl Shown) -> Error {
    Error::Param { name, expected, value: value.shown() }
}

/// A value as an error message shows it: floats in the shortest form that reads back exactly,
/// in scientific notation when very small or large (never 300 zeros).
pub(crate) trait Shown {
    /// The text.
    fn shown(&self) -> String;
}

impl Shown for f64 {
    fn shown(&self) -> String {
        let v = self.abs();
        if v != 0.0 && v.is_finite() && !(1e-4..1e16).contains(&v) {
            format!("{self:e}")
        } else {
            self.to_string()
        }
    }
}

macro_rules! shown_as_display {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
shown_as_display!(i64, u64, usize, &str, String);

/// Checks `lrs` and `losses` as a sweep: same length, LRs finite, positive and strictly increasing.
///
/// Losses may hold NaN or infinity (an exploded point); the callers decide what that means.
pub(crate) fn check_sweep<L: Copy + Into<f64>, F>(lrs: &[L], losses: &[F]) -> Result<()> {
    if lrs.len() != losses.len() {
        return Err(Error::Length { name: "lrs", other: "losses", len: lrs.len(), other_len: losses.len() });
    }
    // Above the one before (0 for the first) and below infinity: "> 0" comes with the first. A
    // pass with `&`, not `&&`, has no branch per LR and runs several at once; only a sweep that
    // fails it is walked again, to name the first bad LR.
    let good = |prev: f64, lr: f64| (lr > prev) & (lr < f64::INFINITY);
    let first = lrs.first().is_none_or(|&lr| good(0.0, lr.into()));
    if first && lrs.iter().zip(&lrs[1.min(lrs.len())..]).fold(true, |ok, (&a, &b)| ok & good(a.into(), b.into())) {
        return Ok(());
    }
    let mut prev = 0.0;
    for (index, &lr) in lrs.iter().enumerate() {
        let lr = lr.into();
        if !good(prev, lr) {
            return Err(bad_lr(index, lr, prev));
        }
        prev = lr;
    }
    Ok(())
}

#[cold]
fn bad_lr(index: usize, lr: f64, prev: f64) -> Error {
    if !(lr.is_finite() && lr > 0.0) {
        Error::Element { name: "lrs", index, expected: "finite and > 0", value: lr.shown() }
    } else {
        Error::Element {
            name: "lrs",
            index,
            expected: "strictly greater than the previous LR",
            value: format!("{lr} after {prev}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_parameter_and_value() {
        assert_eq!(param("alpha", "in (0, 1]", 1.5).to_string(), "alpha must be in (0, 1], got 1.5");
        assert_eq!(param("factor", "in [1, 1e6]", 1e-300).to_string(), "factor must be in [1, 1e6], got 1e-300");
        assert_eq!(
            param("threshold", "finite and > 1", f64::INFINITY).to_string(),
            "threshold must be finite and > 1, got inf"
        );
        assert_eq!(
            param("patience", ">= 1", 2f64.powi(70)).to_string(),
            "patience must be >= 1, got 1.1805916207174113e21"
        );
        let e = check_sweep(&[1e-3, 1e-3], &[1.0, 1.0]).unwrap_err();
        assert!(e.to_string().starts_with("lrs[1] must be strictly greater"), "{e}");
        let e = check_sweep(&[1e-3, f64::NAN], &[1.0, 1.0]).unwrap_err();
        assert_eq!(e.to_string(), "lrs[1] must be finite and > 0, got NaN");
        let e = check_sweep(&[1e-3], &[1.0, 1.0]).unwrap_err();
        assert_eq!(e.to_string(), "lrs and losses must have the same length, got 1 and 2");
        assert!(check_sweep::<f64, f64>(&[], &[]).is_ok());
        assert!(check_sweep(&[1e-3_f32, 1e-2], &[f32::NAN, 1.0]).is_ok());
    }
}
