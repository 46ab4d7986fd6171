"""Run the quality benchmark and print its tables.

    .venv/bin/python benches/quality/run.py [--jobs 2] [--out table.md] [--cache results.json]

For every task and seed: lrfind's range test; a grid of constant LRs, a quarter decade apart,
each trained for the task's long budget with the validation loss read on the way (see
``BUDGETS``; extended until the best point of each budget is not at an edge); the best grid LR of a budget
is that budget's oracle. Then every method's suggestion is trained the same way and scored at
both budgets. ``auto`` is scored twice: with lrfind's defaults, and with the parameters ``fit.py``
fits on the other families only (leave-one-family-out): the second is what a task unlike any
that ``auto`` was fitted on can expect. Every trained result is cached in ``results.json``
beside this file (keyed by task, task version, seed and the LR to 12 digits), so a rerun trains
only what is new; everything runs on one thread per worker and is deterministic on a given
machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import lrfind  # noqa: E402

from fit import AutoFit  # noqa: E402
from scoring import METHODS, SEED, regret, suggest, summarize  # noqa: E402
from tasks import TASKS  # noqa: E402

CACHE = Path(__file__).with_name("results.json")
SEEDS = (0, 1, 2)
#: The short budget is a task's ``steps``, scored by the validation loss at its end; the long one
#: is ``tasks.LONG`` times as many, scored by the best of the validation losses read every
#: ``steps`` steps (early stopping, as a user keeps the best checkpoint).
BUDGETS = ("short", "long")
GRID_STEP = 0.25  # decades between grid LRs
GRID_START = (-5.0, 1.0)  # log10 of the first grid's ends
GRID_LIMITS = (-8.0, 3.0)  # the grid never grows past these

Case = tuple[str, int]  # task, seed: one range test
Unit = tuple[str, int, int]  # task, seed, budget: one scored outcome

#: Candidates that ``refine`` trains, each for a quarter of the task's short budget.
REFINE = 5

#: The rows that are not one method's suggestion.
HELD_OUT = "auto, fitted without the task's family (held out)"
REFINED = f"auto + refine={REFINE} (costs {REFINE}/4 = {REFINE / 4:g}x the short budget in steps)"
NOISE_FLOOR = "noise floor: another seed's best LR"
POOLED_MEDIAN_PICK = "auto, median of the 3 seeds' suggestions"
POOLED_MEDIAN_CURVE = "auto on the median curve of the 3 seeds' range tests"


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


def _refine(job: Case) -> dict[str, Any]:
    from tasks import refine

    return refine(TASKS[job[0]], job[1], REFINE)


def _sweep(job: Case) -> dict[str, Any]:
    from tasks import range_test

    lrs, losses = range_test(TASKS[job[0]], job[1])
    return {"lrs": lrs, "losses": losses}


class Cache:
    """``results.json``: range tests under ``sweeps``, trained runs under ``runs``, range tests
    with ``refine`` under ``refined``."""

    def __init__(self, path: Path, jobs: int, offline: bool = False):
        self.path, self.offline = path, offline
        data = json.loads(path.read_text()) if path.exists() else {}
        self.sweeps: dict[str, Any] = data.get("sweeps", {})
        self.runs: dict[str, Any] = data.get("runs", {})
        self.refined: dict[str, Any] = data.get("refined", {})
        self.jobs = jobs

    def save(self) -> None:
        """Write the cache, without the results of old task versions."""
        current = {f"{t}@{task.version}" for t, task in TASKS.items()}
        data = {
            name: {k: v for k, v in sorted(getattr(self, name).items()) if k.split("/")[0] in current}
            for name in ("sweeps", "runs", "refined")
        }
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

    def ensure_sweeps(self, cases: list[Case]) -> None:
        todo = [c for c in cases if key(*c) not in self.sweeps]
        for c, r in zip(todo, self._map(_sweep, todo), strict=True):
            self.sweeps[key(*c)] = r
        self.save()

    def ensure_refined(self, cases: list[Case]) -> None:
        todo = [c for c in cases if key(*c) not in self.refined]
        for c, r in zip(todo, self._map(_refine, todo), strict=True):
            self.refined[key(*c)] = r
        self.save()

    def ensure_runs(self, jobs: list[tuple[str, int, float]]) -> None:
        # The slowest tasks first, so that the pool does not end on one long job.
        todo = sorted({j for j in jobs if key(*j) not in self.runs}, key=lambda j: (-TASKS[j[0]].steps, j))
        for j, r in zip(todo, self._map(_train, todo), strict=True):
            self.runs[key(*j)] = r
        self.save()

    def sweep(self, task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.sweeps[key(task, seed)]
        return np.array(s["lrs"]), np.array(s["losses"])

    def val_loss(self, task: str, seed: int, lr: float, budget: int) -> float:
        """The score of a trained run at a budget (see ``BUDGETS``)."""
        readings = self.runs[key(task, seed, lr)]["val_loss"]
        return float(readings[0] if budget == 0 else min(readings))

    def diverged(self, task: str, seed: int, lr: float, budget: int) -> bool:
        """A non-finite loss, or a score above the untrained model's validation loss."""
        return not self.val_loss(task, seed, lr, budget) <= self.runs[key(task, seed, lr)]["start_loss"]


