"""Smoothing and divergence detection against the seed's loop and the peers' formulas."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrfind

from seed import seed_range_test

finite_losses = st.lists(st.floats(0.001, 100.0), min_size=1, max_size=150)


@given(values=finite_losses, alpha=st.floats(0.001, 1.0))
def test_ema_is_torch_lr_finder_smoothing(values, alpha):
    want, s = [], None
    for x in values:
        s = x if s is None else alpha * x + (1 - alpha) * s
        want.append(s)
    np.testing.assert_allclose(lrfind.ema(values, alpha), want, rtol=1e-12)


@given(values=finite_losses, alpha=st.floats(0.001, 0.999))
def test_debiased_ema_is_fastai_smoothing(values, alpha):
    beta, v, want = 1 - alpha, 0.0, []
    for t, x in enumerate(values, start=1):
        v = beta * v + (1 - beta) * x
        want.append(v / (1 - beta**t))
    got = lrfind.ema(np.array(values, dtype=np.float32), alpha, debias=True)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] == pytest.approx(np.float32(values[0]), rel=1e-12)


def test_streaming_ema_matches_the_array_form():
    values = np.random.default_rng(0).uniform(1, 3, 50)
    e = lrfind.Ema(alpha=0.1, debias=True)
    assert e.value is None
    streamed = [e.update(x) for x in values]
    np.testing.assert_array_equal(streamed, lrfind.ema(values, 0.1, debias=True))
    assert e.count == 50 and e.value == streamed[-1]


@given(losses=st.lists(st.one_of(st.floats(0.001, 1000.0), st.just(math.nan)), min_size=1, max_size=120))
def test_detector_stops_where_the_seed_stops(losses):
    """The seed's loop breaks on NaN or raw loss > 10x the best before it: our stop index is the
    number of points the seed kept, and the kept points are the seed's."""
    it = iter(losses)
    _, seed_losses = seed_range_test(lambda lr: next(it, math.nan), num_steps=max(2, len(losses)))
    d = lrfind.DivergenceDetector()
    stopped_at = next((i for i, x in enumerate(losses) if d.update(x)), None)
    if stopped_at is None:
        assert len(seed_losses) == len(losses)
    else:
        assert stopped_at == len(seed_losses) == d.stop_index
        assert d.stop_reason == ("nan" if math.isnan(losses[stopped_at]) else "threshold")


def test_detector_rule_for_zero_and_negative_losses():
    d = lrfind.DivergenceDetector(threshold=4.0)
    assert not any(d.update(x) for x in [-1.0, -2.0, 3.9])  # limit -2 + 3 * 2 = 4
    assert d.update(4.1) and d.stop_index == 3 and d.stop_reason == "threshold"
    # fastai #962: with negative losses "loss > 4 * best" stops at once; our rule does not.
    d = lrfind.DivergenceDetector(threshold=4.0)
    assert not any(d.update(x) for x in [-0.5, -0.6, -0.55, -0.7])


def test_a_best_of_exactly_zero_is_float32_resolution_not_infinitely_small():
    """A loss that reaches exactly 0 (a margin or hinge loss, a separable problem) and then reads
    1e-12 has not exploded: the best is measured against float32 resolution of the largest loss
    seen (1.19e-7 x 2.3 here), so 10x the best is 2.7e-6."""
    d = lrfind.DivergenceDetector()
    assert not any(d.update(x) for x in [2.3, 1.0, 0.0, 1e-12, 1e-9, 2e-6])
    assert d.update(3e-6) and d.stop_index == 6 and d.best == 0.0
    # The same sweep through analyze: the curve keeps the tiny losses.
    lrs = lrfind.sweep_lrs(1e-4, 1.0, 8)
    a = lrfind.analyze(lrs, [2.3, 1.0, 0.0, 1e-12, 1e-9, 2e-6, 3e-6, 5.0], methods="minimum")
    assert (a.stop_index, a.stop_reason) == (6, "threshold")
    # A positive best well above the resolution keeps the seed's rule: 10x the best.
    d = lrfind.DivergenceDetector()
    assert not any(d.update(x) for x in [2.3, 1e-3, 9.9e-3]) and d.update(1.01e-2)


def test_detector_reports_inf_patience_and_min_steps():
    d = lrfind.DivergenceDetector()
    assert not d.update(1.0) and d.update(-math.inf) and d.stop_reason == "inf"
    d = lrfind.DivergenceDetector(patience=3)
    flags = [d.update(x) for x in [1.0, 20.0, 1.0, 20.0, 30.0, 40.0]]
    assert flags == [False, False, False, False, False, True]
    assert d.stop_index == 3, "the curve is cut at the first point of the violating run"
    d = lrfind.DivergenceDetector(min_steps=2)
    assert [d.update(x) for x in [1.0, 50.0, 50.0]] == [False, False, True]
    d = lrfind.DivergenceDetector(watch="smoothed", alpha=0.5, threshold=2.0)
    assert not d.update(1.0) and d.update(4.0)  # smoothed 2.5 > 2 x 1
    assert d.smoothed == 2.5 and d.best == 1.0 and d.count == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(threshold=1.0), "threshold must be finite and > 1, got 1"),
        (dict(threshold=float("inf")), "threshold must be finite and > 1, got inf"),
        (dict(watch="ema"), 'watch must be "raw" or "smoothed", got "ema"'),
        (dict(alpha=0.0), r"alpha must be in \(0, 1\], got 0"),
        (dict(patience=0), "patience must be a whole number >= 1, got 0"),
    ],
)
def test_detector_rejects_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lrfind.DivergenceDetector(**kwargs)


def test_ema_rejects_bad_alpha():
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\], got 1.5"):
        lrfind.Ema(1.5)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\], got -0.1"):
        lrfind.ema([1.0, 2.0], alpha=-0.1)
