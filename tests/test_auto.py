"""The `auto` suggestion against an independent numpy reference written from the algorithm's
description in rust/auto.rs (lr, index, range and confidence on generated curves and on the
quality benchmark's recorded range tests), its invariants (scale, offset, NaN cut, bounds), its
robustness to a spike next to the seed's `steepest`, its confidence and reason, and
analyze/analyze_batch agreeing with it."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrfind

BENCH = Path(__file__).parents[1] / "benches" / "quality" / "results.json"
DEFAULTS = dict(smooth=0.25, drop=0.95, shift=0.75, spread=0.75)
SAFE_MARGIN = 2.0  # decades from the suggestion to the explosion under which confidence drops


# ---------------------------------------------------------------------------------------------
# Reference


def running_median5(y):
    """Median of each point and up to two neighbours either side (fewer at the ends)."""
    n = len(y)
    return np.array([np.median(y[max(i - 2, 0) : i + 3]) for i in range(n)])


def gaussian(x, y, sigma):
    """Gaussian kernel regression in x, cut at 3 sigma, weights renormalised per point; also the
    largest |y| each point's kernel reaches (what its rounding error scales with)."""
    if sigma == 0:
        return y.copy(), np.abs(y)
    d = x[None, :] - x[:, None]
    # A point at the cut (up to rounding of the log LRs) is in: on a sweep with 4 points a decade
    # and sigma 0.25, the third neighbour either side is in at every point, not where rounding says.
    inside = np.abs(d) <= 3 * sigma * (1 + 1e-9)
    w = np.where(inside, np.exp(-0.5 * (np.where(inside, d, 0.0) / sigma) ** 2), 0.0)
    return (w @ y) / w.sum(axis=1), np.max(inside * np.abs(y), axis=1)


