"""Fit ``auto``'s parameters on the quality benchmark, one family held out at a time.

    .venv/bin/python benches/quality/fit.py     # after run.py has filled results.json

Tries every combination of ``smooth``, ``drop`` and ``shift`` on the recorded range tests,
scoring each suggestion by the grid's validation loss interpolated at the suggested LR (no
training), at both budgets. The objective is the mean regret capped at 100% (a diverged or
missing suggestion counts 100%): unlike a median it sees every run, and the cap keeps one
blow-up from deciding. A combination is ranked by its objective averaged over its neighbours in
the grid, so that a broad good region wins over a lucky point.

``run.py`` scores ``auto`` fitted this way without the family of the task at hand (leave one
family out): that row is the estimate for a task unlike the benchmark's. This script prints the
fit on every family (the best ten) and each family's held-out fit.
"""

from __future__ import annotations

import itertools
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from scoring import SEED, interpolated_loss, regret, suggest  # noqa: E402

if TYPE_CHECKING:
    from run import Bench, Unit

SMOOTH = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
DROP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SHIFT = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
AXES = (SMOOTH, DROP, SHIFT)
CAP = 1.0


def params_at(idx: tuple[int, ...]) -> dict[str, float]:
    return dict(smooth=SMOOTH[idx[0]], drop=DROP[idx[1]], shift=SHIFT[idx[2]])


class AutoFit:
    """The surrogate regret of every parameter combination on every unit of ``bench``, and the
    choice of a combination on a subset of units."""

    def __init__(self, bench: Bench):
        from run import BUDGETS

        self.bench = bench
        self.shape = tuple(len(a) for a in AXES)
        self.units = bench.units
        self.regrets = np.empty((*self.shape, len(self.units)))
        oracle = {u: bench.oracle(u)[1] for u in self.units}
        grid = {(c, b): bench.grid_losses(c, b) for c in bench.cases for b in range(len(BUDGETS))}
        for idx in itertools.product(*(range(n) for n in self.shape)):
            opts = dict(SEED, methods={"auto": params_at(idx)})
            lr = {c: suggest(*bench.cache.sweep(*c), opts) for c in bench.cases}
            self.regrets[idx] = [
                np.inf
                if (got := lr[u[:2]]) is None
                else regret(interpolated_loss(np.array(bench.grids[u[:2]]), grid[u[:2], u[2]], got), oracle[u])
                for u in self.units
            ]

    def objective(self, units: list[Unit]) -> tuple[np.ndarray, np.ndarray]:
        """Per combination: the capped mean regret on ``units``, and its mean over the grid
        neighbourhood (one step along every axis)."""
        cols = [self.units.index(u) for u in units]
        objective = np.minimum(self.regrets[..., cols], CAP).mean(axis=-1)
        padded = np.pad(objective, 1, mode="edge")
        smoothed = np.mean(
            [
                padded[tuple(slice(1 + d, 1 + d + n) for d, n in zip(ds, self.shape, strict=True))]
                for ds in itertools.product((-1, 0, 1), repeat=3)
            ],
            axis=0,
        )
        return objective, smoothed

    def choose(self, units: list[Unit]) -> dict[str, float]:
        _, smoothed = self.objective(units)
        return params_at(np.unravel_index(int(np.argmin(smoothed)), self.shape))

    @cached_property
    def held_out_params(self) -> dict[str, dict[str, float]]:
        """Per family: the combination chosen on every other family."""
        from run import family

        return {f: self.choose([u for u in self.units if family(u) != f]) for f in self.bench.families}

    def median(self, params: dict[str, float], units: list[Unit]) -> float:
        idx = tuple(axis.index(params[name]) for axis, name in zip(AXES, ("smooth", "drop", "shift"), strict=True))
        return float(np.median(self.regrets[idx][[self.units.index(u) for u in units]]))


def main() -> int:
    from run import CACHE, Bench, Cache, family
    from tasks import TASKS

    bench = Bench(Cache(CACHE, jobs=1, offline=True), list(TASKS))
    fit = bench.fit
    objective, smoothed = fit.objective(bench.units)
    print("every family: neighbourhood  objective  median  params")
    for flat in np.argsort(smoothed, axis=None)[:10]:
        idx = np.unravel_index(flat, fit.shape)
        params = params_at(idx)
        print(f"{smoothed[idx]:27.3f}  {objective[idx]:9.3f}  {fit.median(params, bench.units):6.3f}  {params}")
    print("\nheld-out family: median on the other families, median on it (interpolated), params")
    for f, params in fit.held_out_params.items():
        inside = [u for u in bench.units if family(u) != f]
        out = [u for u in bench.units if family(u) == f]
        print(f"{f:15s} {fit.median(params, inside):6.3f} {fit.median(params, out):6.3f}  {params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
