"""Read recorded LR sweeps from files, for batch analysis.

``read_sweeps`` takes files, directories (read recursively) and glob patterns, and returns
every sweep they hold as flat ``lrs``/``losses`` buffers with Arrow-style ``offsets``, ready for
``lrfind.analyze_batch``. The format follows the extension:

- ``.csv``: a header, then either long ``run,lr,loss`` rows (several sweeps, grouped by run in
  order of first appearance, rows of a run in file order) or ``lr,loss`` rows (one sweep).
  Column names are case-insensitive; other columns are ignored.
- ``.json``: a ``RangeTestResult.save`` file (the recorded sweep, explosion point included; its
  saved analysis options are not read: ``RangeTestResult.load`` reads them), a
  ``ParallelResult.save`` file (one sweep per run, named ``seed<s>``), a history
  ``{"lr": [...], "loss": [...]}``, a list of these or a dict of name -> these. A history is
  read as torch-lr-finder's ``history``, whose losses are its EMA of the raw losses
  (``smooth_f``, 0.05 by default): ``history_smoothing`` (the same 0.05 by default) undoes it
  exactly, so the curve is analysed once, raw, as lrfind records it. Pass
  ``history_smoothing=0`` for a history of raw losses (your own logs), and for Lightning's
  ``lr_finder.results``, whose debiased EMA cannot be undone (Lightning does not keep its step
  count), so that it is at least not smoothed twice.
- ``.jsonl``: one such JSON object per line; a ``"name"`` or ``"run"`` key names the sweep.
- ``.npz``: arrays ``lrs``, ``losses`` and ``offsets`` (optional ``names``); without
  ``offsets`` the file holds one sweep.
- ``.parquet`` (needs pyarrow, the ``parquet`` extra): long columns ``run``, ``lr``, ``loss``
  (or ``lr``, ``loss`` for one sweep), or list columns ``lr``, ``loss`` with one sweep per row
  and an optional ``name`` or ``run`` column.

Bad data never raises: each path that cannot be listed or opened (with the OS's reason),
unreadable file, file holding no sweep, or sweep whose LRs are not finite, positive and strictly
increasing, becomes a ``Rejected`` entry naming where and why, and the rest is kept. CSV problems
name the file line (1-based; blank lines are skipped, before the header too), and a JSON Lines
line that is not JSON or not UTF-8 rejects that line only; JSON nested deeper than ``MAX_DEPTH``
levels or holding integers too large for a float is rejected like any other bad file, and so is a
Parquet file with two columns of a name it reads. A UTF-8 byte order mark is skipped.
"""

from __future__ import annotations

import csv
import errno
import glob
import json
import math
import os
import re
import stat
import struct
import sys
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "Rejected",
    "Sweeps",
    "read_sweeps",
    "iter_sweeps",
    "EXTENSIONS",
    "MAX_DEPTH",
    "HISTORY_SMOOTHING",
    "BATCH_SIZE",
]

#: The extensions ``read_sweeps`` reads (lower case); directories are searched for these.
EXTENSIONS = (".csv", ".json", ".jsonl", ".npz", ".parquet")

#: Sweeps per piece of ``iter_sweeps`` (and of ``lrfind analyze``'s streaming): 16,384 sweeps of
#: 100 points are 26 MB of LRs and losses, and a Parquet record batch of them keeps pyarrow's
#: decoding memory low; larger pieces were no faster.
BATCH_SIZE = 16_384

#: Bytes Parquet reads at a time from a column chunk (pyarrow's ``buffer_size``).
PARQUET_BUFFER = 1 << 20

#: Rows per record batch when a long-format Parquet file is read in blocks (16 MiB of LRs and
#: losses, with their runs).
PARQUET_LONG_ROWS = 1 << 20

#: Most rows per record batch of a list-column Parquet file (one sweep per row): pieces are
#: gathered from several, so that no record batch is much larger than a piece unless its sweeps
#: are over 8,192 points (and longer than the file's first ones). As fast as larger batches.
PARQUET_LIST_ROWS = 1024

#: Most points in a piece of ``iter_sweeps`` (with the sweeps that bring it there, at least one):
#: 8.4M points, 134 MB of float64 LRs and losses, however long the sweeps.
PIECE_POINTS = 1 << 23

#: torch-lr-finder's default ``smooth_f``: the EMA weight its ``history`` losses were smoothed with.
HISTORY_SMOOTHING = 0.05

#: How deep sweeps may be nested in a JSON document (lists and dicts of sweeps); deeper parts are
#: rejected, so that no file can make the reader hit Python's recursion limit.
MAX_DEPTH = 100

# How RangeTestResult.save writes the non-finite floats that strict JSON lacks.
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_RESULT_FORMAT = "lrfind.RangeTestResult"
_PARALLEL_FORMAT = "lrfind.ParallelResult"


