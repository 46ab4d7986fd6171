"""Random input at every public function: a valid result, a ValueError or a TypeError, never a
Rust panic, a crash, or a NaN the input did not hold."""

import math
import subprocess
import sys

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
    """Outputs may hold NaN only when an input held a non-finite value: a NaN, or infinities,
    whose difference is NaN in IEEE arithmetic (np.gradient of [inf, inf] is [nan, nan]). An
    input may be an array or a list of numbers."""
    if isinstance(out, np.ndarray) and out.dtype.kind == "f" and np.isnan(out).any():
        assert any(_holds_non_finite(x) for x in inputs)


def _holds_non_finite(x):
    try:
        values = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return not np.isfinite(values).all()


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
        (lambda: lrfind.analyze("abc", [1.0]), TypeError, "lrs must be a 1-D array of real numbers, got 'abc'"),
        (lambda: lrfind.analyze(None, None), TypeError, "lrs must be a 1-D array of real numbers, got None"),
        (
            lambda: lrfind.analyze([1.0], [None]),
            TypeError,
            "losses must hold real numbers, got an array of dtype object",
        ),
        (
            lambda: lrfind.analyze([1.0], [1j]),
            TypeError,
            "losses must hold real numbers, got an array of dtype complex",
        ),
        (
            lambda: lrfind.analyze_batch([["a"]], [[1.0]]),
            TypeError,
            r"lrs\[0\] must be a 1-D array of real numbers, got \['a'\]",
        ),
        (lambda: lrfind.analyze([1.0], [1.0], patience=-1), ValueError, "patience must be a whole number >= 1, got -1"),
        (lambda: lrfind.analyze([1.0], [1.0], patience=2**70), ValueError, "patience must be a whole number >= 1"),
        (
            lambda: lrfind.DivergenceDetector(patience=2**70),
            ValueError,
            "patience must be a whole number >= 1, got 1.1805916207174113e21",
        ),
        (lambda: lrfind.DivergenceDetector(patience=2.5), ValueError, "patience must be a whole number >= 1, got 2.5"),
        (lambda: lrfind.DivergenceDetector(threshold="x"), TypeError, "threshold must be a number, got 'x'"),
        (lambda: lrfind.DivergenceDetector(watch=None), TypeError, "watch must be a str, got None"),
        (lambda: lrfind.analyze([1.0], [1.0], threshold="x"), TypeError, 'threshold must be a number, got "x"'),
        (lambda: lrfind.ema([1.0, 2.0], "a"), TypeError, "alpha must be a number, got 'a'"),
        (lambda: lrfind.ema([1.0, 2.0], debias="yes"), TypeError, "debias must be a bool, got 'yes'"),
        (lambda: lrfind.suggest([1e-3, 1e-2], [1.0, 0.5], None), TypeError, "method must be a str, got None"),
        (lambda: lrfind.sweep_lrs(1e-7, 1.0, 1.5), TypeError, "num_steps must be an integer, got 1.5"),
        (lambda: lrfind.sweep_lrs(1e-7, 1.0, 2**70), ValueError, "num_steps must be within the 64-bit integer"),
        (lambda: lrfind.one_cycle_at(-1, 10, 1e-3, 1e-2), ValueError, "step must be >= 0, got -1"),
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
        (lambda: lrfind.suggest([1.0], [1.0], "auto", smooth=-1), ValueError, r"smooth must be 0 or in \[1e-6, 3\]"),
        (
            lambda: lrfind.suggest([1.0], [1.0], "auto", shift=-1e300),
            ValueError,
            r"shift must be in \[-3, 6\] \(decades\), got -1e300",
        ),
        (lambda: lrfind.suggest([1.0], [1.0], "auto", spread=7), ValueError, r"spread must be in \[0, 6\]"),
        (
            lambda: lrfind.suggest([1.0], [1.0], "minimum", factor=1e-300),
            ValueError,
            r"factor must be in \[1, 1e6\], got 1e-300",
        ),
        (lambda: lrfind.suggest([1.0], [1.0], "explosion", factor=0.5), ValueError, r"factor must be in \[1, 1e6\]"),
        (
            lambda: lrfind.suggest([1.0], [1.0], "slide", adjust_value=1e300),
            ValueError,
            r"adjust_value must be in \[1e-6, 1e6\], got 1e300",
        ),
        (lambda: lrfind.suggest([1.0], [1.0], "steepest", space=3), TypeError, 'space must be "log", "index" or'),
        (lambda: lrfind.confidence_level(1.5), ValueError, r"confidence must be a number in \[0, 1\], got 1.5"),
        (lambda: lrfind.confidence_level("high"), TypeError, "confidence"),
        # An unknown keyword is named as such, whatever its value; a malformed methods dict says where.
        (
            lambda: lrfind.analyze([1e-3, 1e-2], [1.0, 0.5], bogus=None),
            TypeError,
            'unexpected keyword argument "bogus"',
        ),
        (
            lambda: lrfind.analyze([1e-3, 1e-2], [1.0, 0.5], methods={"x": 5}),
            TypeError,
            r'methods\["x"\] must be a dict of the method\'s parameters or None, got 5',
        ),
        (lambda: lrfind.analyze([1e-3], [1.0], methods={5: None}), TypeError, "methods' keys must be labels .*got 5"),
        (
            lambda: lrfind.analyze([1e-3], [1.0], methods={"x": {"method": 5}}),
            TypeError,
            r'methods\["x"\]\["method"\] must be a method name, got 5',
        ),
        (
            lambda: lrfind.analyze_batch([1e-3, 1e-2], [1.0, 0.5], np.array([0, 2**64 - 1, 2], np.uint64)),
            ValueError,
            "offsets must be below 2\\*\\*63, got 18446744073709551615",
        ),
        (lambda: lrfind.analyze_batch({}, {}), TypeError, "got lrs of type dict and losses of type dict"),
        (lambda: lrfind.analyze_batch(np.ones((2, 2, 3)), np.ones((2, 2, 3))), ValueError, "lrs must be a 2-D array"),
        (lambda: lrfind.sweep_lrs(1.0, np.nextafter(1.0, 2.0), 3), ValueError, "max_lr must be far enough above"),
        (lambda: lrfind.RangeTestResult.from_sweep("abc", [1.0]), TypeError, "lrs must be a 1-D array .*'abc'"),
        # Analysis settings of a finder are checked when it is made, not after the training steps.
        (lambda: lrfind.LearningRateFinder(methods="bogus"), ValueError, 'method must be one of .*got "bogus"'),
        (lambda: lrfind.LearningRateFinder(arch="rnn"), ValueError, 'arch must be one of .*got "rnn"'),
        (lambda: lrfind.LearningRateFinder(suggest_on="x"), ValueError, 'suggest_on must be "raw" or "smoothed"'),
    ],
)
def test_bad_input_messages_name_the_parameter(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_2d_array_of_losses_beside_a_list_of_lrs_is_its_rows():
    lrs = np.geomspace(1e-5, 1.0, 30)
    losses = np.stack([np.linspace(2, 1, 30), np.linspace(3, 1, 30)])
    got = lrfind.analyze_batch([lrs, lrs], losses)
    want = lrfind.analyze_batch([lrs, lrs], list(losses))
    np.testing.assert_array_equal(got.lr["auto"], want.lr["auto"])


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.astype(np.int64),
        lambda x: x.astype(np.int32),
        lambda x: x.astype(np.uint16),
        lambda x: x.astype(">f8"),  # non-native byte order
        lambda x: x.astype(">f4"),
        lambda x: x.astype(np.float16),
        lambda x: x.tolist(),
        # misaligned: a view one byte into a buffer, as a memory-mapped .npz member can be
        lambda x: np.frombuffer(b"\0" + x.astype(np.float64).tobytes(), dtype=np.float64, offset=1),
    ],
)
def test_one_dtype_rule_for_every_array(convert):
    """Any real numeric dtype, in any byte order, is taken as its float64 values, like a list."""
    lrs = 10.0 ** np.arange(-6, 3)  # integers when converted to int would lose them: use losses
    losses = np.array([9, 8, 6, 4, 3, 2, 5, 30, 700])
    want = lrfind.analyze(lrs, losses.astype(np.float64))
    got = lrfind.analyze(lrs, convert(losses))
    assert (got.suggested_lr, got.stop_index, got.diagnosis.kind) == (
        want.suggested_lr,
        want.stop_index,
        want.diagnosis.kind,
    )
    np.testing.assert_array_equal(lrfind.ema(convert(losses)), lrfind.ema(losses.astype(np.float64)))


