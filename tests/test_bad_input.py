"""Random input at every public function: a valid result, a ValueError or a TypeError, never a
Rust panic, a crash, or a NaN the input did not hold."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lrfind

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(-5, 5),
    st.integers(-3, 200),
)
anything = st.one_of(numbers, st.text(max_size=5), st.none(), st.booleans(), st.lists(st.floats(), max_size=3))


@st.composite
def arrays(draw):
    """Arrays of any dtype, shape and layout, plus lists and junk."""
    kind = draw(st.sampled_from(["f64", "f32", "int", "bool", "2d", "strided", "list", "junk", "sweep"]))
    n = draw(st.integers(0, 40))
    if kind == "sweep":  # a valid sweep, so the deeper checks run too
        return 1e-6 * np.cumprod(np.full(n, 1.3))
    if kind == "junk":
        return draw(anything)
    if kind == "list":
        return draw(st.lists(st.floats(), max_size=n))
    dtype = {"f64": np.float64, "f32": np.float32, "int": np.int64, "bool": np.bool_}.get(kind, np.float64)
    shape = (n,) if kind != "2d" else (max(n // 4, 1), 4)
    a = draw(hnp.arrays(dtype, shape))
    return a[::2] if kind == "strided" else a


def check(call):
    """Accept a result or ValueError/TypeError; anything else (PanicException is a
    BaseException) fails the test."""
    try:
        return call()
    except (ValueError, TypeError) as e:
        assert str(e), "an error must say what is wrong"
        return None


def no_new_nan(out, *inputs):
    """Outputs may hold NaN only where an input did."""
    if isinstance(out, np.ndarray) and out.dtype.kind == "f" and np.isnan(out).any():
        assert any(isinstance(x, np.ndarray) and x.dtype.kind == "f" and np.isnan(x).any() for x in inputs)


suppress = [HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large]


@given(a=numbers, b=numbers, n=numbers, mode=anything)
@settings(max_examples=300, suppress_health_check=suppress)
def test_generators(a, b, n, mode):
    out = check(lambda: lrfind.sweep_lrs(a, b, n, mode))
    if out is not None:
        assert np.all(np.isfinite(out)) and np.all(np.diff(out) > 0)
    for fn, args in [
        (lrfind.warmup_cosine, (n, a, b)),
        (lrfind.warmup_cosine_at, (a, n, n, b, 0.0)),
        (lrfind.one_cycle, (n, a, b, 0.3)),
        (lrfind.one_cycle_at, (n, n, a, b)),
    ]:
        out = check(lambda fn=fn, args=args: fn(*args))
        if out is not None:
            assert np.all(np.isfinite(out)), (fn, args, out)


@given(values=arrays(), alpha=numbers, debias=anything, loss=numbers, params=st.lists(numbers, max_size=4))
@settings(max_examples=300, suppress_health_check=suppress)
def test_smoothing_and_detection(values, alpha, debias, loss, params):
    out = check(lambda: lrfind.ema(values, alpha, debias))
    no_new_nan(out, values)
    ema = check(lambda: lrfind.Ema(alpha))
    if ema is not None:
        check(lambda: ema.update(loss))
    det = check(lambda: lrfind.DivergenceDetector(*params))
    if det is not None:
        flag = check(lambda: det.update(loss))
        assert flag in (None, True, False)
        if isinstance(loss, float) and math.isnan(loss):
            assert det.stop_reason == "nan"


@given(
    lrs=arrays(),
    losses=arrays(),
    method=st.one_of(st.sampled_from(lrfind.METHODS), st.text(max_size=4)),
    data=st.data(),
)
@settings(max_examples=400, suppress_health_check=suppress)
def test_suggest_and_gradient(lrs, losses, method, data):
    out = check(lambda: lrfind.log_gradient(lrs, losses))
    no_new_nan(out, lrs, losses)
    keys = ["skip_start", "skip_end", "backoff", "space", "factor", "lr_diff", "thresh", "adjust_value", "threshold"]
    keys += ["smooth", "drop", "shift", "spread"]  # auto's
    params = data.draw(st.dictionaries(st.sampled_from(keys), anything, max_size=3))
    s = check(lambda: lrfind.suggest(lrs, losses, method, **params))
    if s is not None:
        assert (s.lr is None) == (s.index is None) and s.reason
        if s.lr is not None:
            assert math.isfinite(s.lr) and s.lr > 0 and 0 <= s.index < len(lrs)


@given(lrs=arrays(), losses=arrays(), offsets=arrays(), data=st.data())
@settings(max_examples=400, suppress_health_check=suppress)
def test_analysis(lrs, losses, offsets, data):
    keys = ["methods", "threshold", "watch", "alpha", "debias", "patience", "min_steps", "suggest_on", "arch"]
    keys += ["min_points", "immediate_steps", "flat_tol", "noise_tol", "improving_tail", "range_drop"]
    options = data.draw(st.dictionaries(st.sampled_from(keys), anything, max_size=3))
    a = check(lambda: lrfind.analyze(lrs, losses, **options))
    if a is not None:
        assert a.stop_index >= -1 and a.diagnosis.kind in lrfind.BatchAnalysis.DIAGNOSES
        no_new_nan(a.smoothed, losses)
    check(lambda: lrfind.diagnose(lrs, losses, **options))
    b = check(lambda: lrfind.analyze_batch(lrs, losses, offsets, **options))
    if b is not None and offsets is not None:  # offsets=None reads lrs, losses as lists of sweeps
        assert len(b) == len(offsets) - 1
    check(lambda: lrfind.analyze_batch(lrs, losses, **options))


@given(args=st.lists(anything, max_size=4), fn_result=anything)
@settings(max_examples=150, suppress_health_check=suppress)
def test_learning_rate_finder(args, fn_result):
    finder = check(lambda: lrfind.LearningRateFinder(*args))
    if finder is not None:
        result = check(lambda: finder.range_test(lambda lr: fn_result))
        if result is not None:
            assert len(result.lrs) == len(result.losses) == len(result.smoothed_losses)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: lrfind.analyze([1e-3, 1e-2], [1.0]),
            ValueError,
            "lrs and losses must have the same length, got 2 and 1",
        ),
        (lambda: lrfind.analyze([], [], methods=[]), ValueError, "methods must be at least one method, got none"),
        (lambda: lrfind.analyze([1e-3, 1e-4], [1, 2]), ValueError, r"lrs\[1\] must be strictly greater"),
        (lambda: lrfind.analyze([-1.0, 1.0], [1, 2]), ValueError, r"lrs\[0\] must be finite and > 0, got -1"),
        (lambda: lrfind.analyze([np.nan, 1.0], [1, 2]), ValueError, r"lrs\[0\] must be finite and > 0, got NaN"),
        (lambda: lrfind.analyze(np.ones((2, 2)), np.ones(4)), ValueError, r"lrs must be 1-D, got an array of shape"),
        (lambda: lrfind.analyze("abc", [1.0]), TypeError, "lrs must be a 1-D array of numbers, got str"),
        (lambda: lrfind.analyze([1.0], [1.0], patience=-1), ValueError, "patience must be a whole number >= 1, got -1"),
        (lambda: lrfind.analyze([1.0], [1.0], patience=2**70), ValueError, "patience must be a whole number >= 1"),
        (lambda: lrfind.DivergenceDetector(patience=2**70), TypeError, "patience"),
        (lambda: lrfind.analyze([1.0], [1.0], thresold=5), TypeError, 'unexpected keyword argument "thresold"'),
        (lambda: lrfind.analyze([1.0], [1.0], min_points=1), ValueError, "min_points must be >= 2, got 1"),
        (
            lambda: lrfind.analyze([1.0], [1.0], threshold=10**400),
            ValueError,
            "threshold must be finite and > 1, got inf",
        ),
        (lambda: lrfind.analyze([1.0], [1.0], arch="rnn"), ValueError, "arch must be one of mlp, cnn, transformer"),
        (lambda: lrfind.analyze([1.0], [1.0], methods=3), TypeError, "methods must be a name, a list of names"),
        (
            lambda: lrfind.suggest([1.0], [1.0], "steepest", backoff=1.0),
            ValueError,
            r"backoff must be a number in \[0, 1\), got 1",
        ),
        (lambda: lrfind.suggest([1.0], [1.0], "steepest", space=[1]), TypeError, "space must be a number, bool or str"),
        (lambda: lrfind.ema(np.ones(4)[::2]), ValueError, r"values must be contiguous.*np.ascontiguousarray\(values\)"),
        (lambda: lrfind.suggest([1.0], [1.0], "auto", drop=0), ValueError, r"drop must be in \(0, 1\], got 0"),
        (lambda: lrfind.suggest([1.0], [1.0], "auto", smooth=-1), ValueError, "smooth must be finite and >= 0, got -1"),
        (lambda: lrfind.confidence_level(1.5), ValueError, r"confidence must be a number in \[0, 1\], got 1.5"),
        (lambda: lrfind.confidence_level("high"), TypeError, "confidence"),
    ],
)
def test_bad_input_messages_name_the_parameter(call, error, message):
    with pytest.raises(error, match=message):
        call()