@dataclass(frozen=True)
class Rejected:
    """A file or sweep that was not read.

    ``source`` is where the problem is: ``"path"``, ``"path:LINE"`` (JSON Lines), ``"path[key]"``
    (a key of a JSON or NPZ file) or ``"path run NAME"`` (one sweep of a file with several).
    ``reason`` says what is wrong, for a person.
    """

    source: str
    reason: str


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous
class Sweeps:
    """The good sweeps read, back to back, and what was rejected.

    Sweep ``i`` is ``lrs[offsets[i]:offsets[i + 1]]`` (float64) against the same slice of
    ``losses``; ``names[i]`` is ``"file-stem"`` for a file holding one sweep, or
    ``"file-stem/run"``, made unique with a ``#2``, ``#3``, ... suffix; ``sources[i]`` is the
    file it came from. ``files_read`` counts the files opened and parsed, good or not.
    """

    lrs: np.ndarray
    losses: np.ndarray
    offsets: np.ndarray
    names: list[str]
    sources: list[str]
    rejected: list[Rejected]
    files_read: int

    def __len__(self) -> int:
        """The number of good sweeps."""
        return len(self.names)

    def sweep(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The LRs and losses of sweep ``i`` (views, not copies)."""
        start, end = self.offsets[i], self.offsets[i + 1]
        return self.lrs[start:end], self.losses[start:end]


def read_sweeps(paths: Iterable[str | os.PathLike[str]], *, history_smoothing: float = HISTORY_SMOOTHING) -> Sweeps:
    """Read every sweep in files, directories (recursively) and glob patterns.

    ``history_smoothing`` (default 0.05, torch-lr-finder's ``smooth_f``) is the EMA weight
    that smoothed the losses of ``{"lr": [...], "loss": [...]}`` JSON histories: they are
    un-smoothed exactly, ``raw[i] = (loss[i] - (1 - w) * loss[i - 1]) / w``; 0 reads them as
    they are (see the module's docs). It must be in [0, 1).

    Directories contribute every file below them with an extension in ``EXTENSIONS``, in sorted
    order; patterns are expanded with ``glob.glob(pattern, recursive=True)``; a file named twice
    is read once. A path that matches nothing or cannot be examined (the OS's reason: permission
    denied, a symlink loop, ...), a directory that cannot be listed or holds no file to read,
    something that is not a regular file, a file with another extension, a file that does not
    parse or holds no sweep, and each sweep that fails validation (no points, an LR that is not
    finite and positive, LRs not strictly increasing, fewer losses than LRs) is listed in
    ``rejected``; losses may be NaN or infinite (an explosion). Never raises for bad data.
    Everything is read into memory at once: ``iter_sweeps`` reads in bounded pieces.
    """
    _check_options(sys.maxsize, history_smoothing)
    # One piece of everything: no sweep is given before its file has been read to the end, so a
    # file found bad there (an NPZ's CRC, a CSV block) gives no sweep, as a file read whole would.
    chunks = list(_pieces(paths, sys.maxsize, sys.maxsize, history_smoothing))
    if not chunks:
        return _concat([], [], 0, _Names())
    return chunks[0] if len(chunks) == 1 else _merge(chunks)


def iter_sweeps(
    paths: Iterable[str | os.PathLike[str]],
    *,
    batch_size: int = BATCH_SIZE,
    history_smoothing: float = HISTORY_SMOOTHING,
) -> Iterator[Sweeps]:
    """``read_sweeps`` in pieces of about ``batch_size`` sweeps (default 16,384), for inputs of
    any size in bounded memory: each piece is a ``Sweeps`` of the sweeps read since the last
    one (with the rejections found and the files opened meanwhile); together they hold what
    ``read_sweeps`` gives. A piece holds whole sweeps: at most ``batch_size`` of them, with at
    most ``PIECE_POINTS`` points (8.4M) between them unless one sweep alone is longer.
    ``history_smoothing`` is ``read_sweeps``' (torch-lr-finder's EMA weight, undone on reading
    ``{"lr", "loss"}`` histories; default 0.05, 0 reads them as they are).

    Streamed (memory bounded by the piece): Parquet files with list columns (read by
    record batch), NPZ files saved uncompressed (``np.savez``; their arrays are
    memory-mapped), JSON Lines (line by line), long-format Parquet files whose runs' rows are
    together (record batches of ``PARQUET_LONG_ROWS``), and long-format CSV files whose runs'
    rows are together and unquoted (blocks of ``CSV_BLOCK`` bytes, 32 MiB). Every other file is
    read whole before it is cut into pieces (a run's rows may be anywhere in it; a JSON document
    is one value). A file that turns out to be bad after some of its pieces were given is
    rejected from there on, with where and why: its sweeps not given yet are dropped.
    """
    _check_options(batch_size, history_smoothing)
    yield from _pieces(paths, batch_size, PIECE_POINTS, history_smoothing)


def _check_options(batch_size: int, history_smoothing: float) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(history_smoothing, bool) or not isinstance(history_smoothing, (int, float)):
        raise TypeError(f"history_smoothing must be a number in [0, 1), got {history_smoothing!r}")
    if not 0 <= history_smoothing < 1:
        raise ValueError(f"history_smoothing must be in [0, 1), got {history_smoothing!r}")


def _pieces(
    paths: Iterable[str | os.PathLike[str]], batch_size: int, piece_points: int, history_smoothing: float
) -> Iterator[Sweeps]:
    """``iter_sweeps`` with pieces of at most ``batch_size`` sweeps and ``piece_points`` points:
    a reader's batch larger than the room left in the piece is cut (a reader may give a whole
    file, or a block of a million rows, at once)."""
    rejected: list[Rejected] = []
    namer = _Names()
    batches: list[_Batch] = []
    files_read = held = points = 0

    def give() -> Sweeps:
        nonlocal batches, files_read, held, points
        piece = _concat(batches, rejected, files_read, namer)
        batches, rejected[:], files_read, held, points = [], [], 0, 0, 0
        return piece

    for path in _expand(paths, rejected):
        suffix = Path(path).suffix.lower()
        if suffix not in _READERS:
            known = ", ".join(EXTENSIONS)
            rejected.append(Rejected(path, f"unknown extension {Path(path).suffix!r} (expected one of {known})"))
            continue
        files_read += 1
        before, found = len(rejected), False
        # Where this file's sweeps and rejections start in the piece at hand (0 once a piece is given).
        own = (len(batches), len(rejected))
        try:
            if suffix == ".json":
                pieces: Iterator[_Batch] = iter([_read_json(path, rejected, history_smoothing)])
            elif suffix == ".jsonl":
                pieces = _read_jsonl(path, rejected, batch_size, history_smoothing)
            else:
                pieces = _READERS[suffix](path, rejected, batch_size)
            for batch in pieces:
                found |= len(batch.runs) > 0
                batch = _keep_valid(batch, rejected)
                start = 0
                while start < len(batch.runs):
                    stop = _fit(batch.offsets, start, batch_size - held, piece_points - points)
                    if stop == start:  # the piece is full without the next sweep
                        if batches:
                            yield give()
                            own = (0, 0)
                            continue
                        stop = start + 1  # one sweep alone longer than a piece
                    part = _part(batch, start, stop)
                    batches.append(part)
                    held += stop - start
                    points += len(part.lrs)
                    start = stop
                    if held >= batch_size or points >= piece_points:
                        yield give()
                        own = (0, 0)
        except _Bad as e:
            del batches[own[0] :], rejected[own[1] :]  # the file is rejected: nothing more of it
            held, points = sum(len(b.runs) for b in batches), sum(len(b.lrs) for b in batches)
            rejected.append(Rejected(e.source, e.reason))
            continue
        if not found and len(rejected) == before:  # an empty file would pass unnoticed
            rejected.append(Rejected(path, "holds no sweep"))
    if batches or rejected or files_read:
        yield give()


def _fit(offsets: np.ndarray, start: int, sweeps: int, points: int) -> int:
    """The end of the most sweeps from ``start`` that hold at most ``sweeps`` sweeps and
    ``points`` points (``start`` itself when the first sweep is longer)."""
    stop = min(len(offsets) - 1, start + sweeps)
    if offsets[stop] - offsets[start] <= points:  # the usual case: all of them
        return stop
    return min(stop, int(np.searchsorted(offsets, offsets[start] + points, side="right")) - 1)


def _part(batch: _Batch, start: int, stop: int) -> _Batch:
    """Sweeps ``start`` to ``stop`` of a batch (views of its buffers)."""
    if start == 0 and stop == len(batch.runs):
        return batch
    a, b = int(batch.offsets[start]), int(batch.offsets[stop])
    offsets = batch.offsets[start : stop + 1] - a
    return _Batch(batch.path, batch.lrs[a:b], batch.losses[a:b], offsets, batch.runs[start:stop],
                  lambda i: batch.place(start + i))  # fmt: skip


class _Bad(Exception):
    """A whole file (or a key of it) that cannot be read; becomes one Rejected."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


@dataclass
class _Batch:
    """Sweeps of one file, before validation: ``runs`` labels them within the file (``""``:
    the file itself is the sweep) and ``place(i)`` says where sweep ``i`` is."""

    path: str
    lrs: np.ndarray
    losses: np.ndarray
    offsets: np.ndarray
    runs: list[str]
    place: Callable[[int], str]


def _expand(paths: Iterable[str | os.PathLike[str]], rejected: list[Rejected]) -> Iterator[str]:
    """The regular files to read, each once; every path that cannot be used is rejected with why.

    ``os.stat`` rather than ``os.path.isdir``/``isfile``, which hide the OS's error."""
    seen: set[str] = set()
    for p in paths:
        path = os.fspath(p)
        found: list[tuple[str, os.stat_result | None]]
        try:
            found = [(path, os.stat(path))]
        except OSError as e:
            if not (e.errno == errno.ENOENT and glob.has_magic(path)):
                rejected.append(Rejected(path, _os_reason(e)))
                seen.add(os.path.normpath(path))  # rejected once, if a directory lists it too
                continue
            found = [(f, None) for f in sorted(glob.glob(path, recursive=True))]
            if not found:
                rejected.append(Rejected(path, _unmatched(path)))
        for f, st in found:
            for file, file_stat in _files(f, st, rejected):
                key = os.path.normpath(file)
                if key in seen:
                    continue
                seen.add(key)
                if file_stat is None:  # from a directory listing or a glob: not examined yet
                    try:
                        file_stat = os.stat(file)
                    except OSError as e:
                        rejected.append(Rejected(file, _os_reason(e)))
                        continue
                if stat.S_ISREG(file_stat.st_mode):
                    yield file
                else:  # a FIFO or a device would block or never end
                    rejected.append(Rejected(file, "not a regular file"))


def _files(
    path: str, st: os.stat_result | None, rejected: list[Rejected]
) -> Iterator[tuple[str, os.stat_result | None]]:
    """``path`` itself, or the files to read below it if it is a directory. A directory named on
    its own (``st`` given) with nothing to read is rejected; one a glob matched is not (``**``
    matches every directory of a tree)."""
    named = st is not None
    if st is None:
        try:
            st = os.stat(path)
        except OSError as e:
            rejected.append(Rejected(path, _os_reason(e)))
            return
    if not stat.S_ISDIR(st.st_mode):
        yield path, st
        return
    before = len(rejected)
    files = _walk(path, rejected)
    if named and not files and len(rejected) == before:
        rejected.append(Rejected(path, f"no {', '.join(EXTENSIONS)} file in this directory or below it"))
    yield from ((f, None) for f in files)


def _walk(directory: str, rejected: list[Rejected]) -> list[str]:
    def unlistable(e: OSError) -> None:  # os.walk would drop the error and the directory silently
        rejected.append(Rejected(e.filename or directory, f"cannot list the directory: {_os_reason(e)}"))

    files: list[str] = []
    for root, _, names in os.walk(directory, onerror=unlistable):
        files.extend(os.path.join(root, n) for n in names if Path(n).suffix.lower() in EXTENSIONS)
    return sorted(files)


def _error_text(e: BaseException) -> str:
    """An exception for a reason: the OS's words for an OSError, else its message or type."""
    if isinstance(e, OSError) and e.strerror:
        return _os_reason(e)
    return str(e) or type(e).__name__


def _os_reason(e: OSError) -> str:
    """The OS's words for an error (``Permission denied``, ``Too many levels of symbolic links``)."""
    if e.errno == errno.ENOENT:
        return "no such file or directory"
    return e.strerror or str(e)


def _unmatched(pattern: str) -> str:
    """Why a glob matched nothing: glob skips directories it cannot list, so try its fixed part."""
    fixed = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        fixed.append(part)
    directory = os.path.join(*fixed) if fixed else os.curdir
    try:
        with os.scandir(directory):
            pass
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            return f"cannot list {directory}: {_os_reason(e)}"
    return "no such file or directory"


def _single(path: str, lrs: np.ndarray, losses: np.ndarray) -> _Batch:
    """A file holding one sweep, named after the file."""
    offsets = np.array([0, len(lrs)], dtype=np.int64)
    return _Batch(path, lrs, losses, offsets, [""], lambda i: path)


def _many(path: str, lrs: np.ndarray, losses: np.ndarray, offsets: np.ndarray, runs: list[str]) -> _Batch:
    """A file holding named sweeps ``runs``, named ``stem/run``."""
    return _Batch(path, lrs, losses, offsets, runs, lambda i: f"{path} run {runs[i]}")


# --- CSV ---------------------------------------------------------------------------------------


#: numpy's C reader: fast, quotes handled, and it names the row of a bad value (which
#: _csv_reason turns into a file line).
_CSV_OPTIONS: dict[str, Any] = dict(delimiter=",", comments=None, quotechar='"', encoding="utf-8-sig")

#: Bytes of CSV text parsed at a time when a file is read in blocks (about a million rows).
CSV_BLOCK = 1 << 25


def _read_csv(path: str, rejected: list[Rejected], batch_size: int) -> Iterator[_Batch]:
    """The sweeps of a CSV file. Long format (``run,lr,loss``) whose runs' rows are contiguous
    and whose fields are not quoted (what a logger appends) is read in blocks of about
    ``CSV_BLOCK`` bytes; any other file is read whole (a run's rows may be anywhere in it)."""
    header, columns, skip = _csv_header(path)
    if "run" not in columns or not _in_blocks(path, columns["run"], skip):
        yield _parse_csv(path, header, columns, skip)
        return
    yield from _csv_blocks(path, header, columns, skip)


def _loadtxt(source: Any, **options: Any) -> np.ndarray:
    """``np.loadtxt`` without its warning on empty input, which becomes a missing header or a
    sweep with no points. (Only around the call: a reader is a generator, and the filters are
    the process's.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.loadtxt(source, **options)


def _csv_header(path: str) -> tuple[list[str], dict[str, int], int]:
    """The header's names, the index of each (lower case, the first of duplicates), and the
    file lines up to the header's, which the data follows (blank lines may come before it)."""
    header: list[str] = []
    skip = 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for line in f:
                skip += 1
                if not line.isspace():
                    options = {k: v for k, v in _CSV_OPTIONS.items() if k != "encoding"}
                    header = _loadtxt([line], dtype=str, ndmin=1, **options).tolist()
                    break
    except (OSError, ValueError) as e:
        raise _Bad(path, f"not a readable CSV file: {_csv_reason(path, e, [])}") from None
    columns = {name.strip().lower(): i for i, name in reversed(list(enumerate(header)))}
    missing = [c for c in ("lr", "loss") if c not in columns]
    if missing:
        raise _Bad(path, f"CSV header {', '.join(header)!s} lacks column {' and '.join(missing)}")
    return header, columns, skip


def _data_lines(path: str, skip: int) -> Iterator[str]:
    """The lines after the header (the first ``skip``) but blank ones: numpy skips empty lines,
    but reads a line of spaces as a row of one value."""
    with open(path, encoding="utf-8-sig") as f:
        for _ in range(skip):
            f.readline()
        yield from (line for line in f if not line.isspace())


def _blocks(path: str, skip: int) -> Iterator[list[str]]:
    """The lines after the header (the first ``skip``), about ``CSV_BLOCK`` bytes at a time,
    without blank lines (numpy reads a line of spaces as a row of one value)."""
    with open(path, encoding="utf-8-sig") as f:
        for _ in range(skip):
            f.readline()
        while lines := f.readlines(CSV_BLOCK):
            yield [line for line in lines if not line.isspace()] if any(map(str.isspace, lines)) else lines


def _in_blocks(path: str, run: int, skip: int = 1) -> bool:
    """Whether the file can be read in blocks: every run's rows together, no quoted field (a
    quoted line break could straddle two blocks). One pass over the run column; any problem
    means no, and the whole-file reader then says what is wrong."""
    options = {k: v for k, v in _CSV_OPTIONS.items() if k != "encoding"}

    def names() -> Iterator[list[str]]:
        for lines in _blocks(path, skip):
            if any('"' in line for line in lines):
                raise ValueError("quoted")
            runs = _loadtxt(lines, dtype=str, usecols=run, ndmin=1, **options)
            yield runs[_starts(runs)].tolist()

    try:
        return _together(names())
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return False


def _csv_blocks(path: str, header: list[str], columns: dict[str, int], skip: int) -> Iterator[_Batch]:
    """The sweeps of a long-format CSV file whose runs' rows are together, block by block."""
    options = {k: v for k, v in _CSV_OPTIONS.items() if k != "encoding"}

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
        for lines in _blocks(path, skip):
            try:
                values = _loadtxt(lines, usecols=(columns["lr"], columns["loss"]), ndmin=2, **options)
                runs = _loadtxt(lines, dtype=str, usecols=columns["run"], ndmin=1, **options)
            except (OSError, ValueError) as e:
                raise _Bad(path, f"malformed CSV: {_csv_reason(path, e, header, skip)}") from None
            starts = _starts(runs)
            yield values[:, 0], values[:, 1], starts, [str(r) for r in runs[starts].tolist()]

    return _run_blocks(path, blocks())


def _starts(runs: np.ndarray) -> np.ndarray:
    """The rows where a run starts (a row whose run differs from the one before; 0 first)."""
    if not len(runs):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(runs[1:] != runs[:-1]) + 1)).astype(np.int64)