@pytest.mark.parametrize("method", lrfind.METHODS)
@given(lrs=st.lists(st.floats(1e-300, 1e300), min_size=2, max_size=30, unique=True), data=st.data())
@settings(max_examples=60, suppress_health_check=suppress)
def test_every_suggestion_is_a_usable_lr(method, lrs, data):
    """Whatever the LRs' scale and the method's parameters within their ranges, an LR that is
    given is finite and positive, and so is its range."""
    lrs = np.sort(np.array(lrs))
    losses = np.array(data.draw(st.lists(st.floats(-1e3, 1e3), min_size=len(lrs), max_size=len(lrs))))
    extreme = {
        "minimum": {"factor": 1e6, "skip_start": 0, "skip_end": 0},
        "explosion": {"factor": 1e6},
        "slide": {"adjust_value": 1e6, "skip_start": 0, "skip_end": 0, "lr_diff": 1},
        "auto": {"shift": -3, "spread": 6},
    }.get(method, {})
    s = lrfind.suggest(lrs, losses, method, **extreme)
    if s.lr is not None:
        assert math.isfinite(s.lr) and s.lr > 0
        assert s.range is None or all(math.isfinite(v) and v > 0 for v in s.range)
    else:
        assert s.reason


INTERRUPTED_CALL = """
import os, signal, sys, threading, time
import numpy as np
import lrfind

call = sys.argv[1]
lrs = lrfind.sweep_lrs(1e-7, 10.0, 100)
curve = 2.3 - np.tanh(np.log10(lrs) + 3) + np.exp(np.log10(lrs) - 0.5)
if call == "analyze":  # one sweep of 5 million points
    lrs = lrfind.sweep_lrs(1e-7, 10.0, 5_000_000)
    args = (lrs, np.interp(np.log10(lrs), np.linspace(-7, 1, 100), curve))
else:  # 200,000 sweeps of 100 points
    args = (np.tile(lrs, 200_000), np.tile(curve, 200_000), np.arange(200_001) * 100)
fired = []

def interrupt():
    fired.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)

threading.Timer(0.2, interrupt).start()
start = time.monotonic()
try:
    getattr(lrfind, call)(*args)
except KeyboardInterrupt:
    print(f"interrupted {time.monotonic() - fired[0]:.3f} s after the signal")
else:
    print(f"finished in {time.monotonic() - start:.3f} s")
"""


@pytest.mark.parametrize("call", ["analyze", "analyze_batch"])
def test_ctrl_c_interrupts_a_long_core_call(call):
    """A call that takes seconds in the core raises KeyboardInterrupt on Ctrl-C instead of
    running to its end (the time it took is printed, not asserted: see benches/README.md)."""
    run = subprocess.run([sys.executable, "-c", INTERRUPTED_CALL, call], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("interrupted"), run.stdout
    print(call, run.stdout.strip())
