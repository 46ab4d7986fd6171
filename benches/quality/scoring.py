"""The methods the quality benchmark scores, and how a suggestion is scored.

Every method reads the same recorded range test (lrfind's, run to a non-finite loss or to 10).
lrfind's methods read it with ``lrfind.analyze``'s options. Each peer reads it as its own finder
would have recorded it: the loop of torch-lr-finder, fastai or Lightning replayed over the raw
losses (its smoothing, its stop rule, the point that triggered the stop kept in the history, as
each keeps it), and then its suggestion rule over that history, through ``lrfind.suggest`` with
the parameters that reproduce it (``tests/test_peers.py`` checks those against the real
packages). The recorded sweep ends at the first non-finite loss, where torch-lr-finder and fastai
would go on (their smoothed loss turns NaN and never trips their stop rule): one sweep of the
benchmark ends so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import lrfind

# lrfind's own stop rule and series (the seed's): lrfind.analyze options.
SEED = dict(threshold=10.0, watch="raw", suggest_on="raw")

History = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def torch_lr_finder_history(lrs: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torch-lr-finder 0.2.2's ``range_test`` loop: ``smooth_f=0.05``, stop once the smoothed loss
    exceeds ``diverge_th=5`` times the best, that point kept."""
    kept: list[float] = []
    best = math.inf
    for i, x in enumerate(raw.tolist()):
        loss = x if i == 0 else 0.05 * x + (1 - 0.05) * kept[-1]
        if i == 0 or loss < best:
            best = loss
        kept.append(loss)
        if loss > 5 * best:
            break
    return lrs[: len(kept)], np.array(kept)


def fastai_history(lrs: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fastai's ``LRFinder``: the Recorder's smooth loss (beta 0.98, debiased by the count of
    batches), recorded, then the stop once it exceeds 4 times the best, that point kept."""
    smooth = lrfind.ema(raw, 0.02, debias=True)
    best = math.inf
    for i, loss in enumerate(smooth.tolist()):
        if loss < best:
            best = loss
        if loss > 4 * best:
            return lrs[: i + 1], smooth[: i + 1]
    return lrs, smooth


def lightning_history(lrs: np.ndarray, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lightning 2.6's ``_LRCallback.on_train_batch_end``: beta 0.98, debiased by
    ``1 - beta ** (global_step + 1)`` where the global step has already counted this batch (so
    one power ahead of fastai's), stop once the smoothed loss exceeds 4 times the best from the
    second step on, that point kept; the best is the first step's or any lower one."""
    beta, avg, best = 0.98, 0.0, 0.0
    kept: list[float] = []
    for i, x in enumerate(raw.tolist()):
        step = i + 1  # trainer.global_step after this batch's optimizer step
        avg = beta * avg + (1 - beta) * x
        loss = avg / (1 - beta ** (step + 1))
        stop = step > 1 and loss > 4.0 * best
        if loss < best or step == 1:
            best = loss
        kept.append(loss)
        if stop:
            break
    return lrs[: len(kept)], np.array(kept)


#: Scored methods: label -> how. lrfind's methods are ``lrfind.analyze`` keyword arguments (the
#: first key of ``methods`` is the one scored); a peer is ``{"history": its loop's replay,
#: "method": ..., **params}``, its rule run by ``lrfind.suggest`` on that history.
METHODS: dict[str, dict[str, Any]] = {
    "steepest (seed, lrfind's old default)": dict(SEED, methods="steepest"),
    "torch-lr-finder": dict(
        history=torch_lr_finder_history, method="steepest", space="index", skip_start=10, skip_end=5, backoff=0.0
    ),
    "Lightning": dict(
        history=lightning_history, method="steepest", space="linear", skip_start=10, skip_end=1, backoff=0.0
    ),
    "fastai valley (fastai's default)": dict(history=fastai_history, method="valley"),
    "fastai minimum (/10)": dict(history=fastai_history, method="minimum"),
    "fastai steep": dict(history=fastai_history, method="steep"),
    "fastai slide": dict(history=fastai_history, method="slide"),
    "minimum/10 (raw)": dict(SEED, methods="minimum"),
    "explosion/10 (seed's rule of thumb)": dict(SEED, methods="explosion"),
}
if "auto" in lrfind.METHODS:
    METHODS["auto"] = dict(SEED, methods="auto")


def suggest(lrs: np.ndarray, losses: np.ndarray, options: dict[str, Any]) -> float | None:
    """The LR one scored method suggests for one recorded sweep."""
    if "history" in options:
        params = dict(options)
        history: History = params.pop("history")
        return lrfind.suggest(*history(np.asarray(lrs), np.asarray(losses)), **params).lr
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
