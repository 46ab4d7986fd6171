//! The PyO3 glue, `lrfind._core`: the only file that knows Python and numpy.
//!
//! Each function extracts numpy buffers (float32 or float64, 1-D, contiguous; lists are
//! converted), releases the GIL around the core call, and maps core errors to `ValueError`.

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use numpy::{
    IntoPyArray, PyArray1, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyTuple};

use crate::{
    Analysis as CoreAnalysis, AnalyzeConfig, Cancel, Diagnosis as CoreDiagnosis, DiagnosisKind, DivergenceConfig,
    Error, Method, Param, StopReason, Suggestion as CoreSuggestion, SweepMode,
};

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        match e {
            Error::Type { .. } => PyTypeError::new_err(e.to_string()),
            Error::Interrupted => PyKeyboardInterrupt::new_err(()),
            e => PyValueError::new_err(e.to_string()),
        }
    }
}

/// Calls on inputs of at least this many points run in a helper thread while the calling
/// thread watches for Ctrl-C; smaller calls take milliseconds, less than starting a thread.
const WATCH_FROM_POINTS: usize = 1 << 20;

/// How often the calling thread looks for a pending signal while a long call runs.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs core work on `points` points with the GIL released. A panic becomes a `RuntimeError`,
/// never a `PanicException`. Long work can be interrupted: the calling thread runs Python's
/// signal handlers every `SIGNAL_POLL`, and when one raises (`KeyboardInterrupt` on Ctrl-C)
/// it cancels the work, which stops within milliseconds, and returns that exception.
fn detached<T: Send>(py: Python<'_>, points: usize, f: impl FnOnce(&Cancel) -> crate::Result<T> + Send) -> PyResult<T> {
    let cancel = Cancel::new();
    let work = || catch_unwind(AssertUnwindSafe(|| f(&cancel)));
    let mut raised = None;
    let outcome = if points < WATCH_FROM_POINTS {
        py.detach(work)
    } else {
        py.detach(|| {
            std::thread::scope(|scope| {
                let (done, finished) = mpsc::channel();
                scope.spawn(move || done.send(work()));
                loop {
                    match finished.recv_timeout(SIGNAL_POLL) {
                        Ok(outcome) => return outcome,
                        Err(mpsc::RecvTimeoutError::Timeout) if raised.is_none() => {
                            // Signal handlers only run on the main thread: elsewhere this is a no-op.
                            if let Err(e) = Python::attach(|py| py.check_signals()) {
                                raised = Some(e);
                                cancel.cancel();
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // The worker cannot drop the sender without sending: `work` catches panics.
                        Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Box::new("no result")),
                    }
                }
            })
        })
    };
    if let Some(e) = raised {
        return Err(e);
    }
    outcome
        .map_err(|_| PyRuntimeError::new_err("lrfind internal error: the Rust core panicked; please report this"))?
        .map_err(PyErr::from)
}

/// The name of a Python argument, carried by the type of its extractor, so that an argument
/// of the wrong type is an error that names it (PyO3 only adds the name as a note).
trait ArgName {
    const NAME: &'static str;
}

macro_rules! arg_names {
    ($($ty:ident = $name:literal),* $(,)?) => {$(
        struct $ty;
        impl ArgName for $ty {
            const NAME: &'static str = $name;
        }
    )*};
}

arg_names!(
    MinLr = "min_lr",
    MaxLr = "max_lr",
    BaseLr = "base_lr",
    NumSteps = "num_steps",
    TotalSteps = "total_steps",
    WarmupSteps = "warmup_steps",
    Step = "step",
    PctStart = "pct_start",
    Mode = "mode",
    Alpha = "alpha",
    Debias = "debias",
    Threshold = "threshold",
    Watch = "watch",
    Patience = "patience",
    MinSteps = "min_steps",
    Value = "x",
    Loss = "loss",
    Confidence = "confidence",
    MethodName = "method",
);

/// `repr(ob)`, cut to 60 characters: enough to recognise, never a wall of text.
fn short_repr(ob: &Bound<'_, PyAny>) -> String {
    let text = ob.repr().map(|r| r.to_string()).unwrap_or_else(|_| "<unprintable>".into());
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

/// A float argument: any real number; an int too large for a float is +-inf (so the core's
/// range check names the parameter) instead of an `OverflowError`.
struct Real<A>(f64, PhantomData<A>);

impl<A> Real<A> {
    const fn new(v: f64) -> Self {
        Real(v, PhantomData)
    }
}

impl<'a, 'py, A: ArgName> FromPyObject<'a, 'py> for Real<A> {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        real(A::NAME, &ob).map(Real::new)
    }
}

/// Whether `ob` is a Python or numpy bool, which converts to 1 or 0 but is no number a user means.
fn is_bool(ob: &Bound<'_, PyAny>) -> bool {
    ob.get_type().name().is_ok_and(|n| n == "bool" || n == "bool_")
}

/// `ob` as a float, naming `name` when it is not a number (a bool is not one).
fn real(name: &str, ob: &Bound<'_, PyAny>) -> PyResult<f64> {
    if is_bool(ob) {
        return Err(PyTypeError::new_err(format!("{name} must be a number, got {}", short_repr(ob))));
    }
    match ob.extract::<f64>() {
        Ok(v) => Ok(v),
        Err(e) if e.is_instance_of::<PyOverflowError>(ob.py()) => {
            Ok(if ob.lt(0)? { f64::NEG_INFINITY } else { f64::INFINITY })
        }
        Err(_) => Err(PyTypeError::new_err(format!("{name} must be a number, got {}", short_repr(ob)))),
    }
}

/// An integer argument (a Python int or anything with `__index__`); a float is a `TypeError`
/// and an int outside the 64-bit range a `ValueError`, both naming the argument.
struct Whole<A>(i64, PhantomData<A>);

impl<A> Whole<A> {
    const fn new(v: i64) -> Self {
        Whole(v, PhantomData)
    }
}

impl<'a, 'py, A: ArgName> FromPyObject<'a, 'py> for Whole<A> {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if is_bool(&ob) {
            return Err(PyTypeError::new_err(format!("{} must be an integer, got {}", A::NAME, short_repr(&ob))));
        }
        match ob.extract::<i64>() {
            Ok(v) => Ok(Whole::new(v)),
            Err(e) if e.is_instance_of::<PyOverflowError>(ob.py()) => Err(PyValueError::new_err(format!(
                "{} must be within the 64-bit integer range, got {}",
                A::NAME,
                short_repr(&ob)
            ))),
            Err(_) => Err(PyTypeError::new_err(format!("{} must be an integer, got {}", A::NAME, short_repr(&ob)))),
        }
    }
}

