"""Drawing a ``RangeTestResult`` with matplotlib (the ``plot`` extra); see ``RangeTestResult.plot``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

try:
    from matplotlib.figure import Figure
except ImportError:  # pragma: no cover - exercised in an environment without matplotlib
    raise ImportError("RangeTestResult.plot needs matplotlib: pip install 'lrfind[plot]'") from None

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lrfind._core import Suggestion
    from lrfind.result import RangeTestResult

#: The y-axis stops at ``start + TOP_SCALES * max(|start|, start - lowest)`` (three times a
#: positive starting loss), so the rise before an explosion does not flatten the curve.
TOP_SCALES = 2.0

#: Colours of the suggestion markers (matplotlib's cycle, past those of the other artists).
MARKER_COLORS = ("C4", "C5", "C6", "C8", "C9", "C7")


def new_axes(use_pyplot: bool) -> Axes:
    """Fresh axes: from ``pyplot`` (so ``plt.show()`` shows them) or, when only saving, on a bare
    ``Figure`` that leaves pyplot's global state alone."""
    if use_pyplot:
        import matplotlib.pyplot as plt

        return plt.subplots()[1]
    return Figure().subplots()


def save_figure(ax: Axes, path: str | os.PathLike[str]) -> None:
    """Save the whole figure of ``ax`` (the root one, if ``ax`` is on a subfigure) to ``path``;
    the format follows the extension, PNG when there is none."""
    ax.figure.figure.savefig(path, bbox_inches="tight")


def plot_result(result: RangeTestResult, ax: Axes, methods: str | Sequence[str] | None, show_grad_norm: bool) -> Axes:
    """Draw ``result`` on ``ax`` as ``RangeTestResult.plot`` describes, and return ``ax``."""
    norms = result.grad_norms if show_grad_norm else None
    if show_grad_norm and norms is None:
        raise ValueError("show_grad_norm=True needs grad_norms, which lrfind.torch.range_test records")
    ax.set_xscale("log")
    _widen_a_single_lr(ax, result)
    ax.plot(result.lrs, result.losses, color="C0", lw=0.8, alpha=0.35, label="loss")
    ax.plot(result.lrs, result.smoothed_losses, color="C0", lw=2, label="smoothed loss")
    _plot_val_losses(ax, result)
    _mark_suggestions(ax, result, _selected(result, methods))
    _mark_stop_and_range(ax, result)
    limits = _ylim(result)
    if limits is not None:
        ax.set_ylim(*limits)
    ax.set(xlabel="learning rate", ylabel="loss", title=f"LR range test: {result.diagnosis.kind}")
    top = ax if norms is None else _plot_grad_norms(ax, result.lrs, norms)
    handles = [h for a in ([ax] if top is ax else [ax, top]) for h in a.get_legend_handles_labels()[0]]
    top.legend(handles=handles, fontsize="small")
    return ax


def _plot_val_losses(ax: Axes, result: RangeTestResult) -> None:
    if result.val_losses is None:
        return
    measured = ~np.isnan(result.val_losses)
    if measured.any():
        ax.plot(result.lrs[measured], result.val_losses[measured], color="C1", marker=".", label="validation loss")


def _selected(result: RangeTestResult, methods: str | Sequence[str] | None) -> list[Suggestion]:
    """The suggestions to mark: those named (all when None) that have an LR."""
    if methods is None:
        chosen = list(result.suggestions.values())
    else:
        names = [methods] if isinstance(methods, str) else list(methods)
        unknown = [n for n in names if n not in result.suggestions]
        if unknown:
            raise ValueError(f"no suggestion {unknown[0]!r}: this result has {', '.join(result.suggestions)}")
        chosen = [result.suggestions[n] for n in names]
    return [s for s in chosen if s.lr is not None]


def _mark_suggestions(ax: Axes, result: RangeTestResult, suggestions: list[Suggestion]) -> None:
    """One marker per suggestion at its LR, on the curve the suggestions were read from (raw
    losses unless ``suggest_on="smoothed"``), interpolated in log LR; a suggestion with a range
    (``auto``) gets it as a horizontal bar through the marker."""
    if not len(result.lrs):
        return
    smoothed = result.options.get("suggest_on") == "smoothed"
    curve = result.smoothed_losses if smoothed else result.losses
    log_lrs = np.log(result.lrs)
    for i, s in enumerate(suggestions):
        lr = float(s.lr or 0.0)  # _selected keeps only suggestions with an LR
        y = np.interp(np.log(lr), log_lrs, curve)
        color = MARKER_COLORS[i % len(MARKER_COLORS)]
        label = f"{s.method}: {lr:.2e}"
        if s.range is None:
            ax.plot([lr], [y], "o", color=color, markersize=7, zorder=3, label=label)
        else:
            low, high = s.range
            label += f" (range {low:.1e} to {high:.1e})"
            xerr = [[lr - low], [high - lr]]
            ax.errorbar([lr], [y], xerr=xerr, fmt="o", color=color, markersize=7, capsize=4, zorder=3, label=label)


def _mark_stop_and_range(ax: Axes, result: RangeTestResult) -> None:
    """The stop as a dashed vertical line (its loss may be NaN or inf), the range shaded."""
    if result.explosion_lr is not None:
        label = f"stop ({result.stop_reason}): {result.explosion_lr:.2e}, loss {result.explosion_loss:.3g}"
        ax.axvline(result.explosion_lr, color="red", ls="--", lw=1, label=label)
    if result.diagnosis.range is not None:
        ax.axvspan(*result.diagnosis.range, color="C2", alpha=0.15, label="diagnosis range")


def _widen_a_single_lr(ax: Axes, result: RangeTestResult) -> None:
    """A sweep of one LR (one point, or an explosion at the first step): show a decade either
    side of it rather than a singular x-axis."""
    xs = result.lrs if result.explosion_lr is None else np.append(result.lrs, result.explosion_lr)
    if len(xs) and xs.min() == xs.max():
        ax.set_xlim(xs[0] / 10, xs[0] * 10)


def _ylim(result: RangeTestResult) -> tuple[float, float] | None:
    """From the lowest loss to the capped highest (see ``TOP_SCALES``), padded by 5%; None
    (matplotlib's autoscale) for an empty or flat curve."""
    if not len(result.losses):
        return None
    values = [result.losses, result.smoothed_losses]
    if result.val_losses is not None:
        values.append(result.val_losses)
    finite = np.concatenate(values)
    finite = finite[np.isfinite(finite)]
    start, low, high = float(result.losses[0]), float(finite.min()), float(finite.max())
    top = min(high, start + TOP_SCALES * max(abs(start), start - low))
    pad = 0.05 * (top - low)
    return (low - pad, top + pad) if top > low else None


def _plot_grad_norms(ax: Axes, lrs: np.ndarray, norms: np.ndarray) -> Axes:
    """The gradient norms (finite, positive ones) on a log-scale twin y-axis; returns the twin."""
    shown = np.isfinite(norms) & (norms > 0)
    twin = ax.twinx()
    twin.plot(lrs[shown], norms[shown], color="C3", lw=1, alpha=0.7, label="gradient norm")
    twin.set_yscale("log")
    twin.set_ylabel("gradient norm")
    return twin
