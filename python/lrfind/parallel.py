"""Many sweeps of the same setup, and what they agree on."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrfind.result import RangeTestResult, Refinement

if TYPE_CHECKING:
    from matplotlib.axes import Axes

FILE_FORMAT = "lrfind.ParallelResult"
FILE_VERSION = 1

#: Runs whose suggestion lies within this factor of the consensus "agree".
AGREE_FACTOR = 2.0

_KIND_WORDS = {
    "immediate_explosion": "exploded immediately: unstable initialisation or data, or min_lr too high",
    "flat": "did not learn (flat loss): check the model, the loss and the optimizer",
    "no_divergence": "never diverged: the best LR may lie above max_lr",
    "noisy": "were too noisy to read: use a larger batch or more smoothing",
    "too_short": "stopped too early to read",
}


@dataclass(frozen=True)
class ParallelResult:
    """K sweeps of one setup (``runs``, one ``RangeTestResult`` each, with their ``seeds``).

    ``consensus_lr`` is the median of the runs' suggestions in log space (on the quality
    benchmark, ``benches/quality``, this beat reading ``auto`` off the runs' median curve) and
    ``suggested_range`` the median of their ranges; ``suggested_lr`` is the consensus, or with
    ``refine=K`` the best of the candidates in ``refined``.
    ``spread`` is their interquartile range as a factor (1.6 means the middle half of the runs
    lie within x1.6), ``agreeing`` counts runs within a factor 2 of the consensus, and
    ``diagnosis`` says in words what the runs' diagnoses add up to.
    """

    runs: list[RangeTestResult]
    seeds: list[int]
    refined: Refinement | None = None

    def __post_init__(self) -> None:
        if len(self.runs) != len(self.seeds):
            raise ValueError(f"runs and seeds must pair up, got {len(self.runs)} runs and {len(self.seeds)} seeds")

    @property
    def suggestions(self) -> np.ndarray:
        """Each run's suggested LR (NaN where a run has none, or gives no LR to train at: a flat
        run, an immediate explosion)."""
        return np.array(
            [np.nan if r.suggested_lr is None or not r.diagnosis.gives_lr else r.suggested_lr for r in self.runs]
        )

    @property
    def consensus_lr(self) -> float | None:
        """Median of the runs' suggestions in log space; None if no run has one."""
        logs = np.log(self.suggestions[np.isfinite(self.suggestions)])
        return float(np.exp(np.median(logs))) if len(logs) else None

    @property
    def suggested_lr(self) -> float | None:
        """The refined LR when ``refine`` found one, else the consensus."""
        refined = None if self.refined is None else self.refined.lr
        return self.consensus_lr if refined is None else refined

    @property
    def suggested_range(self) -> tuple[float, float] | None:
        """The median in log of the ranges of the runs that give an LR (``auto``'s); None if
        none has one."""
        ranges = [
            r.suggested_range for r in self.runs if r.diagnosis.gives_lr and r.suggested_range is not None
        ]  # fmt: skip
        if not ranges:
            return None
        low, high = np.exp(np.median(np.log(np.array(ranges)), axis=0))
        return float(low), float(high)

    @property
    def confidence(self) -> float | None:
        """Median of the runs' confidences in their main suggestion (``auto`` gives one, in
        [0, 1]), scaled down by the share of runs that disagree with the consensus (beyond a
        factor ``AGREE_FACTOR``); None when the main method gives no confidence."""
        scores = [s for r in self.runs if (s := _confidence(r)) is not None]
        if not scores or self.consensus_lr is None:
            return None
        return float(np.median(scores)) * self.agreeing / np.isfinite(self.suggestions).sum()

    @property
    def spread(self) -> float | None:
        """Interquartile range of the suggestions as a factor (>= 1); None below 2 suggestions."""
        logs = np.log(self.suggestions[np.isfinite(self.suggestions)])
        if len(logs) < 2:
            return None
        q25, q75 = np.percentile(logs, [25, 75])
        return float(np.exp(q75 - q25))

    @property
    def agreeing(self) -> int:
        """Runs whose suggestion is within a factor ``AGREE_FACTOR`` of the consensus."""
        consensus = self.consensus_lr
        if consensus is None:
            return 0
        ratios = self.suggestions[np.isfinite(self.suggestions)] / consensus
        return int(np.sum((ratios <= AGREE_FACTOR) & (ratios >= 1 / AGREE_FACTOR)))

    @property
    def diagnosis(self) -> str:
        """The runs' diagnoses in words, e.g. "3 of 16 runs exploded immediately: ..."."""
        n = len(self.runs)
        counts = Counter(r.diagnosis.kind for r in self.runs)
        lines = [f"{count} of {n} runs {_KIND_WORDS[kind]}" for kind, count in counts.items() if kind in _KIND_WORDS]
        good = counts.get("good", 0)
        if good:
            lines.insert(0, f"{good} of {n} runs show a clean descent")
        return "; ".join(lines) + "."

    def summary(self) -> str:
        """The consensus, its spread and agreement, the diagnosis, and one line per run."""
        if self.consensus_lr is None:
            head = f"No run suggested an LR ({len(self.runs)} runs)."
        else:
            spread = "n/a" if self.spread is None else f"x{self.spread:.2g}"
            confidence = "" if self.confidence is None else f"; confidence {self.confidence:.2f}"
            head = (
                f"Consensus LR: {self.consensus_lr:.2e} (median of {np.isfinite(self.suggestions).sum()} "
                f"suggestions; spread {spread}; {self.agreeing} of {len(self.runs)} runs within x{AGREE_FACTOR:g}"
                f"{confidence})"
            )
        rows = [head, self.diagnosis]
        if self.refined is not None:
            rows.insert(1, self.refined.summary())
        for seed, r in zip(self.seeds, self.runs, strict=True):
            lr = "none" if r.suggested_lr is None or not r.diagnosis.gives_lr else f"{r.suggested_lr:.2e}"
            stop = "ran to max_lr" if r.stop_reason is None else f"stopped at step {r.stop_index} ({r.stop_reason})"
            rows.append(f"  seed {seed:>4}: suggested {lr:>8}, {len(r.lrs):>4} points, {stop}, {r.diagnosis.kind}")
        return "\n".join(rows)

    def plot(self, ax: Axes | None = None, path: str | os.PathLike[str] | None = None) -> Axes:
        """Every run's lag-free curve (``trend``) faintly, their median, the consensus as a
        vertical line and the middle half of the runs' suggestions as a bar with end caps along
        the top (visible however narrow) and shaded; log-x; the legend below the axes.
        ``path`` saves the figure. Returns the axes."""
        from matplotlib.transforms import blended_transform_factory

        from lrfind.plot import clamp_ylim, new_axes, save_figure

        if ax is None:
            ax = new_axes(use_pyplot=path is None)
        for r in self.runs:
            ax.plot(r.lrs, r.trend, color="C0", alpha=0.2, linewidth=0.8)
        lrs, median = self.median_curve()
        if len(lrs):
            ax.plot(lrs, median, color="C0", linewidth=2, label="median lag-free loss of the runs")
        if self.consensus_lr is not None:
            ax.axvline(self.consensus_lr, color="C2", lw=1.5, label=f"consensus LR: {self.consensus_lr:.2e}")
        if self.refined is not None and self.refined.lr is not None:
            ax.axvline(self.refined.lr, color="navy", lw=1.5, label=f"refined LR: {self.refined.lr:.2e}")
        finite = self.suggestions[np.isfinite(self.suggestions)]
        if len(finite) >= 2:
            lo, hi = np.exp(np.percentile(np.log(finite), [25, 75]))
            label = f"middle half of the runs' suggestions: {lo:.2e} to {hi:.2e}"
            ax.axvspan(lo, hi, color="C2", alpha=0.15)
            top = blended_transform_factory(ax.transData, ax.transAxes)
            ax.errorbar(
                [np.sqrt(lo * hi)], [0.96], xerr=[[np.sqrt(lo * hi) - lo], [hi - np.sqrt(lo * hi)]],
                transform=top, fmt="none", ecolor="C2", elinewidth=3, capsize=6, capthick=2, label=label,
            )  # fmt: skip
        ax.set_xscale("log")
        clamp_ylim(ax)
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss")
        spread = "" if self.spread is None else f", spread x{self.spread:.2g}"
        ax.set_title(f"{len(self.runs)} parallel range tests{spread}", fontsize="medium")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, fontsize="small")
        if path is not None:
            save_figure(ax, path)
        return ax

    def median_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The pointwise median of the runs' lag-free curves (``trend``) over the LRs every run
        reached (runs that share a ladder); empty arrays if the runs' ladders differ."""
        length = min((len(r.lrs) for r in self.runs), default=0)
        if length == 0 or any(not np.array_equal(r.lrs[:length], self.runs[0].lrs[:length]) for r in self.runs):
            return np.empty(0), np.empty(0)
        curves = np.stack([r.trend[:length] for r in self.runs])
        return self.runs[0].lrs[:length], np.median(curves, axis=0)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every run (``RangeTestResult.to_dict``) and the seeds as strict JSON."""
        doc = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "seeds": list(self.seeds),
            "runs": [r.to_dict() for r in self.runs],
            "refined": None if self.refined is None else self.refined.to_dict(),
        }
        Path(path).write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ParallelResult:
        """Read a file written by ``save``; errors name the file and the key."""
        try:
            doc: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable JSON file: {e}") from e
        except RecursionError:  # how deep json can go depends on the caller's stack
            raise ValueError(f"{path}: not a readable JSON file (nested too deeply to parse)") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(doc).__name__}")
        for key, want in (("format", FILE_FORMAT), ("version", FILE_VERSION)):
            value = doc.get(key)
            if type(value) is not type(want) or value != want:  # not 1.0 or true for 1
                shown = repr(value) if isinstance(value, (str, int, float)) else "not that"
                raise ValueError(f"{path}: key {key!r} is {shown[:40]}, expected {want!r}")
        runs, seeds = doc.get("runs"), doc.get("seeds")
        if not isinstance(runs, list) or not isinstance(seeds, list) or len(runs) != len(seeds):
            raise ValueError(f"{path}: keys 'runs' and 'seeds' must be lists of the same length")
        bad = [s for s in seeds if not (type(s) is int and 0 <= s < 2**64)]
        if bad:
            raise ValueError(f"{path}: key 'seeds' holds {str(bad[0])[:40]!s}, not a seed (a whole number >= 0)")
        refined = doc.get("refined")  # absent from files written before refine existed
        return cls(
            runs=[RangeTestResult.from_dict(r, f"{path} run {i}") for i, r in enumerate(runs)],
            seeds=seeds,
            refined=None if refined is None else Refinement.from_dict(refined, path),
        )


def _confidence(run: RangeTestResult) -> float | None:
    """The confidence of a run's main suggestion, if its method gives one."""
    main = next(iter(run.suggestions.values()), None)
    return None if main is None or main.lr is None else main.confidence