impl<A: ArgName> Whole<A> {
    /// The value as a count of at least `min` (0 or 1), naming the parameter otherwise.
    fn count(&self, min: usize) -> PyResult<usize> {
        let expected = if min == 0 { ">= 0" } else { ">= 1" };
        usize::try_from(self.0)
            .ok()
            .filter(|&v| v >= min)
            .ok_or_else(|| crate::error::param(A::NAME, expected, self.0).into())
    }
}

/// A `str` argument.
struct Text<A>(String, PhantomData<A>);

impl<A> Text<A> {
    fn new(v: &str) -> Self {
        Text(v.to_string(), PhantomData)
    }
}

impl<'a, 'py, A: ArgName> FromPyObject<'a, 'py> for Text<A> {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<String>() {
            Ok(v) => Ok(Text(v, PhantomData)),
            Err(_) => Err(PyTypeError::new_err(format!("{} must be a str, got {}", A::NAME, short_repr(&ob)))),
        }
    }
}

/// A `bool` argument (numpy's bool too).
struct Flag<A>(bool, PhantomData<A>);

impl<A> Flag<A> {
    const fn new(v: bool) -> Self {
        Flag(v, PhantomData)
    }
}

impl<'a, 'py, A: ArgName> FromPyObject<'a, 'py> for Flag<A> {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        match ob.extract::<bool>() {
            Ok(v) => Ok(Flag::new(v)),
            Err(_) => Err(PyTypeError::new_err(format!("{} must be a bool, got {}", A::NAME, short_repr(&ob)))),
        }
    }
}

/// A read-only float32 or float64 vector borrowed from numpy.
enum Floats<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

impl Floats<'_> {
    fn len(&self) -> usize {
        match self {
            Floats::F64(a) => a.len(),
            Floats::F32(a) => a.len(),
        }
    }
}

/// `obj` as a 1-D contiguous ndarray whose dtype kind (numpy's letter) is one of `kinds`: the
/// one rule for every array argument. The callers use a native float32/float64 (int64 for
/// offsets) array as it is and copy other numeric dtypes, non-native byte order, misaligned views
/// and lists. Anything else (text, objects, complex numbers, ragged lists, a scalar or None) is
/// a `TypeError`; a strided view or another number of dimensions is a `ValueError`; both name
/// `name`.
fn numeric_array<'py>(
    name: &str,
    obj: &Bound<'py, PyAny>,
    kinds: &str,
    what: &str,
) -> PyResult<Bound<'py, PyUntypedArray>> {
    let py = obj.py();
    let np = py.import("numpy")?;
    let arr = match obj.cast::<PyUntypedArray>() {
        Ok(a) => a.clone(),
        Err(_) => {
            np.call_method1("asarray", (obj,)).ok().and_then(|a| a.cast_into::<PyUntypedArray>().ok()).ok_or_else(
                || PyTypeError::new_err(format!("{name} must be a 1-D array of {what}, got {}", short_repr(obj))),
            )?
        }
    };
    if arr.ndim() == 0 {
        return Err(PyTypeError::new_err(format!("{name} must be a 1-D array of {what}, got {}", short_repr(obj))));
    }
    if arr.ndim() != 1 {
        return Err(PyValueError::new_err(format!("{name} must be 1-D, got an array of shape {:?}", arr.shape())));
    }
    if !arr.is_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be contiguous, got a strided view; pass np.ascontiguousarray({name})"
        )));
    }
    // A view into a byte buffer (a memory-mapped .npz member, np.frombuffer at an odd offset)
    // can be misaligned, which a Rust slice cannot be: it is copied.
    let arr = if arr.getattr("flags")?.getattr("aligned")?.extract::<bool>()? {
        arr
    } else {
        arr.call_method0("copy")?.cast_into::<PyUntypedArray>()?
    };
    let kind = char::from(arr.dtype().kind());
    if !kinds.contains(kind) && !arr.is_empty() {
        return Err(PyTypeError::new_err(format!("{name} must hold {what}, got an array of dtype {}", arr.dtype())));
    }
    Ok(arr)
}

fn floats<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<Floats<'py>> {
    let arr = numeric_array(name, obj, "biuf", "real numbers")?;
    if let Ok(a) = arr.cast::<PyArray1<f64>>() {
        return Ok(Floats::F64(a.try_readonly()?));
    }
    if let Ok(a) = arr.cast::<PyArray1<f32>>() {
        return Ok(Floats::F32(a.try_readonly()?));
    }
    let converted = arr.call_method1("astype", ("float64",))?;
    Ok(Floats::F64(converted.cast_into::<PyArray1<f64>>()?.try_readonly()?))
}

fn int64s<'py>(name: &str, obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, i64>> {
    let arr = numeric_array(name, obj, "iu", "integers")?;
    if let Ok(a) = arr.cast::<PyArray1<i64>>() {
        return Ok(a.try_readonly()?);
    }
    if let Ok(a) = arr.cast::<PyArray1<u64>>() {
        // A cast to int64 would wrap these to negative values, and the error would name those.
        if let Some(&big) = a.try_readonly()?.as_array().iter().find(|&&v| v > i64::MAX as u64) {
            return Err(PyValueError::new_err(format!("{name} must be below 2**63, got {big}")));
        }
    }
    let converted = arr.call_method1("astype", ("int64",))?;
    Ok(converted.cast_into::<PyArray1<i64>>()?.try_readonly()?)
}