def _together(starts: Iterable[list[Any]]) -> bool:
    """Whether each run's rows are together in a long-format file, from the run of each start of
    a run, block by block (a run may go on from one block into the next)."""
    closed: set[Any] = set()
    last = None
    for names in starts:
        for name in names:
            if name != last:
                if name in closed:
                    return False
                if last is not None:
                    closed.add(last)
                last = name
    return True


def _run_blocks(path: str, blocks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]) -> Iterator[_Batch]:
    """The sweeps of a long-format file whose runs' rows are together, from its blocks of rows:
    (lrs, losses, the rows where a run starts, their runs' names). The last run of a block waits
    for the next, where its rows may go on."""
    carry: tuple[str, np.ndarray, np.ndarray] | None = None
    for lrs, losses, starts, names in blocks:
        if not len(lrs):
            continue
        if carry is not None and carry[0] == names[0]:
            lrs, losses = np.concatenate((carry[1], lrs)), np.concatenate((carry[2], losses))
            starts = np.concatenate(([0], starts[1:] + len(carry[1])))
        elif carry is not None:
            yield _many(path, carry[1], carry[2], np.array([0, len(carry[1])], dtype=np.int64), [carry[0]])
        last = int(starts[-1])
        carry = (names[-1], lrs[last:].copy(), losses[last:].copy())
        if last:
            yield _many(path, np.ascontiguousarray(lrs[:last]), np.ascontiguousarray(losses[:last]), starts, names[:-1])
    if carry is not None:
        yield _many(path, carry[1], carry[2], np.array([0, len(carry[1])], dtype=np.int64), [carry[0]])


