"""The result of one range test: the curve, the stop, the suggestions and the diagnosis."""

from __future__ import annotations

import importlib
import json
import math
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from lrfind import _core

if TYPE_CHECKING:
    import torch
    from matplotlib.axes import Axes

#: The ``"format"`` and ``"version"`` that ``RangeTestResult.save`` writes and ``load`` expects.
FILE_FORMAT = "lrfind.RangeTestResult"
FILE_VERSION = 1

#: How ``save`` writes the non-finite floats (strict JSON has none); finite floats stay numbers.
_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}

#: How deeply ``from_sweep`` follows nested options (real ones are at most a list of names).
_MAX_OPTION_DEPTH = 20


def sweep_options(
    *,
    methods: Any,
    diverge_threshold: float,
    watch: str,
    smooth_factor: float,
    patience: int,
    suggest_on: str,
    arch: str | None,
) -> dict[str, Any]:
    """``analyze``'s keyword arguments for the range tests' settings (``diverge_threshold`` is
    its ``threshold``, ``smooth_factor`` its ``alpha``); ``from_sweep`` takes them. They are
    checked here, before any training step, and a bad value is reported under the name the
    caller used."""
    options = dict(
        methods=methods,
        threshold=diverge_threshold,
        watch=watch,
        alpha=smooth_factor,
        patience=patience,
        suggest_on=suggest_on,
        arch=arch,
    )
    try:
        detector(options)
        # The analysis options too (methods, suggest_on, arch), on a two-point probe: an error
        # after the training steps would lose them.
        _core.analyze(np.array([1e-3, 1e-2]), np.array([1.0, 1.0]), **options)
    except (TypeError, ValueError) as e:
        message = str(e)
        for option, name in (("threshold", "diverge_threshold"), ("alpha", "smooth_factor")):
            if message.startswith(f"{option} must"):
                raise type(e)(name + message[len(option) :]) from None
        raise
    return options


def detector(options: dict[str, Any]) -> _core.DivergenceDetector:
    """The streaming detector that stops a sweep by the rule ``options`` analyse it with."""
    return _core.DivergenceDetector(options["threshold"], options["watch"], options["alpha"], options["patience"])


@dataclass(frozen=True)
class Refinement:
    """What ``refine=K`` found: ``K`` candidate LRs spread over the curve's suggested range,
    each trained from the same starting weights for ``steps`` steps at that constant LR, and
    their ``scores``, the mean loss over the same held-out batches (inf for a candidate whose
    loss went non-finite). ``lr`` is the best-scoring candidate (None if every one diverged);
    ``curve_lr`` is the LR the curve alone suggested."""

    lrs: np.ndarray
    scores: np.ndarray
    steps: int
    curve_lr: float

    @property
    def lr(self) -> float | None:
        finite = np.isfinite(self.scores)
        return float(self.lrs[np.flatnonzero(finite)[np.argmin(self.scores[finite])]]) if finite.any() else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lrs": _encode(self.lrs),
            "scores": _encode(self.scores),
            "steps": self.steps,
            "curve_lr": self.curve_lr,
        }

    @classmethod
    def from_dict(cls, doc: Any, path: str | os.PathLike[str]) -> Refinement:
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: key 'refined' must be an object or null, got {_show(doc)}")
        where = f"{path} (in 'refined')"
        lrs, scores = _floats(doc, "lrs", where), _floats(doc, "scores", where)
        steps, curve_lr = _get(doc, "steps", where, int), _get(doc, "curve_lr", where, (int, float))
        if len(lrs) != len(scores) or not len(lrs) or steps < 1:
            raise ValueError(f"{path}: key 'refined' needs as many 'lrs' as 'scores' (1 or more) and 'steps' >= 1")
        # The candidates are LRs; a score is a loss, or inf for a candidate that diverged.
        if not (np.all(np.isfinite(lrs)) and np.all(lrs > 0)) or np.isnan(scores).any():
            raise ValueError(f"{path}: key 'refined' needs finite LRs > 0 and scores that are not NaN")
        try:
            curve = float(curve_lr)
        except OverflowError:  # JSON allows integers of any size
            curve = math.inf
        if not 0 < curve < math.inf:
            raise ValueError(f"{path}: key 'refined' needs a 'curve_lr' that is a finite LR > 0, got {_show(curve_lr)}")
        return cls(lrs=lrs, scores=scores, steps=steps, curve_lr=curve)

    def summary(self) -> str:
        """One line: the refined LR, the candidates' scores and the cost."""
        scores = ", ".join(
            f"{lr:.2e}: {'diverged' if math.isinf(score) else f'{score:.4g}'}"
            for lr, score in zip(self.lrs, self.scores, strict=True)
        )
        best = "none (every candidate diverged)" if self.lr is None else f"{self.lr:.2e}"
        return (
            f"Refined LR: {best}, the best of {len(self.lrs)} candidates trained {self.steps} steps each "
            f"(held-out loss {scores}); the curve alone suggested {self.curve_lr:.2e}"
        )


