"""The ``lrfind`` command line: ``analyze`` recorded sweeps, run the ``demo``, print a ``schedule``.

Installed as the ``lrfind`` console script; ``python -m lrfind`` runs it too. ``lrfind --help`` and
``lrfind COMMAND --help`` describe the commands with examples.

Exit codes: 0 success; 1 when some inputs were rejected (the rest is still reported; when no
sweep is left, the rejections and "no sweeps to analyse" go to stderr and no report is written)
or an output could not be written; 2 on usage errors (bad options, an unavailable device or a
missing optional dependency). A missing dependency of an option, such as matplotlib for
``--plot``, is found before anything is read or printed.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import json
import math
import os
import queue
import re
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import lrfind
from lrfind import demo
from lrfind._core import analyze_texts, csv_rows, json_rows
from lrfind.io import BATCH_SIZE, HISTORY_SMOOTHING, Rejected, Sweeps, iter_sweeps

#: Every suggestion method, ``"auto"`` (the main suggestion) first.
DEFAULT_METHODS = list(lrfind.METHODS)

#: ``--plot`` writes one PNG per sweep up to this many sweeps, else one grid of the first this many.
MAX_PLOTS = 20
_GRID_COLUMNS = 5

#: Longest sweep name the table shows in full; longer ones keep their end (the distinctive part).
_NAME_WIDTH = 40

_STOP_REASONS = lrfind.BatchAnalysis.STOP_REASONS
_DIAGNOSES = lrfind.BatchAnalysis.DIAGNOSES
_GIVES_LR = lrfind.BatchAnalysis.GIVES_LR
#: Where ``lrfind.confidence_level`` moves from "low" to "medium" and from "medium" to "high".
_LEVEL_BOUNDS = (0.4, 0.7)
_FORMATS = ("table", "json", "jsonl", "csv", "parquet")
_POLICIES = ("one_cycle", "warmup_cosine")


class UsageError(Exception):
    """A user error that argparse cannot catch itself: reported without a traceback, exit 2."""


class InputError(Exception):
    """An input or output the tool cannot use: reported without a traceback, exit 1."""


# --- analyze --------------------------------------------------------------------------------------


def cmd_analyze(args: argparse.Namespace) -> int:
    """Read the sweeps in pieces (``iter_sweeps``), analyse each piece in one ``analyze_batch``
    call and write each report format as it goes, so memory stays bounded by the piece."""
    methods = _unique(args.method) if args.method else DEFAULT_METHODS
    if args.plot is not None:
        _require_matplotlib()  # a usage error, before a report that would then be cut short
        _check_plot_dir(args.plot)
    if args.format == "parquet" and args.out is None:
        raise UsageError("--format parquet writes a file: give it with --out FILE")
    if args.format == "parquet":
        _require_pyarrow()
    tally = _Tally(methods)
    report = _REPORTS[args.format](args.out, methods)
    plotted: list[tuple[str, np.ndarray, np.ndarray]] = []  # the first sweeps, for --plot
    try:
        pieces = iter_sweeps(args.paths, batch_size=args.batch_size, history_smoothing=args.history_smoothing)
        for piece in _read_ahead(pieces):
            tally.files_read += piece.files_read
            tally.rejected.extend(piece.rejected)
            if args.format != "json":  # the JSON report carries its rejections itself
                for r in piece.rejected:
                    _warn(f"rejected {r.source}: {r.reason}")
            if len(piece) == 0:
                continue
            batch = lrfind.analyze_batch(piece.lrs, piece.losses, piece.offsets, methods=methods)
            tally.add(piece, batch)
            report.write(piece, batch)
            for i in range(min(len(piece), MAX_PLOTS + 1 - len(plotted)) if args.plot is not None else 0):
                lrs, losses = piece.sweep(i)
                plotted.append((piece.names[i], lrs.copy(), losses.copy()))
        if tally.sweeps:
            report.finish(tally)
    except BaseException:
        with contextlib.suppress(InputError):  # the first error is the one to report
            report.close()
        raise
    report.close()  # may fail too: a full disk may only say so when the last bytes are written
    if tally.sweeps == 0:  # every input rejected: exit 1 as for some, with no (empty) report
        if args.format == "json":
            for r in tally.rejected:
                _warn(f"rejected {r.source}: {r.reason}")
        _warn(f"no sweeps to analyse in {', '.join(map(str, args.paths))}")
        return 1
    if args.plot is not None:
        _plot_sweeps(plotted, tally.sweeps, Path(args.plot), methods)
    return 1 if tally.rejected else 0


_T = TypeVar("_T")


def _read_ahead(items: Iterator[_T]) -> Iterator[_T]:
    """``items``, the next one made in a background thread while the caller works on this one:
    reading (pyarrow's decoding, numpy) and analysing and writing (the Rust core) release the
    GIL, so they overlap. An exception in the thread is raised here; leaving early (an error,
    Ctrl-C) stops the thread after the item it is making."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def give(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                handoff.put((kind, value), timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def make() -> None:
        try:
            for item in items:
                if not give("item", item):
                    return
            give("end", None)
        except BaseException as error:  # handed to the caller, who raises it
            give("error", error)

    worker = threading.Thread(target=make, name="lrfind-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join()


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _stop_reason(code: int) -> str | None:
    """The batch's stop reason code: 0 none, else ``STOP_REASONS[code - 1]``."""
    return _STOP_REASONS[code - 1] if code else None


class _Tally:
    """What the summary counts, added up piece by piece."""

    def __init__(self, methods: list[str]) -> None:
        self.methods = methods
        self.files_read = self.sweeps = 0
        self.rejected: list[Rejected] = []
        self.diagnoses: Counter[int] = Counter()
        self.levels: Counter[str] = Counter()
        self.no_lr: dict[int, tuple[str, str]] = {}  # diagnosis code -> (first sweep's name, message)

    def add(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        self.sweeps += len(batch)
        self.diagnoses.update(batch.diagnosis.tolist())
        if "auto" in self.methods:
            finite = batch.confidence["auto"][np.isfinite(batch.confidence["auto"])]
            level = np.digitize(finite, _LEVEL_BOUNDS)  # confidence_level, vectorised
            self.levels.update(
                dict(zip(("low", "medium", "high"), np.bincount(level, minlength=3).tolist(), strict=True))
            )
        for code in np.unique(batch.diagnosis).tolist():
            if not _GIVES_LR[code] and code not in self.no_lr:
                first = int(np.flatnonzero(batch.diagnosis == code)[0])
                message = lrfind.analyze(*piece.sweep(first), methods=self.methods).diagnosis.message
                self.no_lr[code] = (piece.names[first], message)

    def diagnosis_counts(self) -> dict[str, int]:
        """Sweeps per diagnosis kind, in ``DIAGNOSES`` order, kinds with no sweep left out."""
        return {kind: self.diagnoses[code] for code, kind in enumerate(_DIAGNOSES) if self.diagnoses[code]}

    def confidence_counts(self) -> dict[str, int]:
        """Sweeps per level of auto's confidence (sweeps without a suggestion are left out)."""
        return {level: self.levels[level] for level in ("high", "medium", "low")}


class _Output:
    """Standard output, or a file opened at the first write: a report with nothing to say
    leaves no file behind."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.stream: Any = None

    @property
    def where(self) -> str:
        """The output, for a message."""
        return "to standard output" if self.path is None else self.path

    def write(self, text: str | bytes) -> None:
        """Writes text, or UTF-8 bytes straight to the binary layer underneath (no decoding)."""
        with self._errors():
            if self.stream is None:
                if self.path is None and sys.stdout is None:  # started with it closed (`>&-`)
                    raise InputError("cannot write to standard output: it is closed")
                self.stream = sys.stdout if self.path is None else open(self.path, "w", encoding="utf-8")  # noqa: SIM115
            if isinstance(text, bytes) and hasattr(self.stream, "buffer"):
                self.stream.flush()
                self.stream.buffer.write(text)
            else:
                self.stream.write(text.decode() if isinstance(text, bytes) else text)

    def close(self) -> None:
        """Writes what is still buffered (where a full disk may first fail) and closes a file."""
        if self.stream is None:
            return
        stream, self.stream = self.stream, None
        with self._errors():
            if self.path is None:
                stream.flush()
            else:
                stream.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """An OSError as an InputError naming the output (a broken pipe is left to ``main``)."""
        try:
            yield
        except BrokenPipeError:
            raise
        except OSError as e:
            if self.path is None:  # what stays buffered would fail again as Python exits
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise InputError(f"cannot write {self.where}: {e.strerror or e}") from None


class _Report(abc.ABC):
    """A report format: ``write`` each analysed piece, then ``finish`` with the tally."""

    def __init__(self, path: str | None, methods: list[str]) -> None:
        self.out, self.methods = _Output(path), methods

    @abc.abstractmethod
    def write(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        """Writes the rows of one analysed piece."""

    def finish(self, tally: _Tally) -> None:  # noqa: B027 (an optional hook: most formats end with their last row)
        """Everything after the sweeps (nothing by default)."""

    def close(self) -> None:
        self.out.close()


class _TableReport(_Report):
    """One aligned row per sweep (column widths fixed by the first piece), then the counts."""

    widths: list[int] | None = None

    def header(self) -> list[str]:
        confident = ["confidence"] if "auto" in self.methods else []
        return ["name", "points", "stop", *self.methods, *confident, "range", "diagnosis"]

    def write(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        rows = _table_rows(piece, batch, self.methods)
        header = self.header()
        if self.widths is None:
            self.widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
            rows = [header, *rows]
        numeric = {1, *range(3, 3 + len(self.methods) + ("auto" in self.methods))}  # right-aligned columns
        lines = [
            "  ".join(
                cell.rjust(w) if c in numeric else cell.ljust(w)
                for c, (cell, w) in enumerate(zip(row, self.widths, strict=True))
            ).rstrip()
            for row in rows
        ]
        self.out.write("\n".join(lines) + "\n")

    def finish(self, tally: _Tally) -> None:
        main = self.methods[0]
        lines = [
            "",
            f"{tally.sweeps} sweep(s) from {tally.files_read} file(s); {len(tally.rejected)} input(s) rejected",
            f"range: {main}'s suggested range, the LRs to train in; stop '-': the sweep never exploded",
            "diagnoses: " + ", ".join(f"{kind} {n}" for kind, n in tally.diagnosis_counts().items()),
        ]
        if "auto" in self.methods:
            lines.append("auto confidence: " + ", ".join(f"{k} {n}" for k, n in tally.confidence_counts().items()))
        for code, (name, message) in sorted(tally.no_lr.items()):
            lines.append(f"{_DIAGNOSES[code]}: no LR to train at (first: {name}). {message}")
        self.out.write("\n".join(lines) + "\n")


def _table_rows(piece: Sweeps, batch: lrfind.BatchAnalysis, methods: list[str]) -> list[list[str]]:
    """The table's cells, one list per sweep of the piece."""
    points = np.diff(piece.offsets)
    main = methods[0]
    confident = "auto" in methods
    rows = []
    for i, name in enumerate(piece.names):
        if not name.isprintable():  # a newline or tab in a name would break the row
            name = name.encode("unicode_escape").decode()
        reason = _stop_reason(int(batch.stop_reason[i]))
        gives_lr = _GIVES_LR[batch.diagnosis[i]]
        low, high = batch.range_low[main][i], batch.range_high[main][i]
        rows.append(
            [
                name if len(name) <= _NAME_WIDTH else "..." + name[-(_NAME_WIDTH - 3) :],
                str(points[i]),
                "-" if reason is None else f"{batch.stop_index[i]} {reason}",
                *(_lr_text(batch.lr[m][i] if gives_lr else math.nan) for m in methods),
                *([_confidence_text(batch.confidence["auto"][i] if gives_lr else math.nan)] if confident else []),
                f"{low:.2e}..{high:.2e}" if math.isfinite(low) and gives_lr else "-",
                _DIAGNOSES[batch.diagnosis[i]],
            ]
        )
    return rows


def _lr_text(lr: float) -> str:
    return f"{lr:.2e}" if math.isfinite(lr) else "-"


def _confidence_text(confidence: float) -> str:
    """``high(0.85)``: the word and the score, one token."""
    return f"{lrfind.confidence_level(confidence)}({confidence:.2f})" if math.isfinite(confidence) else "-"


def _utf8(texts: list[str]) -> list[str]:
    """Names and paths as UTF-8 can hold them: a file name that is not UTF-8 reaches Python with
    lone surrogates (``os.fsdecode``), written ``\\udcXX`` here, as the reports are UTF-8."""
    return [t if t.isascii() or _encodes(t) else t.encode("utf-8", "backslashreplace").decode() for t in texts]


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _sweep_json(piece: Sweeps, batch: lrfind.BatchAnalysis, methods: list[str], prefix: str, end: str) -> bytes:
    """The JSON objects of the piece's sweeps (see ``lrfind analyze --help``; null where no
    value), each ``prefix + object + end``, formatted in Rust (``_core.json_rows``): through
    Python dicts and ``json`` they took ten times the analysis."""
    # The suggestion reasons and the diagnosis messages: texts the batch does not keep.
    reasons, messages = analyze_texts(piece.lrs, piece.losses, piece.offsets, methods=methods)
    fields = {
        "name": _utf8(piece.names),
        "source": _utf8(piece.sources),
        "points": np.diff(piece.offsets),
        "stop_index": batch.stop_index,
        "stop_reason": _labels([None, *_STOP_REASONS], batch.stop_reason),
        "suggestions": {
            m: {
                "lr": batch.lr[m],
                "index": batch.index[m],
                "reason": reasons[m],
                "confidence": batch.confidence[m],
                "range": (batch.range_low[m], batch.range_high[m]),
            }
            for m in methods
        },
        "diagnosis": {
            "kind": _labels(_DIAGNOSES, batch.diagnosis),
            "gives_lr": np.asarray(_GIVES_LR, dtype=bool)[batch.diagnosis],
            "message": messages,
            "descent": (batch.descent_low, batch.descent_high),
        },
    }
    return json_rows(fields, prefix=prefix, end=end)


class _JsonReport(_Report):
    """One JSON object: the sweeps written as they come, then the rejections and the summary."""

    started = False

    def write(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        self.out.write('{\n  "sweeps": [\n' if not self.started else ",\n")
        self.out.write(_sweep_json(piece, batch, self.methods, "    ", ",\n")[:-2])  # no comma after the last
        self.started = True

    def finish(self, tally: _Tally) -> None:
        summary = {
            "files_read": tally.files_read,
            "sweeps_read": tally.sweeps,
            "analysed": tally.sweeps,
            "rejected": len(tally.rejected),
            "diagnoses": tally.diagnosis_counts(),
            **({"auto_confidence": tally.confidence_counts()} if "auto" in self.methods else {}),
        }
        rejected = [{"source": r.source, "reason": r.reason} for r in tally.rejected]
        tail = f'\n  ],\n  "rejected": {json.dumps(rejected)},\n  "summary": {json.dumps(summary)}\n}}\n'
        self.out.write(tail)


class _JsonLinesReport(_Report):
    """One JSON object per sweep and line (the objects of the JSON report's "sweeps")."""

    def write(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        self.out.write(_sweep_json(piece, batch, self.methods, "", "\n"))


class _CsvReport(_Report):
    """A header row and one row per sweep; LRs written exactly (as ``repr``), empty where none.

    The rows are formatted in Rust (``_core.csv_rows``): through ``repr`` and the ``csv``
    module they took longer than the analysis itself."""

    started = False

    def write(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        methods, main = self.methods, self.methods[0]
        confidence = [m for m in methods if m == "auto"]
        if not self.started:
            header = [
                *("name", "source", "points", "stop_index", "stop_reason"),
                *(f"lr_{m}" for m in methods),
                *(f"confidence_{m}" for m in confidence),
                *("range_low", "range_high", "diagnosis", "gives_lr", "descent_low", "descent_high"),
            ]
            self.out.write(csv_rows([[h] for h in header]))
            self.started = True
        columns = [
            _utf8(piece.names),
            _utf8(piece.sources),
            np.diff(piece.offsets),
            batch.stop_index,
            _labels(["", *batch.STOP_REASONS], batch.stop_reason),
            *(batch.lr[m] for m in methods),
            *(batch.confidence[m] for m in confidence),
            batch.range_low[main],
            batch.range_high[main],
            _labels(_DIAGNOSES, batch.diagnosis),
            _labels(["true" if g else "false" for g in _GIVES_LR], batch.diagnosis),
            batch.descent_low,
            batch.descent_high,
        ]
        self.out.write(csv_rows(columns))


def _labels(labels: Sequence[str | None], codes: np.ndarray) -> list[str | None]:
    """``labels[code]`` for each code, as a list (a numpy take, not a Python loop)."""
    return np.asarray(labels, dtype=object)[codes].tolist()


class _ParquetReport(_Report):
    """The CSV report's columns, typed (``lrfind.arrow.report``), written row group by row group
    with a pyarrow ``ParquetWriter``."""

    def __init__(self, path: str | None, methods: list[str]) -> None:
        super().__init__(path, methods)
        self.writer: Any = None

    def write(self, piece: Sweeps, batch: lrfind.BatchAnalysis) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from lrfind.arrow import report

        table = report(batch, self.methods, np.diff(piece.offsets))
        table = table.add_column(0, "source", pa.array(_utf8(piece.sources), type=pa.string()))
        table = table.add_column(0, "name", pa.array(_utf8(piece.names), type=pa.string()))
        with self.out._errors():
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.out.path, table.schema)
            self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            with self.out._errors():
                writer.close()


_REPORTS: dict[str, type[_Report]] = {
    "table": _TableReport,
    "json": _JsonReport,
    "jsonl": _JsonLinesReport,
    "csv": _CsvReport,
    "parquet": _ParquetReport,
}


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UsageError("--format parquet needs pyarrow: pip install 'lrfind[parquet]'") from None


def _check_plot_dir(value: str) -> None:
    """``--plot DIR`` checked before any work: '' would be the current directory, unasked."""
    if not value:
        raise UsageError("--plot needs a directory, got ''")
    if Path(value).exists() and not Path(value).is_dir():
        raise UsageError(f"--plot {value}: exists and is not a directory")


def _plot_sweeps(kept: list[tuple[str, np.ndarray, np.ndarray]], total: int, out_dir: Path, methods: list[str]) -> None:
    """One PNG per sweep, named after it, up to ``MAX_PLOTS`` sweeps; else one grid of the first
    ``MAX_PLOTS`` (a PNG per sweep of thousands of sweeps helps no one). ``kept`` holds the
    first sweeps read, ``total`` counts them all."""
    _require_matplotlib()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create {out_dir}: {e.strerror or e}") from None
    if total <= MAX_PLOTS:
        for file_name, (_, lrs, losses) in zip(_file_names([k[0] for k in kept]), kept, strict=True):
            path = out_dir / f"{file_name}.png"
            with _writing(path):
                lrfind.RangeTestResult.from_sweep(lrs, losses, methods=methods).plot(path=path)
        _warn(f"wrote {total} plot(s) to {out_dir}")
        return
    from matplotlib.figure import Figure

    rows = -(-MAX_PLOTS // _GRID_COLUMNS)
    figure = Figure(figsize=(4 * _GRID_COLUMNS, 3 * rows), layout="constrained")
    for ax, (name, lrs, losses) in zip(figure.subplots(rows, _GRID_COLUMNS).ravel(), kept, strict=False):
        result = lrfind.RangeTestResult.from_sweep(lrs, losses, methods=methods)
        result.plot(ax=ax, methods=methods[:1], legend=False)  # small panels: the marker and range speak
        no_lr = "" if result.diagnosis.gives_lr else ", no LR to train at"
        ax.set_title(f"{name}: {result.diagnosis.kind}{no_lr}", fontsize="small")
    path = out_dir / "sweeps.png"
    with _writing(path):
        figure.savefig(path)
    _warn(f"wrote {path}: the first {MAX_PLOTS} of {total} sweeps")


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An OSError while writing ``path`` as an InputError that names it."""
    try:
        yield
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def _file_names(names: Sequence[str]) -> list[str]:
    """Sweep names made safe as file names (other characters become ``_``), made unique."""
    taken: set[str] = set()
    out = []
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100] or "sweep"
        unique, n = safe, 1
        while unique.lower() in taken:  # "x_y-2" may be a sweep's own name; case-blind file systems
            n += 1
            unique = f"{safe}-{n}"
        taken.add(unique.lower())
        out.append(unique)
    return out


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("plotting needs matplotlib: pip install 'lrfind[plot]'") from None


# --- demo -----------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Run ``lrfind.demo.main`` with the command line's options."""
    if args.steps < 2:
        raise UsageError(f"--steps must be at least 2 (a sweep has two ends), got {args.steps}")
    if Path(args.out).exists() and not Path(args.out).is_dir():  # said before the run, not after
        raise UsageError(f"--out {args.out}: exists and is not a directory")
    demo.main(
        args.out,
        model=args.model,
        optimizer=args.optimizer,
        device=args.device,
        parallel=args.parallel,
        num_steps=args.steps,
    )
    return 0


# --- schedule -------------------------------------------------------------------------------------


def cmd_schedule(args: argparse.Namespace) -> int:
    """Build the schedule, print a compact table of it and optionally plot it."""
    plot = None if args.plot is None else _plot_file(args.plot)  # before the table, as for analyze --plot
    if args.policy == "one_cycle":
        if args.max_lr is None:
            raise UsageError("--policy one_cycle needs --max-lr (the peak LR)")
        _reject_options(args, "one_cycle", warmup_steps="--warmup-steps", min_lr="--min-lr")
        lrs = lrfind.one_cycle(
            args.total_steps, args.base_lr, args.max_lr, 0.3 if args.pct_start is None else args.pct_start
        )
        title = f"one_cycle: {args.base_lr:g} -> {args.max_lr:g} -> 0 over {args.total_steps} steps"
    else:
        _reject_options(args, "warmup_cosine", max_lr="--max-lr", pct_start="--pct-start")
        warmup = args.total_steps // 20 if args.warmup_steps is None else args.warmup_steps
        min_lr = 0.0 if args.min_lr is None else args.min_lr
        lrs = lrfind.warmup_cosine(args.total_steps, warmup, args.base_lr, min_lr)
        decay = f"cosine to {min_lr:g}" if warmup < args.total_steps else "no cosine (all warm-up)"
        title = f"warmup_cosine: {warmup} warm-up steps to {args.base_lr:g}, {decay} over {args.total_steps}"
    print(title)
    print(schedule_table(lrs))
    if plot is not None:
        _plot_schedule(lrs, title, plot)
    return 0


def _reject_options(args: argparse.Namespace, policy: str, **flags: str) -> None:
    """A usage error for options of the other policy: silently ignoring them would mislead."""
    for attr, flag in flags.items():
        if getattr(args, attr) is not None:
            raise UsageError(f"{flag} does not apply to --policy {policy}")


def schedule_table(lrs: np.ndarray, rows: int = 10) -> str:
    """``rows`` evenly spaced steps of the schedule ``lrs`` (the first and last among them) and
    its peak, one ``step  lr`` line each; LRs to 7 significant digits."""
    n = len(lrs)
    peak = int(np.argmax(lrs))
    steps = sorted({*np.linspace(0, n - 1, min(rows, n)).round().astype(int).tolist(), peak})
    lines = [f"{'step':>8}  {'lr':>13}"]
    lines += [f"{s:>8}  {lrs[s]:>13.6e}" + ("  <- peak" if s == peak else "") for s in steps]
    return "\n".join(lines)


def _plot_file(value: str) -> Path:
    """``--plot FILE`` checked before any work: a file name (``.png`` added when it has no
    extension, as matplotlib would write it) of a format matplotlib writes."""
    _require_matplotlib()
    from matplotlib.figure import Figure

    path = Path(value)
    if not value or path.is_dir():
        raise UsageError(f"--plot needs a file name, got {value!r}" + (" (a directory)" if value else ""))
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        raise UsageError(
            f"--plot {value}: matplotlib cannot write {path.suffix!r} files; use one of {', '.join(formats)}"
        )
    return path


def _plot_schedule(lrs: np.ndarray, title: str, path: Path) -> None:
    _require_matplotlib()
    from matplotlib.figure import Figure  # a bare Figure draws with Agg and needs no display

    ax = Figure(figsize=(7, 4)).subplots()
    ax.plot(np.arange(len(lrs)), lrs)
    ax.set(xlabel="step", ylabel="learning rate", title=title)
    try:
        ax.figure.savefig(path, bbox_inches="tight")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or e}") from None
    _warn(f"wrote {path}")


# --- parser and entry point -----------------------------------------------------------------------

_MAIN_HELP = """\
The LR range test, done right. Analyse recorded sweeps, run a real range test on a demo
model, or print the LR schedule built from a suggestion.

examples:
  lrfind analyze runs/*.csv                  one row per sweep: stop, suggestions, diagnosis
  lrfind analyze sweeps.parquet --format json --out report.json
  lrfind demo                                a real range test on scikit-learn's digits
  lrfind schedule --policy one_cycle --total-steps 1000 --base-lr 1e-3 --max-lr 1e-2

exit codes: 0 success; 1 some inputs rejected (the rest reported) or an output not written;
2 usage errors, including --plot without matplotlib (found before any output).
"""

_ANALYZE_HELP = f"""\
Read recorded range-test sweeps (CSV, JSON, JSONL, NPZ or Parquet files, directories of them,
or globs) in pieces of --batch-size sweeps, analyse each piece in one batch and write the
report as it goes, so that any number of sweeps fits in bounded memory (streamed: Parquet with
list columns, long-format Parquet and CSV whose runs' rows are together, JSON Lines, and NPZ
saved uncompressed; other files are read whole). One row
per sweep: its points, where and why it stopped ('-': it never exploded), the suggested LR of
each method (auto, the default, first), auto's confidence (0 to 1: 0.7 and up is high, below
0.4 low), the main method's suggested range (the LRs to train in) and the diagnosis, then the
count of sweeps per diagnosis. A flat sweep or an immediate explosion gives no LR to train
at: its row shows none, and the advice follows the table. Unreadable inputs are rejected
(listed on stderr, or under "rejected" in JSON) and the exit code is 1; the other sweeps are
still reported. When every input is rejected, the exit code is 1 too and no report is written.

--format json prints one object:
  {{"sweeps": [{{"name", "source", "points", "stop_index", "stop_reason",
               "suggestions": {{METHOD: {{"lr", "index", "reason", "confidence", "range": [low, high]}}}},
               "diagnosis": {{"kind", "gives_lr", "message", "descent": [low, high]}}}}],
   "rejected": [{{"source", "reason"}}],
   "summary": {{"files_read", "sweeps_read", "analysed", "rejected", "diagnoses": {{KIND: COUNT}},
               "auto_confidence": {{"high", "medium", "low"}} (when auto is among the methods)}}}}
  with null where there is no value.
--format jsonl writes the objects of "sweeps", one per line (rejections go to stderr).
--format csv writes name, source, points, stop_index, stop_reason, lr_METHOD...,
  confidence_auto (when auto is among the methods), range_low, range_high (the main method's
  suggested range), diagnosis, gives_lr, descent_low, descent_high; empty where there is no
  value. "range" is always a suggestion's range, the LRs to train in (auto's; null for the
  other methods); "descent" is where the loss falls, the diagnosis's reading. A sweep with
  gives_lr false (flat, immediate explosion) keeps its numbers but gives no LR to train at.
--format parquet writes the CSV report's columns, typed (null where there is no value), to the
  file --out names, a row group per piece (needs pyarrow: pip install 'lrfind[parquet]').
--plot DIR writes one PNG per sweep, named after the sweep, for up to {MAX_PLOTS} sweeps;
  with more, one grid of the first {MAX_PLOTS} (sweeps.png). It needs matplotlib
  (pip install 'lrfind[plot]'); without it, the command stops before reading or printing
  anything, with exit code 2.

examples:
  lrfind analyze sweep.csv
  lrfind analyze runs/ 'more/*.jsonl' --method steepest --method valley
  lrfind analyze sweeps.npz --format csv --out report.csv --plot plots/
  lrfind analyze 'logs/*.parquet' --format parquet --out report.parquet
"""

_DEMO_HELP = """\
Train a small model on scikit-learn's digits (bundled, nothing is downloaded) through a real
range test (lrfind.torch.range_test), and print the summary table, a terminal plot of the
curve, the suggestion with its reason, the diagnosis and a one-cycle schedule built from it;
write the plot (range_test.png) and the result (result.json) to --out. With --parallel K,
run K range tests at once (lrfind.torch.parallel_range_test) and report their consensus.
Needs the demo extra: pip install 'lrfind[demo]' (and 'lrfind[plot]' for the PNG).

examples:
  lrfind demo
  lrfind demo --model cnn --optimizer sgd --out cnn-demo
  lrfind demo --parallel 8
"""

_SCHEDULE_HELP = """\
Print an LR schedule (lrfind.one_cycle or lrfind.warmup_cosine) as a table of 10 evenly
spaced steps and the peak, and optionally plot it.

one_cycle: from --base-lr up to --max-lr over the first --pct-start of the steps (default
  0.3), then down towards 0.
warmup_cosine: linear warm-up over --warmup-steps (default 5% of the steps) to --base-lr,
  then a cosine decay to --min-lr (default 0).

examples:
  lrfind schedule --policy one_cycle --total-steps 1000 --base-lr 3e-4 --max-lr 3e-3
  lrfind schedule --policy warmup_cosine --total-steps 5000 --base-lr 1e-3 --warmup-steps 200 --plot lr.png
"""


def _history_smoothing(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``lrfind`` parser with its three subcommands."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="lrfind", description=_MAIN_HELP, formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"lrfind {lrfind.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    analyze = commands.add_parser(
        "analyze", help="analyse recorded sweeps", description=_ANALYZE_HELP, formatter_class=formatter
    )
    analyze.add_argument("paths", nargs="+", metavar="PATH", help="files, directories or globs of sweeps")
    analyze.add_argument(
        "--method",
        action="append",
        choices=lrfind.METHODS,
        metavar="M",
        help=f"a suggestion method, repeatable: {', '.join(lrfind.METHODS)} (default: all, auto first)",
    )
    analyze.add_argument("--format", choices=_FORMATS, default="table", help="output format (default: table)")
    analyze.add_argument(
        "--batch-size",
        type=_positive_int,
        default=BATCH_SIZE,
        metavar="N",
        help=f"sweeps read and analysed at a time (default {BATCH_SIZE:,}): memory is bounded by this, not by the "
        "input's size",
    )
    analyze.add_argument(
        "--history-smoothing",
        type=_history_smoothing,
        default=HISTORY_SMOOTHING,
        metavar="W",
        help=f'the EMA weight that smoothed {{"lr", "loss"}} JSON histories (torch-lr-finder\'s smooth_f, '
        f"default {HISTORY_SMOOTHING}), undone on reading; 0 reads them as raw losses (your own logs, "
        "Lightning's results)",
    )
    analyze.add_argument("--out", metavar="FILE", help="write the report to FILE instead of stdout")
    analyze.add_argument("--plot", metavar="DIR", help=f"write PNG plots to DIR (see above; at most {MAX_PLOTS})")

    demo_cmd = commands.add_parser(
        "demo", help="a real range test on scikit-learn's digits", description=_DEMO_HELP, formatter_class=formatter
    )
    demo_cmd.add_argument("--model", choices=demo.MODELS, default="mlp", help="the model (default: mlp)")
    demo_cmd.add_argument(
        "--optimizer", choices=demo.OPTIMIZERS, default="adamw", help="the optimizer (default: adamw)"
    )
    demo_cmd.add_argument("--device", choices=demo.DEVICES, default="cpu", help="the device (default: cpu)")
    demo_cmd.add_argument(
        "--parallel", type=_positive_int, metavar="K", help="run K range tests at once and report their consensus"
    )
    demo_cmd.add_argument(
        "--steps", type=_positive_int, default=100, metavar="N", help="LR steps per sweep (default: 100)"
    )
    demo_cmd.add_argument("--out", metavar="DIR", default="lrfind-demo", help="output folder (default: lrfind-demo)")

    schedule = commands.add_parser(
        "schedule", help="print an LR schedule", description=_SCHEDULE_HELP, formatter_class=formatter
    )
    schedule.add_argument("--policy", choices=_POLICIES, required=True, help="the schedule")
    schedule.add_argument("--total-steps", type=_positive_int, required=True, metavar="N", help="optimizer steps")
    schedule.add_argument("--base-lr", type=float, required=True, metavar="X", help="start LR (warmup_cosine: peak)")
    schedule.add_argument("--max-lr", type=float, metavar="Y", help="one_cycle: the peak LR (required)")
    schedule.add_argument("--pct-start", type=float, metavar="P", help="one_cycle: warm-up fraction (default 0.3)")
    schedule.add_argument("--warmup-steps", type=int, metavar="W", help="warmup_cosine: warm-up steps (default 5%%)")
    schedule.add_argument("--min-lr", type=float, metavar="M", help="warmup_cosine: final LR (default 0)")
    schedule.add_argument("--plot", metavar="FILE", help="also plot the schedule to FILE (PNG by extension)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lrfind`` with ``argv`` (default: the command line); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "analyze": cmd_analyze,
        "demo": cmd_demo,
        "schedule": cmd_schedule,
    }
    try:
        return commands[args.command](args)
    except (UsageError, ImportError, ValueError, TypeError) as e:
        # The library raises ValueError/TypeError for bad parameters: a usage error here.
        return _fail(e, 2)
    except BrokenPipeError:  # e.g. `lrfind analyze ... | head`: stop quietly (before OSError, its base)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (InputError, OSError) as e:
        return _fail(e, 1)
    except KeyboardInterrupt:
        return 130


def _fail(error: BaseException, code: int) -> int:
    _warn(f"error: {error}")
    return code


def _warn(message: str) -> None:
    print(f"lrfind: {message}", file=sys.stderr)
