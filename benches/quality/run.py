"""Run the quality benchmark and print its table.

    .venv/bin/python benches/quality/run.py [--jobs 2] [--out table.md]

For every task and seed: lrfind's range test; a grid of constant LRs, a quarter decade apart,
trained for the task's budget (extended until its best point is not at an edge); the best grid LR
is the oracle. Then every method's suggestion is trained with the same budget and scored. Every
trained result is cached in ``results.json`` beside this file (keyed by task, task version, seed
and the LR to 12 digits), so a rerun trains only what is new; everything runs on one thread per worker
and is deterministic on a given machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import lrfind  # noqa: E402

from scoring import METHODS, regret, suggest, summarize  # noqa: E402
from tasks import TASKS  # noqa: E402

CACHE = Path(__file__).with_name("results.json")
SEEDS = (0, 1, 2)
#: Tasks the auto method's thresholds were fitted on; the others are held out.
FIT_TASKS = ("digits-mlp-sgdm", "diabetes-mlp-adamw", "digits-cnn-adam", "chars-gru-adamw")
GRID_STEP = 0.25  # decades between grid LRs
GRID_START = (-5.0, 1.0)  # log10 of the first grid's ends
GRID_LIMITS = (-8.0, 3.0)  # the grid never grows past these


def key(task: str, seed: int, lr: float | None = None) -> str:
    """Cache key: task@version/seed[/lr to 12 significant digits, so that a suggestion that moves
    by rounding alone (a few ulps, after a change to the core) finds its run]."""
    base = f"{task}@{TASKS[task].version}/{seed}"
    return base if lr is None else f"{base}/{float(lr):.12g}"


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def _train(job: tuple[str, int, float]) -> dict[str, Any]:
    from tasks import train

    task, seed, lr = job
    return train(TASKS[task], seed, lr)


def _sweep(job: tuple[str, int]) -> dict[str, Any]:
    from tasks import range_test

    lrs, losses = range_test(TASKS[job[0]], job[1])
    return {"lrs": lrs, "losses": losses}


class Cache:
    """``results.json``: range tests under ``sweeps``, trained runs under ``runs``."""

    def __init__(self, path: Path, jobs: int, offline: bool = False):
        self.path, self.offline = path, offline
        data = json.loads(path.read_text()) if path.exists() else {}
        self.sweeps: dict[str, Any] = data.get("sweeps", {})
        self.runs: dict[str, Any] = data.get("runs", {})
        self.jobs = jobs

    def save(self) -> None:
        data = {"sweeps": dict(sorted(self.sweeps.items())), "runs": dict(sorted(self.runs.items()))}
        self.path.write_text(json.dumps(data, indent=0, sort_keys=False) + "\n")

    def _map(self, fn: Any, jobs: list[Any]) -> list[Any]:
        if not jobs:
            return []
        if self.offline:
            raise LookupError(f"{len(jobs)} result(s) missing from {self.path.name}, e.g. {jobs[0]}: run run.py")
        print(f"  {fn.__name__.strip('_')}: {len(jobs)} job(s)", file=sys.stderr, flush=True)
        if self.jobs == 1:
            _worker_init()
            return [fn(j) for j in jobs]
        with ProcessPoolExecutor(self.jobs, initializer=_worker_init) as pool:
            return list(pool.map(fn, jobs, chunksize=1))

    def ensure_sweeps(self, cases: list[tuple[str, int]]) -> None:
        todo = [c for c in cases if key(*c) not in self.sweeps]
        for c, r in zip(todo, self._map(_sweep, todo), strict=True):
            self.sweeps[key(*c)] = r
        self.save()

    def ensure_runs(self, jobs: list[tuple[str, int, float]]) -> None:
        todo = sorted({j for j in jobs if key(*j) not in self.runs})
        for j, r in zip(todo, self._map(_train, todo), strict=True):
            self.runs[key(*j)] = r
        self.save()

    def sweep(self, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.sweeps[key(task, seed)]
        return np.array(s["lrs"]), np.array(s["losses"])

    def run(self, task: str, seed: int, lr: float) -> dict[str, Any]:
        return self.runs[key(task, seed, lr)]


def grid_lrs(lo: float, hi: float) -> list[float]:
    """10**e for e from ``lo`` to ``hi`` in GRID_STEP decades."""
    n = round((hi - lo) / GRID_STEP)
    return [float(10 ** (lo + i * GRID_STEP)) for i in range(n + 1)]


def ensure_grids(cache: Cache, cases: list[tuple[str, int]]) -> dict[tuple[str, int], list[float]]:
    """Train each case's grid, growing it a decade at an edge that holds the best point."""
    ends = {c: list(GRID_START) for c in cases}
    while True:
        cache.ensure_runs([(*c, lr) for c in cases for lr in grid_lrs(*ends[c])])
        grown = False
        for c in cases:
            lrs = grid_lrs(*ends[c])
            best = int(np.argmin([cache.run(*c, lr)["val_loss"] for lr in lrs]))
            if best == 0 and ends[c][0] > GRID_LIMITS[0]:
                ends[c][0] -= 1.0
                grown = True
            elif best == len(lrs) - 1 and ends[c][1] < GRID_LIMITS[1]:
                ends[c][1] += 1.0
                grown = True
        if not grown:
            return {c: grid_lrs(*ends[c]) for c in cases}


