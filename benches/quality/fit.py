"""Fit ``auto``'s parameters on the fit half of the quality benchmark's tasks.

    .venv/bin/python benches/quality/fit.py     # after run.py has filled results.json

Tries every combination of ``smooth``, ``drop`` and ``shift`` on the range tests of the tasks
in ``run.FIT_TASKS`` only, scoring each suggestion by the grid's validation loss interpolated at
the suggested LR (no training). The objective is the mean regret capped at 100% (a diverged or
missing suggestion counts 100%): unlike the median of 12 runs it sees every run, and the cap
keeps one blow-up from deciding. A combination is ranked by its objective averaged over its
neighbours in the grid, so that a broad good region wins over a lucky point. Prints the best ten
with their scores on the fit tasks and, for information only, on the held-out tasks. The first
one's values are the defaults in ``rust/auto.rs`` (``AutoParams::default``).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from run import CACHE, FIT_TASKS, SEEDS, Cache, cases_of, ensure_grids, oracle  # noqa: E402
from scoring import SEED, interpolated_loss, regret, suggest  # noqa: E402
from tasks import TASKS  # noqa: E402

SMOOTH = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4)
DROP = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
SHIFT = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25)
CAP = 1.0


def surrogate_regrets(cache: Cache, cases: list, grids: dict, params: dict) -> np.ndarray:
    out = []
    for c in cases:
        lr = suggest(*cache.sweep(*c), dict(SEED, methods={"auto": params}))
        grid = np.array(grids[c])
        losses = np.array([cache.run(*c, g)["val_loss"] for g in grid])
        _, best = oracle(cache, c, grids[c])
        out.append(np.inf if lr is None else regret(interpolated_loss(grid, losses, lr), best))
    return np.array(out)


def main() -> int:
    cache = Cache(CACHE, jobs=1)
    fit = cases_of(list(FIT_TASKS), SEEDS)
    held = cases_of([t for t in TASKS if t not in FIT_TASKS], SEEDS)
    grids = ensure_grids(cache, fit + held)  # everything is cached: trains nothing
    axes = (SMOOTH, DROP, SHIFT)
    objective = np.empty([len(a) for a in axes])
    for idx in itertools.product(*(range(len(a)) for a in axes)):
        r = surrogate_regrets(cache, fit, grids, params_at(idx))
        objective[idx] = np.mean(np.minimum(r, CAP))
    # Each combination is judged by the mean over its neighbourhood in the grid (one step along
    # every axis): a broad good region beats a lucky isolated point on 12 runs.
    padded = np.pad(objective, 1, mode="edge")
    shape = objective.shape
    smoothed = np.mean(
        [
            padded[tuple(slice(1 + d, 1 + d + n) for d, n in zip(ds, shape, strict=True))]
            for ds in itertools.product((-1, 0, 1), repeat=3)
        ],
        axis=0,
    )
    order = np.argsort(smoothed, axis=None)[:10]
    print("neighbourhood (fit)  objective (fit)  median (fit)  median (held out)  params")
    for flat in order:
        idx = np.unravel_index(flat, shape)
        params = params_at(idx)
        fit_median = float(np.median(surrogate_regrets(cache, fit, grids, params)))
        held_median = float(np.median(surrogate_regrets(cache, held, grids, params)))
        print(f"{smoothed[idx]:20.3f}  {objective[idx]:15.3f}  {fit_median:12.3f}  {held_median:17.3f}  {params}")
    return 0


def params_at(idx: tuple[int, ...]) -> dict[str, float]:
    return dict(smooth=SMOOTH[idx[0]], drop=DROP[idx[1]], shift=SHIFT[idx[2]])


if __name__ == "__main__":
    sys.exit(main())
