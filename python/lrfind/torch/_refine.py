"""``refine=K``: train K candidate LRs around the curve's suggestion, from the same starting
weights, and keep the one with the lowest loss on held-out batches.

A range test reads the LR off one short sweep; the candidates check it the way a user would,
by training at constant LRs across the suggested range and comparing validation losses.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence, Sized
from typing import Any

import numpy as np
import torch

from lrfind import _core
from lrfind.torch._stacked_optim import _DEFAULTS

#: The detector of a candidate's run: only a non-finite loss stops it (its score says the rest).
NEVER = 1e300

#: Half-width in decades of the candidates' spread when the main method gives no range.
DEFAULT_SPREAD = 0.75


def check_refine(refine: Any, refine_steps: Any, num_steps: int, val_data: Any) -> int:
    """The number of candidate training steps; errors name the argument and the value."""
    if isinstance(refine, bool) or not isinstance(refine, numbers.Integral) or refine < 0 or refine == 1:
        raise ValueError(f"refine must be 0 (off) or a number of candidates >= 2, got {refine!r}")
    steps = num_steps if refine_steps is None else refine_steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise ValueError(f"refine_steps must be a positive int or None (num_steps), got {refine_steps!r}")
    if refine and val_data is None:
        raise ValueError(
            f"refine={refine} needs val_data: the candidates are scored by their loss on held-out batches "
            "(val_batches of them, the same for every candidate)"
        )
    if (
        refine
        and isinstance(val_data, Sized)
        and not isinstance(val_data, (torch.Tensor, tuple, dict))
        and not len(val_data)
    ):
        # Found now, not after the sweep.
        raise ValueError(f"refine={refine} needs val_data with a batch in it, got an empty {type(val_data).__name__}")
    return int(steps)


def candidates(suggested_lr: float | None, suggested_range: tuple[float, float] | None, k: int) -> np.ndarray | None:
    """K LRs spread evenly in log over the suggested range (``DEFAULT_SPREAD`` decades either
    side of the suggestion when the method gives no range); None without a suggestion."""
    if suggested_lr is None or not math.isfinite(suggested_lr) or suggested_lr <= 0:
        return None
    low, high = suggested_range or (suggested_lr / 10**DEFAULT_SPREAD, suggested_lr * 10**DEFAULT_SPREAD)
    return np.geomspace(low, high, k)


def held_out(val_data: Any, n: int, to_device: Callable[[Any], Any]) -> list[Any]:
    """The first ``n`` batches of ``val_data`` (cycled when shorter, a fixed batch repeated),
    on the device: every candidate is scored on these same batches."""
    from lrfind.torch._range_test import _batches

    return [to_device(b) for b in itertools.islice(_batches(val_data, "val_data"), n)]


def stacked_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> tuple[str, dict[str, Any]] | None:
    """``StackedOptimizer``'s name and settings for ``optimizer`` when it can train vmapped
    copies exactly as it trains ``model``: a fresh (stateless) SGD, Adam or AdamW whose groups
    share their settings and LR and hold every trainable parameter of the model; else None."""
    kind = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam", torch.optim.AdamW: "adamw"}.get(type(optimizer))
    if kind is None or len(optimizer.state):
        return None
    groups = optimizer.param_groups
    settings = [{k: g[k] for k in (*_DEFAULTS[kind], "lr")} for g in groups]
    if any(s != settings[0] for s in settings):
        return None
    if kind == "adam" and groups[0].get("decoupled_weight_decay"):
        kind = "adamw"
    optimized = {id(p) for g in groups for p in g["params"]}
    params = list(model.parameters())
    if optimized != {id(p) for p in params} or not all(p.requires_grad for p in params):
        return None
    settings[0].pop("lr")
    return kind, settings[0]


def scores_vmapped(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    lrs: np.ndarray,
    steps: int,
    data: Any,
    val: Sequence[Any],
    optimizer: tuple[str, dict[str, Any]],
    seed: int,
    chunk: int,
    check_every: int,
    restore: Callable[[], None],
    progress: bool,
    train_mode: bool,
) -> np.ndarray:
    """Each candidate's held-out loss after ``steps`` steps at its LR, the candidates trained
    side by side as ``parallel_range_test`` trains its runs (vmapped copies of ``model``'s
    current weights, chunks of ``chunk``, the same batches); inf where the loss went
    non-finite. ``restore`` puts the RNGs back before each chunk, so that every chunk sees the
    same batches; ``progress`` draws a bar. ``train_mode`` is ``range_test``'s way: a model left in
    eval mode trains in train mode, and random ops (dropout) draw what the one-at-a-time loop
    draws, from the global RNG, the same for every candidate; else (``parallel_range_test``'s
    way) it trains in ``model``'s modes, with the random ops of the first seed."""
    from lrfind.torch._parallel import _Chunk, _chunk_batches, _device_of
    from lrfind.torch._range_test import _progress_bar

    device = _device_of(model)
    out = np.full(len(lrs), np.inf)
    bar = _progress_bar(len(lrs) * steps, progress and len(lrs) > 0)
    try:
        for start in range(0, len(lrs), chunk):
            restore()
            part = lrs[start : start + chunk]
            k = len(part)
            sweep = _Chunk(
                model, loss_fn, [seed] * k, "copy", device, optimizer[0], optimizer[1], same_random=train_mode
            )
            if train_mode and not sweep.base.training:  # range_test's rule (see _Run.sweep)
                sweep.base.train()
            batches = _chunk_batches(data, "shared", [seed] * k, device)
            detectors = [_core.DivergenceDetector(NEVER) for _ in range(k)]
            _, _, recorded = sweep.run(np.repeat(part[:, None], steps, axis=1), batches, detectors, check_every, bar)
            scores = sweep.evaluate(val)
            finished = np.array([n == steps and not d.stopped for n, d in zip(recorded, detectors, strict=True)])
            out[start : start + k] = np.where(finished & np.isfinite(scores), scores, np.inf)
    finally:
        if bar is not None:
            bar.close()
    return out
