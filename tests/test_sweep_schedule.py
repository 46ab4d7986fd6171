"""Sweeps and training schedules against the seed's numpy code."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lrfind

from seed import one_cycle_schedule, seed_lr_schedule, warmup_cosine_schedule


@given(
    lo=st.floats(-10, 1),
    span=st.floats(0.01, 10),
    n=st.integers(2, 2000),
)
def test_exp_sweep_is_the_seed_schedule(lo, span, n):
    min_lr, max_lr = 10.0**lo, 10.0 ** (lo + span)
    lrs = lrfind.sweep_lrs(min_lr, max_lr, n)
    np.testing.assert_allclose(lrs, seed_lr_schedule(min_lr, max_lr, n), rtol=1e-12, atol=0)
    assert lrs[0] == min_lr and lrs[-1] == max_lr
    assert lrs.dtype == np.float64 and np.all(np.diff(lrs) > 0)


@given(lo=st.floats(1e-6, 1.0), span=st.floats(1e-3, 10.0), n=st.integers(2, 500))
def test_linear_sweep_is_linspace(lo, span, n):
    lrs = lrfind.sweep_lrs(lo, lo + span, n, mode="linear")
    np.testing.assert_allclose(lrs, np.linspace(lo, lo + span, n), rtol=1e-12)
    assert lrs[0] == lo and lrs[-1] == lo + span


@pytest.mark.parametrize(
    "args, message",
    [
        ((0.0, 1.0, 10), "min_lr must be finite and > 0, got 0"),
        ((-1e-3, 1.0, 10), "min_lr must be finite and > 0, got -0.001"),
        ((1.0, 1.0, 10), "max_lr must be finite and > min_lr, got 1"),
        ((1e-3, float("nan"), 10), "max_lr must be finite and > min_lr, got NaN"),
        ((1e-3, 1.0, 1), "num_steps must be in \\[2, 100000000\\], got 1"),
        ((1e-3, 1.0, -5), "num_steps must be in \\[2, 100000000\\], got -5"),
    ],
)
def test_sweep_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        lrfind.sweep_lrs(*args)


def test_sweep_rejects_unknown_mode():
    with pytest.raises(ValueError, match='mode must be "exp" or "linear", got "log"'):
        lrfind.sweep_lrs(1e-3, 1.0, 10, mode="log")


@given(
    total=st.integers(2, 3000),
    warm_share=st.floats(0, 0.99),
    base=st.floats(1e-6, 10),
)
def test_warmup_cosine_is_the_seed(total, warm_share, base):
    warmup = int(warm_share * total)
    got = lrfind.warmup_cosine(total, warmup, base)
    want = np.array([warmup_cosine_schedule(s, warmup, total, base) for s in range(total)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * base)
    for step in (0, warmup, total - 1):
        assert lrfind.warmup_cosine_at(step, total, warmup, base) == got[step]


@given(total=st.integers(1, 3000), base=st.floats(1e-6, 1.0), factor=st.floats(1.0, 100.0))
def test_one_cycle_is_the_seed(total, base, factor):
    max_lr = base * factor
    got = lrfind.one_cycle(total, base, max_lr)
    want = np.array([one_cycle_schedule(s, total, base, max_lr) for s in range(total)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * max_lr)
    assert lrfind.one_cycle_at(total - 1, total, base, max_lr) == got[-1]


def test_schedule_edge_cases_are_defined():
    # No warmup: decays from base_lr at step 0; a floor keeps the end above 0.
    no_warmup = lrfind.warmup_cosine(10, 0, 1.0, min_lr=0.1)
    assert no_warmup[0] == 1.0 and no_warmup[-1] > 0.1
    # All warmup: a pure linear ramp that reaches base_lr at the end of the schedule.
    ramp = lrfind.warmup_cosine(10, 10, 2.0)
    np.testing.assert_allclose(ramp, 2.0 * np.arange(10) / 10)
    assert lrfind.warmup_cosine_at(10, 10, 10, 2.0) == 2.0
    # Past the end the seed's formulas would rise again; lrfind stays at the floor.
    assert lrfind.warmup_cosine_at(50, 10, 2, 1.0, min_lr=0.05) == 0.05
    assert lrfind.one_cycle_at(50, 10, 0.1, 1.0) == 0.0
    assert lrfind.one_cycle(10, 0.1, 1.0, pct_start=0.0)[0] == 1.0
    for total in (1, 2, 3):
        assert np.all(np.isfinite(lrfind.warmup_cosine(total, total, 1.0)))
        assert np.all(np.isfinite(lrfind.one_cycle(total, 0.1, 1.0)))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: lrfind.warmup_cosine(0, 0, 1.0), "total_steps must be >= 1, got 0"),
        (lambda: lrfind.warmup_cosine(10, 11, 1.0), r"warmup_steps must be in \[0, total_steps\], got 11"),
        (lambda: lrfind.warmup_cosine(10, 2, -1.0), "base_lr must be finite and > 0, got -1"),
        (lambda: lrfind.warmup_cosine(10, 2, 1.0, min_lr=2.0), r"min_lr must be finite and in \[0, base_lr\], got 2"),
        (lambda: lrfind.warmup_cosine_at(-1, 10, 2, 1.0), "step must be >= 0, got -1"),
        (lambda: lrfind.one_cycle(10, 1.0, 0.1), "max_lr must be finite and >= base_lr, got 0.1"),
        (lambda: lrfind.one_cycle(10, 0.1, 1.0, pct_start=1.0), r"pct_start must be in \[0, 1\), got 1"),
        (lambda: lrfind.one_cycle_at(-3, 10, 0.1, 1.0), "step must be >= 0, got -3"),
    ],
)
def test_schedules_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()
