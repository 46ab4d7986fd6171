"""Drawing a ``RangeTestResult`` with matplotlib (the ``plot`` extra); see ``RangeTestResult.plot``."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

try:
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory
except ImportError:  # pragma: no cover - exercised in an environment without matplotlib
    raise ImportError("RangeTestResult.plot needs matplotlib: pip install 'lrfind[plot]'") from None

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lrfind._core import Suggestion
    from lrfind.result import RangeTestResult

#: The y-axis stops at ``start + TOP_SCALES * max(|start|, start - lowest)`` (three times a
#: positive starting loss), so the rise before an explosion does not flatten the curve.
TOP_SCALES = 2.0

#: The y-axis spans at least this share of the loss's level (its median), so that the noise of
#: a flat sweep is not blown up into a trend.
MIN_SPAN = 0.1

#: One colour per method, none shared with the curve (blue), the validation loss (orange), the
#: stop (red) or the gradient norm (grey).
METHOD_COLORS = {
    "auto": "C2",
    "steepest": "C4",
    "minimum": "C5",
    "steep": "C6",
    "valley": "C8",
    "slide": "C9",
    "explosion": "black",
}


def new_axes(use_pyplot: bool) -> Axes:
    """Fresh axes with room for a legend below them: from ``pyplot`` (so ``plt.show()`` shows
    them) or, when only saving, on a bare ``Figure`` that leaves pyplot's global state alone."""
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.subplots(figsize=(7, 5.5), layout="constrained")[1]
    return Figure(figsize=(7, 5.5), layout="constrained").subplots()


def save_figure(ax: Axes, path: str | os.PathLike[str]) -> None:
    """Save the whole figure of ``ax`` (the root one, if ``ax`` is on a subfigure) to ``path``;
    the format follows the extension, PNG when there is none."""
    ax.figure.figure.savefig(path, bbox_inches="tight")


def plot_result(
    result: RangeTestResult,
    ax: Axes,
    methods: str | Sequence[str] | None,
    show_grad_norm: bool,
    show_ema: bool,
    show_descent: bool,
    legend: bool,
) -> Axes:
    """Draw ``result`` on ``ax`` as ``RangeTestResult.plot`` describes, and return ``ax``."""
    norms = result.grad_norms if show_grad_norm else None
    if show_grad_norm and norms is None:
        raise ValueError("show_grad_norm=True needs grad_norms, which lrfind.torch.range_test records")
    suggestions = _selected(result, methods)
    ax.set_xscale("log")
    _widen_a_single_lr(ax, result)
    ax.plot(result.lrs, result.losses, color="C0", lw=0.8, alpha=0.3, label="loss (raw)")
    ax.plot(result.lrs, result.trend, color="C0", lw=2, label="loss, lag-free (what the suggestion reads)")
    if show_ema:
        ax.plot(result.lrs, result.smoothed_losses, color="C0", lw=1, ls="--", label="EMA of the loss (lags)")
    _plot_val_losses(ax, result)
    marks: list[float] = []
    if result.diagnosis.gives_lr:
        marks = _mark_suggestions(ax, result, suggestions)
        _mark_refined(ax, result)
    _mark_stop(ax, result)
    if show_descent:
        _mark_descent(ax, result)
    limits = _ylim(result, show_ema, marks)
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set(xlabel="learning rate", ylabel="loss")
    ax.set_title(_title(result), fontsize="medium")
    top = ax if norms is None else _plot_grad_norms(ax, result.lrs, norms)
    if legend:
        handles = [h for a in ([ax] if top is ax else [ax, top]) for h in a.get_legend_handles_labels()[0]]
        # Below the axes, outside them: a legend never covers the curve.
        top.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize="small")
    return ax


def _title(result: RangeTestResult) -> str:
    """The diagnosis and, unless the curve is good, its advice; a sweep that gives no LR to
    train at says so (it gets the advice instead of a suggestion)."""
    kind = result.diagnosis.kind
    if kind == "good":
        return f"LR range test: {kind}"
    advice = textwrap.fill(result.diagnosis.message, 90)
    no_lr = "" if result.diagnosis.gives_lr else ", no LR to train at"
    return f"LR range test: {kind}{no_lr}\n{advice}"


def _plot_val_losses(ax: Axes, result: RangeTestResult) -> None:
    if result.val_losses is None:
        return
    measured = ~np.isnan(result.val_losses)
    if measured.any():
        ax.plot(result.lrs[measured], result.val_losses[measured], color="C1", marker=".", label="validation loss")


def _selected(result: RangeTestResult, methods: str | Sequence[str] | None) -> list[Suggestion]:
    """The suggestions to mark: the main one (None), or those named; only those with an LR."""
    if methods is None:
        chosen = list(result.suggestions.values())[:1]
    else:
        names = [methods] if isinstance(methods, str) else list(methods)
        unknown = [n for n in names if n not in result.suggestions]
        if unknown:
            raise ValueError(f"no suggestion {unknown[0]!r}: this result has {', '.join(result.suggestions)}")
        chosen = [result.suggestions[n] for n in names]
    return [s for s in chosen if s.lr is not None]