def reference(lrs, losses, smooth=0.25, drop=0.95, shift=0.75, spread=0.75, tol=None, den=1e7):
    """auto in numpy. Returns None (too few points), {"lr": None} (no descent) or the reading.

    Rounding alone can make two correct implementations differ where a decision is a near-tie:
    ``fragile`` marks lr, index and range as such (two minima with a bump between them, a point
    at the crossing level, a crossing segment so flat that the interpolation amplifies rounding
    ``den`` times beyond ``tol``); ``conf_fragile`` marks the confidence and the reason (an
    ambiguous minimum, noise at rounding level, a reading at a threshold). ``tol`` is a loss
    difference no decision may be closer than: by default 1e-11 of each point's kernel scale
    with the kernel, 0 for the median alone (which is exact)."""
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    finite = np.isfinite(losses)
    k = len(losses) if finite.all() else int(np.argmin(finite))
    exploded = k < len(losses)
    lrs, losses = lrs[:k], losses[:k]
    if k < 5:
        return None
    x = np.log10(lrs)
    sm, scale = gaussian(x, running_median5(losses), smooth)
    tol = (0.0 if smooth == 0 else 1e-11) * scale if tol is None else np.full(k, tol)
    m = int(np.argmin(sm))  # first lowest
    start = m - int(np.argmax(sm[m::-1]))  # last highest before it
    top, bottom = sm[start], sm[m]
    depth = top - bottom
    level = top - drop * depth
    margin = 2 * np.max(tol[: m + 1])  # on the level, and on any loss compared with it
    # Other candidates for the minimum; one matters to the pick if a bump above the level lies
    # between it and the minimum.
    rivals = [i for i in np.nonzero(sm - bottom < tol + tol[m])[0] if i != m]
    bumps = [np.max(sm[min(i, m) : max(i, m) + 1]) >= level - margin for i in rivals]
    floor = 1e-9 * max(abs(top), abs(bottom))  # a drop must stand out of rounding
    fragile = any(bumps) or (m != start and abs(depth - floor) < margin)
    if not depth > floor:
        return dict(lr=None, fragile=fragile)

    def cross(share):
        level = top - share * depth
        above = np.nonzero(sm[start:m] >= level)[0]
        j = start + (int(above[-1]) if len(above) else 0)
        t = min(max((sm[j] - level) / (sm[j] - sm[j + 1]), 0.0), 1.0)
        return j, x[j] + t * (x[j + 1] - x[j])

    j, x_pick = cross(drop)
    fragile = fragile or np.any(np.abs(sm[start:m] - level) < margin) or sm[j] - sm[j + 1] < den * margin
    resid = losses[: m + 1] - sm[: m + 1]
    noise = 1.4826 * np.median(np.abs(resid - np.median(resid)))
    snr = depth / max(noise, 1e-12 * max(abs(top), 1e-300))
    still_falling = not exploded and m + max(k // 20, 2) >= k
    x_lr = x_pick - shift
    edge = x[-1] - x_lr  # decades from the suggestion up to the last point before the stop
    clean = min(max(math.log10(snr / 3), 0.0), 1.0)
    confidence = clean * (min(max(edge / SAFE_MARGIN, 0.5), 1.0) if exploded else 1.0) * (0.5 if still_falling else 1)
    if still_falling:
        tail = "still falling at the end of the sweep"
    elif snr < 10:
        tail = "a noisy curve"
    elif edge < SAFE_MARGIN and confidence < 0.7 and exploded:
        tail = f"the loss blows up {edge:.1f} decade(s) above the suggestion"
    elif edge < SAFE_MARGIN and confidence < 0.7:
        tail = None  # the sweep merely ended: see test_a_sweep_that_did_not_explode_does_not_blow_up
    else:
        tail = f"then turns up at point {m}"
    return dict(
        lr=10**x_lr,
        index=j,
        range=(10 ** (x_lr - spread), 10 ** (x_lr + spread)),
        confidence=confidence,
        tail=tail,
        still_falling=still_falling,
        at_min=m,
        fragile=bool(fragile),
        conf_fragile=bool(
            fragile
            or rivals
            or noise < 1e3 * np.max(tol[: m + 1])
            or abs(snr - 10) < 1e-6
            or abs(edge - SAFE_MARGIN) < 1e-6
            or abs(confidence - 0.7) < 1e-6
        ),
    )


def assert_matches_reference(lrs, losses, params, explode=False):
    """Compares auto with the reference as far as rounding allows; says how far it went."""
    if explode:  # the loss turns NaN at the next LR: the window is the same, but it exploded
        lrs, losses = np.append(lrs, 1.25 * lrs[-1]), np.append(losses, math.nan)
    s = lrfind.suggest(lrs, losses, "auto", **params)
    ref = reference(lrs, losses, **params)
    if ref is None:
        assert s.lr is None and s.index is None and "too few points" in s.reason
        return "too few points"
    if ref["fragile"]:  # rounding decides: only the contract
        assert (s.lr is None) == (s.index is None) == (s.range is None) == (s.confidence is None)
        return "fragile"
    if ref["lr"] is None:
        assert s.lr is None and s.confidence is None and s.range is None, s
        assert "never falls below its start" in s.reason
        return "no descent"
    assert s.method == "auto" and s.index == ref["index"], (s, ref)
    np.testing.assert_allclose(s.lr, ref["lr"], rtol=1e-9)
    np.testing.assert_allclose(s.range, ref["range"], rtol=1e-9)
    if not ref["conf_fragile"]:
        assert ("still falling" in s.reason) == ref["still_falling"], s.reason
        np.testing.assert_allclose(s.confidence, ref["confidence"], rtol=0, atol=1e-9)
        assert ref["tail"] is None or ref["tail"] in s.reason, (s.reason, ref["tail"])
    return "compared"


# ---------------------------------------------------------------------------------------------
# Curves


@st.composite
def range_tests(draw, min_size=5, max_size=160, min_noise=1e-4):
    """A plausible range test: a plateau, a logistic descent, a quadratic rise, Gaussian noise."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(min_size, max_size))
    lo, span = draw(st.floats(-8, -3)), draw(st.floats(1, 9))
    at = np.cumsum(rng.uniform(0.5, 1.5, n))  # uneven LR steps
    x = lo + span * (at - at[:1]) / (at[-1] - at[0] if n > 1 else 1.0)
    level = draw(st.floats(0.05, 20))
    share = draw(st.floats(0.05, 0.95))
    center = lo + span * draw(st.floats(0.1, 0.9))
    width = draw(st.floats(0.05, 2))
    rise_at = center + draw(st.floats(0.2, 4))
    rise = draw(st.floats(0, 10))
    noise = draw(st.sampled_from([min_noise, 1e-3, 1e-2, 0.05, 0.2]))
    losses = level * (1 - share / (1 + np.exp(-4 * (x - center) / width)))
    losses += level * rise * np.maximum(x - rise_at, 0) ** 2 + level * noise * rng.standard_normal(n)
    return 10**x, losses


@st.composite
def arbitrary(draw, min_size=5, max_size=80):
    """Increasing LRs and any finite losses."""
    n = draw(st.integers(min_size, max_size))
    steps = draw(st.lists(st.floats(0.01, 2.0), min_size=n, max_size=n))
    lrs = 1e-7 * np.exp(np.cumsum(steps))
    losses = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)))
    return lrs, losses


PARAMS = st.one_of(
    st.just(DEFAULTS),
    st.fixed_dictionaries(
        dict(
            smooth=st.sampled_from([0.0, 0.05, 0.25, 0.6]) | st.floats(1e-6, 1),
            drop=st.sampled_from([0.1, 0.5, 0.95, 1.0]) | st.floats(0.01, 1),
            shift=st.sampled_from([-1.0, 0.0, 0.75, 2.0]),
            spread=st.sampled_from([0.0, 0.3, 0.75]),
        )
    ),
)


def benchmark_sweeps():
    """The quality benchmark's recorded range tests, each up to its first non-finite loss."""
    out = {}
    for key, s in json.loads(BENCH.read_text())["sweeps"].items():
        lrs, losses = np.asarray(s["lrs"], float), np.asarray(s["losses"], float)
        k = len(losses) if np.isfinite(losses).all() else int(np.argmin(np.isfinite(losses)))
        out[key] = lrs[:k], losses[:k]
    return out


SWEEPS = benchmark_sweeps()


def logistic_curve(noise, n=120, seed=0):
    """Loss 2.0 falling to 0.6 around 1e-4 and rising after 1e-2, sampled 1e-7 to 1."""
    lrs = lrfind.sweep_lrs(1e-7, 1.0, n)
    x = np.log10(lrs)
    clean = 0.6 + 1.4 / (1 + np.exp(3 * (x + 4))) + 4 * np.maximum(x + 2, 0) ** 2
    return lrs, clean + noise * np.random.default_rng(seed).standard_normal(n)


# ---------------------------------------------------------------------------------------------
# 1. Against the reference


@given(range_tests(), PARAMS, st.booleans())
@settings(max_examples=300)
def test_matches_reference_on_range_tests(curve, params, explode):
    assert_matches_reference(*curve, params, explode)


@given(arbitrary(), PARAMS, st.booleans())
@settings(max_examples=300)
def test_matches_reference_on_arbitrary_losses(curve, params, explode):
    assert_matches_reference(*curve, params, explode)


@pytest.mark.parametrize(
    "params",
    [DEFAULTS, dict(smooth=0.0), dict(smooth=0.5, drop=0.5, shift=0.0, spread=0.2), dict(drop=1.0), dict(smooth=0.05)],
)
def test_matches_reference_on_the_benchmark_sweeps(params):
    assert len(SWEEPS) >= 20
    for key, (lrs, losses) in SWEEPS.items():
        assert assert_matches_reference(lrs, losses, params) == "compared", key
        assert assert_matches_reference(lrs, losses, params, explode=True) == "compared", key


@pytest.mark.parametrize("per_decade, smooth", [(4, 0.25), (4, 0.5), (10, 0.1), (20, 0.25)])
def test_matches_reference_when_the_cut_falls_on_a_point(per_decade, smooth):
    lrs, losses = logistic_curve(0.05, n=6 * per_decade + 1)  # 1e-7 to 1: evenly spaced in log LR
    assert assert_matches_reference(lrs, losses, dict(DEFAULTS, smooth=smooth)) == "compared"


def test_too_few_points_and_no_descent():
    lrs = lrfind.sweep_lrs(1e-6, 1.0, 30)
    for losses in ([2.0, 1.0, 0.5, 0.2], [2.0, 1.0, 0.5, 0.2, math.nan, 0.1, 0.05]):
        s = lrfind.suggest(lrs[: len(losses)], losses, "auto")
        assert s.lr is None and s.index is None and s.confidence is None and s.range is None
        assert "4 finite point(s), the method needs 5" in s.reason
    s = lrfind.suggest(lrs, 1.0 + np.linspace(0, 3, 30) ** 2, "auto")
    assert s.lr is None and s.confidence is None and "never falls below its start" in s.reason


@given(range_tests(max_size=60), st.floats(0, 1), st.sampled_from([0.0, 0.1, 0.25, 0.5]))
def test_a_rising_curve_has_no_descent(curve, start, smooth):
    lrs, losses = curve
    rising = start + np.cumsum(1e-3 + np.abs(losses))  # strictly increasing, well above rounding
    s = lrfind.suggest(lrs, rising, "auto", smooth=smooth)
    assert s.lr is None and "never falls below its start" in s.reason


@given(st.integers(5, 120), st.floats(-100, 100), PARAMS)
def test_a_flat_curve_has_no_descent(n, level, params):
    # Smoothing a constant leaves it constant only up to rounding, which is no descent.
    s = lrfind.suggest(lrfind.sweep_lrs(1e-7, 10.0, n), np.full(n, level), "auto", **params)
    assert s.lr is None and "never falls below its start" in s.reason, s


@given(range_tests(max_size=60), st.floats(1e-6, 1e-3))
def test_a_tiny_kernel_is_the_median_alone(curve, smooth):
    # The points lie at least 0.008 decades apart: a kernel cut at 3e-3 decades holds one.
    lrs, losses = curve
    s, median_only = lrfind.suggest(lrs, losses, "auto", smooth=smooth), lrfind.suggest(lrs, losses, "auto", smooth=0)
    assert (s.lr, s.index) == (median_only.lr, median_only.index)


@given(st.one_of(st.floats(5e-324, 9.9e-7), st.floats(3.01, 1e300), st.floats(-1e300, -5e-324)))
def test_a_kernel_outside_its_range_is_refused(smooth):
    lrs = lrfind.sweep_lrs(1e-5, 1.0, 20)
    with pytest.raises(ValueError, match=r"smooth must be 0 or in \[1e-6, 3\] \(decades\), got"):
        lrfind.suggest(lrs, np.linspace(2, 1, 20), "auto", smooth=smooth)


# ---------------------------------------------------------------------------------------------
# 2. Invariants


def fragile_under(lrs, losses, offset=0.0):
    """Whether rounding at the curve's scale (plus the offset) may flip one of auto's decisions."""
    ref = reference(lrs, losses, tol=1e-9 * (np.max(np.abs(losses)) + abs(offset)), den=1e3)
    return ref is None or ref["fragile"] or ref.get("conf_fragile", False)


def after_explosion(s, last_lr):
    """The confidence of reading ``s`` (made on a sweep that did not explode) once the loss is
    known to explode after ``last_lr``: no halving for a minimum at the end, but 2 decades or
    less between the suggestion and the explosion scale it by 1/2 to 1."""
    edge = min(max(math.log10(last_lr / s.lr) / SAFE_MARGIN, 0.5), 1.0)
    return pytest.approx((2 if "still falling" in s.reason else 1) * s.confidence * edge, rel=1e-9, abs=1e-12)


@given(range_tests(), st.integers(-20, 20), st.floats(1e-3, 1e3), st.floats(-100, 100))
def test_scale_and_offset_leave_the_pick(curve, power, factor, offset):
    lrs, losses = curve
    s = lrfind.suggest(lrs, losses, "auto")
    # A power of two scales every step exactly: everything is identical.
    exact = lrfind.suggest(lrs, losses * 2.0**power, "auto")
    assert (exact.lr, exact.index, exact.range, exact.confidence) == (s.lr, s.index, s.range, s.confidence)
    if fragile_under(lrs, losses, offset):
        return
    for other in (losses * factor, losses + offset):
        t = lrfind.suggest(lrs, other, "auto")
        assert t.index == s.index
        if s.lr is None:
            assert t.lr is None
            continue
        np.testing.assert_allclose(t.lr, s.lr, rtol=1e-6)
        np.testing.assert_allclose(t.confidence, s.confidence, atol=1e-6)


@given(st.one_of(range_tests(), arbitrary()), PARAMS)
def test_confidence_range_and_crossing_bounds(curve, params):
    lrs, losses = curve
    s = lrfind.suggest(lrs, losses, "auto", **params)
    if s.lr is None:
        return
    assert 0.0 <= s.confidence <= 1.0
    low, high = s.range
    assert low <= s.lr <= high
    np.testing.assert_allclose([low * 10 ** params["spread"], high / 10 ** params["spread"]], s.lr, rtol=1e-9)
    read = s.lr * 10 ** params["shift"]  # the crossing itself, between the index and the next point
    assert lrs[s.index] * (1 - 1e-9) <= read <= lrs[s.index + 1] * (1 + 1e-9)
    unshifted = lrfind.suggest(lrs, losses, "auto", **dict(params, shift=0.0))
    assert lrs[0] * (1 - 1e-12) <= unshifted.lr <= lrs[-1] * (1 + 1e-12)
    assert unshifted.index == s.index


@given(
    st.one_of(range_tests(min_size=0), arbitrary(min_size=0)),
    st.data(),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_a_non_finite_loss_cuts_the_window_and_is_an_explosion(curve, data, bad):
    lrs, losses = curve
    k = data.draw(st.integers(0, len(losses)), label="cut")
    cut = losses.copy()
    if k < len(cut):
        cut[k] = bad
    else:
        lrs, cut = np.append(lrs, lrs[-1] * 1.5 if k else 1e-7), np.append(cut, bad)
    full, prefix = lrfind.suggest(lrs, cut, "auto"), lrfind.suggest(lrs[:k], losses[:k], "auto")
    assert (full.lr, full.index, full.range) == (prefix.lr, prefix.index, prefix.range)
    assert "still falling" not in full.reason
    if full.confidence is not None:
        assert full.confidence == after_explosion(prefix, lrs[k - 1])


# ---------------------------------------------------------------------------------------------
# 3. Robustness


def test_a_spike_moves_auto_less_than_steepest():
    def move(a, b):
        return max(a / b, b / a)

    worst_auto, worst_steepest = 1.0, 1.0
    for key, (lrs, losses) in SWEEPS.items():
        at_min = reference(lrs, losses)["at_min"]
        auto, steepest = lrfind.suggest(lrs, losses, "auto"), lrfind.suggest(lrs, losses, "steepest").lr
        if "still falling at the end" in auto.reason:
            # No minimum in the sweep (range too low): on the flat tail (an LSTM with plain SGD
            # to LR 10) one spike moves where the tail reads lowest; the reason says so.
            continue
        auto = auto.lr
        for i in (at_min // 4, at_min // 2, 3 * at_min // 4, at_min - 8):
            spiked = losses.copy()
            # Up to 10x, but below the stop rule's 10x the best loss so far: a spike, not an explosion.
            spiked[i] = min(10 * losses[i], 9.5 * losses[: i + 1].min())
            moved = move(lrfind.suggest(lrs, spiked, "auto").lr, auto)
            assert moved < 1.5, (key, i, moved)
            worst_auto = max(worst_auto, moved)
            worst_steepest = max(worst_steepest, move(lrfind.suggest(lrs, spiked, "steepest").lr, steepest))
    assert worst_auto < worst_steepest and worst_steepest > 10, (worst_auto, worst_steepest)


# ---------------------------------------------------------------------------------------------
# 4. Confidence and reason


def test_confidence_level_is_the_word_in_the_reason():
    # The documented thresholds: high from 0.7, low below 0.4.
    for score, word in [(1.0, "high"), (0.7, "high"), (0.6999, "medium"), (0.4, "medium"), (0.3999, "low"), (0, "low")]:
        assert lrfind.confidence_level(score) == word
    for lrs, losses in SWEEPS.values():
        s = lrfind.suggest(lrs, losses, "auto")
        assert s.reason.startswith(f"{lrfind.confidence_level(s.confidence)} confidence ({s.confidence:.2f})")


def test_confidence_of_clean_noisy_and_unfinished_curves():
    lrs, clean = logistic_curve(1e-3)
    c = lrfind.suggest(lrs, clean, "auto")
    assert c.confidence >= 0.7 and c.reason.startswith("high confidence"), c.reason
    assert 1e-5 < c.lr < 1e-3 and "turns up" in c.reason
    _, noisy = logistic_curve(0.3)
    n = lrfind.suggest(lrs, noisy, "auto")
    assert n.lr is not None and n.confidence < c.confidence and not n.reason.startswith("high"), n.reason
    # Stop the sweep during the descent: the lowest loss is the last point and nothing exploded.
    k = int(np.searchsorted(lrs, 3e-4))
    u = lrfind.suggest(lrs[:k], clean[:k], "auto")
    assert "still falling at the end of the sweep" in u.reason and u.confidence <= 0.5, u.reason
    e = lrfind.suggest(lrs[: k + 1], np.append(clean[:k], math.nan), "auto")
    assert "still falling" not in e.reason and e.confidence == after_explosion(u, lrs[k - 1])
    # The explosion comes under a decade above the suggestion: a sharp edge halves the confidence.
    assert "the loss blows up" in e.reason and e.confidence == pytest.approx(u.confidence)


def test_a_sweep_that_did_not_explode_does_not_blow_up():
    lrs, losses = logistic_curve(0.11, seed=2)
    k = int(np.searchsorted(lrs, 10**-1.5))  # ends as the loss turns up: no explosion
    s = lrfind.suggest(lrs[:k], losses[:k], "auto", shift=0.0)
    assert math.log10(lrs[k - 1] / s.lr) < SAFE_MARGIN and 0.4 < s.confidence < 0.7
    assert "still falling" not in s.reason and "noisy" not in s.reason
    assert "blows up" not in s.reason, s.reason


# ---------------------------------------------------------------------------------------------
# 5. analyze and analyze_batch


def test_analyze_and_batch_agree_with_suggest_on_the_benchmark():
    keys = sorted(SWEEPS)[::4]
    lrs = [SWEEPS[k][0] for k in keys]
    losses = [SWEEPS[k][1] for k in keys]
    offsets = np.concatenate([[0], np.cumsum([len(v) for v in losses])]).astype(np.int64)
    methods = {"auto": {"smooth": 0.2, "drop": 0.9}, "steepest": None}
    batch = lrfind.analyze_batch(np.concatenate(lrs), np.concatenate(losses), offsets, methods=methods)
    assert len(batch) == len(keys)
    assert np.isnan(batch.confidence["steepest"]).all()
    for i, key in enumerate(keys):
        x, y = SWEEPS[key]
        a = lrfind.analyze(x, y, methods=methods)
        s = a.suggestions["auto"]
        assert batch.confidence["auto"][i] == s.confidence
        assert batch.lr["auto"][i] == s.lr and batch.index["auto"][i] == s.index
        # analyze reads the curve before its stop, which counts as an explosion.
        k = a.stop_index if a.stop_index >= 0 else len(x)
        direct = lrfind.suggest(x[:k], y[:k], "auto", smooth=0.2, drop=0.9)
        assert (s.lr, s.index, s.range) == (direct.lr, direct.index, direct.range)
        assert s.confidence == (after_explosion(direct, x[k - 1]) if a.stop_index >= 0 else direct.confidence)
    # With the default methods and parameters too.
    batch = lrfind.analyze_batch(np.concatenate(lrs), np.concatenate(losses), offsets)
    for i, key in enumerate(keys):
        s = lrfind.analyze(*SWEEPS[key]).suggestions["auto"]
        assert s.confidence is not None and batch.confidence["auto"][i] == s.confidence
    only = lrfind.analyze(lrs[0], losses[0], methods="auto")
    assert list(only.suggestions) == ["auto"] and only.suggestions["auto"].confidence == batch.confidence["auto"][0]