def _parse_csv(path: str, header: list[str], columns: dict[str, int], skip: int) -> _Batch:
    """The sweeps of a CSV file, read whole."""

    def parse(source: Callable[[], Any], **opts: Any) -> tuple[np.ndarray, np.ndarray | None]:
        values = _loadtxt(source(), usecols=(columns["lr"], columns["loss"]), ndmin=2, **opts)
        runs = None
        if "run" in columns:
            runs = _loadtxt(source(), dtype=str, usecols=columns["run"], ndmin=1, **opts)
        return values, runs

    try:
        try:
            values, runs = parse(lambda: path, skiprows=skip, **_CSV_OPTIONS)  # numpy's C reader, at full speed
        except ValueError as e:
            if isinstance(e, UnicodeDecodeError):
                raise
            # Perhaps a line of spaces, which numpy reads as a row of one value: read again
            # without blank lines, a slower path taken only for a file that needs it.
            options = {k: v for k, v in _CSV_OPTIONS.items() if k != "encoding"}
            values, runs = parse(lambda: _data_lines(path, skip), **options)
    except (OSError, ValueError) as e:
        raise _Bad(path, f"malformed CSV: {_csv_reason(path, e, header, skip)}") from None
    lrs, losses = np.ascontiguousarray(values[:, 0]), np.ascontiguousarray(values[:, 1])
    if runs is None:
        return _single(path, lrs, losses)
    uniq, first, inverse = np.unique(runs, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(len(by_appearance))
    return _grouped(path, lrs, losses, rank[inverse.ravel()], [str(u) for u in uniq[by_appearance]])


# numpy's messages; their row numbers are not used: which base they count from varies by message.
_NOT_A_FLOAT = re.compile(r"could not convert string (.*) to \w+ at row \d+, column (\d+)\.?", re.DOTALL)
_FEW_COLUMNS = re.compile(r"invalid column index (\d+) at row \d+ with (\d+) columns?")


def _csv_reason(path: str, error: Exception, header: list[str], skip: int = 1) -> str:
    """numpy's complaint about a CSV file, with the 1-based file line it is about (the header is
    line ``skip``, 1 unless blank lines come before it): ``line 5: could not convert 'abc' to
    float (column lr)``."""
    if isinstance(error, UnicodeDecodeError):
        return _utf8_reason(path, error)
    if isinstance(error, OSError):
        return _os_reason(error)
    message = str(error)
    if m := _NOT_A_FLOAT.fullmatch(message):
        text, column = m[1], int(m[2]) - 1
        line = _csv_line(path, lambda row: len(row) > column and repr(row[column]) == text, skip)
        shown = text if len(text) <= 40 else text[:36] + "..."
        what = f"could not convert {shown} to float (column {_column(header, column)})"
    elif m := _FEW_COLUMNS.fullmatch(message):
        index, count = int(m[1]), int(m[2])
        line = _csv_line(path, lambda row: len(row) == count, skip)
        what = f"{count} value(s), none for column {_column(header, index)}"
    else:
        return message
    return message if line is None else f"line {line}: {what}"


def _column(header: list[str], index: int) -> str:
    """A column by its header name, or its 1-based number."""
    return header[index].strip() if 0 <= index < len(header) else str(index + 1)


def _csv_line(path: str, bad: Callable[[list[str]], bool], skip: int = 1) -> int | None:
    """The file line (1-based) where the first data row that is ``bad`` starts, read again with
    Python's csv module (the slow path, for a file numpy rejected); blank lines are skipped, as
    the readers do, and a quoted value may span lines. The first ``skip`` lines are the header's."""
    last = ""

    def lines(f: Any) -> Iterator[str]:
        nonlocal last
        for line in f:
            last = line
            yield line

    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            for _ in range(skip):
                f.readline()
            reader = csv.reader(lines(f), delimiter=",", quotechar='"')
            end = skip  # the lines read so far
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error:  # a value over csv's size limit (a long line): split it as it is
                    row = last.rstrip("\r\n").split(",")
                start, end = end + 1, skip + reader.line_num
                if row and not (len(row) == 1 and row[0].isspace()) and bad(row):
                    return start
    except (OSError, ValueError):
        pass
    return None


def _utf8_reason(path: str, error: UnicodeDecodeError) -> str:
    """The line of the first byte that is not UTF-8 (numpy's position counts from a chunk)."""
    try:
        raw = Path(path).read_bytes()
        raw.decode("utf-8")
    except OSError:
        return str(error)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return f"line {line}: not UTF-8 text (byte {raw[e.start]:#04x}: {e.reason})"
    return str(error)


def _grouped(path: str, lrs: np.ndarray, losses: np.ndarray, group: np.ndarray, runs: list[str]) -> _Batch:
    """Long-format rows as sweeps: ``group`` numbers each row's run by first appearance, and a
    stable sort keeps the rows of a run in file order."""
    offsets = np.zeros(len(runs) + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=len(runs)), out=offsets[1:])
    if np.all(group[1:] >= group[:-1]):  # the usual case: rows already grouped, no sort or copy needed
        return _many(path, lrs, losses, offsets, runs)
    order = np.argsort(group, kind="stable")
    return _many(path, lrs[order], losses[order], offsets, runs)


# --- JSON and JSON Lines -------------------------------------------------------------------------


def _read_json(path: str, rejected: list[Rejected], history_smoothing: float = HISTORY_SMOOTHING) -> _Batch:
    try:
        doc = _parse_json(Path(path).read_text(encoding="utf-8-sig"))  # a BOM, as editors on Windows write
    except OSError as e:
        raise _Bad(path, f"not a readable JSON file: {_os_reason(e)}") from None
    except ValueError as e:  # bad UTF-8 or bad JSON
        raise _Bad(path, f"not a readable JSON file: {e}") from None
    parts = _Parts(path, history_smoothing)
    parts.add(doc, [], path, rejected)
    lrs, losses, offsets = parts.arrays()
    if parts.names == [""]:  # the whole file is one sweep
        return _Batch(path, lrs, losses, offsets, [""], lambda i: path)
    return _many(path, lrs, losses, offsets, parts.names)


