"""Analysis entry points that take more input shapes than the Rust core does."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lrfind import _core


def analyze_batch(lrs: Any, losses: Any, offsets: Any = None, **options: Any) -> _core.BatchAnalysis:
    """Analyse many sweeps at once, in parallel, with the GIL released.

    Three input shapes:

    - flat ``lrs`` and ``losses`` (float32 or float64, 1-D, contiguous) with Arrow-style int64
      ``offsets`` of length N + 1 (``offsets[0] == 0``, non-decreasing, last == buffer length):
      sweep i is ``lrs[offsets[i]:offsets[i + 1]]``; no copy is made;
    - two 2-D arrays of shape (N, L): N sweeps of equal length (C-contiguous input is not copied);
    - two sequences of N 1-D arrays: ragged sweeps (concatenated once).

    ``options`` are ``analyze``'s keyword arguments (``methods``, ``threshold``, ``watch``, ...),
    applied to every sweep. Returns a ``BatchAnalysis`` whose row i equals ``analyze`` on sweep i.
    """
    if offsets is None:
        lrs, losses, offsets = _flatten(lrs, losses)
    return _core.analyze_batch(lrs, losses, offsets, **options)


def diagnose(lrs: Any, losses: Any, **options: Any) -> _core.Diagnosis:
    """Classify one sweep: good, flat, immediate_explosion, no_divergence, noisy or too_short.

    Takes ``analyze``'s keyword arguments (the thresholds ``min_points=10``, ``immediate_steps=5``,
    ``flat_tol=0.02``, ``noise_tol=0.25``, ``improving_tail=0.1``, ``range_drop=0.2``, and the
    ``arch`` hint among them); the main suggestion defaults to ``"auto"``. Returns the
    ``Diagnosis`` (``kind``, ``message``, ``descent``, ``gives_lr``).
    """
    options.setdefault("methods", "auto")
    return _core.analyze(lrs, losses, **options).diagnosis


def _flatten(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for name, value in (("lrs", lrs), ("losses", losses)):
        if isinstance(value, np.ndarray) and value.ndim > 2:
            raise ValueError(f"{name} must be a 2-D array (one sweep per row) without offsets, got {value.ndim}-D")
    if isinstance(lrs, np.ndarray) and lrs.ndim == 2:
        losses = np.asarray(losses)
        if losses.shape != lrs.shape:
            raise ValueError(f"losses must have the shape of lrs {lrs.shape}, got {losses.shape}")
        n, length = lrs.shape
        offsets = np.arange(n + 1, dtype=np.int64) * length
        return np.ravel(lrs), np.ravel(losses), offsets
    if isinstance(losses, np.ndarray) and losses.ndim == 2:  # beside a list of lrs: its rows
        losses = list(losses)
    if isinstance(lrs, Sequence) and isinstance(losses, Sequence) and not isinstance(lrs, str):
        if len(lrs) != len(losses):
            raise ValueError(f"lrs and losses must hold as many sweeps, got {len(lrs)} and {len(losses)}")
        lr_parts = [_sweep_array(f"lrs[{i}]", x) for i, x in enumerate(lrs)]
        loss_parts = [_sweep_array(f"losses[{i}]", x) for i, x in enumerate(losses)]
        for i, (a, b) in enumerate(zip(lr_parts, loss_parts, strict=True)):
            if len(a) != len(b):
                raise ValueError(f"sweep {i}: lrs and losses must have the same length, got {len(a)} and {len(b)}")
        offsets = np.zeros(len(lr_parts) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in lr_parts], out=offsets[1:])
        empty = np.empty(0)
        return np.concatenate(lr_parts or [empty]), np.concatenate(loss_parts or [empty]), offsets
    raise TypeError(
        "analyze_batch needs offsets with flat lrs and losses, two 2-D arrays, or two lists of arrays; "
        f"got lrs of type {type(lrs).__name__} and losses of type {type(losses).__name__}"
    )


def _sweep_array(name: str, values: Any) -> np.ndarray:
    """One sweep of a list of sweeps as float64, by the core's rule for arrays: any real
    numeric dtype is converted, anything else is a TypeError naming the sweep."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nested lists
        array = np.asarray(None)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        shown = repr(values)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise TypeError(f"{name} must be a 1-D array of real numbers, got {shown}")
    return array.astype(np.float64, copy=False)
