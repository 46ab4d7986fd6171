"""Arrow in, Arrow out: ``analyze_batch`` on Arrow tables and record-batch streams.

The unit a distributed engine maps over the files it shards: Dask's ``map_partitions``, Ray
Data's ``map_batches`` or Spark's ``mapInArrow`` call ``analyze_table`` (or
``analyze_batches``) on each piece and get one row per sweep back. Needs pyarrow (the
``parquet`` extra). Two layouts:

- list columns: ``lr`` and ``loss`` are lists (fixed-size lists too), one sweep per row;
  ``key`` (optional) names it. The values are read in place (no copy) when they are
  float32/float64 without nulls.
- long format: ``lr`` and ``loss`` are numbers, one point per row, and ``key`` says which sweep
  a row belongs to (all rows are one sweep without it; null keys are one sweep; a
  dictionary-encoded key, such as a pandas categorical or a hive partition column, groups as its
  values do). In a table, a key's rows need not be together (they keep their order); in a
  stream, a key's rows must be contiguous, and may span record batches.

Every output row holds: the key (when given), ``points``, ``stop_index`` and ``stop_reason``
(null when the sweep never exploded), ``lr_<method>`` for each method, ``confidence_auto``
(when auto is among the methods), ``range_low``/``range_high`` (the main method's suggested
range, the LRs to train in), ``diagnosis``, ``gives_lr`` and ``descent_low``/``descent_high``
(where the loss falls): the columns of ``lrfind analyze --format csv``, typed. Null where there
is no value.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

import lrfind

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["analyze_table", "analyze_batches", "report"]

_DEFAULT_METHODS = list(lrfind.METHODS)


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.compute  # noqa: F401
    except ImportError:
        raise ImportError("lrfind.arrow needs pyarrow: pip install 'lrfind[parquet]'") from None
    return pyarrow


def analyze_table(
    table: pa.Table, lr: str = "lr", loss: str = "loss", key: str | None = None, **options: Any
) -> pa.Table:
    """Analyse every sweep of ``table`` in one ``analyze_batch`` call: one output row per sweep.

    Args:
        table: a ``pyarrow.Table`` (or ``RecordBatch``) in either layout of the module's docs.
        lr, loss: the names of the LR and loss columns (defaults ``"lr"``, ``"loss"``).
        key: the column naming each sweep (default None: list rows are numbered by position,
            and long-format rows are all one sweep).
        options: ``lrfind.analyze``'s keyword arguments (``methods`` defaults to every method,
            auto first, as ``lrfind analyze``).

    Returns:
        a ``pyarrow.Table`` with the columns of the module's docs, one row per sweep.

    Raises:
        KeyError: a named column is missing; TypeError: ``table`` is not an Arrow table, lr and
        loss are not both lists of numbers or both numbers, or the key is not a scalar column;
        ValueError: a sweep's LRs are not finite, positive and strictly increasing (the message
        names the sweep), its lists differ in length, or the key has an output column's name.
    """
    pa = _pyarrow()
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise TypeError(
            f"table must be a pyarrow.Table or RecordBatch, got {type(table).__name__} "
            "(pyarrow.table(a_dict) or pyarrow.Table.from_pandas(a_frame) makes one)"
        )
    if _listy(table, lr, loss):
        lrs, losses, offsets = _flat_lists(table.column(lr), table.column(loss))
        keys = table.column(key) if key is not None else None
    else:
        lrs, losses, offsets, keys = _long(table, lr, loss, key)
    methods = options.get("methods")
    batch = lrfind.analyze_batch(
        lrs, losses, offsets, **{**options, "methods": list(_DEFAULT_METHODS) if methods is None else methods}
    )
    return report(batch, list(batch.lr), np.diff(offsets), keys, key)


def analyze_batches(
    batches: Iterable[pa.RecordBatch], lr: str = "lr", loss: str = "loss", key: str | None = None, **options: Any
) -> Iterator[pa.RecordBatch]:
    """``analyze_table`` over a stream of record batches: one output batch per input batch that
    completes a sweep. ``lr``, ``loss``, ``key`` and ``**options`` are ``analyze_table``'s (the
    column names, default ``"lr"``, ``"loss"`` and None, and ``analyze``'s options). In long
    format a key's rows must be contiguous; they may span batches (a sweep is analysed once its
    last row has arrived, or at the end of the stream), and a key seen again after another one
    is a ValueError."""
    pa = _pyarrow()
    # The rows of the last key (all of one key), which the next batch may continue: kept as
    # batches, joined once when the key ends, and only a new batch's keys are compared, so that
    # a key spanning many batches costs what its rows cost.
    held: list[pa.RecordBatch] = []
    held_key: Any = None
    finished: set[Any] = set()
    for rb in batches:
        if not held and _listy(rb, lr, loss):
            yield from analyze_table(rb, lr, loss, key, **options).to_batches()
            continue
        if rb.num_rows == 0:
            continue
        if key is None:  # one sweep: it ends with the stream
            held.append(rb)
            continue
        keys = rb.column(key)
        tail = int(_key_starts(keys)[-1])  # the last key's rows: the next batch may continue them
        if held and tail == 0 and _same_key(held_key, keys[0].as_py()):
            held.append(rb)
            continue
        done = pa.Table.from_batches([*held, rb.slice(0, tail)])
        held, held_key = [rb.slice(tail)], keys[tail].as_py()
        if done.num_rows:
            _contiguous(done.column(key), finished)
            yield from analyze_table(done, lr, loss, key, **options).to_batches()
    if held:
        rest = pa.Table.from_batches(held)
        if key is not None:
            _contiguous(rest.column(key), finished)
        yield from analyze_table(rest, lr, loss, key, **options).to_batches()


def report(
    batch: lrfind.BatchAnalysis,
    methods: list[str],
    points: np.ndarray,
    keys: Any = None,
    key: str | None = None,
) -> pa.Table:
    """The rows of ``batch`` (one per sweep, of ``points`` points each) as a typed table with
    the columns of the module's docs; ``keys`` (any Arrow or numpy array) becomes the ``key``
    column."""
    pa = _pyarrow()
    main = methods[0]
    taken = {"points", "stop_index", "stop_reason", *(f"lr_{m}" for m in methods), "confidence_auto", "range_low",
             "range_high", "diagnosis", "gives_lr", "descent_low", "descent_high"}  # fmt: skip
    if key in taken:
        raise ValueError(f"key column {key!r} has the name of an output column: rename it (e.g. table.rename_columns)")
    gives = np.asarray(batch.GIVES_LR)[batch.diagnosis]
    stopped = batch.stop_index >= 0
    reasons = np.asarray(["", *batch.STOP_REASONS], dtype=object)[batch.stop_reason]
    columns: dict[str, Any] = {}
    if key is not None:
        columns[key] = keys
    columns["points"] = pa.array(np.asarray(points, dtype=np.int64))
    columns["stop_index"] = pa.array(batch.stop_index, mask=~stopped)
    columns["stop_reason"] = pa.array(reasons, type=pa.string(), mask=~stopped)
    for m in methods:
        columns[f"lr_{m}"] = _floats(pa, batch.lr[m])
    if "auto" in methods:
        columns["confidence_auto"] = _floats(pa, batch.confidence["auto"])
    columns["range_low"] = _floats(pa, batch.range_low[main])
    columns["range_high"] = _floats(pa, batch.range_high[main])
    columns["diagnosis"] = pa.array(np.asarray(batch.DIAGNOSES, dtype=object)[batch.diagnosis], type=pa.string())
    columns["gives_lr"] = pa.array(gives, type=pa.bool_())
    columns["descent_low"] = _floats(pa, batch.descent_low)
    columns["descent_high"] = _floats(pa, batch.descent_high)
    return pa.table(columns)


def _floats(pa: Any, values: np.ndarray) -> Any:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _is_list(t: Any, pa: Any) -> bool:
    """Whether an Arrow type is a list, of any offsets or of a fixed size (what a 2-D numpy
    array becomes)."""
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _listy(table: Any, lr: str, loss: str) -> bool:
    pa = _pyarrow()
    types = [table.schema.field(c).type for c in (lr, loss)]  # KeyError names a missing column
    for column, t in zip((lr, loss), types, strict=True):
        if not (_is_list(t, pa) or pa.types.is_integer(t) or pa.types.is_floating(t)):
            raise TypeError(f"column {column!r} must hold numbers or lists of numbers, got {t}")
        if _is_list(t, pa) and not (pa.types.is_integer(t.value_type) or pa.types.is_floating(t.value_type)):
            raise TypeError(f"column {column!r} must hold lists of numbers, got {t}")
    listy = [_is_list(t, pa) for t in types]
    if listy[0] != listy[1]:
        raise TypeError(f"columns {lr!r} and {loss!r} must both be lists (one sweep per row) or both numbers")
    return listy[0]


def _flat_lists(lr: Any, loss: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flat values and offsets of two list columns (chunked or not; a null list is empty),
    read in place when the values are float32/float64 without nulls and the column has one
    chunk."""
    pa = _pyarrow()
    if isinstance(lr, pa.ChunkedArray):
        lr, loss = lr.combine_chunks(), loss.combine_chunks()  # one chunk: no copy
    # A fixed-size list has no offsets: as a list, the values are the same buffer.
    lr, loss = (a.cast(pa.list_(a.type.value_type)) if pa.types.is_fixed_size_list(a.type) else a for a in (lr, loss))
    parts = []
    for column in (lr, loss):
        if column.null_count:
            # A null list is an empty sweep: its offsets may span values that are not its own.
            lengths = pa.compute.fill_null(pa.compute.list_value_length(column), 0).to_numpy(zero_copy_only=False)
            offsets = np.zeros(len(column) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            parts.append((offsets, _numbers(pa, pa.compute.list_flatten(column))))
            continue
        offsets = column.offsets.to_numpy()
        values = column.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
        parts.append((offsets - offsets[0] if offsets[0] else offsets, _numbers(pa, values)))
    (lr_offsets, lrs), (loss_offsets, losses) = parts
    if not np.array_equal(lr_offsets, loss_offsets):
        row = int(np.flatnonzero(np.diff(lr_offsets) != np.diff(loss_offsets))[0])
        raise ValueError(f"row {row}: its lr and loss lists differ in length")
    return lrs, losses, lr_offsets


def _numbers(pa: Any, values: Any) -> np.ndarray:
    """A numpy view of numeric Arrow values when possible, else float64 with nulls as NaN."""
    if values.null_count == 0 and pa.types.is_floating(values.type) and values.type.bit_width in (32, 64):
        return values.to_numpy(zero_copy_only=True)
    # Unsafe: an integer past 2**53 rounds to the nearest float instead of raising.
    return pa.compute.fill_null(values.cast(pa.float64(), safe=False), np.nan).to_numpy(zero_copy_only=False)


def _long(table: Any, lr: str, loss: str, key: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    """Long-format rows as flat sweeps in order of each key's first row, rows of a key in order."""
    pa = _pyarrow()
    lrs = _numbers(pa, table.column(lr).combine_chunks())
    losses = _numbers(pa, table.column(loss).combine_chunks())
    if key is None:
        return lrs, losses, np.array([0, len(lrs)], dtype=np.int64), None
    column = table.column(key)
    if pa.types.is_nested(column.type):
        raise TypeError(f"key column {key!r} must hold scalars (names, numbers), got {column.type}")
    if pa.types.is_dictionary(column.type):
        # Encoding a dictionary column keeps its dictionary: entries no row uses (a filtered
        # categorical, a partition filtered out), in dictionary order, and no entry for nulls.
        column = column.cast(column.type.value_type)
    encoded = pa.compute.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    group = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
    offsets = np.zeros(len(encoded.dictionary) + 1, dtype=np.int64)
    np.cumsum(np.bincount(group, minlength=len(encoded.dictionary)), out=offsets[1:])
    if np.any(group[1:] < group[:-1]):  # a key's rows apart: gather them, in order (a stable sort)
        order = np.argsort(group, kind="stable")
        lrs, losses = lrs[order], losses[order]
    return lrs, losses, offsets, encoded.dictionary


def _key_starts(keys: Any) -> np.ndarray:
    """The rows where a new key begins (the first row included), keys compared as
    ``analyze_table`` groups them: nulls equal nulls, NaN equals NaN."""
    pc = _pyarrow().compute
    if isinstance(keys, _pyarrow().ChunkedArray):
        keys = keys.combine_chunks()
    if len(keys) < 2:
        return np.zeros(len(keys), dtype=np.int64)
    a, b = keys.slice(1), keys.slice(0, len(keys) - 1)
    same = pc.or_kleene(pc.equal(a, b), pc.and_(pc.is_null(a), pc.is_null(b)))
    if _pyarrow().types.is_floating(keys.type):
        same = pc.or_kleene(same, pc.and_(pc.is_nan(a), pc.is_nan(b)))
    same = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
    return np.concatenate([[0], np.flatnonzero(~same) + 1])


#: A NaN key, as one value (NaN is not equal to itself, in a set or anywhere).
_NAN_KEY = ("NaN",)


def _same_key(a: Any, b: Any) -> bool:
    """Whether two keys (Python values) are one, as ``_key_starts`` compares them."""
    nan = [isinstance(k, float) and k != k for k in (a, b)]
    return nan[0] and nan[1] or (not any(nan) and a == b)


def _contiguous(keys: Any, finished: set[Any]) -> None:
    """Checks that no key of this run of rows (an Arrow array) has ended before; notes those
    that end here."""
    for k in keys.take(_key_starts(keys)).to_pylist():
        k = _NAN_KEY if isinstance(k, float) and k != k else k
        if k in finished:
            raise ValueError(
                f"key {'NaN' if k is _NAN_KEY else repr(k)} is split: its rows are not contiguous in the stream"
            )
        finished.add(k)