def _mark_suggestions(ax: Axes, result: RangeTestResult, suggestions: list[Suggestion]) -> list[float]:
    """One marker per suggestion at its LR on the lag-free curve (interpolated in log LR); the
    main suggestion's range, the LRs to train in, shaded in its colour. Returns the markers'
    heights, which the y limits must hold."""
    if not len(result.lrs):
        return []
    main = next(iter(result.suggestions.values()), None)
    log_lrs = np.log(result.lrs)
    heights = []
    for s in suggestions:
        lr = float(s.lr or 0.0)  # _selected keeps only suggestions with an LR
        color = METHOD_COLORS.get(s.method, "C7")
        y = float(np.interp(np.log(lr), log_lrs, result.trend))
        heights.append(y)
        ax.plot([lr], [y], "o", color=color, markersize=8, zorder=4, label=f"{s.method}: {lr:.2e}")
        if s is main and result.suggested_range is not None:
            low, high = result.suggested_range
            ax.axvspan(low, high, color=color, alpha=0.15, label=f"suggested range: {low:.2e} to {high:.2e}")
    return heights


def _mark_refined(ax: Axes, result: RangeTestResult) -> None:
    """``refine``'s candidates as ticks along the top of the axes, the best one as a solid
    vertical line: what ``suggested_lr`` is then."""
    refined = result.refined
    if refined is None:
        return
    top = blended_transform_factory(ax.transData, ax.transAxes)
    ax.plot(refined.lrs, [0.97] * len(refined.lrs), "|", transform=top, color="navy", markersize=12,
            label=f"refine: {len(refined.lrs)} candidates, {refined.steps} steps each")  # fmt: skip
    if refined.lr is not None:
        ax.axvline(refined.lr, color="navy", lw=1.5, label=f"refined LR (best held-out loss): {refined.lr:.2e}")


def _mark_stop(ax: Axes, result: RangeTestResult) -> None:
    """The stop as a dashed vertical line (its loss may be NaN or inf)."""
    if result.explosion_lr is not None:
        label = f"stop ({result.stop_reason}): {result.explosion_lr:.2e}, loss {result.explosion_loss:.3g}"
        ax.axvline(result.explosion_lr, color="C3", ls="--", lw=1, label=label)


def _mark_descent(ax: Axes, result: RangeTestResult) -> None:
    """The diagnosis's descent as a bar along the bottom of the axes: not a shaded span, which
    would read as a range to train in."""
    if result.diagnosis.descent is None:
        return
    low, high = result.diagnosis.descent
    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    label = f"loss falls (diagnosis): {low:.2e} to {high:.2e}"
    ax.plot([low, high], [0.02, 0.02], transform=bottom, color="C7", lw=4, solid_capstyle="butt", label=label)


def _widen_a_single_lr(ax: Axes, result: RangeTestResult) -> None:
    """A sweep of one LR (one point, or an explosion at the first step): show a decade either
    side of it rather than a singular x-axis."""
    xs = result.lrs if result.explosion_lr is None else np.append(result.lrs, result.explosion_lr)
    if len(xs) and xs.min() == xs.max():
        ax.set_xlim(xs[0] / 10, xs[0] * 10)


def _ylim(result: RangeTestResult, show_ema: bool, marks: Sequence[float] = ()) -> tuple[float, float] | None:
    """From the lowest loss drawn to the capped highest (see ``TOP_SCALES``), raised to hold the
    suggestion markers at ``marks`` (a marker off the axes would hide the suggestion), padded
    by 5% and widened to at least ``MIN_SPAN`` of the loss's level; None (matplotlib's
    autoscale) for an empty curve or one at 0."""
    if not len(result.losses):
        return None
    values = [result.losses, result.trend, *([result.smoothed_losses] if show_ema else [])]
    if result.val_losses is not None:
        values.append(result.val_losses)
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None
    # The cap is measured from where the lag-free curve starts: one outlier first loss would
    # otherwise stretch the axis and flatten everything else to its floor.
    first = float(result.trend[0]) if len(result.trend) and np.isfinite(result.trend[0]) else float(result.losses[0])
    low, high = float(finite.min()), float(finite.max())
    # Halves before differences: losses near the float maximum must not overflow the limits.
    half_span = max(0.5 * abs(first), 0.5 * first - 0.5 * low)
    top = min(high, first + TOP_SCALES * 2 * half_span) if math.isfinite(first + TOP_SCALES * 2 * half_span) else high
    top = max([top, *(m for m in marks if math.isfinite(m))])
    pad = 0.05 * (0.5 * top - 0.5 * low)
    low, top = max(low - 2 * pad, -_LIMIT), min(top + 2 * pad, _LIMIT)
    half_need = 0.5 * MIN_SPAN * abs(float(np.median(finite)))
    if 0.5 * top - 0.5 * low < half_need:
        middle = 0.5 * low + 0.5 * top
        low, top = max(middle - half_need, -_LIMIT), min(middle + half_need, _LIMIT)
    if top <= low and max(abs(low), abs(top)) >= _LIMIT:  # all of it beyond what can be drawn
        return -_LIMIT, _LIMIT
    return (low, top) if top > low else None


#: The largest y limit drawn: matplotlib's ticks overflow on limits near the float maximum.
_LIMIT = 1e306


def clamp_ylim(ax: Axes) -> None:
    """Keep the y limits matplotlib chose within what it can tick (``_LIMIT``)."""
    low, high = ax.get_ylim()
    if -_LIMIT <= low and high <= _LIMIT:
        return
    low, high = max(low, -_LIMIT), min(high, _LIMIT)
    ax.set_ylim(*((low, high) if high > low else (-_LIMIT, _LIMIT)))


def _plot_grad_norms(ax: Axes, lrs: np.ndarray, norms: np.ndarray) -> Axes:
    """The gradient norms (finite, positive ones) on a log-scale twin y-axis; returns the twin."""
    shown = np.isfinite(norms) & (norms > 0)
    twin = ax.twinx()
    twin.plot(lrs[shown], norms[shown], color="C7", lw=1, alpha=0.7, label="gradient norm")
    twin.set_yscale("log")
    twin.set_ylabel("gradient norm")
    return twin
