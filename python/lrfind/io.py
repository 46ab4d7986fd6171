"""Read recorded LR sweeps from files, for batch analysis.

``read_sweeps`` takes files, directories (read recursively) and glob patterns, and returns
every sweep they hold as flat ``lrs``/``losses`` buffers with Arrow-style ``offsets``, ready for
``lrfind.analyze_batch``. The format follows the extension:

- ``.csv``: a header, then either long ``run,lr,loss`` rows (several sweeps, grouped by run in
  order of first appearance, rows of a run in file order) or ``lr,loss`` rows (one sweep).
  Column names are case-insensitive; other columns are ignored.
- ``.json``: a ``RangeTestResult.save`` file (the recorded sweep, explosion point included), a
  ``ParallelResult.save`` file (one sweep per run, named ``seed<s>``), torch-lr-finder's
  ``history`` or Lightning's ``lr_finder.results`` (``{"lr": [...], "loss": [...]}``), a list
  of these or a dict of name -> these.
- ``.jsonl``: one such JSON object per line; a ``"name"`` or ``"run"`` key names the sweep.
- ``.npz``: arrays ``lrs``, ``losses`` and ``offsets`` (optional ``names``); without
  ``offsets`` the file holds one sweep.
- ``.parquet`` (needs pyarrow, the ``parquet`` extra): long columns ``run``, ``lr``, ``loss``
  (or ``lr``, ``loss`` for one sweep), or list columns ``lr``, ``loss`` with one sweep per row
  and an optional ``name`` or ``run`` column.

Bad data never raises: each unreadable file, or sweep whose LRs are not finite, positive and
strictly increasing, becomes a ``Rejected`` entry naming where and why, and the rest is kept.
"""

from __future__ import annotations

import glob
import json
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Rejected", "Sweeps", "read_sweeps", "EXTENSIONS"]

#: The extensions ``read_sweeps`` reads (lower case); directories are searched for these.
EXTENSIONS = (".csv", ".json", ".jsonl", ".npz", ".parquet")

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


def read_sweeps(paths: Iterable[str | os.PathLike[str]]) -> Sweeps:
    """Read every sweep in files, directories (recursively) and glob patterns.

    Directories contribute every file below them with an extension in ``EXTENSIONS``, in sorted
    order; patterns are expanded with ``glob.glob(pattern, recursive=True)``; a file named twice
    is read once. A path that matches nothing, a file with another extension, a file that does
    not parse and each sweep that fails validation (no points, an LR that is not finite and
    positive, LRs not strictly increasing, fewer losses than LRs) is listed in ``rejected``;
    losses may be NaN or infinite (an explosion). Never raises for bad data.
    """
    rejected: list[Rejected] = []
    batches: list[_Batch] = []
    files_read = 0
    for path in _expand(paths, rejected):
        reader = _READERS.get(Path(path).suffix.lower())
        if reader is None:
            known = ", ".join(EXTENSIONS)
            rejected.append(Rejected(path, f"unknown extension {Path(path).suffix!r} (expected one of {known})"))
            continue
        files_read += 1
        try:
            batch = reader(path, rejected)
        except _Bad as e:
            rejected.append(Rejected(e.source, e.reason))
            continue
        batches.append(_keep_valid(batch, rejected))
    return _concat(batches, rejected, files_read)