def _read_jsonl(
    path: str, rejected: list[Rejected], batch_size: int, history_smoothing: float = HISTORY_SMOOTHING
) -> Iterator[_Batch]:
    """The sweeps of a JSON Lines file, line by line, in batches of at most ``batch_size``
    sweeps (or ``PIECE_POINTS`` points)."""
    parts = _Parts(path, history_smoothing)
    points = 0
    try:
        # Bytes that are not UTF-8 are kept as lone surrogates, so that they reject their line
        # only; a BOM at the start is dropped.
        with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                if not line.isascii() and (bad := _not_utf8(line)):
                    rejected.append(Rejected(where, bad))
                    continue
                try:
                    doc = _parse_json(line)
                except ValueError as e:
                    rejected.append(Rejected(where, f"not JSON: {e}"))
                    continue
                if not isinstance(doc, dict):
                    rejected.append(Rejected(where, f"a JSON {type(doc).__name__}, not an object"))
                    continue
                before = len(parts.lrs)
                parts.add(doc, [_label(doc, number)], where, rejected)  # no sweep, one, or several
                points += sum(len(x) for x in parts.lrs[before:])
                if len(parts.names) >= batch_size or points >= PIECE_POINTS:
                    yield _many(path, *parts.arrays(), parts.names)
                    parts, points = _Parts(path, history_smoothing), 0
    except OSError as e:
        raise _Bad(path, f"not a readable text file: {_os_reason(e)}") from None
    yield _many(path, *parts.arrays(), parts.names)