/// Calls `$body` with `$a` and `$b` bound to the two vectors' slices, whatever their dtypes.
macro_rules! with_slices {
    ($x:expr, $y:expr, |$a:ident, $b:ident| $body:expr) => {
        match (&$x, &$y) {
            (Floats::F64(x), Floats::F64(y)) => {
                let ($a, $b) = (x.as_slice()?, y.as_slice()?);
                $body
            }
            (Floats::F64(x), Floats::F32(y)) => {
                let ($a, $b) = (x.as_slice()?, y.as_slice()?);
                $body
            }
            (Floats::F32(x), Floats::F64(y)) => {
                let ($a, $b) = (x.as_slice()?, y.as_slice()?);
                $body
            }
            (Floats::F32(x), Floats::F32(y)) => {
                let ($a, $b) = (x.as_slice()?, y.as_slice()?);
                $body
            }
        }
    };
}

/// `repr(v)`, or a placeholder when even that fails.
fn repr(v: &Bound<'_, PyAny>) -> String {
    v.repr().map(|r| r.to_string()).unwrap_or_else(|_| "<unprintable>".into())
}

/// A keyword argument value as the core's method parameters take it.
enum OwnedParam {
    Num(f64),
    Str(String),
}

impl OwnedParam {
    fn extract(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Self> {
        if v.is_instance_of::<PyBool>() {
            Ok(OwnedParam::Num(if v.extract::<bool>()? { 1.0 } else { 0.0 }))
        } else if v.is_instance_of::<PyString>() {
            Ok(OwnedParam::Str(v.extract()?))
        } else if v.is_instance_of::<PyInt>() || v.is_instance_of::<PyFloat>() || v.hasattr("__float__")? {
            Ok(OwnedParam::Num(real(name, v)?))
        } else {
            Err(PyTypeError::new_err(format!("{name} must be a number, bool or str, got {}", v.repr()?)))
        }
    }

    fn as_param(&self) -> Param<'_> {
        match self {
            OwnedParam::Num(v) => Param::Num(*v),
            OwnedParam::Str(s) => Param::Str(s),
        }
    }
}

fn method_from(name: &str, params: Option<&Bound<'_, PyDict>>, detector: DivergenceConfig) -> PyResult<Method> {
    let mut owned = Vec::new();
    if let Some(params) = params {
        for (k, v) in params.iter() {
            let key: String = k.extract()?;
            if key != "method" {
                owned.push((key.clone(), OwnedParam::extract(&key, &v)?));
            }
        }
    }
    let refs: Vec<(&str, Param<'_>)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_param())).collect();
    Ok(Method::from_params(name, &refs, detector)?)
}

/// Parses `methods`: None (every method), a name, a sequence of names, or a mapping from a label
/// to that method's parameters (with an optional `"method"` key when the label is not a name).
fn methods_from(methods: Option<&Bound<'_, PyAny>>, detector: DivergenceConfig) -> PyResult<Vec<(String, Method)>> {
    let Some(methods) = methods else {
        return crate::METHOD_NAMES
            .iter()
            .map(|n| Ok((n.to_string(), Method::from_params(n, &[], detector)?)))
            .collect();
    };
    if let Ok(name) = methods.extract::<String>() {
        return Ok(vec![(name.clone(), method_from(&name, None, detector)?)]);
    }
    if let Ok(map) = methods.cast::<PyDict>() {
        let mut out = Vec::new();
        for (label, params) in map.iter() {
            let label: String = label.extract().map_err(|_| {
                PyTypeError::new_err(format!("methods' keys must be labels (str), got {}", repr(&label)))
            })?;
            let params = if params.is_none() {
                None
            } else {
                Some(
                    params
                        .cast::<PyDict>()
                        .map_err(|_| {
                            PyTypeError::new_err(format!(
                                "methods[{label:?}] must be a dict of the method's parameters or None, got {}",
                                repr(&params)
                            ))
                        })?
                        .clone(),
                )
            };
            let name = match params.as_ref().map(|p| p.get_item("method")).transpose()?.flatten() {
                Some(n) => n.extract::<String>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "methods[{label:?}][\"method\"] must be a method name, got {}",
                        repr(&n)
                    ))
                })?,
                None => label.clone(),
            };
            out.push((label, method_from(&name, params.as_ref(), detector)?));
        }
        return Ok(out);
    }
    let names: Vec<String> = methods.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "methods must be a name, a list of names or a dict of parameters, got {}",
            methods.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    names.into_iter().map(|n| Ok((n.clone(), method_from(&n, None, detector)?))).collect()
}

/// The keyword options of `analyze` and `analyze_batch`, parsed once by the core
/// (`AnalyzeConfig::set`), so their names, defaults and checks live in one place.
fn config_from(options: Option<&Bound<'_, PyDict>>) -> PyResult<(Vec<String>, AnalyzeConfig)> {
    let mut config = AnalyzeConfig::default();
    let mut methods = None;
    for (key, value) in options.into_iter().flat_map(|o| o.iter()) {
        let key: String = key.extract()?;
        match key.as_str() {
            "methods" => methods = Some(value),
            "arch" if value.is_none() => config.diagnose.arch = None,
            _ => {
                // An unknown keyword is named as such, whatever its value.
                let param = OwnedParam::extract(&key, &value).map_err(|e| {
                    match AnalyzeConfig::default().set(&key, Param::Num(f64::NAN)) {
                        Ok(false) => PyTypeError::new_err(format!("got an unexpected keyword argument {key:?}")),
                        _ => e,
                    }
                })?;
                if !config.set(&key, param.as_param())? {
                    return Err(PyTypeError::new_err(format!("got an unexpected keyword argument {key:?}")));
                }
            }
        }
    }
    // The explosion method's default rule is the analysis's own: parse methods last.
    let (labels, parsed) =
        methods_from(methods.as_ref().filter(|m| !m.is_none()), config.detector)?.into_iter().unzip();
    config.methods = parsed;
    config.validate()?;
    Ok((labels, config))
}

