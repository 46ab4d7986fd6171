"""The result of one range test: the curve, the stop, the suggestions and the diagnosis."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from lrfind import _core


@dataclass(frozen=True)
class RangeTestResult:
    """One sweep, analysed.

    ``lrs``, ``losses`` and ``smoothed_losses`` are the curve: the points before the explosion.
    The point that stopped the sweep is kept apart in ``explosion_lr`` / ``explosion_loss``
    (None when the sweep ran to ``max_lr``). ``stop_index`` is its index in the recorded sequence
    (-1 if none), ``stop_reason`` is ``"nan"``, ``"inf"``, ``"threshold"`` or None.
    ``suggestions`` maps each method to its ``Suggestion``; ``suggested_lr`` is the first
    method's LR (None if it has none). ``result["suggested_lr"]`` works too, as in the seed.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    stop_index: int
    stop_reason: str | None
    explosion_lr: float | None
    explosion_loss: float | None
    suggested_lr: float | None
    suggestions: dict[str, _core.Suggestion]
    diagnosis: _core.Diagnosis
    analysis: _core.Analysis

    @classmethod
    def from_sweep(cls, lrs: Any, losses: Any, **options: Any) -> RangeTestResult:
        """Analyse a recorded sweep (every point seen, the explosion point included) with
        ``analyze``'s keyword arguments, and split it into curve and explosion."""
        lrs = np.ascontiguousarray(lrs, dtype=np.float64)
        losses = np.ascontiguousarray(losses, dtype=np.float64)
        a = _core.analyze(lrs, losses, **options)
        end = a.stop_index if a.stop_index >= 0 else len(lrs)
        stopped = a.stop_index >= 0
        return cls(
            lrs=lrs[:end],
            losses=losses[:end],
            smoothed_losses=a.smoothed,
            stop_index=a.stop_index,
            stop_reason=a.stop_reason,
            explosion_lr=float(lrs[end]) if stopped else None,
            explosion_loss=float(losses[end]) if stopped else None,
            suggested_lr=a.suggested_lr,
            suggestions=dict(a.suggestions),
            diagnosis=a.diagnosis,
            analysis=a,
        )

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(f"{key!r}: a RangeTestResult has {', '.join(self.keys())}")
        return getattr(self, key)

    def keys(self) -> list[str]:
        """The field names, so the result reads like the seed's dict."""
        return [f.name for f in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def summary(self) -> str:
        """The seed's "Interpreting Results" table (one row per decade), the suggestion and the
        diagnosis, as text."""
        rows = []
        decades = np.floor(np.log10(self.lrs)) if len(self.lrs) else np.empty(0)
        for d in np.unique(decades):
            i = int(np.flatnonzero(decades == d)[0])
            rows.append(f"LR: {self.lrs[i]:.0e}  Loss: {self.losses[i]:.4g}")
        if self.explosion_lr is not None:
            rows.append(f"LR: {self.explosion_lr:.0e}  Loss: {self.explosion_loss:.4g}  <- stop ({self.stop_reason})")
        main = next(iter(self.suggestions.values()), None)
        if self.suggested_lr is not None and main is not None:
            rows.append(f"Suggested LR: {self.suggested_lr:.2e} ({main.method}: {main.reason})")
        else:
            rows.append(f"No suggestion: {main.reason if main else 'no method'}")
        rows.append(self.diagnosis.message)
        return "\n".join(rows)