class _Bad(Exception):
    """A whole file (or a key of it) that cannot be read; becomes one Rejected."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source, self.reason = source, reason


@dataclass
class _Batch:
    """The sweeps of one file, before validation; ``place(i)`` says where sweep ``i`` is."""

    path: str
    lrs: np.ndarray
    losses: np.ndarray
    offsets: np.ndarray
    names: list[str]
    place: Callable[[int], str]


def _expand(paths: Iterable[str | os.PathLike[str]], rejected: list[Rejected]) -> Iterator[str]:
    seen: set[str] = set()
    for p in paths:
        path = os.fspath(p)
        if os.path.isdir(path) or os.path.isfile(path):
            found = [path]
        else:
            found = sorted(glob.glob(path, recursive=True)) if glob.has_magic(path) else []
            if not found:
                rejected.append(Rejected(path, "no such file or directory"))
        for f in found:
            files = _walk(f) if os.path.isdir(f) else [f]
            for file in files:
                key = os.path.normpath(file)
                if key not in seen:
                    seen.add(key)
                    yield file


def _walk(directory: str) -> list[str]:
    files = []
    for root, _, names in os.walk(directory):
        files.extend(os.path.join(root, n) for n in names if Path(n).suffix.lower() in EXTENSIONS)
    return sorted(files)


def _single(path: str, lrs: np.ndarray, losses: np.ndarray) -> _Batch:
    """A file holding one sweep, named after the file."""
    offsets = np.array([0, len(lrs)], dtype=np.int64)
    return _Batch(path, lrs, losses, offsets, [Path(path).stem], lambda i: path)


def _many(path: str, lrs: np.ndarray, losses: np.ndarray, offsets: np.ndarray, runs: list[str]) -> _Batch:
    """A file holding named sweeps ``runs``, named ``stem/run``."""
    stem = Path(path).stem
    return _Batch(path, lrs, losses, offsets, [f"{stem}/{r}" for r in runs], lambda i: f"{path} run {runs[i]}")


# --- CSV ---------------------------------------------------------------------------------------


def _read_csv(path: str, rejected: list[Rejected]) -> _Batch:
    # numpy's C reader: fast, quotes handled, and it names the row of a bad value.
    opts: dict[str, Any] = dict(delimiter=",", comments=None, quotechar='"', encoding="utf-8-sig")
    with warnings.catch_warnings():
        # loadtxt warns on an empty file; that becomes a missing header or a sweep with no points.
        warnings.simplefilter("ignore", UserWarning)
        return _parse_csv(path, opts)


def _parse_csv(path: str, opts: dict[str, Any]) -> _Batch:
    try:
        header = np.loadtxt(path, dtype=str, max_rows=1, ndmin=1, **opts)
    except (OSError, ValueError) as e:
        raise _Bad(path, f"not a readable CSV file: {e}") from None
    columns = {name.strip().lower(): i for i, name in reversed(list(enumerate(header)))}
    missing = [c for c in ("lr", "loss") if c not in columns]
    if missing:
        raise _Bad(path, f"CSV header {', '.join(header)!s} lacks column {' and '.join(missing)}")
    try:
        values = np.loadtxt(path, skiprows=1, usecols=(columns["lr"], columns["loss"]), ndmin=2, **opts)
        runs = None
        if "run" in columns:
            runs = np.loadtxt(path, dtype=str, skiprows=1, usecols=columns["run"], ndmin=1, **opts)
    except (OSError, ValueError) as e:
        raise _Bad(path, f"malformed CSV: {e}") from None
    lrs, losses = np.ascontiguousarray(values[:, 0]), np.ascontiguousarray(values[:, 1])
    if runs is None:
        return _single(path, lrs, losses)
    uniq, first, inverse = np.unique(runs, return_index=True, return_inverse=True)
    by_appearance = np.argsort(first, kind="stable")
    rank = np.empty_like(by_appearance)
    rank[by_appearance] = np.arange(len(by_appearance))
    return _grouped(path, lrs, losses, rank[inverse.ravel()], [str(u) for u in uniq[by_appearance]])


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


def _read_json(path: str, rejected: list[Rejected]) -> _Batch:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # ValueError: bad UTF-8 or bad JSON
        raise _Bad(path, f"not a readable JSON file: {e}") from None
    parts, before = _Parts(path), len(rejected)
    parts.add(doc, [], path, rejected)
    if not parts.names and len(rejected) == before:
        raise _Bad(path, "holds no sweep")
    lrs, losses, offsets = parts.arrays()
    if parts.names == [""]:  # the whole file is one sweep
        return _Batch(path, lrs, losses, offsets, [Path(path).stem], lambda i: path)
    return _many(path, lrs, losses, offsets, parts.names)


def _read_jsonl(path: str, rejected: list[Rejected]) -> _Batch:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as e:
        raise _Bad(path, f"not a readable text file: {e}") from None
    parts = _Parts(path)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            doc = json.loads(line)
        except ValueError as e:
            rejected.append(Rejected(where, f"not JSON: {e}"))
            continue
        if not isinstance(doc, dict):
            rejected.append(Rejected(where, f"a JSON {type(doc).__name__}, not an object"))
            continue
        parts.add(doc, [str(doc.get("name", doc.get("run", number)))], where, rejected)
    return _many(path, *parts.arrays(), parts.names)


class _Parts:
    """The sweeps of one JSON document, gathered to be concatenated once."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lrs: list[np.ndarray] = []
        self.losses: list[np.ndarray] = []
        self.names: list[str] = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lengths = [len(x) for x in self.lrs]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        cat = (lambda xs: np.concatenate(xs)) if lengths else (lambda xs: np.empty(0))
        return cat(self.lrs), cat(self.losses), offsets

    def add(self, doc: Any, name: list[str], where: str, rejected: list[Rejected]) -> None:
        """Add the sweeps of ``doc`` (named by the parts in ``name``, found at ``where``)."""
        try:
            if isinstance(doc, dict) and doc.get("format") == _PARALLEL_FORMAT:
                self._add_parallel(doc, name, where, rejected)
            elif isinstance(doc, dict) and ("format" in doc or ("lr" in doc and "loss" in doc)):
                lrs, losses = _json_sweep(doc, where)
                self.lrs.append(lrs)
                self.losses.append(losses)
                self.names.append("/".join(name))
            elif isinstance(doc, list):
                for i, item in enumerate(doc):
                    key = item.get("name", item.get("run", i)) if isinstance(item, dict) else i
                    self.add(item, [*name, str(key)], f"{where}[{i}]", rejected)
            elif isinstance(doc, dict) and doc and all(isinstance(v, dict) for v in doc.values()):
                for key, item in doc.items():
                    self.add(item, [*name, key], f"{where}[{key}]", rejected)
            else:
                raise _Bad(
                    where, f"not a sweep: expected keys 'lr' and 'loss' or a saved lrfind result; got {_kind(doc)}"
                )
        except _Bad as e:
            rejected.append(Rejected(e.source, e.reason))

    def _add_parallel(self, doc: dict[str, Any], name: list[str], where: str, rejected: list[Rejected]) -> None:
        runs, seeds = doc.get("runs"), doc.get("seeds")
        if not isinstance(runs, list):
            raise _Bad(f"{where}[runs]", f"expected a list of runs, got {_kind(runs)}")
        by_seed = isinstance(seeds, list) and len(seeds) == len(runs) and len(set(map(str, seeds))) == len(seeds)
        for i, run in enumerate(runs):
            label = f"seed{seeds[i]}" if by_seed else f"run{i}"  # type: ignore[index]
            self.add(run, [*name, label], f"{where}[runs][{i}]", rejected)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {', '.join(map(str, list(value)[:6])) or '(none)'}"
    return f"a JSON {type(value).__name__}"