/// A suggested learning rate; `lr` and `index` are None when the method has no suggestion, and
/// `reason` says why either way.
#[pyclass(module = "lrfind._core", frozen, get_all)]
struct Suggestion {
    /// The suggested LR, or None.
    lr: Option<f64>,
    /// Index of the point it was read from (for minimum and explosion, the point whose LR was
    /// divided by factor), or None.
    index: Option<usize>,
    /// The method's name.
    method: String,
    /// Why, in words.
    reason: String,
    /// How sure the method is, in [0, 1] (auto only; None otherwise).
    confidence: Option<f64>,
    /// (low, high) LRs that should train about as well (auto only; None otherwise).
    range: Option<(f64, f64)>,
}

impl From<&CoreSuggestion> for Suggestion {
    fn from(s: &CoreSuggestion) -> Self {
        Suggestion {
            lr: s.lr,
            index: s.index,
            method: s.method.to_string(),
            reason: s.reason.to_string(),
            confidence: s.confidence,
            range: s.range,
        }
    }
}

#[pymethods]
impl Suggestion {
    fn __repr__(&self) -> String {
        let lr = self.lr.map_or("None".to_string(), |v| format!("{v:.3e}"));
        let index = self.index.map_or("None".to_string(), |v| v.to_string());
        format!("Suggestion(method={:?}, lr={lr}, index={index}, reason={:?})", self.method, self.reason)
    }
}

/// The verdict on a sweep: `kind` is one of good, flat, immediate_explosion, no_divergence,
/// noisy, too_short; `message` says what to do; `descent` is the (low, high) LRs over which the
/// loss falls, or None (not the range to train in: that is the suggestion's `range`);
/// `gives_lr` is False for flat and immediate_explosion, whose suggestion is no LR to train at.
#[pyclass(module = "lrfind._core", frozen, get_all)]
struct Diagnosis {
    /// The kind of curve.
    kind: &'static str,
    /// The human message.
    message: String,
    /// (low, high) LRs over which the loss falls, or None.
    descent: Option<(f64, f64)>,
    /// Whether the sweep gives an LR to train at (False: flat or immediate_explosion).
    gives_lr: bool,
}

impl From<&CoreDiagnosis> for Diagnosis {
    fn from(d: &CoreDiagnosis) -> Self {
        Diagnosis { kind: d.kind.name(), message: d.message(), descent: d.descent, gives_lr: d.kind.gives_lr() }
    }
}

#[pymethods]
impl Diagnosis {
    fn __repr__(&self) -> String {
        let descent = self.descent.map_or("None".to_string(), |(lo, hi)| format!("({lo:.3e}, {hi:.3e})"));
        format!(
            "Diagnosis(kind={:?}, descent={descent}, gives_lr={})",
            self.kind,
            if self.gives_lr { "True" } else { "False" }
        )
    }
}

/// The full reading of one sweep (see `analyze`).
#[pyclass(module = "lrfind._core", frozen, get_all)]
struct Analysis {
    /// Index of the point that stopped the sweep, -1 if none; the curve is the points before it.
    stop_index: i64,
    /// "nan", "inf", "threshold", or None.
    stop_reason: Option<&'static str>,
    /// EMA of the losses before the stop.
    smoothed: Py<PyArray1<f64>>,
    /// The lag-free curve the suggestions read (auto's smoothing) before the stop.
    trend: Py<PyArray1<f64>>,
    /// np.gradient of the suggestion series before the stop against ln(lr).
    gradient: Py<PyArray1<f64>>,
    /// One Suggestion per method label, in order; the first is the main one.
    suggestions: Py<PyDict>,
    /// The main method's LR, or None.
    suggested_lr: Option<f64>,
    /// Lowest loss of the suggestion series before the stop (NaN if none).
    min_loss: f64,
    /// LR at that loss (NaN if none).
    lr_at_min: f64,
    /// The verdict.
    diagnosis: Py<Diagnosis>,
}

#[pymethods]
impl Analysis {
    fn __repr__(&self) -> String {
        let lr = self.suggested_lr.map_or("None".to_string(), |v| format!("{v:.3e}"));
        let reason = self.stop_reason.map_or("None".to_string(), |r| format!("{r:?}"));
        format!("Analysis(stop_index={}, stop_reason={reason}, suggested_lr={lr})", self.stop_index)
    }
}

/// Column-wise results of `analyze_batch`: numpy arrays of length N, one entry per sweep.
#[pyclass(module = "lrfind._core", frozen, get_all)]
struct BatchAnalysis {
    /// Index of the point that stopped each sweep, -1 if none (int64).
    stop_index: Py<PyArray1<i64>>,
    /// Stop reason codes (uint8): 0 none, then STOP_REASONS[code - 1].
    stop_reason: Py<PyArray1<u8>>,
    /// Diagnosis codes (uint8): DIAGNOSES[code].
    diagnosis: Py<PyArray1<u8>>,
    /// Lowest loss before the stop (NaN if none).
    min_loss: Py<PyArray1<f64>>,
    /// LR at that loss (NaN if none).
    lr_at_min: Py<PyArray1<f64>>,
    /// Low end of the diagnosis's descent, where the loss falls (NaN if none).
    descent_low: Py<PyArray1<f64>>,
    /// High end of the descent (NaN if none).
    descent_high: Py<PyArray1<f64>>,
    /// Method label -> suggested LRs (NaN if none).
    lr: Py<PyDict>,
    /// Method label -> suggestion indices (-1 if none).
    index: Py<PyDict>,
    /// Method label -> confidence in [0, 1] (NaN if none or the method gives none).
    confidence: Py<PyDict>,
    /// Method label -> low end of the suggestion's range, the LRs to train in (NaN if none).
    range_low: Py<PyDict>,
    /// Method label -> high end of the suggestion's range (NaN if none).
    range_high: Py<PyDict>,
}

#[pymethods]
impl BatchAnalysis {
    /// Names of the stop reason codes 1, 2, 3 ("nan", "inf", "threshold").
    #[classattr]
    #[allow(non_snake_case)]
    fn STOP_REASONS(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        PyTuple::new(py, StopReason::ALL.iter().map(|r| r.name()))
    }

