"""One sweep, every suggestion method, from a thousand to ten million points: linear growth.

With benchmarks enabled (`make bench`) each method analyses one sweep of 1,000, 100,000 and
10,000,000 points (`lrfind.analyze(..., methods=name)`), all methods together too, and
`lrfind analyze` reads and analyses a 10M-point .npz end to end; under plain `pytest` every
test runs once on small data, as a test. When enabled, the module prints the time per point
at each size at its end: flat across sizes means linear time.
"""

import subprocess
import sys
from functools import cache

import numpy as np
import pytest

import lrfind

from report import print_summary

#: Sweep lengths timed (benchmarks enabled) and run once (disabled).
POINTS = ((1_000, 100_000, 10_000_000), (1_000, 5_000, 20_000))
METHODS = [*lrfind.METHODS, "all"]


@cache
def sweep(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A realistic range test stretched to n points: plateau, descent, explosion, 2% noise."""
    lrs = lrfind.sweep_lrs(1e-7, 10.0, n)
    x = np.log10(lrs)
    noise = np.random.default_rng(0).normal(0.0, 0.02, n)
    return lrs, 2.3 - 0.8 / (1 + np.exp(-2.5 * (x + 3))) + 6.0 * np.maximum(x + 1, 0) ** 2 + noise


@pytest.fixture(scope="module")
def best(request):
    """Best time per (method, points), filled by the tests; per-point times go out at module end."""
    times: dict[tuple[str, int], float] = {}
    yield times
    lines = []
    for method in METHODS:
        row = [(n, times[method, n]) for n in POINTS[0] if (method, n) in times]
        if row:
            cells = ", ".join(f"{n:,} pts {t * 1e3:.1f} ms ({t / n * 1e9:.0f} ns/pt)" for n, t in row)
            lines.append(f"{method}: {cells}")
    if "cli" in times:
        lines.append(f"lrfind analyze on a 10M-point .npz, every method: {times['cli']:.2f} s end to end")
    print_summary(request, "one sweep, time per point by size (best of N)", lines)


@pytest.mark.parametrize("size", range(3))
@pytest.mark.parametrize("method", METHODS)
def test_one_sweep(benchmark, best, method, size):
    n = POINTS[benchmark.disabled][size]
    lrs, losses = sweep(n)
    methods = None if method == "all" else method
    rounds = 3 if n >= 1_000_000 else 10
    a = benchmark.pedantic(lrfind.analyze, args=(lrs, losses), kwargs={"methods": methods}, rounds=rounds)
    assert a.stop_index > 0 and (a.suggested_lr is not None or method == "explosion")
    if benchmark.enabled:
        best[method, n] = benchmark.stats.stats.min


def test_cli_on_a_10m_point_file(benchmark, best, tmp_path):
    n = POINTS[benchmark.disabled][-1]
    lrs, losses = sweep(n)
    path = tmp_path / "big.npz"
    np.savez(path, lrs=lrs, losses=losses)
    command = [sys.executable, "-m", "lrfind", "analyze", str(path)]
    run = benchmark.pedantic(subprocess.run, args=(command,), kwargs={"capture_output": True, "text": True}, rounds=3)
    assert run.returncode == 0, run.stderr
    assert "1 sweep(s) from 1 file(s)" in run.stdout
    if benchmark.enabled:
        best["cli"] = benchmark.stats.stats.min
