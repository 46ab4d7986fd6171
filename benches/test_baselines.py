"""The benchmark's synthetic sweeps and numpy baselines: the vectorised pipeline must give
exactly the per-sweep loop's answers, on generated sweeps and on hand-made edge cases."""

from itertools import pairwise

import numpy as np
import pytest

from baselines import _log_gradient, floor, per_sweep_loop, vectorized
from sweeps import make_sweeps


def _batch(sweeps):
    """Flat (lrs, losses, offsets) from a list of (lrs, losses) pairs."""
    lengths = [len(lrs) for lrs, _ in sweeps]
    offsets = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    lrs = np.concatenate([np.asarray(lrs, dtype=np.float64) for lrs, _ in sweeps])
    losses = np.concatenate([np.asarray(losses, dtype=np.float64) for _, losses in sweeps])
    return lrs, losses, offsets


def _assert_same(expected, actual):
    for want, got in zip(expected, actual, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_make_sweeps_layout():
    lrs, losses, offsets = make_sweeps(2_000, min_points=10, max_points=20, seed=5)
    lengths = np.diff(offsets)
    assert offsets.dtype == np.int64 and offsets[0] == 0 and offsets[-1] == lrs.size == losses.size
    assert lengths.min() >= 10 and lengths.max() <= 20
    assert lrs.dtype == losses.dtype == np.float64
    assert (lrs > 0).all()
    inside = np.ones(lrs.size - 1, dtype=bool)
    inside[offsets[1:-1] - 1] = False
    assert (np.diff(lrs)[inside] > 0).all()
    again = make_sweeps(2_000, min_points=10, max_points=20, seed=5)
    for a, b in zip((lrs, losses, offsets), again, strict=True):
        np.testing.assert_array_equal(a, b)
    small = make_sweeps(10, dtype=np.float32)
    assert small[0].dtype == small[1].dtype == np.float32


def test_make_sweeps_mix():
    lrs, losses, offsets = make_sweeps(5_000)
    stop_index, index, _ = per_sweep_loop(lrs, losses, offsets)
    first = offsets[:-1]
    at_stop = losses[first[stop_index >= 0] + stop_index[stop_index >= 0]]
    assert 0.1 < np.mean(stop_index == -1) < 0.4  # flat and too-low ranges, plus some normal
    assert np.isnan(at_stop).any() and np.isposinf(at_stop).any()
    assert np.isfinite(at_stop).mean() > 0.5  # mostly the 10x rule
    assert ((stop_index >= 1) & (stop_index <= 3)).sum() > 50  # immediate explosions
    assert (losses < 0).any()
    assert (index >= 0).mean() > 0.95


@pytest.mark.parametrize(
    "seed, dtype, block_points",
    [
        (0, np.float64, None),
        (1, np.float64, 1_000),
        (2, np.float64, 64),  # blocks smaller than a sweep: one sweep per block
        (3, np.float32, 1 << 15),
    ],
)
def test_vectorized_matches_loop_on_generated(seed, dtype, block_points):
    lrs, losses, offsets = make_sweeps(5_000, seed=seed, dtype=dtype)
    _assert_same(per_sweep_loop(lrs, losses, offsets), vectorized(lrs, losses, offsets, block_points=block_points))


def test_vectorized_matches_loop_on_short_sweeps():
    # Short sweeps make the rare cases common: few kept points, uniform spacings, early stops.
    lrs, losses, offsets = make_sweeps(5_000, min_points=1, max_points=8, seed=4)
    _assert_same(per_sweep_loop(lrs, losses, offsets), vectorized(lrs, losses, offsets, block_points=500))


# log(exp(j)) == j exactly for these, so the spacings are exactly uniform and np.gradient
# takes its uniform formula.
UNIFORM_LRS = np.exp(np.arange(-8.0, 1.0))

# (name, lrs, losses, stop_index, index); index None: too close to call by hand (rounding
# decides between near-equal slopes), only the agreement is checked.
EDGE_CASES = [
    ("empty", [], [], -1, -1),
    ("one point", [1e-3], [2.0], -1, -1),
    ("one NaN point", [1e-3], [np.nan], 0, -1),
    ("two points", [1e-3, 1e-2], [2.0, 1.0], -1, 0),
    ("first point NaN", [1e-3, 1e-2, 1e-1], [np.nan, 1.0, 0.5], 0, -1),
    ("second point +inf", [1e-3, 1e-2, 1e-1], [1.0, np.inf, 0.5], 1, -1),
    ("-inf", [1e-4, 1e-3, 1e-2, 1e-1], [1.0, 0.9, -np.inf, 0.5], 2, 0),
    ("all equal", np.geomspace(1e-6, 1, 30), np.full(30, 2.3), -1, None),
    ("all equal, uniform spacing", UNIFORM_LRS, np.full(9, 2.3), -1, 0),
    ("negative, no stop", [1e-4, 1e-3, 1e-2, 1e-1, 1.0], [-1.0, -1.2, -3.0, -3.1, 24.0], -1, 1),
    ("negative, stop", [1e-4, 1e-3, 1e-2, 1e-1, 1.0], [-1.0, -1.2, -3.0, -3.1, 25.0], 4, 1),
    ("zero best", [1e-4, 1e-3, 1e-2, 1e-1], [1.0, 0.0, 0.0, 1e-300], 3, 0),
    ("exactly 10x best", [1e-4, 1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.5, 5.0, 0.4, 0.3], -1, 3),
    ("just above 10x best", [1e-4, 1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.5, np.nextafter(5.0, 6.0), 0.4, 0.3], 2, 0),
    ("immediate explosion", [1e-6, 1e-5, 1e-4], [2.3, 23.1, 300.0], 1, -1),
    ("uniform spacing", UNIFORM_LRS, [5.0, 4.9, 4.0, 2.0, 1.9, 1.5, 1.4, 3.0, 60.0], 8, 2),
    ("equal slopes", UNIFORM_LRS[:5], [4.0, 3.0, 2.0, 1.0, 0.0], -1, 0),
]


@pytest.mark.parametrize("name, lrs, losses, stop, index", EDGE_CASES, ids=[case[0] for case in EDGE_CASES])
def test_edge_case(name, lrs, losses, stop, index):
    batch = _batch([(lrs, losses)])
    expected = per_sweep_loop(*batch)
    assert expected[0][0] == stop
    if index is not None:
        assert expected[1][0] == index
    _assert_same(expected, vectorized(*batch))


def test_edge_cases_together():
    # All in one batch, so the vectorised boundary handling between them is exercised too.
    batch = _batch([(lrs, losses) for _, lrs, losses, _, _ in EDGE_CASES] * 3)
    expected = per_sweep_loop(*batch)
    for block_points in (None, 4, 20):
        _assert_same(expected, vectorized(*batch, block_points=block_points))


def test_uniform_case_is_uniform():
    # The "uniform spacing" edge case only tests numpy's uniform branch if this holds.
    spacing = np.diff(np.log(UNIFORM_LRS))
    assert (spacing == spacing[0]).all()


@pytest.mark.parametrize("min_points, max_points", [(60, 100), (2, 6)])
def test_log_gradient_is_np_gradient(min_points, max_points):
    lrs, losses, offsets = make_sweeps(500, min_points=min_points, max_points=max_points, seed=6)
    stop_index, _, _ = per_sweep_loop(lrs, losses, offsets)
    first = offsets[:-1]
    kept = np.where(stop_index >= 0, stop_index, np.diff(offsets))
    first, kept = first[kept >= 2], kept[kept >= 2]
    out = np.empty(losses.size)
    with np.errstate(all="ignore"):  # garbage outside the kept ranges
        _log_gradient(lrs, losses, first, kept, out)
    for f, k in zip(first, kept, strict=True):
        want = np.gradient(losses[f : f + k], np.log(lrs[f : f + k]))
        # Exact, not approximate: the loop and the vectorised argmin agree on ties because of it.
        np.testing.assert_array_equal(out[f : f + k], want)


def test_floor_sums_each_sweep():
    lrs, losses, offsets = make_sweeps(100, seed=7)
    lr_sums, loss_sums = floor(lrs, losses, offsets)
    bounds = pairwise(offsets)
    want = np.array([[lrs[a:b].sum(), losses[a:b].sum()] for a, b in bounds])
    np.testing.assert_allclose(np.column_stack((lr_sums, loss_sums)), want, rtol=1e-12)