    /// Names of the diagnosis codes 0 to 5 ("good", "flat", ...).
    #[classattr]
    #[allow(non_snake_case)]
    fn DIAGNOSES(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        PyTuple::new(py, DiagnosisKind::ALL.iter().map(|d| d.name()))
    }

    /// Per diagnosis code: whether that kind gives an LR to train at (False: flat,
    /// immediate_explosion).
    #[classattr]
    #[allow(non_snake_case)]
    fn GIVES_LR(py: Python<'_>) -> PyResult<Bound<'_, PyTuple>> {
        PyTuple::new(py, DiagnosisKind::ALL.iter().map(|d| d.gives_lr()))
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.stop_index.bind(py).len()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!("BatchAnalysis(sweeps={})", self.__len__(py))
    }
}

/// Exponential moving average; `alpha` is the weight of the newest value (the seed's
/// `smooth_factor`). `debias=True` is fastai's debiased form. The first output equals the first
/// input either way.
#[pyclass(module = "lrfind._core")]
struct Ema(crate::Ema);

#[pymethods]
impl Ema {
    #[new]
    #[pyo3(signature = (alpha=Real::new(0.05), debias=Flag::new(false)), text_signature = "(alpha=0.05, debias=False)")]
    fn new(alpha: Real<Alpha>, debias: Flag<Debias>) -> PyResult<Self> {
        Ok(Ema(crate::Ema::new(alpha.0, debias.0)?))
    }

    /// Adds `x` and returns the smoothed value.
    fn update(&mut self, x: Real<Value>) -> f64 {
        self.0.update(x.0)
    }

    /// The current smoothed value, None before the first update.
    #[getter]
    fn value(&self) -> Option<f64> {
        self.0.value()
    }

    /// How many values were added.
    #[getter]
    fn count(&self) -> u64 {
        self.0.count()
    }
}

/// Streaming divergence detector and loss tracker: `update(loss)` returns True when the sweep
/// must stop. Stops on NaN ("nan"), +-inf ("inf"), or when the watched series ("raw" or
/// "smoothed") exceeds `best + (threshold - 1) * max(|best|, 1.19e-7 * peak)` ("threshold";
/// `peak` is the largest |loss| seen; for a positive best this is `threshold * best`, and it
/// stays meaningful for negative losses and a best of exactly 0) on `patience` consecutive
/// steps, counting only from step `min_steps`. `stop_index` is the explosion point (the first
/// of the violating run): the curve is the points before it. The settings are checked as
/// `analyze` checks them.
#[pyclass(module = "lrfind._core")]
struct DivergenceDetector(crate::DivergenceDetector);

#[pymethods]
impl DivergenceDetector {
    #[new]
    #[pyo3(signature = (threshold=Real::new(10.0), watch=Text::new("raw"), alpha=Real::new(0.05), patience=Real::new(1.0), min_steps=Real::new(0.0), debias=Flag::new(false)), text_signature = "(threshold=10.0, watch=\"raw\", alpha=0.05, patience=1, min_steps=0, debias=False)")]
    fn new(
        threshold: Real<Threshold>,
        watch: Text<Watch>,
        alpha: Real<Alpha>,
        patience: Real<Patience>,
        min_steps: Real<MinSteps>,
        debias: Flag<Debias>,
    ) -> PyResult<Self> {
        let mut config = DivergenceConfig::default();
        let debias = if debias.0 { 1.0 } else { 0.0 };
        for (key, value) in [
            ("threshold", Param::Num(threshold.0)),
            ("watch", Param::Str(&watch.0)),
            ("alpha", Param::Num(alpha.0)),
            ("patience", Param::Num(patience.0)),
            ("min_steps", Param::Num(min_steps.0)),
            ("debias", Param::Num(debias)),
        ] {
            crate::set_detector(&mut config, key, value)?;
        }
        Ok(DivergenceDetector(crate::DivergenceDetector::new(config)?))
    }

    /// Adds the next step's loss; True means stop (and stays True).
    fn update(&mut self, loss: Real<Loss>) -> bool {
        self.0.update(loss.0)
    }
    /// Whether the sweep has stopped.
    #[getter]
    fn stopped(&self) -> bool {
        self.0.stop().is_some()
    }

    /// Index of the explosion point, or None.
    #[getter]
    fn stop_index(&self) -> Option<usize> {
        self.0.stop().map(|(i, _)| i)
    }

    /// "nan", "inf", "threshold", or None.
    #[getter]
    fn stop_reason(&self) -> Option<&'static str> {
        self.0.stop().map(|(_, r)| r.name())
    }

    /// Lowest watched value so far, or None.
    #[getter]
    fn best(&self) -> Option<f64> {
        self.0.best()
    }

    /// EMA of the losses so far (whatever `watch` is), or None.
    #[getter]
    fn smoothed(&self) -> Option<f64> {
        self.0.smoothed()
    }

    /// Number of losses seen before the stop decision.
    #[getter]
    fn count(&self) -> usize {
        self.0.count()
    }
}

/// The `num_steps` LRs of a range test from `min_lr` to `max_lr` (both exact), float64.
/// `mode="exp"` (geometric, the default) or `"linear"`.
#[pyfunction]
#[pyo3(signature = (min_lr, max_lr, num_steps, mode=Text::new("exp")), text_signature = "(min_lr, max_lr, num_steps, mode=\"exp\")")]
fn sweep_lrs<'py>(
    py: Python<'py>,
    min_lr: Real<MinLr>,
    max_lr: Real<MaxLr>,
    num_steps: Whole<NumSteps>,
    mode: Text<Mode>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let mode = SweepMode::parse(&mode.0)?;
    let n =
        usize::try_from(num_steps.0).map_err(|_| crate::error::param("num_steps", "in [2, 100000000]", num_steps.0))?;
    Ok(detached(py, 0, |_| crate::sweep_lrs(min_lr.0, max_lr.0, n, mode))?.into_pyarray(py))
}

