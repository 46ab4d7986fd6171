"""Gradients, suggestions, analysis and batch analysis against numpy and the seed's code."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import lrfind

from seed import seed_find_suggested_lr, seed_good_curve, seed_range_test

SEED_LRS = lrfind.sweep_lrs(1e-7, 10.0, 100)


@st.composite
def sweeps(draw, min_size=2, max_size=150, nan=False):
    """A sweep: strictly increasing positive LRs and arbitrary finite (or NaN/inf) losses."""
    n = draw(st.integers(min_size, max_size))
    steps = draw(hnp.arrays(np.float64, n, elements=st.floats(0.01, 2.0)))
    lrs = 1e-7 * np.exp(np.cumsum(steps))
    elements = st.floats(-50, 50) if not nan else st.one_of(st.floats(-50, 50), st.sampled_from([math.nan, math.inf]))
    losses = draw(hnp.arrays(np.float64, n, elements=elements))
    return lrs, losses


@given(sweeps())
def test_log_gradient_is_numpy_gradient(sweep):
    lrs, losses = sweep
    want = np.gradient(losses, np.log(lrs))
    scale = np.max(np.abs(losses)) / np.min(np.diff(np.log(lrs))) + 1e-300
    np.testing.assert_allclose(lrfind.log_gradient(lrs, losses), want, rtol=1e-12, atol=1e-12 * scale)


@given(sweeps(max_size=120))
def test_steepest_is_the_seed_suggestion(sweep):
    lrs, losses = sweep
    s = lrfind.suggest(lrs, losses, "steepest")
    if np.all(losses == losses[0]):
        assert s.lr is None and "flat" in s.reason
    else:
        assert s.lr == seed_find_suggested_lr(lrs, losses)
        assert lrs[s.index] == s.lr


def test_finder_reproduces_the_seed_end_to_end():
    """The seed's range test, run on its own loop, and lrfind's finder see the same losses."""

    def make_train_fn():
        state = {"w": 0.0}

        def train_fn(lr):  # one SGD step on f(w) = (w - 3)^2 from w = 0
            state["w"] -= lr * 2 * (state["w"] - 3)
            return (state["w"] - 3) ** 2 + 1.0

        return train_fn

    seed_lrs, seed_losses = seed_range_test(make_train_fn())
    result = lrfind.LearningRateFinder(methods="steepest").range_test(make_train_fn())
    # numpy's exp and Rust's differ in the last ulp of some LRs.
    np.testing.assert_allclose(result.lrs, seed_lrs, rtol=1e-12)
    np.testing.assert_allclose(result.losses, seed_losses, rtol=1e-12)
    seed_index = seed_lrs.index(seed_find_suggested_lr(seed_lrs, seed_losses))
    assert result["suggested_lr"] == result.lrs[seed_index]
    assert result.stop_reason == "threshold" and result.stop_index == len(seed_lrs)
    np.testing.assert_allclose(result.smoothed_losses, lrfind.ema(seed_losses, 0.05), rtol=1e-12)


def test_finder_uses_smooth_factor_and_checks_train_fn():
    finder = lrfind.LearningRateFinder(smooth_factor=0.5, num_steps=20)
    result = finder.range_test(lambda lr: 2.0 - lr / 20)
    np.testing.assert_allclose(result.smoothed_losses, lrfind.ema(result.losses, 0.5))
    assert result.stop_index == -1 and result.explosion_lr is None
    assert set(result.keys()) >= {"lrs", "losses", "smoothed_losses", "suggested_lr", "suggestions", "diagnosis"}
    with pytest.raises(KeyError, match="'best_lr'"):
        result["best_lr"]
    with pytest.raises(TypeError, match="train_fn must return the loss as a number, got 'oops' at lr=1.000e-07"):
        finder.range_test(lambda lr: "oops")
    with pytest.raises(ValueError, match="num_steps must be in \\[2, 100000000\\], got 1"):
        lrfind.LearningRateFinder(num_steps=1)


@given(sweeps(min_size=0, nan=True))
@settings(max_examples=200)
def test_analyze_parts_agree_with_the_parts(sweep):
    lrs, losses = sweep
    a = lrfind.analyze(lrs, losses)
    k = a.stop_index if a.stop_index >= 0 else len(lrs)
    np.testing.assert_array_equal(a.smoothed, lrfind.ema(losses[:k], 0.05))
    if k >= 2:
        np.testing.assert_array_equal(a.gradient, lrfind.log_gradient(lrs[:k], losses[:k]))
    for name in ("auto", "steepest", "minimum", "steep", "valley", "slide"):
        s, direct = a.suggestions[name], lrfind.suggest(lrs[:k], losses[:k], name)
        assert (s.lr, s.index) == (direct.lr, direct.index)
        # auto's reason also says whether the sweep exploded, which the cut series cannot tell.
        assert s.reason == direct.reason or (name == "auto" and a.stop_index >= 0)
    explosion = a.suggestions["explosion"]
    assert explosion.index == (a.stop_index if a.stop_index >= 0 else None)
    if explosion.lr is not None:
        assert explosion.lr == lrs[a.stop_index] / 10
    assert a.suggested_lr == a.suggestions["auto"].lr
    assert list(a.suggestions) == lrfind.METHODS


def test_analyze_on_the_seed_good_curve():
    losses = seed_good_curve(SEED_LRS)
    a = lrfind.analyze(SEED_LRS, losses, arch="mlp")
    assert a.stop_reason == "threshold" and losses[a.stop_index] > 10 * losses[: a.stop_index].min()
    assert a.diagnosis.kind == "good"
    low, high = a.diagnosis.descent
    assert 1e-4 < low < high < 1e-1 and a.diagnosis.gives_lr
    assert 1e-5 < a.suggested_lr < 1e-2 and "outside the usual range" not in a.diagnosis.message
    assert a.min_loss == losses[: a.stop_index].min() and a.lr_at_min == SEED_LRS[np.argmin(losses[: a.stop_index])]


def test_method_mapping_labels_and_parameters():
    losses = seed_good_curve(SEED_LRS)
    a = lrfind.analyze(
        SEED_LRS,
        losses,
        methods={"tlf": {"method": "steepest", "space": "index", "backoff": 0}, "valley": None},
        suggest_on="smoothed",
    )
    assert list(a.suggestions) == ["tlf", "valley"]
    smoothed_direct = lrfind.suggest(SEED_LRS[: a.stop_index], a.smoothed, "steepest", space="index", backoff=0)
    assert a.suggestions["tlf"].index == smoothed_direct.index
    assert a.suggested_lr == smoothed_direct.lr


@pytest.mark.parametrize(
    "losses, kind",
    [
        ([2.30] * 100, "flat"),
        ([2.30, 5.00, math.nan] + [1.0] * 97, "immediate_explosion"),
        (list(2.3 - 0.015 * np.arange(100)), "no_divergence"),
        ([2.3, 2.2, 2.1, 50.0] + [1.0] * 96, "immediate_explosion"),
        (list(2.3 - 0.1 * np.arange(8)) + [40.0] + [1.0] * 91, "too_short"),
        # Rising from the start without reaching 10x (min_lr too high): no LR, not "noisy".
        (list(2.3 + 0.05 * np.arange(100)), "immediate_explosion"),
        (list(10 + np.log10(SEED_LRS)), "immediate_explosion"),
    ],
)
def test_diagnosis_of_the_seed_tables(losses, kind):
    d = lrfind.diagnose(SEED_LRS, np.array(losses))
    assert d.kind == kind, d.message
    assert d.message and "inf%" not in d.message and "LR NaN" not in d.message


def test_diagnosis_of_a_noisy_curve_and_arch_hint():
    noise = np.where(np.arange(100) % 2 == 0, 0.3, -0.3)
    assert lrfind.diagnose(SEED_LRS, seed_good_curve(SEED_LRS) + noise).kind == "noisy"
    d = lrfind.diagnose(SEED_LRS, seed_good_curve(SEED_LRS), arch="fine-tuning")
    assert "outside the usual range for fine-tuning (1e-6 to 1e-4)" in d.message


@st.composite
def batches(draw):
    n = draw(st.integers(0, 30))
    return [draw(sweeps(min_size=0, max_size=60, nan=True)) for _ in range(n)]


@given(batches(), st.sampled_from(["raw", "smoothed"]))
@settings(max_examples=60, deadline=None)
def test_batch_rows_equal_analyze(batch, watch):
    lrs = [b[0] for b in batch]
    losses = [b[1] for b in batch]
    out = lrfind.analyze_batch(lrs, losses, watch=watch)
    assert len(out) == len(batch)
    for i, (x, y) in enumerate(batch):
        a = lrfind.analyze(x, y, watch=watch)
        assert out.stop_index[i] == a.stop_index
        assert out.stop_reason[i] == (0 if a.stop_reason is None else 1 + out.STOP_REASONS.index(a.stop_reason))
        assert out.DIAGNOSES[out.diagnosis[i]] == a.diagnosis.kind
        np.testing.assert_array_equal(out.min_loss[i], a.min_loss)
        np.testing.assert_array_equal(out.lr_at_min[i], a.lr_at_min)
        low, high = a.diagnosis.descent or (math.nan, math.nan)
        np.testing.assert_array_equal([out.descent_low[i], out.descent_high[i]], [low, high])
        assert out.GIVES_LR[out.diagnosis[i]] == a.diagnosis.gives_lr
        for name, s in a.suggestions.items():
            assert out.index[name][i] == (-1 if s.index is None else s.index)
            np.testing.assert_array_equal(out.lr[name][i], math.nan if s.lr is None else s.lr)
            low, high = s.range or (math.nan, math.nan)
            np.testing.assert_array_equal([out.range_low[name][i], out.range_high[name][i]], [low, high])


@given(batches(), st.sampled_from(["raw", "smoothed"]))
@settings(max_examples=40, deadline=None)
def test_batch_texts_are_analyzes_words(batch, watch):
    """``_core.analyze_texts``: each sweep's reasons (under the methods' labels) and diagnosis
    message, as ``analyze`` words them."""
    methods = {"mine": {"method": "auto", "smooth": 0.1}, "seed": {"method": "steepest", "backoff": 0.0}}
    lrs, losses, offsets = lrfind.analysis._flatten([b[0] for b in batch], [b[1] for b in batch])
    reasons, messages = lrfind._core.analyze_texts(lrs, losses, offsets, methods=methods, watch=watch)
    assert list(reasons) == list(methods) and len(messages) == len(batch)
    for i, (x, y) in enumerate(batch):
        a = lrfind.analyze(x, y, methods=methods, watch=watch)
        assert messages[i] == a.diagnosis.message
        assert {m: reasons[m][i] for m in methods} == {m: s.reason for m, s in a.suggestions.items()}


def test_batch_input_shapes_and_dtypes():
    rng = np.random.default_rng(1)
    losses = seed_good_curve(SEED_LRS) * rng.uniform(0.95, 1.05, (64, 100))
    lrs = np.broadcast_to(SEED_LRS, (64, 100)).copy()
    two_d = lrfind.analyze_batch(lrs, losses)
    offsets = np.arange(65, dtype=np.int64) * 100
    flat = lrfind.analyze_batch(lrs.ravel(), losses.ravel(), offsets)
    listed = lrfind.analyze_batch(list(lrs), list(losses))
    for other in (flat, listed):
        np.testing.assert_array_equal(two_d.lr["steepest"], other.lr["steepest"])
    # float32 losses are read as they are: same answer as their exact float64 values.
    f32 = losses.astype(np.float32)
    a32 = lrfind.analyze_batch(lrs.ravel(), f32.ravel(), offsets, methods="steepest")
    a64 = lrfind.analyze_batch(lrs.ravel(), f32.astype(np.float64).ravel(), offsets, methods="steepest")
    np.testing.assert_array_equal(a32.index["steepest"], a64.index["steepest"])
    assert two_d.stop_index.dtype == np.int64 and two_d.diagnosis.dtype == np.uint8


@pytest.mark.parametrize(
    "offsets, error, message",
    [
        ([1, 3], ValueError, r"offsets\[0\] must be 0, got 1"),
        ([0, 2, 1, 3], ValueError, r"offsets\[2\] must be non-decreasing, got 1 after 2"),
        ([0, 2], ValueError, r"offsets\[1\] must be the buffers' length, got 2 for buffers of length 3"),
        (np.array([0, 2.7, 3.0]), TypeError, "offsets must hold integers, got an array of dtype float64"),
        ([0, 1.0, 3], TypeError, "offsets must hold integers, got an array of dtype float64"),
        (np.array([[0, 3]]), ValueError, r"offsets must be 1-D, got an array of shape \[1, 2\]"),
        ([], ValueError, "offsets must be at least one entry"),
        ("0 3", TypeError, "offsets must be a 1-D array of integers, got '0 3'"),
        (["0", "3"], TypeError, "offsets must hold integers, got an array of dtype <U1"),
    ],
)
def test_batch_rejects_bad_offsets(offsets, error, message):
    x = np.array([1e-3, 1e-2, 1e-1])
    with pytest.raises(error, match=message):
        lrfind.analyze_batch(x, x, offsets)


@pytest.mark.parametrize(
    "convert",
    [
        lambda o: o.astype(np.int32),  # what pyarrow.ListArray.offsets gives
        lambda o: o.astype(np.uint64),
        lambda o: o.astype(">i8"),
        lambda o: o.tolist(),
    ],
)
def test_batch_takes_any_integer_offsets(convert):
    lrs = np.tile(lrfind.sweep_lrs(1e-5, 1.0, 30), 3)
    losses = np.tile(np.linspace(2.0, 1.0, 30) + 0.1 * np.sin(np.arange(30)), 3)
    offsets = np.array([0, 30, 60, 90], dtype=np.int64)
    want = lrfind.analyze_batch(lrs, losses, offsets)
    got = lrfind.analyze_batch(lrs, losses, convert(offsets))
    np.testing.assert_array_equal(got.lr["auto"], want.lr["auto"])
    np.testing.assert_array_equal(got.stop_index, want.stop_index)


def test_batch_takes_arrow_offsets():
    pa = pytest.importorskip("pyarrow")
    lists = pa.array([[1e-3, 1e-2, 1e-1], [1e-4, 1e-3]])
    flat = lists.flatten().to_numpy()
    batch = lrfind.analyze_batch(flat, flat, lists.offsets)  # an int32 Arrow array, as it comes
    assert len(batch) == 2 and lists.offsets.type == pa.int32()


def test_batch_names_the_bad_sweep():
    with pytest.raises(ValueError, match=r"sweep 1: lrs\[1\] must be strictly greater than the previous LR"):
        lrfind.analyze_batch([np.array([1e-3, 1e-2]), np.array([1e-2, 1e-3])], [np.ones(2), np.ones(2)])
    with pytest.raises(ValueError, match=r"losses must have the shape of lrs \(2, 3\), got \(3, 2\)"):
        lrfind.analyze_batch(np.ones((2, 3)), np.ones((3, 2)))


def test_finder_settings_changed_after_construction_apply_as_in_the_seed():
    """The seed reads min_lr, max_lr, num_steps and smooth_factor when range_test runs."""
    finder = lrfind.LearningRateFinder(min_lr=1e-4, max_lr=1.0, num_steps=20)
    finder.min_lr, finder.num_steps, finder.smooth_factor = 1e-2, 5, 0.5
    seen = []
    result = finder.range_test(lambda lr: seen.append(lr) or 1.0)
    np.testing.assert_allclose(seen, np.exp(np.linspace(np.log(1e-2), np.log(1.0), 5)), rtol=1e-12)
    np.testing.assert_allclose(result.smoothed_losses, lrfind.ema(result.losses, 0.5))
    finder.num_steps = 1
    with pytest.raises(ValueError, match="num_steps"):
        finder.range_test(lambda lr: 1.0)


def test_bools_are_no_numbers():
    """True reads as 1 in Python: base_lr=True trained at LR 1.0, num_steps=True said 'got 1'."""
    for call, message in [
        (lambda: lrfind.sweep_lrs(1e-5, np.True_, 10), "max_lr must be a number, got np.True_"),
        (lambda: lrfind.warmup_cosine(True, 0, 1.0), "total_steps must be an integer, got True"),
        (lambda: lrfind.one_cycle(10, 0.1, 1.0, pct_start=False), "pct_start must be a number, got False"),
        (lambda: lrfind.LearningRateFinder(smooth_factor=True), "smooth_factor must be a number, got True"),
        (lambda: lrfind.LearningRateFinder(num_steps=True), "num_steps must be an integer, got True"),
    ]:
        with pytest.raises(TypeError, match=message):
            call()


def test_warmup_cosine_counts_in_integers_past_2_pow_53():
    big = 2**53
    assert lrfind.warmup_cosine_at(big + 1, big + 2, big, 1.0) == pytest.approx(0.5, abs=1e-12)
