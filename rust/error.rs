//! The one error type of the core: every message names the parameter and the bad value.

/// An invalid argument given to a core function.
///
/// The Python glue maps every variant to `ValueError` with the `Display` text.
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
pub(crate) fn param(name: &'static str, expected: &'static str, value: impl std::fmt::Display) -> Error {
    Error::Param { name, expected, value: value.to_string() }
}

/// Checks `lrs` and `losses` as a sweep: same length, LRs finite, positive and strictly increasing.
///
/// Losses may hold NaN or infinity (an exploded point); the callers decide what that means.
pub(crate) fn check_sweep<L: Copy + Into<f64>, F>(lrs: &[L], losses: &[F]) -> Result<()> {
    if lrs.len() != losses.len() {
        return Err(Error::Length { name: "lrs", other: "losses", len: lrs.len(), other_len: losses.len() });
    }
    let mut prev = 0.0_f64;
    for (index, &lr) in lrs.iter().enumerate() {
        let lr: f64 = lr.into();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::Element { name: "lrs", index, expected: "finite and > 0", value: lr.to_string() });
        }
        if index > 0 && lr <= prev {
            return Err(Error::Element {
                name: "lrs",
                index,
                expected: "strictly greater than the previous LR",
                value: format!("{lr} after {prev}"),
            });
        }
        prev = lr;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_parameter_and_value() {
        assert_eq!(param("alpha", "in (0, 1]", 1.5).to_string(), "alpha must be in (0, 1], got 1.5");
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