def _json_sweep(doc: dict[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """The recorded LRs and losses of a saved RangeTestResult or an lr/loss history."""
    if "format" in doc:
        if doc["format"] != _RESULT_FORMAT or doc.get("version") != 1:
            raise _Bad(where, f"unknown format {doc['format']!r} version {doc.get('version')!r}")
        keys = ("lrs", "losses")
    else:
        keys = ("lr", "loss")
    lrs, losses = (_json_floats(doc.get(k), f"{where}[{k}]") for k in keys)
    if len(lrs) != len(losses):
        raise _Bad(where, f"{len(lrs)} values in {keys[0]!r} but {len(losses)} in {keys[1]!r}")
    return lrs, losses


def _json_floats(values: Any, where: str) -> np.ndarray:
    if not isinstance(values, list):
        raise _Bad(where, f"expected a list of numbers, got {'nothing' if values is None else _kind(values)}")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, str) and v not in _NONFINITE):
            raise _Bad(where, f"value {i} is {v!r}, neither a number nor one of {', '.join(_NONFINITE)}")
    return np.array([_NONFINITE[v] if isinstance(v, str) else v for v in values], dtype=np.float64)


# --- NPZ -------------------------------------------------------------------------------------------


def _read_npz(path: str, rejected: list[Rejected]) -> _Batch:
    try:
        # Our own handle: np.load leaks the one it opens when the archive is truncated.
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array, renamed
                raise _Bad(path, "a single array, not an NPZ archive with lrs and losses")
            arrays = {k: npz[k] for k in ("lrs", "losses", "offsets", "names") if k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise _Bad(path, f"not a readable NPZ file: {e}") from None
    for key in ("lrs", "losses"):
        if key not in arrays:
            raise _Bad(f"{path}[{key}]", "missing array")
        a = arrays[key]
        if a.ndim != 1 or a.dtype.kind not in "fiu":
            raise _Bad(f"{path}[{key}]", f"expected a 1-D numeric array, got {a.dtype} of shape {a.shape}")
    lrs, losses = (np.ascontiguousarray(arrays[k], dtype=np.float64) for k in ("lrs", "losses"))
    if len(lrs) != len(losses):
        raise _Bad(path, f"{len(lrs)} lrs but {len(losses)} losses")
    if "offsets" not in arrays:
        return _single(path, lrs, losses)
    offsets = _npz_offsets(arrays["offsets"], len(lrs), f"{path}[offsets]")
    n = len(offsets) - 1
    names = arrays.get("names")
    if names is None:
        runs = [str(i) for i in range(n)]
    elif names.shape != (n,):
        raise _Bad(f"{path}[names]", f"expected {n} names (one per sweep), got shape {names.shape}")
    else:
        runs = [str(x) for x in names.tolist()]
    return _many(path, lrs, losses, offsets, runs)


def _npz_offsets(offsets: np.ndarray, total: int, where: str) -> np.ndarray:
    if offsets.ndim != 1 or offsets.dtype.kind not in "iu" or len(offsets) == 0:
        raise _Bad(where, f"expected a non-empty 1-D integer array, got {offsets.dtype} of shape {offsets.shape}")
    offsets = offsets.astype(np.int64)
    if offsets[0] != 0 or offsets[-1] != total:
        raise _Bad(where, f"must run from 0 to {total} (the number of points), runs from {offsets[0]} to {offsets[-1]}")
    down = np.flatnonzero(np.diff(offsets) < 0)
    if len(down):
        raise _Bad(where, f"decrease at index {down[0] + 1} ({offsets[down[0]]} then {offsets[down[0] + 1]})")
    return offsets


# --- Parquet -------------------------------------------------------------------------------------


def _read_parquet(path: str, rejected: list[Rejected]) -> _Batch:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"reading Parquet needs pyarrow: pip install 'lrfind[parquet]' ({e})") from e
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise _Bad(path, f"not a readable Parquet file: {e}") from None
    columns = {name.lower(): name for name in reversed(table.column_names)}
    missing = [c for c in ("lr", "loss") if c not in columns]
    if missing:
        raise _Bad(path, f"columns {', '.join(table.column_names)} lack column {' and '.join(missing)}")
    lr, loss = (table.column(columns[c]).combine_chunks() for c in ("lr", "loss"))
    listy = [pa.types.is_list(a.type) or pa.types.is_large_list(a.type) for a in (lr, loss)]
    if listy[0] != listy[1]:
        raise _Bad(path, "columns lr and loss must both be lists (one sweep per row) or both numbers")
    name_col = columns.get("name", columns.get("run"))
    try:
        if listy[0]:
            runs = None if name_col is None else [str(r) for r in table.column(name_col).to_pylist()]
            return _parquet_lists(path, lr, loss, runs, rejected, pa, pc)
        lrs, losses = (_float_array(a, pa, pc) for a in (lr, loss))
    except pa.ArrowException as e:  # a column that does not cast to float64
        raise _Bad(path, f"columns lr and loss must hold numbers: {e}") from None
    if "run" not in columns:
        return _single(path, lrs, losses)
    # Dictionary encoding numbers the runs in order of first appearance, without sorting strings.
    encoded = pc.dictionary_encode(table.column(columns["run"]).combine_chunks(), null_encoding="encode")
    group = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    return _grouped(path, lrs, losses, group, [str(r) for r in encoded.dictionary.to_pylist()])


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
    offsets = np.zeros(len(lr) + 1, dtype=np.int64)
    np.cumsum(pc.fill_null(pc.list_value_length(lr), 0).to_numpy(zero_copy_only=False), out=offsets[1:])
    lrs, losses = (_float_array(pc.list_flatten(a), pa, pc) for a in (lr, loss))
    return _many(path, lrs, losses, offsets, runs)


