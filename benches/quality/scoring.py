"""The methods the quality benchmark scores, and how a suggestion is scored.

Every method reads the same recorded range test (lrfind's, run to a non-finite loss or to 10)
with its own stop rule, smoothing and suggestion rule, so the peers' reproductions see the curve
their own finder would have seen.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import lrfind

# The stop rules and smoothing of each finder, as lrfind.analyze options.
SEED = dict(threshold=10.0, watch="raw", suggest_on="raw")
TORCH_LR_FINDER = dict(threshold=5.0, watch="smoothed", alpha=0.05, suggest_on="smoothed")
FASTAI = dict(threshold=4.0, watch="smoothed", alpha=0.02, debias=True, suggest_on="smoothed")
LIGHTNING = FASTAI  # beta 0.98 debiased, stop at 4x the best smoothed loss: fastai's rule

#: Scored methods: label -> lrfind.analyze keyword arguments. The first key of ``methods`` is the
#: one scored.
METHODS: dict[str, dict[str, Any]] = {
    "steepest (seed, lrfind's old default)": dict(SEED, methods="steepest"),
    "torch-lr-finder": dict(
        TORCH_LR_FINDER,
        methods={"x": dict(method="steepest", space="index", skip_start=10, skip_end=5, backoff=0.0)},
    ),
    "Lightning": dict(
        LIGHTNING,
        methods={"x": dict(method="steepest", space="linear", skip_start=10, skip_end=1, backoff=0.0)},
    ),
    "fastai valley (fastai's default)": dict(FASTAI, methods="valley"),
    "fastai minimum (/10)": dict(FASTAI, methods="minimum"),
    "fastai steep": dict(FASTAI, methods="steep"),
    "fastai slide": dict(FASTAI, methods="slide"),
    "minimum/10 (raw)": dict(SEED, methods="minimum"),
    "explosion/10 (seed's rule of thumb)": dict(SEED, methods="explosion"),
}
if "auto" in lrfind.METHODS:
    METHODS["auto"] = dict(SEED, methods="auto")


def suggest(lrs: np.ndarray, losses: np.ndarray, options: dict[str, Any]) -> float | None:
    """The LR one scored method suggests for one recorded sweep."""
    return lrfind.analyze(lrs, losses, **options).suggested_lr


def regret(val_loss: float, oracle_loss: float) -> float:
    """Validation loss at the suggestion over the oracle's, minus 1 (inf if it diverged)."""
    return val_loss / oracle_loss - 1.0 if math.isfinite(val_loss) else math.inf


def interpolated_loss(grid_lrs: np.ndarray, grid_losses: np.ndarray, lr: float) -> float:
    """The grid's validation loss at ``lr``, interpolated linearly in (log LR, log loss) and held
    at the edges; inf where it meets a diverged grid point. Fitting uses this, so that trying
    thresholds trains nothing; the reported table trains every suggestion."""
    x = np.log(grid_lrs)
    y = np.log(np.asarray(grid_losses, dtype=float))
    t = float(np.clip(np.log(lr), x[0], x[-1]))
    i = int(np.clip(np.searchsorted(x, t), 1, len(x) - 1))
    if not (np.isfinite(y[i - 1]) and np.isfinite(y[i])):
        return math.inf
    w = (t - x[i - 1]) / (x[i] - x[i - 1])
    return float(np.exp((1 - w) * y[i - 1] + w * y[i]))


def summarize(regrets: list[float], decades: list[float], diverged: list[bool], missing: int) -> dict[str, Any]:
    """One table row: median and worst regret, shares under 5% and 20%, median decades off,
    divergences."""
    r = np.array(regrets + [math.inf] * missing)
    d = np.abs(np.array(decades)) if decades else np.array([math.nan])
    return {
        "runs": len(r),
        "median_regret": float(np.median(r)),
        "worst_regret": float(np.max(r)),
        "under_5": float(np.mean(r < 0.05)),
        "under_20": float(np.mean(r < 0.20)),
        "median_decades": float(np.median(d)),
        "diverged": int(sum(diverged)),
        "no_suggestion": missing,
    }