def oracle(cache: Cache, case: tuple[str, int], grid: list[float]) -> tuple[float, float]:
    """The best grid LR and its validation loss."""
    losses = [cache.run(*case, lr)["val_loss"] for lr in grid]
    i = int(np.argmin(losses))
    return grid[i], losses[i]


#: The parallel rows: the task's seeds' range tests together, one LR for every seed.
POOLED_MEDIAN_CURVE = "auto on the median curve of the 3 seeds' range tests"
POOLED_MEDIAN_PICK = "auto, median of the 3 seeds' suggestions"


def pooled(cache: Cache, task: str) -> tuple[float | None, float | None]:
    """``auto`` on the pointwise median of the seeds' raw losses (over the points every seed
    reached; a non-finite loss counts as +inf), and the median in log of the seeds' own ``auto``
    suggestions: what ``ParallelResult`` offers."""
    sweeps = [cache.sweep(task, s) for s in SEEDS]
    n = min(len(lrs) for lrs, _ in sweeps)
    lrs = sweeps[0][0][:n]
    assert all(np.array_equal(lrs, other[:n]) for other, _ in sweeps), "the seeds share one ladder"
    losses = np.stack([np.where(np.isfinite(loss[:n]), loss[:n], np.inf) for _, loss in sweeps])
    curve = suggest(lrs, np.median(losses, axis=0), METHODS["auto"])
    picks = [suggest(*sw, METHODS["auto"]) for sw in sweeps]
    logs = [np.log(p) for p in picks if p is not None]
    return curve, float(np.exp(np.median(logs))) if logs else None


def score(cache: Cache, cases: list[tuple[str, int]], grids: dict[tuple[str, int], list[float]]) -> dict[str, Any]:
    """Per method: its row over all cases, over the fitted and the held-out tasks, and per case."""
    picks = {m: {c: suggest(*cache.sweep(*c), opts) for c in cases} for m, opts in METHODS.items()}
    if "auto" in METHODS:
        together = {t: pooled(cache, t) for t in {c[0] for c in cases}}
        picks[POOLED_MEDIAN_CURVE] = {c: together[c[0]][0] for c in cases}
        picks[POOLED_MEDIAN_PICK] = {c: together[c[0]][1] for c in cases}
    cache.ensure_runs([(*c, lr) for p in picks.values() for c, lr in p.items() if lr is not None])
    table: dict[str, Any] = {}
    for m, p in picks.items():
        per_case = {}
        for c in cases:
            best_lr, best_loss = oracle(cache, c, grids[c])
            lr = p[c]
            if lr is None:
                per_case[c] = None
                continue
            r = cache.run(*c, lr)
            per_case[c] = (regret(r["val_loss"], best_loss), math.log10(lr / best_lr), r["diverged"])

        def row(subset: list[tuple[str, int]], per_case: dict = per_case) -> dict[str, Any]:
            got = [per_case[c] for c in subset if per_case[c] is not None]
            return summarize([g[0] for g in got], [g[1] for g in got], [g[2] for g in got], len(subset) - len(got))

        table[m] = {
            "all": row(cases),
            "fit": row([c for c in cases if c[0] in FIT_TASKS]),
            "held_out": row([c for c in cases if c[0] not in FIT_TASKS]),
            "cases": {f"{t}/{s}": v for (t, s), v in per_case.items()},
            "seed_spread": seed_spread(p),
        }
    return table