_READERS: dict[str, Callable[[str, list[Rejected]], _Batch]] = {
    ".csv": _read_csv,
    ".json": _read_json,
    ".jsonl": _read_jsonl,
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
    good = (ends > starts) & (_count(bad_point, starts, ends) == 0)
    good &= _count(bad_step, starts, np.maximum(ends - 1, starts)) == 0
    if good.all():
        return batch
    for i in np.flatnonzero(~good):  # a loop over the rejected sweeps only
        rejected.append(Rejected(batch.place(int(i)), _why(lrs[starts[i] : ends[i]])))
    keep = np.repeat(good, ends - starts)
    new_offsets = np.zeros(int(good.sum()) + 1, dtype=np.int64)
    np.cumsum((ends - starts)[good], out=new_offsets[1:])
    names = [n for n, g in zip(batch.names, good.tolist(), strict=True) if g]
    return _Batch(batch.path, lrs[keep], batch.losses[keep], new_offsets, names, batch.place)


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


def _concat(batches: list[_Batch], rejected: list[Rejected], files_read: int) -> Sweeps:
    lengths = [np.diff(b.offsets) for b in batches]
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int64)
    if lengths:
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
    names = _unique([n for b in batches for n in b.names])
    sources = [b.path for b in batches for _ in b.names]
    lrs = np.concatenate([b.lrs for b in batches]) if batches else np.empty(0)
    losses = np.concatenate([b.losses for b in batches]) if batches else np.empty(0)
    return Sweeps(lrs, losses, offsets, names, sources, rejected, files_read)


def _unique(names: list[str]) -> list[str]:
    """The names, a repeated one suffixed with #2, #3, ... (two files may share a stem)."""
    if len(set(names)) == len(names):
        return names
    used: set[str] = set()
    out: list[str] = []
    for name in names:
        new, k = name, 1
        while new in used:
            k += 1
            new = f"{name}#{k}"
        used.add(new)
        out.append(new)
    return out