def _not_utf8(line: str) -> str | None:
    """Why a line read with ``errors="surrogateescape"`` is not UTF-8 text, or None if it is."""
    raw = line.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte {raw[e.start]:#04x}, byte {e.start + 1} of the line: {e.reason})"
    return None


def _parse_json(text: str) -> Any:
    """``json.loads``, with nesting too deep for its recursion made a ValueError like any other
    bad JSON (how deep it can go depends on the caller's stack)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None
    except ValueError as e:
        if "integer string conversion" not in str(e):
            raise
    # An integer of thousands of digits (past Python's int parsing limit) is, as a float, what
    # 1e5000 already reads as: infinite.
    return json.loads(text, parse_int=lambda s: int(s) if len(s) < 4000 else float(s))


def _label(doc: Any, default: int) -> str:
    """A sweep's name: its ``"name"`` or ``"run"`` key if that is a string or a number, else
    ``default`` (its index or line); str() of a deeply nested value could itself recurse."""
    if isinstance(doc, dict):
        for key in ("name", "run"):
            if isinstance(doc.get(key), (str, int, float)):
                return str(doc[key])
    return str(default)


class _Parts:
    """The sweeps of one JSON document, gathered to be concatenated once."""

    def __init__(self, path: str, history_smoothing: float) -> None:
        self.path = path
        self.history_smoothing = history_smoothing
        self.lrs: list[np.ndarray] = []
        self.losses: list[np.ndarray] = []
        self.names: list[str] = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = [len(x) for x in self.lrs]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        cat = (lambda xs: np.concatenate(xs)) if lengths else (lambda xs: np.empty(0))
        return cat(self.lrs), cat(self.losses), offsets

    def add(self, doc: Any, name: list[str], where: str, rejected: list[Rejected], depth: int = 0) -> None:
        """Add the sweeps of ``doc`` (named by the parts in ``name``, found at ``where``, ``depth``
        lists or dicts down); a part nested deeper than ``MAX_DEPTH`` is rejected."""
        try:
            if depth > MAX_DEPTH:
                raise _Bad(where, f"sweeps nested deeper than {MAX_DEPTH} levels")
            if isinstance(doc, dict) and doc.get("format") == _PARALLEL_FORMAT:
                self._add_parallel(doc, name, where, rejected, depth)
            elif isinstance(doc, dict) and ("format" in doc or ("lr" in doc and "loss" in doc)):
                lrs, losses = _json_sweep(doc, where)
                if "format" not in doc:  # a history: losses smoothed by torch-lr-finder's EMA
                    if len(lrs) and (lrs > 0).all() and np.isfinite(lrs).all() and (lrs[1:] > lrs[:-1]).all():
                        losses = _unsmoothed(losses, self.history_smoothing, where)
                    # else bad LRs, which reject the sweep: their reason, not un-smoothing's
                self.lrs.append(lrs)
                self.losses.append(losses)
                self.names.append("/".join(name))
            elif isinstance(doc, list):
                for i, item in enumerate(doc):
                    self.add(item, [*name, _label(item, i)], f"{where}[{i}]", rejected, depth + 1)
            elif isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
                for key, item in doc.items():
                    self.add(item, [*name, key], f"{where}[{key}]", rejected, depth + 1)
            else:
                raise _Bad(
                    where, f"not a sweep: expected keys 'lr' and 'loss' or a saved lrfind result; got {_kind(doc)}"
                )
        except _Bad as e:
            rejected.append(Rejected(e.source, e.reason))

    def _add_parallel(
        self, doc: dict[str, Any], name: list[str], where: str, rejected: list[Rejected], depth: int
    ) -> None:
        runs, seeds = doc.get("runs"), doc.get("seeds")
        if not isinstance(runs, list):
            raise _Bad(f"{where}[runs]", f"expected a list of runs, got {_kind(runs)}")
        by_seed = (
            isinstance(seeds, list)
            and len(seeds) == len(runs)
            and all(isinstance(s, (str, int)) for s in seeds)  # str() of a nested value could recurse
            and len(set(map(str, seeds))) == len(seeds)
        )
        for i, run in enumerate(runs):
            label = f"seed{seeds[i]}" if by_seed else f"run{i}"  # type: ignore[index]
            self.add(run, [*name, label], f"{where}[runs][{i}]", rejected, depth + 1)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {', '.join(map(str, list(value)[:6])) or '(none)'}"
    return f"a JSON {type(value).__name__}"


def _show(value: Any) -> str:
    """A JSON value for a message: a short repr of a scalar, the kind of a list or object (whose
    repr could be huge, or recurse past the limit)."""
    if isinstance(value, (list, dict)):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:36]}..."


def _json_sweep(doc: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """The recorded LRs and losses of a saved RangeTestResult or an lr/loss history."""
    if "format" in doc:
        if doc["format"] != _RESULT_FORMAT or doc.get("version") != 1:
            raise _Bad(where, f"unknown format {_show(doc['format'])} version {_show(doc.get('version'))}")
        keys = ("lrs", "losses")
    else:
        keys = ("lr", "loss")
    lrs, losses = (_json_floats(doc.get(k), f"{where}[{k}]") for k in keys)
    if len(lrs) != len(losses):
        raise _Bad(where, f"{len(lrs)} values in {keys[0]!r} but {len(losses)} in {keys[1]!r}")
    return lrs, losses


def _unsmoothed(losses: np.ndarray, weight: float, where: str) -> np.ndarray:
    """The raw losses behind torch-lr-finder's ``s[i] = w * x[i] + (1 - w) * s[i - 1]``
    (``s[0] = x[0]``), exactly: ``x[i] = s[i] + (s[i] - s[i - 1]) (1 - w) / w``; ``w = 0`` keeps them.

    Non-negative smoothed losses can only come from non-negative raw ones: a negative result
    means the history holds raw losses (or another smoothing), and it is rejected with the fix."""
    if weight == 0 or len(losses) < 2:
        return losses
    raw = losses.copy()
    # inf - inf after an infinite loss is NaN, which stops the sweep; a huge loss may overflow to inf.
    with np.errstate(invalid="ignore", over="ignore"):
        raw[1:] = losses[1:] + (losses[1:] - losses[:-1]) * ((1 - weight) / weight)  # exact on a constant
    finite = np.isfinite(losses)
    if finite.any() and losses[finite].min() >= 0:
        scale = np.abs(losses[finite]).max()
        negative = np.flatnonzero(raw < -1e-9 * scale)
        if len(negative):
            i = int(negative[0])
            raise _Bad(
                where,
                f"un-smoothing this history as torch-lr-finder's (smooth_f {weight:g}) gives a negative loss at "
                f"point {i} from non-negative ones: it holds raw losses, so read it with history_smoothing=0 "
                "(lrfind analyze --history-smoothing 0)",
            )
    return raw


def _json_floats(values: Any, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise _Bad(where, f"expected a list of numbers, got {'nothing' if values is None else _kind(values)}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, str) and v not in _NONFINITE):
            raise _Bad(where, f"value {i} is {_show(v)}, neither a number nor one of {', '.join(_NONFINITE)}")
    try:
        return np.array([_NONFINITE[v] if isinstance(v, str) else v for v in values], dtype=np.float64)
    except OverflowError:  # an integer beyond the largest float (JSON allows any number of digits)
        i = next(i for i, v in enumerate(values) if isinstance(v, int) and not _fits_float(v))
        digits = len(str(abs(values[i])))
        raise _Bad(where, f"value {i} is an integer of {digits} digits, too large for a float") from None


def _fits_float(value: int) -> bool:
    try:
        float(value)
    except OverflowError:
        return False
    return True


# --- NPZ -------------------------------------------------------------------------------------------


def _read_npz(path: str, rejected: list[Rejected], batch_size: int) -> Iterator[_Batch]:
    """The sweeps of an NPZ file, ``batch_size`` at a time; arrays saved uncompressed are
    memory-mapped, so only the piece at hand is in memory."""
    arrays = _npz_arrays(path)
    for key in ("lrs", "losses"):
        if key not in arrays:
            raise _Bad(f"{path}[{key}]", "missing array")
        a = arrays[key]
        if a.ndim != 1 or a.dtype.kind not in "fiu":
            raise _Bad(f"{path}[{key}]", f"expected a 1-D numeric array, got {a.dtype} of shape {a.shape}")
    lrs, losses = arrays["lrs"], arrays["losses"]
    if len(lrs) != len(losses):
        raise _Bad(path, f"{len(lrs)} lrs but {len(losses)} losses")
    if "offsets" not in arrays:
        # Read from 0 to the end in one slice, so that a mapped array checks its CRC, before the
        # sweep is given.
        single = _single(path, _float64(lrs[0 : len(lrs)]), _float64(losses[0 : len(losses)]))
        _check_crc(path, arrays)
        yield single
        return
    offsets = _npz_offsets(np.asarray(arrays["offsets"]), len(lrs), f"{path}[offsets]")
    n = len(offsets) - 1
    names = arrays.get("names")
    if names is not None and names.shape != (n,):
        raise _Bad(f"{path}[names]", f"expected {n} names (one per sweep), got shape {names.shape}")
    for i, j in _spans(offsets, batch_size):
        a, b = int(offsets[i]), int(offsets[j])
        runs = [str(k) for k in range(i, j)] if names is None else [str(x) for x in names[i:j].tolist()]
        yield _many(path, _float64(lrs[a:b]), _float64(losses[a:b]), offsets[i : j + 1] - a, runs)
    _check_crc(path, arrays)


def _check_crc(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Rejects the file if a memory-mapped array, read through in order, does not match its CRC."""
    for key in ("lrs", "losses"):
        checked = arrays[key]
        if isinstance(checked, _Mapped) and not checked.intact():
            raise _Bad(f"{path}[{key}]", "not a readable NPZ file: the data does not match its CRC (corrupt)")


def _spans(offsets: np.ndarray, batch_size: int) -> Iterator[tuple[int, int]]:
    """Consecutive sweep ranges ``[i, j)`` of at most ``batch_size`` sweeps and ``PIECE_POINTS``
    points (but at least one sweep)."""
    i, n = 0, len(offsets) - 1
    while i < n:
        fits = int(np.searchsorted(offsets, offsets[i] + PIECE_POINTS, side="right")) - 1
        j = min(i + batch_size, n, max(fits, i + 1))
        yield i, j
        i = j


def _float64(values: np.ndarray) -> np.ndarray:
    """A float64 copy in memory (of a memory-mapped piece too)."""
    return np.ascontiguousarray(values, dtype=np.float64)


def _npz_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays ``lrs``, ``losses``, ``offsets`` and ``names`` of an NPZ file that has them:
    memory-mapped when stored uncompressed, else read."""
    try:
        # Our own handle: np.load leaks the one it opens when the archive is truncated.
        with open(path, "rb") as f:
            # np.load's own choice by the first bytes: a zip archive, a .npy array or a pickle.
            magic = f.read(6)
            if magic == b"\x93NUMPY":  # a bare .npy array, renamed; not loaded only to be rejected
                raise _Bad(path, "a single array, not an NPZ archive with lrs and losses")
            if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # else np.load speaks of pickles
                raise _Bad(path, "not a readable NPZ file: not a zip archive")
            f.seek(0)
            npz = np.load(f, allow_pickle=False)
            members = {info.filename: info for info in npz.zip.infolist()}
            arrays: dict[str, Any] = {}
            for k in ("lrs", "losses", "offsets", "names"):
                if k not in npz.files:
                    continue
                # The two big arrays are mapped; the small ones are read (with the zip's CRC check).
                info = members.get(f"{k}.npy") if k in ("lrs", "losses") else None
                mapped = _mapped(f, path, info) if info is not None else None
                arrays[k] = mapped if mapped is not None else npz[k]
    except (
        OSError,
        ValueError,  # a bad .npy header, or object arrays (pickles)
        EOFError,
        zipfile.BadZipFile,  # a bad zip structure or CRC
        zlib.error,
        NotImplementedError,  # zipfile: a compression method or flag it does not support
        RuntimeError,  # zipfile: an encrypted member
        MemoryError,  # an array header claiming more than can be allocated
        struct.error,  # a local header cut short
    ) as e:
        raise _Bad(path, f"not a readable NPZ file: {_error_text(e)}") from None
    return arrays


def _mapped(f: Any, path: str, info: zipfile.ZipInfo) -> np.ndarray | None:
    """A memory map of an uncompressed .npy member, or None (compressed, or not mappable:
    object arrays are refused by the caller's np.load anyway)."""
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    f.seek(info.header_offset + 26)  # the local header's name and extra-field lengths
    name_length, extra_length = struct.unpack("<HH", f.read(4))
    f.seek(info.header_offset + 30 + name_length + extra_length)
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except Exception:  # a header numpy cannot parse (its parser raises all sorts): np.load says why
        return None
    if dtype.hasobject or fortran or len(shape) != 1:
        return None
    start = f.tell()
    if start + dtype.itemsize * shape[0] > info.header_offset + 30 + name_length + extra_length + info.file_size:
        raise ValueError("an array larger than its member")
    if shape[0] == 0:
        return np.empty(0, dtype=dtype)
    f.seek(info.header_offset + 30 + name_length + extra_length)
    header = f.read(start - f.tell())
    return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape).view(_Mapped).start(info.CRC, header)


class _Mapped(np.memmap):
    """A memory-mapped array of a zip member that checks the member's CRC as its pieces are
    read in order (mapping skips the check that reading the member would make)."""

    def start(self, crc: int, header: bytes) -> _Mapped:
        self.want, self.crc, self.done = crc, zlib.crc32(header), 0
        return self

    def __getitem__(self, key: Any) -> Any:
        piece = super().__getitem__(key)
        if isinstance(key, slice) and key.start == getattr(self, "done", None) and key.stop is not None:
            self.crc = zlib.crc32(np.ascontiguousarray(piece).view(np.uint8), self.crc)
            self.done = min(key.stop, len(self))
        return piece

    def intact(self) -> bool:
        """True once every element was read in order and the CRC matches (or it was not read
        in order: then nothing is claimed)."""
        return self.done != len(self) or self.crc == self.want


def _npz_offsets(offsets: np.ndarray, total: int, where: str) -> np.ndarray:
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) == 0:
        raise _Bad(where, f"expected a non-empty 1-D integer array, got {offsets.dtype} of shape {offsets.shape}")
    if offsets.dtype == np.uint64 and offsets.max() > np.iinfo(np.int64).max:  # would wrap to a negative int64
        raise _Bad(where, f"offsets must be below 2**63, got {int(offsets.max())}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != total:
        raise _Bad(where, f"must run from 0 to {total} (the number of points), runs from {offsets[0]} to {offsets[-1]}")
    down = np.flatnonzero(np.diff(offsets) < 0)
    if len(down):
        raise _Bad(where, f"decrease at index {down[0] + 1} ({offsets[down[0]]} then {offsets[down[0] + 1]})")
    return offsets


# --- Parquet -------------------------------------------------------------------------------------


def _read_parquet(path: str, rejected: list[Rejected], batch_size: int) -> Iterator[_Batch]:
    """The sweeps of a Parquet file: list columns (one sweep per row) ``batch_size`` rows at a
    time; long format in record batches when each run's rows are together, else whole (a run's
    rows may be anywhere in the file)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"reading Parquet needs pyarrow: pip install 'lrfind[parquet]' ({e})") from e
    try:
        # No pre-buffering: it keeps every column chunk read so far (memory grows with the file).
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_BUFFER)
        schema = pf.schema_arrow
        names = schema.names  # decoded here: may not be UTF-8
    except (OSError, pa.ArrowException, UnicodeDecodeError) as e:
        raise _Bad(path, f"not a readable Parquet file: {_error_text(e)}") from None
    columns = {name.lower(): name for name in reversed(names)}
    missing = [c for c in ("lr", "loss") if c not in columns]
    if missing:
        raise _Bad(path, f"columns {', '.join(names)} lack column {' and '.join(missing)}")
    from lrfind.arrow import _is_list

    listy = [_is_list(schema.field(names.index(columns[c])).type, pa) for c in ("lr", "loss")]
    # The columns read: a name that two columns share could mean either (pyarrow refuses it).
    used = ["lr", "loss", *(["name" if "name" in columns else "run"] if all(listy) else ["run"])]
    for name in (columns[c] for c in used if c in columns):
        if names.count(name) > 1:
            raise _Bad(path, f"{names.count(name)} columns are named {name!r}: which one to read is ambiguous")
    try:
        if not all(listy):
            if not any(listy) and "run" in columns and _parquet_together(pf, columns["run"], pa, pc):
                yield from _parquet_blocks(path, pf, columns, pa, pc)
            else:
                yield _parquet_sweeps(path, pf.read(), columns, rejected, pa, pc)
            return
        name_col = columns.get("name", columns.get("run"))
        read = [columns["lr"], columns["loss"], *([name_col] if name_col else [])]
        row = 0
        # Record batches of a few rows, which iter_sweeps gathers into pieces: longer sweeps
        # further on cannot make one much larger than a piece. Fewer rows when the first ones
        # are long already (the metadata's counts are not read: pyarrow aborts on some corrupt ones).
        first = next(pf.iter_batches(batch_size=256, columns=[columns["lr"]]), None)
        longest = 1 if first is None else max(1, pc.max(pc.list_value_length(first.column(0))).as_py() or 1)
        rows = min(batch_size, PARQUET_LIST_ROWS, max(1, PIECE_POINTS // longest))
        for rb in pf.iter_batches(batch_size=rows, columns=read):
            if name_col is None:
                runs = [str(i) for i in range(row, row + rb.num_rows)]
            else:
                runs = _texts(rb.column(name_col), pa)
            row += rb.num_rows
            yield _parquet_lists(path, rb.column(columns["lr"]), rb.column(columns["loss"]), runs, rejected, pa, pc)
    except pa.ArrowException as e:  # a column that does not cast to float64, or data cut short
        raise _Bad(path, f"unusable columns: {_error_text(e)}") from None
    except (OSError, UnicodeDecodeError) as e:  # e.g. a run column of lists, names not UTF-8
        raise _Bad(path, f"not a readable Parquet file: {_error_text(e)}") from None


def _parquet_sweeps(
    path: str, table: Any, columns: dict[str, str], rejected: list[Rejected], pa: Any, pc: Any
) -> _Batch:
    from lrfind.arrow import _is_list

    lr, loss = (table.column(columns[c]).combine_chunks() for c in ("lr", "loss"))
    listy = [_is_list(a.type, pa) for a in (lr, loss)]
    if listy[0] != listy[1]:
        raise _Bad(path, "columns lr and loss must both be lists (one sweep per row) or both numbers")
    name_col = columns.get("name", columns.get("run"))
    try:
        if listy[0]:
            runs = None if name_col is None else _texts(table.column(name_col), pa)
            return _parquet_lists(path, lr, loss, runs, rejected, pa, pc)
        lrs, losses = (_float_array(a, pa, pc) for a in (lr, loss))
    except pa.ArrowException as e:  # a column that does not cast to float64
        raise _Bad(path, f"columns lr and loss must hold numbers: {e}") from None
    if "run" not in columns:
        return _single(path, lrs, losses)
    # Dictionary encoding numbers the runs in order of first appearance, without sorting strings.
    encoded = _encoded(table.column(columns["run"]).combine_chunks(), pa, pc)
    group = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    return _grouped(path, lrs, losses, group, [str(r) for r in encoded.dictionary.to_pylist()])


def _encoded(column: Any, pa: Any, pc: Any) -> Any:
    """A run column dictionary-encoded in order of first appearance, null a run of its own (a
    dictionary column is decoded first: its nulls have no entry to point to)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return pc.dictionary_encode(column, null_encoding="encode")


def _parquet_runs(column: Any, pa: Any, pc: Any) -> tuple[np.ndarray, list[str]]:
    """The rows where a run starts in a block of a run column, and their runs' names (``str`` of
    the value, as a whole read names them)."""
    encoded = _encoded(column, pa, pc)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    starts = _starts(codes)
    values = encoded.dictionary.to_pylist()
    return starts, [str(values[c]) for c in codes[starts].tolist()]


def _parquet_together(pf: Any, run: str, pa: Any, pc: Any) -> bool:
    """Whether each run's rows are together in a long-format file (one pass over the run column);
    any problem means no, and the whole-file reader then says what is wrong."""
    try:
        batches = pf.iter_batches(batch_size=PARQUET_LONG_ROWS, columns=[run])
        return _together(_parquet_runs(rb.column(run), pa, pc)[1] for rb in batches)
    except (OSError, pa.ArrowException, UnicodeDecodeError):
        return False


def _parquet_blocks(path: str, pf: Any, columns: dict[str, str], pa: Any, pc: Any) -> Iterator[_Batch]:
    """The sweeps of a long-format Parquet file whose runs' rows are together, record batch by
    record batch."""
    lr, loss, run = columns["lr"], columns["loss"], columns["run"]

    def blocks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
        for rb in pf.iter_batches(batch_size=PARQUET_LONG_ROWS, columns=[lr, loss, run]):
            try:
                lrs, losses = (_float_array(rb.column(c), pa, pc) for c in (lr, loss))
            except pa.ArrowException as e:
                raise _Bad(path, f"columns lr and loss must hold numbers: {e}") from None
            yield (lrs, losses, *_parquet_runs(rb.column(run), pa, pc))

    return _run_blocks(path, blocks())


def _float_array(a: Any, pa: Any, pc: Any) -> np.ndarray:
    """A float64 numpy array of an Arrow array, nulls as NaN."""
    return pc.fill_null(a.cast(pa.float64()), math.nan).to_numpy(zero_copy_only=False)


def _parquet_lists(
    path: str, lr: Any, loss: Any, runs: list[str] | None, rejected: list[Rejected], pa: Any, pc: Any
) -> _Batch:
    runs = [str(i) for i in range(len(lr))] if runs is None else runs
    lengths = [pc.fill_null(pc.list_value_length(a), 0).to_numpy(zero_copy_only=False) for a in (lr, loss)]
    bad = np.flatnonzero(lengths[0] != lengths[1])
    for i in bad:  # a loop over the rejected rows only
        rejected.append(Rejected(f"{path} run {runs[i]}", f"{lengths[0][i]} lrs but {lengths[1][i]} losses"))
    if len(bad):
        keep = lengths[0] == lengths[1]
        lr, loss = lr.filter(pa.array(keep)), loss.filter(pa.array(keep))
        runs = [r for r, k in zip(runs, keep.tolist(), strict=True) if k]
    from lrfind.arrow import _flat_lists

    lrs, losses, offsets = _flat_lists(lr, loss)  # Arrow's own buffers when it can, no copy
    return _many(path, lrs, losses, offsets.astype(np.int64, copy=False), runs)


def _texts(column: Any, pa: Any) -> list[str]:
    """A column's values as Python strings (``str`` of other types)."""
    values = column.to_pylist()
    return values if pa.types.is_string(column.type) and column.null_count == 0 else [str(v) for v in values]


#: The readers of piece-giving formats: ``reader(path, rejected, batch_size)`` yields ``_Batch``es.
#: JSON and JSON Lines (with ``history_smoothing``) are called by ``iter_sweeps`` itself.
_READERS: dict[str, Any] = {
    ".csv": _read_csv,
    ".json": None,
    ".jsonl": None,
    ".npz": _read_npz,
    ".parquet": _read_parquet,
}


# --- validation and assembly -------------------------------------------------------------------


def _keep_valid(batch: _Batch, rejected: list[Rejected]) -> _Batch:
    """Drop the sweeps with no points or with LRs that are not finite, positive and strictly
    increasing, listing each in ``rejected``; vectorised over the flat buffers."""
    lrs, offsets = batch.lrs, batch.offsets
    starts, ends = offsets[:-1], offsets[1:]
    bad_point = ~(lrs > 0) | ~np.isfinite(lrs)  # ~(x > 0) also catches NaN
    bad_step = lrs[1:] <= lrs[:-1]  # step j joins points j and j + 1
    inner = bad_step.copy()
    inner[ends[(ends > 0) & (ends < len(lrs))] - 1] = False  # the steps from one sweep to the next
    if not bad_point.any() and not inner.any() and (ends > starts).all():  # the usual case, at numpy speed
        return batch
    good = (ends > starts) & (_count(bad_point, starts, ends) == 0)
    # Sweep i's steps are [start, end - 1); an empty last sweep starts past the last step.
    step_starts = np.minimum(starts, len(bad_step))
    good &= _count(bad_step, step_starts, np.clip(ends - 1, step_starts, len(bad_step))) == 0
    if good.all():
        return batch
    for i in np.flatnonzero(~good):  # a loop over the rejected sweeps only
        rejected.append(Rejected(batch.place(int(i)), _why(lrs[starts[i] : ends[i]])))
    keep = np.repeat(good, ends - starts)
    new_offsets = np.zeros(int(good.sum()) + 1, dtype=np.int64)
    np.cumsum((ends - starts)[good], out=new_offsets[1:])
    runs = [n for n, g in zip(batch.runs, good.tolist(), strict=True) if g]
    return _Batch(batch.path, lrs[keep], batch.losses[keep], new_offsets, runs, batch.place)


def _count(flags: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """How many flags are set in each segment [start, end), by prefix sums."""
    prefix = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=prefix[1:])
    return prefix[ends] - prefix[starts]


def _why(lrs: np.ndarray) -> str:
    if len(lrs) == 0:
        return "no points"
    bad = np.flatnonzero(~(lrs > 0) | ~np.isfinite(lrs))
    if len(bad):
        return f"lr at point {bad[0]} is {float(lrs[bad[0]])!r}, not a finite positive number"
    j = int(np.flatnonzero(lrs[1:] <= lrs[:-1])[0])
    return f"lrs not strictly increasing: point {j + 1} is {float(lrs[j + 1])!r} after {float(lrs[j])!r}"


def _concat(batches: list[_Batch], rejected: list[Rejected], files_read: int, namer: _Names) -> Sweeps:
    if len(batches) == 1:  # a piece of one file: its buffers as they are
        b = batches[0]
        names = namer.of(b)
        return Sweeps(b.lrs, b.losses, b.offsets, names, [b.path] * len(names), list(rejected), files_read)
    lengths = [np.diff(b.offsets) for b in batches]
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    names = [n for b in batches for n in namer.of(b)]
    sources = [b.path for b in batches for _ in b.runs]
    lrs = np.concatenate([b.lrs for b in batches]) if batches else np.empty(0)
    losses = np.concatenate([b.losses for b in batches]) if batches else np.empty(0)
    return Sweeps(lrs, losses, offsets, names, sources, list(rejected), files_read)


def _merge(chunks: list[Sweeps]) -> Sweeps:
    """The pieces of ``iter_sweeps`` as one ``Sweeps``."""
    lengths = [np.diff(c.offsets) for c in chunks]
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    return Sweeps(
        np.concatenate([c.lrs for c in chunks]),
        np.concatenate([c.losses for c in chunks]),
        offsets,
        [n for c in chunks for n in c.names],
        [s for c in chunks for s in c.sources],
        [r for c in chunks for r in c.rejected],
        sum(c.files_read for c in chunks),
    )


class _Names:
    """Sweep names: the file's stem, suffixed ``#2``, ``#3``, ... when an earlier file had the
    same stem (two directories may hold an ``a.csv``), then ``/run`` for a file of several
    sweeps, suffixed ``#2``, ... when the file repeats a run's name. Only the stems and the
    current file's names are kept: memory does not grow with the number of sweeps read."""

    def __init__(self) -> None:
        self.stems: set[str] = set()
        self.path = ""
        self.prefix = ""
        self.used: set[str] = set()

    def of(self, batch: _Batch) -> list[str]:
        if batch.path != self.path:
            self.path, self.used = batch.path, set()
            self.prefix = _unique_name(Path(batch.path).stem, self.stems)
        names = [self.prefix if run == "" else f"{self.prefix}/{run}" for run in batch.runs]
        if len(set(names)) == len(names) and self.used.isdisjoint(names):  # the usual case: no repeats
            self.used.update(names)
            return names
        return [_unique_name(name, self.used) for name in names]


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name#k`` for the smallest k >= 2 not in ``used``; added to ``used``."""
    new, k = name, 1
    while new in used:
        k += 1
        new = f"{name}#{k}"
    used.add(new)
    return new
