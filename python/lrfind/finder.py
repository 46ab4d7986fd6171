"""The seed's framework-free ``LearningRateFinder``: any ``train_fn(lr) -> loss`` will do."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from lrfind import _core
from lrfind.result import RangeTestResult, detector, sweep_options


class LearningRateFinder:
    """Run the LR range test with any framework.

    Args:
        min_lr: first LR of the sweep (default 1e-7).
        max_lr: last LR of the sweep (default 10.0); both ends are hit exactly.
        num_steps: number of LRs, one training step each (default 100).
        smooth_factor: EMA weight of the newest loss for the smoothed curve (default 0.05, the
            seed's); the seed stored it but hard-coded 0.05, here it is used.
        mode: ``"exp"`` (default) or ``"linear"`` LR spacing.
        diverge_threshold: stop when the watched loss exceeds ``threshold x best`` (default 10.0,
            the seed's; the rule is ``best + (threshold - 1) * max(|best|, 1.19e-7 * peak)``,
            ``peak`` the largest ``|loss|`` so far, sound for losses <= 0 and a best of 0).
        watch: ``"raw"`` (default, the seed's) or ``"smoothed"`` loss for the stop rule.
        patience: consecutive violations before stopping (default 1).
        methods: suggestion methods, the first is the main one (default: every method, with
            ``"auto"``, the winner of lrfind's quality benchmark, first); see ``lrfind.analyze``.
        suggest_on: ``"raw"`` (default, the seed's) or ``"smoothed"`` losses for the suggestions.
        arch: optional architecture hint (``"mlp"``, ``"cnn"``, ``"transformer"``,
            ``"fine-tuning"``, ``"large-batch"``) checked against the seed's table of LR ranges.
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        smooth_factor: float = 0.05,
        *,
        mode: str = "exp",
        diverge_threshold: float = 10.0,
        watch: str = "raw",
        patience: int = 1,
        methods: str | Sequence[str] | dict[str, dict[str, Any]] | None = None,
        suggest_on: str = "raw",
        arch: str | None = None,
    ) -> None:
        self.min_lr, self.max_lr, self.num_steps, self.mode = min_lr, max_lr, num_steps, mode
        self.smooth_factor = smooth_factor
        self.diverge_threshold, self.watch, self.patience = diverge_threshold, watch, patience
        self.methods, self.suggest_on, self.arch = methods, suggest_on, arch
        self._build()  # bad settings fail here, not at the first range_test

    def _build(self) -> None:
        """The sweep's LRs (``self.lrs``) and analysis options from the settings as they are now:
        as in the seed, a setting changed after construction applies to the next range test."""
        self.lrs = _core.sweep_lrs(self.min_lr, self.max_lr, self.num_steps, self.mode)
        self.options = sweep_options(
            methods=self.methods,
            diverge_threshold=self.diverge_threshold,
            watch=self.watch,
            smooth_factor=self.smooth_factor,
            patience=self.patience,
            suggest_on=self.suggest_on,
            arch=self.arch,
        )

    def range_test(self, train_fn: Callable[[float], Any]) -> RangeTestResult:
        """Call ``train_fn(lr)`` once per LR of the sweep until the loss explodes.

        ``train_fn`` sets the LR, does one training step and returns the loss (a float, or
        anything ``float()`` takes, such as a 0-d tensor). Each loss goes through the streaming
        Rust detector, so the bookkeeping costs well under a microsecond per step. Returns a
        ``RangeTestResult``; ``result["suggested_lr"]`` works as in the seed. The settings are
        read now, so one changed since construction (``finder.max_lr = 1.0``) applies.
        """
        self._build()
        stop = detector(self.options)
        losses: list[float] = []
        for lr in self.lrs.tolist():
            loss = train_fn(lr)
            try:
                value = float(loss)
            except OverflowError:  # an int past float's range: as far as a float goes, infinite
                value = math.inf if loss > 0 else -math.inf
            except (TypeError, ValueError):
                raise TypeError(f"train_fn must return the loss as a number, got {loss!r} at lr={lr:.3e}") from None
            losses.append(value)
            if stop.update(value):
                break
        return RangeTestResult.from_sweep(self.lrs[: len(losses)], losses, **self.options)