/// LRs of steps 0..total_steps: linear warmup from 0 to `base_lr` over `warmup_steps`, then
/// cosine decay to `min_lr` (default 0.0) at `total_steps` (the seed's `warmup_cosine_schedule`).
#[pyfunction]
#[pyo3(signature = (total_steps, warmup_steps, base_lr, min_lr=Real::new(0.0)), text_signature = "(total_steps, warmup_steps, base_lr, min_lr=0.0)")]
fn warmup_cosine<'py>(
    py: Python<'py>,
    total_steps: Whole<TotalSteps>,
    warmup_steps: Whole<WarmupSteps>,
    base_lr: Real<BaseLr>,
    min_lr: Real<MinLr>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let s = crate::WarmupCosine::new(total_steps.0, warmup_steps.0, base_lr.0, min_lr.0)?;
    Ok(s.to_vec()?.into_pyarray(py))
}

/// The warmup + cosine LR at one `step` (>= 0; past `total_steps` it stays at its end value:
/// `min_lr`, or `base_lr` when `warmup_steps == total_steps`).
#[pyfunction]
#[pyo3(signature = (step, total_steps, warmup_steps, base_lr, min_lr=Real::new(0.0)), text_signature = "(step, total_steps, warmup_steps, base_lr, min_lr=0.0)")]
fn warmup_cosine_at(
    step: Whole<Step>,
    total_steps: Whole<TotalSteps>,
    warmup_steps: Whole<WarmupSteps>,
    base_lr: Real<BaseLr>,
    min_lr: Real<MinLr>,
) -> PyResult<f64> {
    let schedule = crate::WarmupCosine::new(total_steps.0, warmup_steps.0, base_lr.0, min_lr.0)?;
    Ok(schedule.at(step.count(0)? as u64))
}

/// LRs of steps 0..total_steps of the seed's one-cycle: linear from `base_lr` to `max_lr` over
/// the first `pct_start` (default 0.3) of the steps, then `max_lr * (1 - p) ** 2` down to 0.
#[pyfunction]
#[pyo3(signature = (total_steps, base_lr, max_lr, pct_start=Real::new(0.3)), text_signature = "(total_steps, base_lr, max_lr, pct_start=0.3)")]
fn one_cycle<'py>(
    py: Python<'py>,
    total_steps: Whole<TotalSteps>,
    base_lr: Real<BaseLr>,
    max_lr: Real<MaxLr>,
    pct_start: Real<PctStart>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    Ok(crate::OneCycle::new(total_steps.0, base_lr.0, max_lr.0, pct_start.0)?.to_vec()?.into_pyarray(py))
}

/// The one-cycle LR at one `step` (>= 0; past `total_steps` it stays at 0).
#[pyfunction]
#[pyo3(signature = (step, total_steps, base_lr, max_lr, pct_start=Real::new(0.3)), text_signature = "(step, total_steps, base_lr, max_lr, pct_start=0.3)")]
fn one_cycle_at(
    step: Whole<Step>,
    total_steps: Whole<TotalSteps>,
    base_lr: Real<BaseLr>,
    max_lr: Real<MaxLr>,
    pct_start: Real<PctStart>,
) -> PyResult<f64> {
    Ok(crate::OneCycle::new(total_steps.0, base_lr.0, max_lr.0, pct_start.0)?.at(step.count(0)? as u64))
}

/// The EMA-smoothed series of `values` (float32 or float64), float64; see `Ema`.
#[pyfunction]
#[pyo3(signature = (values, alpha=Real::new(0.05), debias=Flag::new(false)), text_signature = "(values, alpha=0.05, debias=False)")]
fn ema<'py>(
    py: Python<'py>,
    values: &Bound<'py, PyAny>,
    alpha: Real<Alpha>,
    debias: Flag<Debias>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let values = floats("values", values)?;
    let (alpha, debias) = (alpha.0, debias.0);
    let out = match &values {
        Floats::F64(v) => {
            let v = v.as_slice()?;
            detached(py, 0, |_| crate::ema(v, alpha, debias))?
        }
        Floats::F32(v) => {
            let v = v.as_slice()?;
            detached(py, 0, |_| crate::ema(v, alpha, debias))?
        }
    };
    Ok(out.into_pyarray(py))
}

/// The word for an `auto` confidence in [0, 1]: "high" from 0.7, "low" below 0.4, else "medium".
#[pyfunction]
fn confidence_level(confidence: Real<Confidence>) -> PyResult<&'static str> {
    let c = confidence.0;
    if !(0.0..=1.0).contains(&c) {
        return Err(crate::error::param("confidence", "a number in [0, 1]", c).into());
    }
    Ok(crate::Confidence::from_score(c).name())
}

/// `np.gradient(losses, np.log(lrs))`: slope of the loss per e-fold of the LR, float64.
/// LRs must be positive and strictly increasing; at least 2 points.
#[pyfunction]
fn log_gradient<'py>(
    py: Python<'py>,
    lrs: &Bound<'py, PyAny>,
    losses: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (lrs, losses) = (floats("lrs", lrs)?, floats("losses", losses)?);
    let out = with_slices!(lrs, losses, |a, b| detached(py, 0, |_| crate::log_gradient(a, b))?);
    Ok(out.into_pyarray(py))
}

/// Suggests an LR from exactly the series given (raw or smoothed) with `method` and its
/// keyword parameters; see the package docs for each method's parameters and defaults.
#[pyfunction]
#[pyo3(signature = (lrs, losses, method=Text::new("auto"), **params), text_signature = "(lrs, losses, method=\"auto\", **params)")]
fn suggest(
    py: Python<'_>,
    lrs: &Bound<'_, PyAny>,
    losses: &Bound<'_, PyAny>,
    method: Text<MethodName>,
    params: Option<&Bound<'_, PyDict>>,
) -> PyResult<Suggestion> {
    let method = method_from(&method.0, params, DivergenceConfig::default())?;
    let (lrs, losses) = (floats("lrs", lrs)?, floats("losses", losses)?);
    let points = lrs.len();
    let s = with_slices!(lrs, losses, |a, b| detached(py, points, |cancel| crate::suggest_cancellable(
        a, b, &method, cancel
    ))?);
    Ok(Suggestion::from(&s))
}

