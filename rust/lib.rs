//! lrfind's numerical core: the LR range test (Leslie Smith, 2017) over plain slices.
//!
//! Sweep and schedule generation, streaming EMA smoothing, divergence detection, log-space
//! gradients, suggestions, diagnosis, and all of it over many sweeps in parallel. Pure Rust:
//! the Python bindings live in `python.rs` behind the `python` feature.
#![deny(missing_docs)]

#[macro_use]
mod wide;

mod analyze;
mod auto;
mod batch;
mod cancel;
mod csv;
mod diagnose;
mod diverge;
mod error;
mod gradient;
mod json;
mod kernel;
mod schedule;
mod smooth;
mod suggest;
mod sweep;

#[cfg(feature = "python")]
mod python;

pub use analyze::{analyze, analyze_cancellable, Analysis, AnalyzeConfig, SuggestOn};
pub use auto::{AutoParams, AutoReading, Confidence};
pub use batch::{analyze_batch, analyze_batch_cancellable, analyze_texts, BatchAnalysis, SweepTexts};
pub use cancel::Cancel;
pub use csv::{csv_blocks, csv_rows, CsvColumn};
pub use diagnose::{Arch, DiagnoseConfig, Diagnosis, DiagnosisKind};
pub use diverge::{detect, DivergenceConfig, DivergenceDetector, StopReason, Watch};
pub use error::{Error, Result};
pub use gradient::log_gradient;
pub use json::{json_blocks, JsonField};
pub use schedule::{OneCycle, WarmupCosine};
pub use smooth::{ema, Ema};
pub use suggest::{set_detector, suggest, suggest_cancellable, Method, Param, Reason, Space, Suggestion, METHOD_NAMES};
pub use sweep::{sweep_lrs, SweepMode};