def grid_lrs(lo: float, hi: float) -> list[float]:
    """10**e for e from ``lo`` to ``hi`` in GRID_STEP decades."""
    n = round((hi - lo) / GRID_STEP)
    return [float(10 ** (lo + i * GRID_STEP)) for i in range(n + 1)]


def ensure_grids(cache: Cache, cases: list[Case]) -> dict[Case, list[float]]:
    """Train each case's grid, growing it a decade at an edge that holds a budget's best point."""
    ends = {c: list(GRID_START) for c in cases}
    while True:
        cache.ensure_runs([(*c, lr) for c in cases for lr in grid_lrs(*ends[c])])
        grown = False
        for c in cases:
            lrs = grid_lrs(*ends[c])
            for b in range(len(BUDGETS)):
                best = int(np.argmin([cache.val_loss(*c, lr, b) for lr in lrs]))
                if best == 0 and ends[c][0] > GRID_LIMITS[0]:
                    ends[c][0] -= 1.0
                    grown = True
                elif best == len(lrs) - 1 and ends[c][1] < GRID_LIMITS[1]:
                    ends[c][1] += 1.0
                    grown = True
        if not grown:
            return {c: grid_lrs(*ends[c]) for c in cases}


class Bench:
    """The benchmark's cases, grids and oracles, over the committed cache."""

    def __init__(self, cache: Cache, tasks: list[str]):
        self.cache = cache
        self.cases: list[Case] = [(t, s) for t in tasks for s in SEEDS]
        self.units: list[Unit] = [(t, s, b) for t, s in self.cases for b in range(len(BUDGETS))]
        cache.ensure_sweeps(self.cases)
        self.grids = ensure_grids(cache, self.cases)
        self.families = list(dict.fromkeys(TASKS[t].family for t in tasks))  # in the tasks' order

    def grid_losses(self, case: Case, budget: int) -> np.ndarray:
        return np.array([self.cache.val_loss(*case, lr, budget) for lr in self.grids[case]])

    def oracle(self, unit: Unit) -> tuple[float, float]:
        """The best grid LR of a case at a budget, and its validation loss."""
        losses = self.grid_losses(unit[:2], unit[2])
        i = int(np.argmin(losses))
        return self.grids[unit[:2]][i], float(losses[i])

    @cached_property
    def fit(self) -> AutoFit:
        return AutoFit(self)


def family(unit: Unit | Case) -> str:
    return TASKS[unit[0]].family