fn analysis_to_py(py: Python<'_>, labels: &[String], a: CoreAnalysis) -> PyResult<Analysis> {
    let suggestions = PyDict::new(py);
    for (label, s) in labels.iter().zip(&a.suggestions) {
        suggestions.set_item(label, Suggestion::from(s))?;
    }
    Ok(Analysis {
        stop_index: a.stop.map_or(-1, |(i, _)| i as i64),
        stop_reason: a.stop.map(|(_, r)| r.name()),
        suggested_lr: a.suggested_lr(),
        min_loss: a.min_loss,
        lr_at_min: a.lr_at_min,
        diagnosis: Py::new(py, Diagnosis::from(&a.diagnosis))?,
        smoothed: a.smoothed.into_pyarray(py).unbind(),
        trend: a.trend.into_pyarray(py).unbind(),
        gradient: a.gradient.into_pyarray(py).unbind(),
        suggestions: suggestions.unbind(),
    })
}

/// Reads one sweep: stop, smoothed curve, gradient, suggestions and diagnosis. Keyword options
/// (defaults): methods (every method, auto first), threshold (10.0), watch ("raw"),
/// alpha (0.05), debias (False), patience (1), min_steps (0), suggest_on ("raw"), arch (None),
/// min_points (10), immediate_steps (5), flat_tol (0.02), noise_tol (0.25), improving_tail (0.1),
/// range_drop (0.2); see the package docs.
#[pyfunction]
#[pyo3(signature = (lrs, losses, **options))]
fn analyze(
    py: Python<'_>,
    lrs: &Bound<'_, PyAny>,
    losses: &Bound<'_, PyAny>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Analysis> {
    let (labels, config) = config_from(options)?;
    let (lrs, losses) = (floats("lrs", lrs)?, floats("losses", losses)?);
    let points = lrs.len();
    let a = with_slices!(lrs, losses, |x, y| detached(py, points, |cancel| crate::analyze_cancellable(
        x, y, &config, cancel
    ))?);
    analysis_to_py(py, &labels, a)
}

/// Reads N sweeps stored back to back in flat `lrs`, `losses` with int64 `offsets` (length
/// N + 1), in parallel with the GIL released; row i equals `analyze` on sweep i, with the same
/// keyword options.
#[pyfunction]
#[pyo3(signature = (lrs, losses, offsets, **options))]
fn analyze_batch(
    py: Python<'_>,
    lrs: &Bound<'_, PyAny>,
    losses: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<BatchAnalysis> {
    let (labels, config) = config_from(options)?;
    let (lrs, losses) = (floats("lrs", lrs)?, floats("losses", losses)?);
    let offsets = int64s("offsets", offsets)?;
    let offsets = offsets.as_slice()?;
    let points = lrs.len();
    let b = with_slices!(lrs, losses, |x, y| detached(py, points, |cancel| crate::analyze_batch_cancellable(
        x, y, offsets, &config, cancel
    ))?);
    let columns = |values: Vec<Vec<f64>>| -> PyResult<Py<PyDict>> {
        let dict = PyDict::new(py);
        for (label, v) in labels.iter().zip(values) {
            dict.set_item(label, v.into_pyarray(py))?;
        }
        Ok(dict.unbind())
    };
    let index = PyDict::new(py);
    for (label, i) in labels.iter().zip(b.index) {
        index.set_item(label, i.into_pyarray(py))?;
    }
    Ok(BatchAnalysis {
        stop_index: b.stop_index.into_pyarray(py).unbind(),
        stop_reason: b.stop_reason.into_pyarray(py).unbind(),
        diagnosis: b.diagnosis.into_pyarray(py).unbind(),
        min_loss: b.min_loss.into_pyarray(py).unbind(),
        lr_at_min: b.lr_at_min.into_pyarray(py).unbind(),
        descent_low: b.descent_low.into_pyarray(py).unbind(),
        descent_high: b.descent_high.into_pyarray(py).unbind(),
        lr: columns(b.lr)?,
        index: index.unbind(),
        confidence: columns(b.confidence)?,
        range_low: columns(b.range_low)?,
        range_high: columns(b.range_high)?,
    })
}

/// The texts `analyze_batch` leaves out, for reports that print them: (method label -> each
/// sweep's suggestion reason, each sweep's diagnosis message), as `analyze` gives them on that
/// sweep. Same arguments and keyword options as `analyze_batch`; in parallel, GIL released.
#[pyfunction]
#[pyo3(signature = (lrs, losses, offsets, **options))]
fn analyze_texts<'py>(
    py: Python<'py>,
    lrs: &Bound<'py, PyAny>,
    losses: &Bound<'py, PyAny>,
    offsets: &Bound<'py, PyAny>,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<(Bound<'py, PyDict>, Vec<String>)> {
    let (labels, config) = config_from(options)?;
    let (lrs, losses) = (floats("lrs", lrs)?, floats("losses", losses)?);
    let offsets = int64s("offsets", offsets)?;
    let offsets = offsets.as_slice()?;
    let points = lrs.len();
    let texts = with_slices!(lrs, losses, |x, y| detached(py, points, |cancel| crate::analyze_texts(
        x, y, offsets, &config, cancel
    ))?);
    let mut reasons: Vec<Vec<String>> = labels.iter().map(|_| Vec::with_capacity(texts.len())).collect();
    let mut messages = Vec::with_capacity(texts.len());
    for t in texts {
        for (column, reason) in reasons.iter_mut().zip(t.reasons) {
            column.push(reason);
        }
        messages.push(t.message);
    }
    let by_label = PyDict::new(py);
    for (label, column) in labels.iter().zip(reasons) {
        by_label.set_item(label, column)?;
    }
    Ok((by_label, messages))
}