def seed_spread(picks: dict[tuple[str, int], float | None]) -> float:
    """Median over tasks of how far apart (in decades) the seeds' suggestions lie: how much one
    range test's answer depends on its seed (fastai #3295). NaN if a task lacks a suggestion."""
    tasks: dict[str, list[float]] = {}
    for (task, _), lr in picks.items():
        tasks.setdefault(task, []).append(math.nan if lr is None else math.log10(lr))
    return float(np.median([max(logs) - min(logs) for logs in tasks.values()]))


def markdown(table: dict[str, Any]) -> str:
    """The README table, sorted by median regret over all runs."""
    head = (
        "| method | median regret | regret < 5% | regret < 20% | median decades off | diverged | no LR "
        "| median regret, fit tasks | median regret, held-out tasks | seed spread (decades) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    order = sorted(table, key=lambda m: (table[m]["all"]["median_regret"], -table[m]["all"]["under_20"]))
    for m in order:
        a, f, h = table[m]["all"], table[m]["fit"], table[m]["held_out"]
        rows.append(
            f"| {m} | {pct(a['median_regret'])} | {a['under_5']:.0%} | {a['under_20']:.0%} "
            f"| {a['median_decades']:.2f} | {a['diverged']}/{a['runs']} | {a['no_suggestion']} "
            f"| {pct(f['median_regret'])} | {pct(h['median_regret'])} "
            f"| {'-' if m in (POOLED_MEDIAN_CURVE, POOLED_MEDIAN_PICK) else format(table[m]['seed_spread'], '.2f')} |"
        )
    return head + "\n".join(rows) + "\n"


def auto_reading(cache: Cache, cases: list[tuple[str, int]], grids: dict, table: dict[str, Any]) -> str:
    """What auto's confidence and range are worth: the median regret per confidence level, and
    how often the range holds the oracle LR (within half a grid step)."""
    levels: dict[str, list[float]] = {"high": [], "medium": [], "low": []}
    inside = []
    for c in cases:
        s = lrfind.analyze(*cache.sweep(*c), **METHODS["auto"]).suggestions["auto"]
        if s.lr is None or s.confidence is None or s.range is None:
            continue
        best_lr, _ = oracle(cache, c, grids[c])
        level = lrfind.confidence_level(s.confidence)
        levels[level].append(table["auto"]["cases"][f"{c[0]}/{c[1]}"][0])
        half = 10 ** (GRID_STEP / 2)
        inside.append(s.range[0] <= best_lr * half and best_lr / half <= s.range[1])
    parts = [f"{k} confidence: {len(v)} runs, median regret {pct(float(np.median(v)))}" for k, v in levels.items() if v]
    return "auto: " + "; ".join(parts) + f". Its range holds the oracle LR in {sum(inside)} of {len(inside)} runs.\n"


def pct(v: float) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.1%}"


def cases_of(tasks: list[str], seeds: tuple[int, ...]) -> list[tuple[str, int]]:
    return [(t, s) for t in tasks for s in seeds]


def report(cache: Cache, cases: list[tuple[str, int]]) -> str:
    """The markdown table and the line on auto's confidence and range."""
    grids = ensure_grids(cache, cases)
    table = score(cache, cases, grids)
    return markdown(table) + ("\n" + auto_reading(cache, cases, grids, table) if "auto" in table else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--tasks", nargs="*", default=list(TASKS), help="task names (default: all)")
    p.add_argument("--out", type=Path, help="also write the markdown table here")
    args = p.parse_args(argv)
    cache = Cache(CACHE, args.jobs)
    cases = cases_of(args.tasks, SEEDS)
    cache.ensure_sweeps(cases)
    text = report(cache, cases)
    print(text)
    grids = ensure_grids(cache, cases)
    for c in cases:
        lr, loss = oracle(cache, c, grids[c])
        print(f"  oracle {c[0]}/{c[1]}: lr {lr:.3g} val loss {loss:.4g} grid {grids[c][0]:.0e}..{grids[c][-1]:.0e}")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