def picks(bench: Bench) -> dict[str, dict[Unit, float | None]]:
    """Every row's LR for every unit: one suggestion per range test (both budgets), except the
    noise floor, which takes another seed's oracle LR at the same budget."""
    by_case: dict[str, dict[Case, float | None]] = {
        m: {c: suggest(*bench.cache.sweep(*c), opts) for c in bench.cases} for m, opts in METHODS.items()
    }
    params = bench.fit.held_out_params
    by_case[HELD_OUT] = {
        c: suggest(*bench.cache.sweep(*c), dict(SEED, methods={"auto": params[family(c)]})) for c in bench.cases
    }
    together = {t: pooled(bench, t) for t in {c[0] for c in bench.cases}}
    by_case[POOLED_MEDIAN_PICK] = {c: together[c[0]][0] for c in bench.cases}
    by_case[POOLED_MEDIAN_CURVE] = {c: together[c[0]][1] for c in bench.cases}
    bench.cache.ensure_refined(bench.cases)
    by_case[REFINED] = {c: bench.cache.refined[key(*c)]["lr"] for c in bench.cases}
    out = {m: {u: p[u[:2]] for u in bench.units} for m, p in by_case.items()}
    out[NOISE_FLOOR] = {
        (t, s, b): bench.oracle((t, SEEDS[(SEEDS.index(s) + 1) % len(SEEDS)], b))[0] for t, s, b in bench.units
    }
    return out


def pooled(bench: Bench, task: str) -> tuple[float | None, float | None]:
    """What ``ParallelResult`` offers for the task's seeds together: the median in log of the
    seeds' own ``auto`` suggestions (its consensus), and ``auto`` on the pointwise median of
    their raw losses (over the points every seed reached; a non-finite loss counts as +inf)."""
    sweeps = [bench.cache.sweep(task, s) for s in SEEDS]
    got = [suggest(*sw, METHODS["auto"]) for sw in sweeps]
    logs = [np.log(p) for p in got if p is not None]
    n = min(len(lrs) for lrs, _ in sweeps)
    lrs = sweeps[0][0][:n]
    assert all(np.array_equal(lrs, other[:n]) for other, _ in sweeps), "the seeds share one ladder"
    losses = np.stack([np.where(np.isfinite(loss[:n]), loss[:n], np.inf) for _, loss in sweeps])
    return (float(np.exp(np.median(logs))) if logs else None), suggest(lrs, np.median(losses, axis=0), METHODS["auto"])


Outcome = tuple[float, float, bool] | None  # regret, decades off the oracle, diverged; None: no LR


def score(bench: Bench) -> dict[str, Any]:
    """Per row: its summary over all units, per budget and per family, and per unit."""
    lrs = picks(bench)
    bench.cache.ensure_runs([(t, s, lr) for p in lrs.values() for (t, s, _), lr in p.items() if lr is not None])
    table: dict[str, Any] = {}
    for m, p in lrs.items():
        outcome: dict[Unit, Outcome] = {}
        for u in bench.units:
            lr = p[u]
            if lr is None:
                outcome[u] = None
                continue
            best_lr, best_loss = bench.oracle(u)
            t, s, b = u
            got = bench.cache.val_loss(t, s, lr, b)
            outcome[u] = (regret(got, best_loss), math.log10(lr / best_lr), bench.cache.diverged(t, s, lr, b))

        def row(subset: list[Unit], outcome: dict[Unit, Outcome] = outcome) -> dict[str, Any]:
            got = [o for u in subset if (o := outcome[u]) is not None]
            return summarize([g[0] for g in got], [g[1] for g in got], [g[2] for g in got], len(subset) - len(got))

        table[m] = {
            "all": row(bench.units),
            "budgets": [row([u for u in bench.units if u[2] == b]) for b in range(len(BUDGETS))],
            "families": {f: row([u for u in bench.units if family(u) == f]) for f in bench.families},
            "units": outcome,
            "seed_spread": seed_spread({u[:2]: lr for u, lr in p.items()}) if m in METHODS else math.nan,
        }
    return table


def seed_spread(picks: dict[Case, float | None]) -> float:
    """Median over tasks of how far apart (in decades) the seeds' suggestions lie: how much one
    range test's answer depends on its seed (fastai #3295). NaN if a task lacks a suggestion."""
    tasks: dict[str, list[float]] = {}
    for (task, _), lr in picks.items():
        tasks.setdefault(task, []).append(math.nan if lr is None else math.log10(lr))
    return float(np.median([max(logs) - min(logs) for logs in tasks.values()]))