/// One column of `csv_rows`, owned so that the rows are formatted with the GIL released.
enum OwnedColumn<'py> {
    Text(Vec<String>),
    Float(PyReadonlyArray1<'py, f64>),
    Int(PyReadonlyArray1<'py, i64>),
}

/// CSV rows of `columns` (lists of str, or 1-D numeric arrays, all of one length) as UTF-8
/// bytes, each row ended by a newline: text quoted as `csv.writer` does, floats as `repr` (NaN
/// and infinities empty), integers in decimal (negative ones empty). Formatted in parallel, GIL
/// released; bytes, not str, because a str of a million rows costs as much again to decode.
#[pyfunction]
fn csv_rows<'py>(py: Python<'py>, columns: Vec<Bound<'py, PyAny>>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let mut owned = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let name = format!("columns[{i}]");
        owned.push(if let Ok(list) = column.cast::<pyo3::types::PyList>() {
            OwnedColumn::Text(list.extract().map_err(|_| {
                let item = list.iter().find(|v| !v.is_instance_of::<PyString>());
                let item = item.map_or_else(|| "<unreadable>".into(), |v| short_repr(&v));
                PyTypeError::new_err(format!(
                    "{name} must be a list of str or a 1-D numeric array, got a list holding {item}"
                ))
            })?)
        } else if char::from(numeric_array(&name, column, "biuf", "numbers")?.dtype().kind()) == 'f' {
            match floats(&name, column)? {
                Floats::F64(a) => OwnedColumn::Float(a),
                Floats::F32(a) => OwnedColumn::Float(a.as_array().mapv(f64::from).into_pyarray(py).readonly()),
            }
        } else {
            OwnedColumn::Int(int64s(&name, column)?)
        });
    }
    let mut views = Vec::with_capacity(owned.len());
    for c in &owned {
        views.push(match c {
            OwnedColumn::Text(v) => crate::CsvColumn::Text(v),
            OwnedColumn::Float(a) => crate::CsvColumn::Float(a.as_slice()?),
            OwnedColumn::Int(a) => crate::CsvColumn::Int(a.as_slice()?),
        });
    }
    let blocks = detached(py, 0, |_| crate::csv_blocks(&views))?;
    bytes_of(py, &blocks)
}

/// The blocks back to back in one bytes object (one copy, no decoding).
fn bytes_of<'py>(py: Python<'py>, blocks: &[String]) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let len = blocks.iter().map(String::len).sum();
    pyo3::types::PyBytes::new_with(py, len, |buffer| {
        let mut at = 0;
        for block in blocks {
            buffer[at..at + block.len()].copy_from_slice(block.as_bytes());
            at += block.len();
        }
        Ok(())
    })
}

/// JSON objects, one per row of `fields`, as UTF-8 bytes, each written as `prefix + object +
/// end`: exactly what `json.dumps(row)` writes. `fields` maps each key to a dict of fields, a
/// list of str (or None: null), a 1-D float array (NaN and infinities: null), an integer array
/// (negative: null), a bool array, or a tuple of two float arrays (`[low, high]`, null unless
/// both are finite); every column holds one value per row. Formatted in parallel, GIL released.
#[pyfunction]
#[pyo3(signature = (fields, prefix = "", end = "\n"))]
fn json_rows<'py>(
    py: Python<'py>,
    fields: &Bound<'py, PyDict>,
    prefix: &str,
    end: &str,
) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
    let object = json_object(fields, "fields")?;
    let blocks = detached(py, 0, |_| crate::json_blocks(&object, prefix, end))?;
    bytes_of(py, &blocks)
}

fn json_object(dict: &Bound<'_, PyDict>, at: &str) -> PyResult<Vec<(String, crate::JsonField)>> {
    let mut object = Vec::with_capacity(dict.len());
    for (key, value) in dict.iter() {
        let Ok(key) = key.extract::<String>() else {
            return Err(PyTypeError::new_err(format!("{at} keys must be str, got {}", short_repr(&key))));
        };
        let field = json_field(&value, &format!("{at}[{key:?}]"))?;
        object.push((key, field));
    }
    Ok(object)
}

fn json_field(value: &Bound<'_, PyAny>, at: &str) -> PyResult<crate::JsonField> {
    use crate::JsonField;
    if let Ok(dict) = value.cast::<PyDict>() {
        return Ok(JsonField::Object(json_object(dict, at)?));
    }
    if let Ok(list) = value.cast::<pyo3::types::PyList>() {
        return list.extract().map(JsonField::Text).map_err(|_| {
            let item = list.iter().find(|v| !(v.is_none() || v.is_instance_of::<PyString>()));
            let item = item.map_or_else(|| "<unreadable>".into(), |v| short_repr(&v));
            PyTypeError::new_err(format!("{at} must be a list of str or None, got a list holding {item}"))
        });
    }
    if let Ok(pair) = value.cast::<PyTuple>() {
        if pair.len() != 2 {
            return Err(PyTypeError::new_err(format!("{at} must be a pair of float arrays, got {} items", pair.len())));
        }
        let end = |i: usize| -> PyResult<Vec<f64>> { float64s(&format!("{at}[{i}]"), &pair.get_item(i)?) };
        return Ok(JsonField::Pair(end(0)?, end(1)?));
    }
    match char::from(numeric_array(at, value, "biuf", "numbers")?.dtype().kind()) {
        'f' => Ok(JsonField::Float(float64s(at, value)?)),
        'b' => {
            let ints = value.call_method1("astype", ("int64",))?;
            Ok(JsonField::Bool(int64s(at, &ints)?.as_array().iter().map(|&v| v != 0).collect()))
        }
        _ => Ok(JsonField::Int(int64s(at, value)?.as_array().to_vec())),
    }
}

/// A float array argument as float64 values.
fn float64s(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    Ok(match floats(name, obj)? {
        Floats::F64(a) => a.as_array().to_vec(),
        Floats::F32(a) => a.as_array().iter().map(|&v| f64::from(v)).collect(),
    })
}

/// lrfind's Rust core.
#[pymodule]
mod _core {
    #[pymodule_export]
    use super::{
        analyze, analyze_batch, analyze_texts, confidence_level, csv_rows, ema, json_rows, log_gradient, one_cycle,
        one_cycle_at, suggest, sweep_lrs, warmup_cosine, warmup_cosine_at, Analysis, BatchAnalysis, Diagnosis,
        DivergenceDetector, Ema, Suggestion,
    };

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        use pyo3::types::PyModuleMethods;
        m.add("METHODS", crate::METHOD_NAMES.to_vec())?;
        Ok(())
    }
}
