"""`lrfind.analyze_batch` against the numpy baselines, the streaming tracker, and the import.

With benchmarks enabled (`make bench`) the batch runs on 100,000 sweeps from `make_sweeps`;
under plain `pytest` (benchmarks disabled) every test runs once on small data, as a test. The
first test checks that analyze_batch and the vectorised baseline agree on the data the batch
benchmarks time. When enabled, the module prints the ratios of the best times at its end.
"""

import subprocess
import sys
from functools import cache

import numpy as np
import pytest

import lrfind

from baselines import floor, per_sweep_loop, vectorized
from report import print_summary
from sweeps import make_sweeps

# (benchmarks enabled, disabled): sweeps in the batch, steps of the streaming tracker.
SWEEPS = (100_000, 2_000)
STEPS = (100_000, 2_000)


def _size(benchmark, sizes):
    return sizes[benchmark.disabled]


@cache
def _sweeps(n):
    return make_sweeps(n)


def _analyze_batch(lrs, losses, offsets):
    b = lrfind.analyze_batch(lrs, losses, offsets, methods="steepest")
    return b.stop_index, b.index["steepest"], b.lr["steepest"]


BATCH = {
    "analyze_batch": _analyze_batch,
    # `auto` alone (the core's default method), and every method (Python's and the CLI's default).
    "analyze_batch_auto": lambda *data: lrfind.analyze_batch(*data, methods="auto"),
    "analyze_batch_all": lambda *data: lrfind.analyze_batch(*data, methods=lrfind.METHODS),
    "per_sweep_loop": per_sweep_loop,
    "vectorized": vectorized,
    "floor": floor,
}


@pytest.fixture(scope="module")
def best(request):
    """Best (minimum) time per benchmark, filled by the tests; the ratios go out at module end."""
    times = {}
    yield times
    print_summary(request, "lrfind benchmark ratios (best of N)", _ratios(times))


def _record(best, benchmark, name):
    if benchmark.enabled:
        best[name] = benchmark.stats.stats.min


def _ratios(t):
    lines = []
    if "analyze_batch" in t:
        ours = t["analyze_batch"]
        for name, goal in (("per_sweep_loop", ">= 200x"), ("vectorized", ">= 20x")):
            if name in t:
                lines.append(f"analyze_batch (steepest) is {t[name] / ours:.1f}x faster than {name} (goal {goal})")
        if "floor" in t:
            lines.append(f"analyze_batch (steepest) takes {ours / t['floor']:.1f}x the floor's time (goal <= 3x)")
        if "analyze_batch_auto" in t:
            auto = t["analyze_batch_auto"]
            lines.append(f"analyze_batch (auto) takes {auto / ours:.2f}x steepest's time (goal <= 2x)")
        if "analyze_batch_all" in t:
            every = t["analyze_batch_all"] * 1e3 * 100_000 / SWEEPS[0]
            lines.append(
                f"analyze_batch (all {len(lrfind.METHODS)} methods): {every:.0f} ms per 100,000 sweeps, "
                f"{t['analyze_batch_all'] / ours:.2f}x steepest's time"
            )
    if {"tracker", "empty_loop"} <= t.keys():
        per_step = (t["tracker"] - t["empty_loop"]) / STEPS[0] * 1e9
        lines.append(f"DivergenceDetector.update from Python: {per_step:.0f} ns per step over an empty loop")
    if {"import_lrfind", "import_numpy"} <= t.keys():
        ms = t["import_lrfind"] * 1e3, t["import_numpy"] * 1e3
        lines.append("import lrfind: {:.1f} ms after import numpy ({:.1f} ms), in a fresh interpreter".format(*ms))
    return lines


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")  # wanted for its size only
def test_matches_vectorized(benchmark):
    """The equivalence check, not a timing: same stop, index and LR as baseline (b), per sweep."""
    data = _sweeps(_size(benchmark, SWEEPS))
    for want, got in zip(vectorized(*data), _analyze_batch(*data), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.benchmark(group="batch: 100,000 sweeps of 60-100 points", min_rounds=10)
@pytest.mark.parametrize(
    "name, rounds",
    [
        ("analyze_batch", None),
        ("analyze_batch_auto", None),
        ("analyze_batch_all", None),
        ("per_sweep_loop", 3),
        ("vectorized", None),
        ("floor", None),
    ],
)
def test_batch(benchmark, best, name, rounds):
    """One implementation of the seed's pipeline (or auto, or every method, or the floor) over all
    the sweeps."""
    data = _sweeps(_size(benchmark, SWEEPS))
    if rounds is None:
        benchmark(BATCH[name], *data)
    else:  # ~6 s a round
        benchmark.pedantic(BATCH[name], args=data, rounds=rounds, iterations=1)
    _record(best, benchmark, name)


def _tracker(losses):
    d = lrfind.DivergenceDetector()
    for loss in losses:
        d.update(loss)
    return d


def _empty_loop(losses):
    for _loss in losses:
        pass


@pytest.mark.benchmark(group="tracker: 100,000 steps from Python")
@pytest.mark.parametrize("name", ["tracker", "empty_loop"])
def test_tracker(benchmark, best, name):
    """DivergenceDetector.update once per loss in a Python loop, and the bare loop."""
    n = _size(benchmark, STEPS)
    rng = np.random.default_rng(0)
    # A falling, noisy loss that never diverges: every update does the full work.
    losses = (2.3 * np.exp(-np.linspace(0.0, 3.0, n)) * np.exp(0.02 * rng.standard_normal(n))).tolist()
    if name == "tracker":
        assert not benchmark(_tracker, losses).stopped
    else:
        benchmark(_empty_loop, losses)
    _record(best, benchmark, name)


# Times `import numpy`, then `import lrfind` on top of it, inside a fresh interpreter.
IMPORTS = (
    "import time; t = time.perf_counter(); import numpy; n = time.perf_counter(); import lrfind; "
    "print(n - t, time.perf_counter() - n)"
)


@pytest.mark.benchmark(group="import in a fresh interpreter")
def test_import(benchmark, best):
    """A fresh `python -c` importing numpy then lrfind: the whole run is the timing; the two
    imports are timed inside it with perf_counter, and their best go to the summary."""
    times = []

    def run():
        out = subprocess.run([sys.executable, "-c", IMPORTS], check=True, capture_output=True, text=True).stdout
        times.append([float(t) for t in out.split()])

    benchmark.pedantic(run, rounds=20, iterations=1)
    if benchmark.enabled:
        best["import_numpy"], best["import_lrfind"] = np.min(times, axis=0)
