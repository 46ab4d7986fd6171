"""The result of one range test: the curve, the stop, the suggestions and the diagnosis."""

from __future__ import annotations

import importlib
import json
import math
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
    its ``threshold``, ``smooth_factor`` its ``alpha``); ``from_sweep`` takes them. The
    divergence rule is checked here, before any training step, and a bad value is reported
    under the name the caller used."""
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
class RangeTestResult:
    """One sweep, analysed.

    ``lrs``, ``losses`` and ``smoothed_losses`` are the curve: the points before the explosion.
    The point that stopped the sweep is kept apart in ``explosion_lr`` / ``explosion_loss``
    (None when the sweep ran to ``max_lr``). ``stop_index`` is its index in the recorded sequence
    (-1 if none), ``stop_reason`` is ``"nan"``, ``"inf"``, ``"threshold"`` or None.
    ``suggestions`` maps each method to its ``Suggestion``; ``suggested_lr`` is the first
    method's LR (None if it has none). ``result["suggested_lr"]`` works too, as in the seed.
    The PyTorch range test also records ``grad_norms`` (total L2 norm of each step's
    gradients), ``val_losses`` (NaN where not measured) and ``skipped_steps`` (steps the fp16
    grad scaler skipped, which did not advance the sweep). ``options`` are the ``analyze``
    keyword arguments the sweep was analysed with (empty when built by hand). ``recorded`` is
    the whole sweep as analysed, ``(lrs, losses)``: the curve, the explosion point and, with
    ``patience`` > 1, the points after it that confirmed the stop; ``save`` writes it.
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
    grad_norms: np.ndarray | None = None
    val_losses: np.ndarray | None = None
    skipped_steps: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    recorded: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def from_sweep(cls, lrs: Any, losses: Any, **options: Any) -> RangeTestResult:
        """Analyse a recorded sweep (every point seen, the explosion point included) with
        ``analyze``'s keyword arguments, and split it into curve and explosion. The options
        are kept in ``options`` as plain Python values (numpy scalars become ``bool``, ``int``
        or ``float``, tuples and arrays lists), so that ``save``/``load`` can analyse the sweep
        again."""
        options = {key: _plain(value) for key, value in options.items()}
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
            options=options,
            recorded=(lrs, losses),
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
        """The seed's "Interpreting Results" table as text: one row per decade of LR with the
        loss, marked (from the diagnosis range) where the model starts to learn, where the loss
        is lowest and where it is past its best, then the stop, the suggestion and the diagnosis."""
        rows = []
        decades = np.floor(np.log10(self.lrs)) if len(self.lrs) else np.empty(0)
        marks = self._decade_marks(decades)
        for d in np.unique(decades):
            i = int(np.flatnonzero(decades == d)[0])
            mark = f"  <- {marks[i]}" if i in marks else ""
            rows.append(f"LR: {self.lrs[i]:.0e}  Loss: {self.losses[i]:.4g}{mark}")
        if self.explosion_lr is not None:
            rows.append(f"LR: {self.explosion_lr:.0e}  Loss: {self.explosion_loss:.4g}  <- stop ({self.stop_reason})")
        main = next(iter(self.suggestions.values()), None)
        if self.suggested_lr is not None and main is not None:
            rows.append(f"Suggested LR: {self.suggested_lr:.2e} ({main.method}: {main.reason})")
            if main.range is not None:
                rows.append(f"Suggested range: {main.range[0]:.2e} to {main.range[1]:.2e}")
        else:
            rows.append(f"No suggestion: {main.reason if main else 'no method'}")
        rows.append(self.diagnosis.message)
        return "\n".join(rows)

    def _decade_marks(self, decades: np.ndarray) -> dict[int, str]:
        """Labels for the first point of some decades, from the diagnosis range: where the loss
        starts to fall (its low end), where it is lowest (its high end), and past it."""
        if self.diagnosis.range is None:
            return {}
        low, high = np.floor(np.log10(self.diagnosis.range))
        marks: dict[int, str] = {}
        for d in np.unique(decades):
            i = int(np.flatnonzero(decades == d)[0])
            if d == low and d < high:
                marks[i] = "starting to learn"
            elif d == high:
                marks[i] = "best zone"
            elif d > high:
                marks[i] = "too fast"
        return marks

    def plot(
        self,
        ax: Axes | None = None,
        path: str | os.PathLike[str] | None = None,
        methods: str | Sequence[str] | None = None,
        show_grad_norm: bool = False,
    ) -> Axes:
        """Draw the curve with matplotlib (the ``plot`` extra): loss against LR, log-x.

        Draws the raw loss (thin, faint), the smoothed loss, a marker per suggestion labelled
        with its method and LR, the stop (a dashed line at ``explosion_lr``), the diagnosis range
        (shaded), the measured validation losses and, with ``show_grad_norm=True``, the gradient
        norms on a second, logarithmic y-axis. The title names the diagnosis; the y-axis stops
        at three times a positive starting loss, so an explosion does not flatten the curve.

        Args:
            ax: the axes to draw on (default None: new axes, on a bare ``Figure`` when only
                saving to ``path``, from ``pyplot`` otherwise).
            path: save the figure there (default None: do not save); the format follows the
                extension, PNG when there is none.
            methods: the suggestions to mark, by method name (default None: every suggestion
                with an LR); named ones without an LR are skipped.
            show_grad_norm: also draw ``grad_norms`` (default False; ``lrfind.torch.range_test``
                records them).

        Returns:
            the axes drawn on (the loss axes, not the gradient-norm twin).
        """
        from lrfind.plot import new_axes, plot_result, save_figure  # imports matplotlib

        if ax is None:
            ax = new_axes(use_pyplot=path is None)
        plot_result(self, ax, methods, show_grad_norm)
        if path is not None:
            save_figure(ax, path)
        return ax

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values (what ``save`` writes); ``from_dict`` reads it back."""
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "options": self.options,
            "lrs": _encode(self.recorded[0] if self.recorded else _with_stop(self.lrs, self.explosion_lr)),
            "losses": _encode(self.recorded[1] if self.recorded else _with_stop(self.losses, self.explosion_loss)),
            "grad_norms": None if self.grad_norms is None else _encode(self.grad_norms),
            "val_losses": None if self.val_losses is None else _encode(self.val_losses),
            "skipped_steps": self.skipped_steps,
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
        return replace(
            result,
            grad_norms=_curve_floats(doc, "grad_norms", path, len(result.lrs)),
            val_losses=_curve_floats(doc, "val_losses", path, len(result.lrs)),
            skipped_steps=skipped,
        )

    def scheduler(
        self, optimizer: torch.optim.Optimizer, policy: str = "one_cycle", *, total_steps: int, **kwargs: Any
    ) -> torch.optim.lr_scheduler.LambdaLR:
        """A PyTorch ``LambdaLR`` that follows lrfind's per-step schedule from this result's LR.

        Every parameter group gets the same schedule: its ``lr`` and ``initial_lr`` are set to
        the schedule's peak LR, and the lambda returns ``<policy>_at(step, ...) / peak``, so
        after ``k`` calls of ``scheduler.step()`` each group's ``lr`` is the schedule's LR of
        step ``k`` (``lrfind.one_cycle(total_steps, ...)[k]`` or ``lrfind.warmup_cosine(...)[k]``,
        to a rounding error of an ulp or two); from step ``total_steps`` on, it is the schedule's
        end value (0 for one-cycle, ``min_lr`` for warmup-cosine). Call ``scheduler.step()`` once
        per optimizer step. ``scheduler.state_dict()`` holds only plain values.

        Args:
            optimizer: any ``torch.optim`` optimizer; its groups' ``lr`` and ``initial_lr`` are set.
            policy: ``"one_cycle"`` (default) or ``"warmup_cosine"``.
            total_steps: the optimizer steps the schedule spans (keyword only, required).
            kwargs: the policy's overrides, below.

        Policies and their keyword overrides (LRs in the optimizer's units):

        - ``"one_cycle"``: ``max_lr`` (default: the suggested LR), ``base_lr`` (default: the low
          end of the diagnosis range if it is below ``max_lr``, else ``max_lr / 10``),
          ``pct_start`` (default 0.3, the warm-up fraction of the steps).
        - ``"warmup_cosine"``: ``base_lr`` (the peak; default: the suggested LR),
          ``warmup_steps`` (default ``total_steps // 20``, 5% rounded down), ``min_lr``
          (default 0.0).

        Raises:
            ValueError: for an unknown policy, invalid schedule parameters, or no suggested LR
                (with the suggestion's reason) when the peak LR is not given.
            ImportError: without PyTorch (the ``torch`` extra).
        """
        if policy not in _POLICIES:
            raise ValueError(f"unknown policy {policy!r}: use one of {', '.join(map(repr, _POLICIES))}")
        lr_scheduler = _require("torch.optim.lr_scheduler", "torch", "scheduler")
        factor = _POLICIES[policy](self, total_steps, **kwargs)
        factor(0)  # checks the parameters before the optimizer is touched
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = factor.peak
        return lr_scheduler.LambdaLR(optimizer, factor)


class _LRFactor:
    """``LambdaLR``'s factor at a step: ``_core.<schedule>(step, **params)`` over ``peak``, the
    groups' initial LR. A class rather than a closure, so ``LambdaLR.state_dict`` keeps its
    attributes, all plain values (``torch.load(..., weights_only=True)`` reads them back)."""

    def __init__(self, schedule: str, peak: float, **params: Any) -> None:
        self.schedule, self.peak, self.params = schedule, peak, params

    def __call__(self, step: int) -> float:
        return getattr(_core, self.schedule)(step, **self.params) / self.peak


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
    if base_lr is None:
        low = result.diagnosis.range[0] if result.diagnosis.range is not None else math.inf
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