def order(table: dict[str, Any]) -> list[str]:
    """The held-out row, the noise floor, then every other row by median regret."""
    rest = sorted(
        (m for m in table if m not in (HELD_OUT, NOISE_FLOOR)),
        key=lambda m: (table[m]["all"]["median_regret"], -table[m]["all"]["under_20"]),
    )
    return [HELD_OUT, NOISE_FLOOR, *rest]


def markdown(bench: Bench, table: dict[str, Any]) -> str:
    """The two README tables: over all runs, and the median regret per family."""
    head = (
        "| method | median regret | short budget | long budget | regret < 5% | regret < 20% | worst regret "
        "| median decades off | diverged | no LR | seed spread (decades) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = []
    for m in order(table):
        a, (s, lg) = table[m]["all"], table[m]["budgets"]
        spread = table[m]["seed_spread"]
        rows.append(
            f"| {m} | {pct(a['median_regret'])} | {pct(s['median_regret'])} | {pct(lg['median_regret'])} "
            f"| {a['under_5']:.0%} | {a['under_20']:.0%} | {pct(a['worst_regret'])} | {a['median_decades']:.2f} "
            f"| {a['diverged']}/{a['runs']} | {a['no_suggestion']} | {'-' if math.isnan(spread) else f'{spread:.2f}'} |"
        )
    fams = bench.families
    per_family = (
        "| method | " + " | ".join(fams) + " |\n|---|" + "---:|" * len(fams) + "\n"
        + "\n".join(
            f"| {m} | " + " | ".join(pct(table[m]["families"][f]["median_regret"]) for f in fams) + " |"
            for m in order(table)
        )
    )  # fmt: skip
    return (
        head
        + "\n".join(rows)
        + "\n\nMedian regret per family (both budgets, 3 seeds, 2 tasks or more each):\n\n"
        + per_family
        + "\n"
    )


def auto_reading(bench: Bench, table: dict[str, Any]) -> str:
    """What auto's confidence and range are worth: the median regret per confidence level, and
    how often the range holds the oracle LR (within half a grid step)."""
    levels: dict[str, list[float]] = {"high": [], "medium": [], "low": []}
    inside = []
    for u in bench.units:
        s = lrfind.analyze(*bench.cache.sweep(*u[:2]), **METHODS["auto"]).suggestions["auto"]
        outcome = table["auto"]["units"][u]
        if s.lr is None or s.confidence is None or s.range is None or outcome is None:
            continue
        best_lr, _ = bench.oracle(u)
        levels[lrfind.confidence_level(s.confidence)].append(outcome[0])
        half = 10 ** (GRID_STEP / 2)
        inside.append(s.range[0] <= best_lr * half and best_lr / half <= s.range[1])
    parts = [f"{k} confidence: {len(v)} runs, median regret {pct(float(np.median(v)))}" for k, v in levels.items() if v]
    return "auto: " + "; ".join(parts) + f". Its range holds the oracle LR in {sum(inside)} of {len(inside)} runs.\n"


def pct(v: float) -> str:
    return "inf" if not math.isfinite(v) else f"{v:.1%}"


def report(bench: Bench) -> str:
    """The markdown tables and the line on auto's confidence and range."""
    table = score(bench)
    return markdown(bench, table) + "\n" + auto_reading(bench, table)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--tasks", nargs="*", default=list(TASKS), help="task names (default: all)")
    p.add_argument("--out", type=Path, help="also write the markdown tables here")
    p.add_argument("--cache", type=Path, default=CACHE, help=f"the results file (default: {CACHE.name} beside run.py)")
    args = p.parse_args(argv)
    bench = Bench(Cache(args.cache, args.jobs), args.tasks)
    text = report(bench)
    print(text)
    for u in bench.units:
        lr, loss = bench.oracle(u)
        grid = bench.grids[u[:2]]
        name = f"{u[0]}/{u[1]}/{BUDGETS[u[2]]}"
        print(f"  oracle {name}: lr {lr:.3g} val loss {loss:.4g} grid {grid[0]:.0e}..{grid[-1]:.0e}")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