@dataclass(frozen=True)
class RangeTestResult:
    """One sweep, analysed.

    ``lrs``, ``losses``, ``smoothed_losses`` (the seed's EMA, which lags) and ``trend`` (the
    lag-free curve the suggestions read: ``auto``'s running median and Gaussian kernel) are the
    curve: the points before the explosion.
    The point that stopped the sweep is kept apart in ``explosion_lr`` / ``explosion_loss``
    (None when the sweep ran to ``max_lr``). ``stop_index`` is its index in the recorded sequence
    (-1 if none), ``stop_reason`` is ``"nan"``, ``"inf"``, ``"threshold"`` or None.
    ``suggestions`` maps each method to its ``Suggestion``; ``suggested_lr`` is the first
    method's LR (None if it has none) and ``suggested_range`` its range, the LRs to train in
    (``auto``'s; None for the other methods). ``result["suggested_lr"]`` works too, as in the
    seed. When ``diagnosis.gives_lr`` is False (a flat sweep, an immediate explosion) the
    suggestion is kept but is no LR to train at: ``diagnosis.message`` says what to fix.
    The PyTorch range test also records ``grad_norms`` (total L2 norm of each step's
    gradients), ``val_losses`` (NaN where not measured) and ``skipped_steps`` (steps the fp16
    grad scaler skipped, which did not advance the sweep). ``options`` are the ``analyze``
    keyword arguments the sweep was analysed with (empty when built by hand). ``recorded`` is
    the whole sweep as analysed, ``(lrs, losses)``: the curve, the explosion point and, with
    ``patience`` > 1, the points after it that confirmed the stop; ``save`` writes it.
    ``refined`` is the ``Refinement`` of a range test run with ``refine=K`` (None otherwise):
    then ``suggested_lr`` is its best candidate, and ``suggestions`` keep what the curve said.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    trend: np.ndarray
    stop_index: int
    stop_reason: str | None
    explosion_lr: float | None
    explosion_loss: float | None
    suggested_lr: float | None
    suggestions: dict[str, _core.Suggestion]
    diagnosis: _core.Diagnosis
    analysis: _core.Analysis
    grad_norms: np.ndarray | None = None
    val_losses: np.ndarray | None = None
    skipped_steps: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    recorded: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    refined: Refinement | None = None

    def with_refinement(self, refined: Refinement) -> RangeTestResult:
        """This result with ``refined`` attached and its best LR as ``suggested_lr`` (the
        curve's when every candidate diverged)."""
        best = refined.lr
        return replace(self, refined=refined, suggested_lr=self.suggested_lr if best is None else best)

    @classmethod
    def from_sweep(cls, lrs: Any, losses: Any, **options: Any) -> RangeTestResult:
        """Analyse a recorded sweep (every point seen, the explosion point included) with
        ``analyze``'s keyword arguments, and split it into curve and explosion. The options
        are kept in ``options`` as plain Python values (numpy scalars become ``bool``, ``int``
        or ``float``, tuples and arrays lists), so that ``save``/``load`` can analyse the sweep
        again."""
        options = {key: _plain(value) for key, value in options.items()}
        try:
            lrs, losses = (np.ascontiguousarray(v, dtype=np.float64) for v in (lrs, losses))
        except (TypeError, ValueError):
            _core.analyze(lrs, losses, **options)  # its error names lrs or losses and the value
            raise
        a = _core.analyze(lrs, losses, **options)
        end = a.stop_index if a.stop_index >= 0 else len(lrs)
        stopped = a.stop_index >= 0
        return cls(
            lrs=lrs[:end],
            losses=losses[:end],
            smoothed_losses=a.smoothed,
            trend=a.trend,
            stop_index=a.stop_index,
            stop_reason=a.stop_reason,
            explosion_lr=float(lrs[end]) if stopped else None,
            explosion_loss=float(losses[end]) if stopped else None,
            suggested_lr=a.suggested_lr,
            suggestions=dict(a.suggestions),
            diagnosis=a.diagnosis,
            analysis=a,
            options=options,
            recorded=(lrs, losses),
        )

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(f"{key!r}: a RangeTestResult has {', '.join(self.keys())}")
        return getattr(self, key)

    def keys(self) -> list[str]:
        """The field names and ``suggested_range``, so the result reads like the seed's dict."""
        return [*(f.name for f in fields(self)), "suggested_range"]

    def __reduce__(self) -> tuple[Any, ...]:
        # The core's objects (suggestions, diagnosis, analysis) do not pickle: the sweep and its
        # options do, and analysing them again gives the same result (as ``load`` does).
        return (RangeTestResult.from_dict, (self.to_dict(),))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    @property
    def suggested_range(self) -> tuple[float, float] | None:
        """The main suggestion's range: the LRs (low, high) that should train about as well as
        the suggested one, ``auto``'s ``range`` (None for a method without one, or no LR)."""
        main = next(iter(self.suggestions.values()), None)
        return None if main is None or main.lr is None else main.range

    def summary(self) -> str:
        """The seed's "Interpreting Results" table as text, then the stop, the suggestion with
        its range, and the diagnosis.

        One row per decade of LR (its first point), plus a row where the loss starts to fall
        and one at its lowest point; each shows the lag-free loss (``trend``, what the
        suggestion reads) and, in brackets, the raw loss. The rows are marked by what the
        lag-free curve does: "starting to learn" where it has made a tenth of its descent,
        "lowest (best zone)" at its minimum, "too fast" after it. A flat sweep or an
        immediate explosion gets no marks and no LR to train at, but the advice.
        """
        rows = [f"{'LR':>9}  {'loss':>9}  (raw)"]
        marks = self._marks()
        for i in self._rows(marks):
            mark = f"  <- {marks[i]}" if i in marks else ""
            rows.append(f"{self.lrs[i]:9.2e}  {self.trend[i]:9.4g}  ({self.losses[i]:.4g}){mark}")
        if self.explosion_lr is not None:
            rows.append(f"{self.explosion_lr:9.2e}  {self.explosion_loss:9.4g}  <- stop ({self.stop_reason})")
        main = next(iter(self.suggestions.values()), None)
        if not self.diagnosis.gives_lr:
            rows.append(f"No LR to train at ({self.diagnosis.kind}); fix the setup first:")
        elif self.suggested_lr is not None and main is not None:
            source = f"{main.method}: {main.reason}"
            if self.refined is not None:
                rows.append(self.refined.summary())
                if self.refined.lr is not None:
                    source = f"refined; the curve's {source}"
            rows.append(f"Suggested LR: {self.suggested_lr:.2e} ({source})")
            if self.suggested_range is not None:
                low, high = self.suggested_range
                rows.append(f"Suggested range: {low:.2e} to {high:.2e} (train anywhere in it)")
        else:
            rows.append(f"No suggestion: {main.reason if main else 'no method'}")
        rows.append(self.diagnosis.message)
        return "\n".join(rows)

    def _marks(self) -> dict[int, str]:
        """Point index -> the seed's label, read off the lag-free curve (none for a sweep that
        gives no LR to train at, or with no descent)."""
        finite = np.isfinite(self.trend)
        if not self.diagnosis.gives_lr or np.count_nonzero(finite) < 2:
            return {}
        # Points where the lag-free curve overflowed (losses near the float limit) say nothing.
        trend = np.where(finite, self.trend, np.nan)
        lowest = int(np.nanargmin(trend))
        top, low = float(np.nanmax(trend[: lowest + 1])), float(trend[lowest])
        if not top > low:
            return {}
        # A tenth of the descent down, as 0.9 top + 0.1 low: top - low itself may overflow
        # (and never below low, which rounding could give).
        start = int(np.flatnonzero(trend[: lowest + 1] <= max(0.9 * top + 0.1 * low, low))[0])
        marks = {start: "starting to learn", lowest: "lowest (best zone)"}
        marks.update({i: "too fast" for i in self._rows({}) if i > lowest})
        return marks

    def _rows(self, marks: dict[int, str]) -> list[int]:
        """The first point of each decade of LR, and the marked points, in order."""
        if not len(self.lrs):
            return []
        decades = np.floor(np.log10(self.lrs))
        firsts = np.flatnonzero(np.diff(decades, prepend=decades[0] - 1))
        return sorted({*firsts.tolist(), *marks})

    def plot(
        self,
        ax: Axes | None = None,
        path: str | os.PathLike[str] | None = None,
        methods: str | Sequence[str] | None = None,
        show_grad_norm: bool = False,
        *,
        show_ema: bool = False,
        show_descent: bool = False,
        legend: bool = True,
    ) -> Axes:
        """Draw the curve with matplotlib (the ``plot`` extra): loss against LR, log-x.

        Draws the lag-free loss (``trend``, thick: the curve the suggestion reads, so its
        lowest point is where the loss really is lowest), the raw loss faintly behind it, the
        main suggestion as a marker with its range (the LRs to train in) shaded, the stop (a
        dashed line at ``explosion_lr``) and the measured validation losses; the title names
        the diagnosis. A sweep that gives no LR to train at (flat, immediate explosion) gets no
        marker: the title carries the advice instead, and the y-axis spans at least a tenth of
        the loss's level, so noise does not look like a trend. The y-axis stops at three times
        a positive starting loss, so an explosion does not flatten the curve. The legend sits
        below the axes, never on the curve.

        Args:
            ax: the axes to draw on (default None: new axes, on a bare ``Figure`` when only
                saving to ``path``, from ``pyplot`` otherwise).
            path: save the figure there (default None: do not save); the format follows the
                extension, PNG when there is none.
            methods: the suggestions to mark, by method name (default None: the main one);
                named ones without an LR are skipped. Each method has its own colour.
            show_grad_norm: also draw ``grad_norms`` on a second, logarithmic y-axis (default
                False; ``lrfind.torch.range_test`` records them).
            show_ema: also draw ``smoothed_losses``, the seed's EMA, which lags (default False).
            show_descent: also mark the diagnosis's descent, where the loss falls, as a bar
                along the bottom (default False; not a range to train in).
            legend: draw the legend (default True).

        Returns:
            the axes drawn on (the loss axes, not the gradient-norm twin).
        """
        from lrfind.plot import new_axes, plot_result, save_figure  # imports matplotlib

        if ax is None:
            ax = new_axes(use_pyplot=path is None)
        plot_result(self, ax, methods, show_grad_norm, show_ema, show_descent, legend)
        if path is not None:
            save_figure(ax, path)
        return ax

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values (what ``save`` writes); ``from_dict`` reads it back. Beside
        the sweep and its options, it holds what the analysis found (``suggested_lr``,
        ``suggested_range``, ``diagnosis``), for a reader of the file; ``from_dict`` analyses
        the sweep again rather than reading them."""
        descent = self.diagnosis.descent
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "options": self.options,
            "lrs": _encode(self.recorded[0] if self.recorded else _with_stop(self.lrs, self.explosion_lr)),
            "losses": _encode(self.recorded[1] if self.recorded else _with_stop(self.losses, self.explosion_loss)),
            "grad_norms": None if self.grad_norms is None else _encode(self.grad_norms),
            "val_losses": None if self.val_losses is None else _encode(self.val_losses),
            "skipped_steps": self.skipped_steps,
            "refined": None if self.refined is None else self.refined.to_dict(),
            "suggested_lr": self.suggested_lr,
            "suggested_range": None if self.suggested_range is None else list(self.suggested_range),
            "diagnosis": {
                "kind": self.diagnosis.kind,
                "message": self.diagnosis.message,
                "gives_lr": self.diagnosis.gives_lr,
                "descent": None if descent is None else list(descent),
            },
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the result to ``path`` as strict JSON, losslessly; ``load`` reads it back.

        The file holds ``"format": "lrfind.RangeTestResult"``, ``"version": 1``, the recorded
        sweep (``lrs`` and ``losses``: ``recorded``, ending with the explosion point or, with
        ``patience`` > 1, the points that confirmed it), the ``options``
        it was analysed with, ``grad_norms``, ``val_losses`` (null when absent) and
        ``skipped_steps``. Floats are written as their shortest repr, which reads back exactly;
        NaN and +/-inf, which JSON lacks, are written as the strings ``"NaN"``,
        ``"Infinity"`` and ``"-Infinity"``. The options must be JSON values.
        """
        Path(path).write_text(json.dumps(self.to_dict(), allow_nan=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RangeTestResult:
        """Read a result written by ``save``: the sweep is analysed again with the saved
        options, so suggestions, diagnosis and analysis equal the saved result's.

        Raises:
            ValueError: naming the file and the key, if it is not a saved result (not JSON or
                nested too deeply to parse, a key missing or of the wrong type, a number too
                large for a float, a negative ``skipped_steps``, another format or version).
            OSError: if the file cannot be read.
        """
        return cls.from_dict(_read_json(path), path)

    @classmethod
    def from_dict(cls, doc: dict[str, Any], path: str | os.PathLike[str] = "<dict>") -> RangeTestResult:
        """Rebuild a result from ``to_dict``'s output; ``path`` names the source in errors."""
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a saved RangeTestResult (a JSON object), got {_show(doc)}")
        for key, want in (("format", FILE_FORMAT), ("version", FILE_VERSION)):
            if _get(doc, key, path, (str, int)) != want:
                raise ValueError(f"{path}: key {key!r} is {_show(doc[key])}, expected {want!r}")
        lrs, losses = _floats(doc, "lrs", path), _floats(doc, "losses", path)
        options = _get(doc, "options", path, dict)
        skipped = _get(doc, "skipped_steps", path, int)
        if skipped < 0:
            raise ValueError(f"{path}: key 'skipped_steps' is {skipped}, not a count of steps (0 or more)")
        try:
            result = cls.from_sweep(lrs, losses, **options)
        except (TypeError, ValueError, OverflowError) as e:  # OverflowError: an int option beyond a float
            raise ValueError(f"{path}: the saved sweep or its options do not analyse: {e}") from e
        result = replace(
            result,
            grad_norms=_curve_floats(doc, "grad_norms", path, len(result.lrs)),
            val_losses=_curve_floats(doc, "val_losses", path, len(result.lrs)),
            skipped_steps=skipped,
        )
        refined = doc.get("refined")  # absent from files written before refine existed
        return result if refined is None else result.with_refinement(Refinement.from_dict(refined, path))

    def scheduler(
        self, optimizer: torch.optim.Optimizer, policy: str = "one_cycle", *, total_steps: int, **kwargs: Any
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A PyTorch ``LambdaLR`` that follows lrfind's per-step schedule from this result's LR.

        Every parameter group gets the same schedule: its ``lr`` and ``initial_lr`` are set to
        the schedule's peak LR, and the lambda returns ``<policy>_at(step, ...) / peak``, so
        after ``k`` calls of ``scheduler.step()`` each group's ``lr`` is the schedule's LR of
        step ``k`` (``lrfind.one_cycle(total_steps, ...)[k]`` or ``lrfind.warmup_cosine(...)[k]``,
        to a rounding error of an ulp or two); from step ``total_steps`` on, it is the schedule's
        end value (0 for one-cycle, ``min_lr`` for warmup-cosine, its peak when all of it is
        warmup). Call ``scheduler.step()`` once
        per optimizer step. ``scheduler.state_dict()`` holds only plain values.

        Args:
            optimizer: any ``torch.optim`` optimizer; its groups' ``lr`` and ``initial_lr`` are set.
            policy: ``"one_cycle"`` (default) or ``"warmup_cosine"``.
            total_steps: the optimizer steps the schedule spans (keyword only, required).
            kwargs: the policy's overrides, below.

        Policies and their keyword overrides (LRs in the optimizer's units):

        - ``"one_cycle"``: ``max_lr`` (default: the suggested LR), ``base_lr`` (default: the low
          end of the suggested range if there is one below ``max_lr`` and the sweep gives an LR to
          train at, else ``max_lr / 10``),
          ``pct_start`` (default 0.3, the warm-up fraction of the steps).
        - ``"warmup_cosine"``: ``base_lr`` (the peak; default: the suggested LR),
          ``warmup_steps`` (default ``total_steps // 20``, 5% rounded down), ``min_lr``
          (default 0.0).

        Raises:
            ValueError: for an unknown policy, invalid schedule parameters, or no suggested LR
                (with the suggestion's reason) when the peak LR is not given.
            ImportError: without PyTorch (the ``torch`` extra).
        """
        if not isinstance(policy, str) or policy not in _POLICIES:
            raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(map(repr, _POLICIES))}")
        if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral):
            raise TypeError(f"total_steps must be a whole number of steps, got {total_steps!r}")
        lr_scheduler = _require("torch.optim.lr_scheduler", "torch", "scheduler")
        try:
            factor = _POLICIES[policy](self, total_steps, **kwargs)
        except TypeError as e:  # a misspelt keyword: name the policy, not a private function
            raise TypeError(f"scheduler(policy={policy!r}): {str(e).split('() ', 1)[-1]}") from None
        factor(0)  # checks the parameters before the optimizer is touched
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = factor.peak
        return lr_scheduler.LambdaLR(optimizer, factor)


class _LRFactor:
    """``LambdaLR``'s factor at a step: ``_core.<schedule>(step, **params)`` over ``peak``, the
    groups' initial LR. A class rather than a closure, so ``LambdaLR.state_dict`` keeps its
    attributes, all plain values (``torch.load(..., weights_only=True)`` reads them back)."""

    def __init__(self, schedule: str, peak: float, **params: Any) -> None:
        # Plain Python numbers: numpy scalars would make the scheduler's state_dict unreadable
        # by torch.load(..., weights_only=True), torch's default.
        self.schedule, self.peak, self.params = (
            schedule,
            float(peak),
            {k: _plain_number(k, v) for k, v in params.items()},
        )

    def __call__(self, step: int) -> float:
        return getattr(_core, self.schedule)(step, **self.params) / self.peak


def _plain_number(name: str, value: Any) -> Any:
    """``value`` as a Python int or float; a bool or str as it is, for the core to name."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{name} must be a number, got {value!r}")


def _one_cycle(
    result: RangeTestResult,
    total_steps: int,
    *,
    max_lr: float | None = None,
    base_lr: float | None = None,
    pct_start: float = 0.3,
) -> _LRFactor:
    if max_lr is None:
        max_lr = _suggested_lr(result, "max_lr")
    elif isinstance(max_lr, bool) or not isinstance(max_lr, numbers.Real) or not 0 < max_lr < math.inf:
        # Before base_lr's default (max_lr / 10) is derived from it and named in the error instead.
        raise ValueError(f"max_lr must be a finite number > 0, got {max_lr!r}")
    if base_lr is None:
        # A sweep that gives no LR to train at gives no range to start from either.
        usable = result.suggested_range is not None and result.diagnosis.gives_lr
        low = result.suggested_range[0] if usable else math.inf
        base_lr = low if low < max_lr else max_lr / 10
    params = dict(total_steps=total_steps, base_lr=base_lr, max_lr=max_lr, pct_start=pct_start)
    return _LRFactor("one_cycle_at", max_lr, **params)


def _warmup_cosine(
    result: RangeTestResult,
    total_steps: int,
    *,
    base_lr: float | None = None,
    warmup_steps: int | None = None,
    min_lr: float = 0.0,
) -> _LRFactor:
    if base_lr is None:
        base_lr = _suggested_lr(result, "base_lr")
    if warmup_steps is None:
        warmup_steps = total_steps // 20
    params = dict(total_steps=total_steps, warmup_steps=warmup_steps, base_lr=base_lr, min_lr=min_lr)
    return _LRFactor("warmup_cosine_at", base_lr, **params)


_POLICIES: dict[str, Callable[..., _LRFactor]] = {"one_cycle": _one_cycle, "warmup_cosine": _warmup_cosine}


def _suggested_lr(result: RangeTestResult, override: str) -> float:
    if not result.diagnosis.gives_lr:
        why = f"a {result.diagnosis.kind} sweep gives no LR to train at: {result.diagnosis.message}"
        raise ValueError(f"no suggested LR to schedule from ({why}); pass {override}= to choose one")
    if result.suggested_lr is None:
        main = next(iter(result.suggestions.values()), None)
        why = main.reason if main is not None else "no suggestion method ran"
        raise ValueError(f"no suggested LR to schedule from ({why}); pass {override}= to choose one")
    return result.suggested_lr


def _require(module: str, extra: str, method: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"RangeTestResult.{method} needs {module}: pip install 'lrfind[{extra}]'") from None


def _with_stop(curve: np.ndarray, stop: float | None) -> np.ndarray:
    return curve if stop is None else np.append(curve, stop)


def _encode(values: np.ndarray) -> list[float | str]:
    return [v if math.isfinite(v) else _NONFINITE[repr(v)] for v in np.asarray(values, dtype=np.float64).tolist()]


def _plain(value: Any, depth: int = 0) -> Any:
    """An option as plain JSON values: numpy scalars as ``bool``/``int``/``float``/``str``,
    tuples and arrays as lists, recursively (bounded: a hostile file's nesting must not recurse
    past Python's limit); anything else is kept as it is."""
    if depth > _MAX_OPTION_DEPTH:
        raise ValueError(f"an option nested deeper than {_MAX_OPTION_DEPTH} levels")
    if isinstance(value, np.generic):
        return value.item()  # np.bool_ -> bool, np.int64 -> int, np.float32 -> float, np.str_ -> str
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    return value


def _read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a saved RangeTestResult (not JSON: {e})") from None
    except RecursionError:  # how deep json can go depends on the caller's stack
        raise ValueError(f"{path}: not a saved RangeTestResult (JSON nested too deeply to parse)") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a saved RangeTestResult (a JSON {type(doc).__name__}, not an object)")
    return doc


def _get(doc: dict[str, Any], key: str, path: str | os.PathLike[str], kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise ValueError(f"{path}: not a saved RangeTestResult: missing key {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        want = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        raise ValueError(f"{path}: key {key!r} holds a {type(value).__name__}, not a {want}")
    return value


def _floats(doc: dict[str, Any], key: str, path: str | os.PathLike[str]) -> np.ndarray:
    values = _get(doc, key, path, list)
    bad = [v for v in values if not _is_number(v)]
    if bad:
        names = ", ".join(_NONFINITE.values())
        raise ValueError(f"{path}: key {key!r} holds {_show(bad[0])}, neither a number nor one of {names}")
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except OverflowError:  # JSON allows integers of any size
        raise ValueError(f"{path}: key {key!r} holds an integer too large for a float") from None


def _show(value: Any) -> str:
    """A JSON value for a message: a short repr of a scalar, the type of a list or object (whose
    repr could be huge, or recurse past the limit)."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__}"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}..."


def _is_number(value: Any) -> bool:
    if isinstance(value, str):
        return value in _NONFINITE.values()
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _curve_floats(doc: dict[str, Any], key: str, path: str | os.PathLike[str], n: int) -> np.ndarray | None:
    if _get(doc, key, path, (list, type(None))) is None:
        return None
    values = _floats(doc, key, path)
    if len(values) != n:
        raise ValueError(f"{path}: key {key!r} has {len(values)} values, the curve {n}")
    return values
