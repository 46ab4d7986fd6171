"""``lrfind.arrow``: Arrow tables and record-batch streams in, one typed row per sweep out.

The reference is ``lrfind.analyze`` run sweep by sweep on the same numbers (another code path
than the batch), and the CLI's CSV report, whose columns the Arrow report carries typed.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import lrfind  # noqa: E402
from lrfind.arrow import _flat_lists, analyze_batches, analyze_table  # noqa: E402


def _sweeps(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """n sweeps of 20-60 points: a noisy descent, then an explosion for most of them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(20, 60))
        lrs = np.geomspace(1e-6, 10.0, k)
        x = np.log10(lrs)
        loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3 - rng.normal()) * 3)) + np.where(x > -1, (x + 1) * 4, 0.0)
        out.append((lrs, loss * np.exp(0.03 * rng.standard_normal(k))))
    return out


def _list_table(sweeps, *, large: bool = False, dtype=None) -> pa.Table:
    dtype = pa.float64() if dtype is None else dtype
    kind = pa.large_list(dtype) if large else pa.list_(dtype)
    return pa.table(
        {
            "run": [f"r{i}" for i in range(len(sweeps))],
            "lr": pa.array([s[0] for s in sweeps], type=kind),
            "loss": pa.array([s[1] for s in sweeps], type=kind),
        }
    )


def _expected(sweeps, methods=None) -> list[dict]:
    """Each sweep through ``lrfind.analyze``: the values one report row must hold."""
    methods = list(lrfind.METHODS) if methods is None else methods
    rows = []
    for lrs, losses in sweeps:
        a = lrfind.analyze(lrs, losses, methods=methods)
        main = a.suggestions[methods[0]]
        row = {
            "points": len(lrs),
            "stop_index": a.stop_index if a.stop_index >= 0 else None,
            "stop_reason": a.stop_reason,
            **{f"lr_{m}": a.suggestions[m].lr for m in methods},
            "range_low": main.range[0] if main.range else None,
            "range_high": main.range[1] if main.range else None,
            "diagnosis": a.diagnosis.kind,
            "gives_lr": a.diagnosis.gives_lr,
            "descent_low": a.diagnosis.descent[0] if a.diagnosis.descent else None,
            "descent_high": a.diagnosis.descent[1] if a.diagnosis.descent else None,
        }
        if "auto" in methods:
            row["confidence_auto"] = a.suggestions["auto"].confidence
        rows.append(row)
    return rows


def _rows(table: pa.Table, columns) -> list[dict]:
    return [{c: r[c] for c in columns} for r in table.to_pylist()]


@pytest.mark.parametrize("large", [False, True], ids=["int32 offsets", "int64 offsets"])
@pytest.mark.parametrize("dtype", [pa.float64(), pa.float32()], ids=["float64", "float32"])
def test_list_columns_give_what_analyze_gives_per_sweep(large, dtype):
    sweeps = _sweeps(40)
    if dtype == pa.float32():  # the reference reads the same (rounded) numbers
        sweeps = [
            (lr.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)) for lr, y in sweeps
        ]
    out = analyze_table(_list_table(sweeps, large=large, dtype=dtype), key="run")
    want = _expected(sweeps)
    assert out.column("run").to_pylist() == [f"r{i}" for i in range(40)]
    assert _rows(out, want[0]) == want
    assert out.schema.field("stop_index").type == pa.int64() and out.schema.field("gives_lr").type == pa.bool_()
    # Without a key the rows keep the input's order, unnamed.
    unnamed = analyze_table(_list_table(sweeps, large=large, dtype=dtype))
    assert unnamed.column_names[0] == "points" and unnamed.drop_columns([]).equals(out.drop_columns(["run"]))


def test_float64_lists_are_read_in_place():
    """Zero copy: the flat buffers handed to the core are Arrow's own, at the slice's start."""
    table = _list_table(_sweeps(10)).slice(3, 5)  # a slice: its offsets do not start at 0
    lr, loss = table.column("lr").combine_chunks(), table.column("loss").combine_chunks()
    lrs, losses, offsets = _flat_lists(lr, loss)
    first = lr.offsets[0].as_py()
    assert lrs.__array_interface__["data"][0] == lr.values.buffers()[1].address + 8 * first
    assert offsets[0] == 0 and offsets[-1] == len(lrs) == sum(len(v) for v in lr.to_pylist())
    assert losses.base is not None and not losses.flags.owndata
    out = analyze_table(table, key="run")
    assert _rows(out, ["lr_auto"]) == [{"lr_auto": r["lr_auto"]} for r in _expected(_sweeps(10)[3:8])]


def test_chunks_nulls_and_the_methods_asked_for():
    sweeps = _sweeps(12)
    table = pa.concat_tables([_list_table(sweeps[:5]), _list_table(sweeps[5:])])  # two chunks
    assert table.column("lr").num_chunks == 2
    out = analyze_table(table, key="run", methods=["valley", "auto"])
    assert out.column_names == [
        "run", "points", "stop_index", "stop_reason", "lr_valley", "lr_auto", "confidence_auto",
        "range_low", "range_high", "diagnosis", "gives_lr", "descent_low", "descent_high",
    ]  # fmt: skip
    assert _rows(out, _expected(sweeps, ["valley", "auto"])[0]) == _expected(sweeps, ["valley", "auto"])
    # A null loss reads as NaN (the curve ends there), as the file readers read it.
    lrs, losses = sweeps[0]
    with_null = pa.table({"lr": pa.array([lrs]), "loss": pa.array([[*losses[:30].tolist(), None, *losses[31:]]])})
    cut = losses.copy()
    cut[30] = math.nan
    assert _rows(analyze_table(with_null), ["lr_auto", "stop_index"]) == [
        {"lr_auto": lrfind.analyze(lrs, cut).suggested_lr, "stop_index": lrfind.analyze(lrs, cut).stop_index}
    ]


def _long(sweeps, order=None) -> pa.Table:
    keys = np.concatenate([np.full(len(s[0]), i) for i, s in enumerate(sweeps)])
    lrs = np.concatenate([s[0] for s in sweeps])
    losses = np.concatenate([s[1] for s in sweeps])
    if order is not None:
        keys, lrs, losses = keys[order], lrs[order], losses[order]
    return pa.table({"key": pa.array([f"k{k}" for k in keys]), "lr": lrs, "loss": losses})


def test_long_format_groups_rows_by_key_in_order():
    """Rows of the sweeps dealt out round-robin: each key's rows are gathered in their order,
    and the sweeps come out in the order of their keys' first rows."""
    sweeps = _sweeps(15)
    keys = np.concatenate([np.full(len(s[0]), i) for i, s in enumerate(sweeps)])
    table = _long(sweeps, _interleave(keys))
    out = analyze_table(table, key="key")
    first_seen = list(dict.fromkeys(table.column("key").to_pylist()))
    assert first_seen != sorted(first_seen, key=lambda k: int(k[1:])) or len(set(first_seen)) == 15
    assert out.column("key").to_pylist() == first_seen
    want = {f"k{i}": row for i, row in enumerate(_expected(sweeps))}
    assert _rows(out, want["k0"]) == [want[k] for k in first_seen]
    # Without a key, all rows are one sweep.
    one = analyze_table(_long(sweeps[:1]).drop_columns(["key"]))
    assert _rows(one, ["points", "lr_auto"]) == [
        {"points": len(sweeps[0][0]), "lr_auto": _expected(sweeps[:1])[0]["lr_auto"]}
    ]


def _interleave(keys: np.ndarray) -> np.ndarray:
    """An order of the rows that deals the sweeps out round-robin, each sweep's rows in order."""
    rank = np.zeros(len(keys), dtype=np.int64)
    for k in np.unique(keys):
        where = np.flatnonzero(keys == k)
        rank[where] = np.arange(len(where))
    return np.lexsort((keys, rank))


def test_a_stream_gives_what_the_table_gives():
    sweeps = _sweeps(20)
    table = _long(sweeps)  # contiguous keys
    whole = analyze_table(table, key="key")
    for size in (7, 64, 1000, 10**6):  # keys spanning batches, many keys per batch, one batch
        got = pa.Table.from_batches(list(analyze_batches(table.to_batches(max_chunksize=size), key="key")))
        assert got.equals(whole), size
    lists = _list_table(sweeps)
    got = pa.Table.from_batches(list(analyze_batches(lists.to_batches(max_chunksize=6), key="run")))
    assert got.equals(analyze_table(lists, key="run"))
    # A key seen again after another is refused: its sweep would be cut in two.
    split = pa.concat_tables([_long(sweeps[:2]), _long(sweeps[:1])])
    with pytest.raises(ValueError, match="key 'k0' is split"):
        list(analyze_batches(split.to_batches(max_chunksize=5), key="key"))


def test_method_parameters_in_a_methods_dict_are_used():
    """``methods={"label": {...}}`` as ``analyze`` takes it: the parameters count, the label names
    the column."""
    sweeps = _sweeps(4)
    out = analyze_table(_list_table(sweeps), methods={"fast": {"method": "minimum", "factor": 3}, "auto": {}})
    assert out.column_names[3:5] == ["lr_fast", "lr_auto"]
    want = [lrfind.analyze(*s, methods={"fast": {"method": "minimum", "factor": 3}}).suggested_lr for s in sweeps]
    assert out.column("lr_fast").to_pylist() == want
    assert want != [lrfind.analyze(*s, methods="minimum").suggested_lr for s in sweeps]


def test_a_null_list_is_an_empty_sweep_whatever_its_offsets_span():
    """Arrow lets a null list's offsets span values; they are not its sweep (read_sweeps agrees)."""
    (lrs, losses), (lrs2, losses2) = _sweeps(2)
    offsets = pa.array([0, len(lrs), len(lrs) + len(lrs2)], pa.int32())
    mask = pa.array([True, False])
    table = pa.table(
        {
            "lr": pa.ListArray.from_arrays(offsets, pa.array(np.r_[lrs, lrs2]), mask=mask),
            "loss": pa.ListArray.from_arrays(offsets, pa.array(np.r_[losses, losses2]), mask=mask),
        }
    )
    out = analyze_table(table)
    assert out.column("points").to_pylist() == [0, len(lrs2)]
    assert out.column("lr_auto").to_pylist() == [None, lrfind.analyze(lrs2, losses2).suggested_lr]


@pytest.mark.parametrize("first", [None, math.nan])
def test_a_null_or_nan_key_spanning_batches_is_one_sweep_as_in_the_table(first):
    sweeps = _sweeps(2)
    table = pa.table(
        {
            "k": pa.array([first] * len(sweeps[0][0]) + [2.0] * len(sweeps[1][0]), pa.float64()),
            "lr": np.r_[sweeps[0][0], sweeps[1][0]],
            "loss": np.r_[sweeps[0][1], sweeps[1][1]],
        }
    )
    whole = analyze_table(table, key="k")
    assert whole.num_rows == 2
    streamed = pa.Table.from_batches(list(analyze_batches(table.to_batches(max_chunksize=7), key="k")))
    assert streamed.drop_columns(["k"]).equals(whole.drop_columns(["k"]))  # NaN keys are not equal to themselves
    assert str(streamed.column("k").to_pylist()) == str(whole.column("k").to_pylist()) == f"[{first}, 2.0]"
    again = pa.concat_tables([table, table.slice(0, 3)])
    with pytest.raises(ValueError, match=f"key {'None' if first is None else 'NaN'} is split"):
        list(analyze_batches(again.to_batches(max_chunksize=7), key="k"))


def test_a_key_named_like_an_output_column_is_refused():
    (lrs, losses), *_ = _sweeps(1)
    for name in ("points", "lr_auto", "diagnosis"):
        with pytest.raises(ValueError, match=f"key column '{name}' has the name of an output column"):
            analyze_table(pa.table({name: ["a"] * len(lrs), "lr": lrs, "loss": losses}), key=name)


def test_bad_tables_name_what_is_wrong():
    sweeps = _sweeps(3)
    with pytest.raises(KeyError, match="lr"):
        analyze_table(_list_table(sweeps).drop_columns(["lr"]))
    with pytest.raises(TypeError, match="columns 'lr' and 'loss' must both be lists"):
        analyze_table(pa.table({"lr": pa.array([[1e-3, 1e-2]]), "loss": [1.0]}))
    with pytest.raises(ValueError, match="row 1: its lr and loss lists differ in length"):
        analyze_table(pa.table({"lr": [[1e-3, 1e-2]] * 2, "loss": [[1.0, 0.5], [1.0]]}))
    with pytest.raises(ValueError, match=r"sweep 0: lrs\[1\] must be strictly greater than the previous LR"):
        analyze_table(pa.table({"lr": [[1e-3, 1e-4]], "loss": [[1.0, 0.5]]}))
    with pytest.raises(ValueError, match='method must be one of auto, .*, got "nope"'):
        analyze_table(_list_table(sweeps), methods=["nope"])
    lrs, losses = sweeps[0]
    with pytest.raises(TypeError, match="table must be a pyarrow.Table or RecordBatch, got dict"):
        analyze_table({"lr": lrs, "loss": losses})
    with pytest.raises(TypeError, match="column 'lr' must hold lists of numbers, got list<item: list"):
        analyze_table(pa.table({"lr": [[lrs.tolist()]], "loss": [[losses.tolist()]]}))
    with pytest.raises(TypeError, match="key column 'k' must hold scalars"):
        analyze_table(pa.table({"k": [[1]] * len(lrs), "lr": lrs, "loss": losses}), key="k")
    # Integer losses past 2**53 round to floats, as numpy's conversion does, rather than raising.
    big = analyze_table(pa.table({"lr": lrs, "loss": pa.array(np.arange(len(lrs))[::-1] + 2**60, pa.int64())}))
    assert big.num_rows == 1


def test_the_report_is_the_cli_csv_typed(tmp_path):
    """``lrfind analyze --format csv`` and ``analyze_table`` on the same file: the same values."""
    pd = pytest.importorskip("pandas")
    sweeps = _sweeps(30)
    pq.write_table(_list_table(sweeps).rename_columns(["name", "lr", "loss"]), tmp_path / "s.parquet")
    csv = tmp_path / "s.csv"
    subprocess.run(
        [sys.executable, "-m", "lrfind", "analyze", str(tmp_path / "s.parquet"), "--format", "csv", "--out", str(csv)],
        check=True,
    )
    cli = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    out = analyze_table(pq.read_table(tmp_path / "s.parquet"), key="name").to_pandas()
    assert cli["name"].tolist() == [f"s/{n}" for n in out["name"]]
    for column in out.columns.drop("name"):
        want = out[column].astype(object).where(out[column].notna(), None).tolist()
        got = cli[column].astype(object).where(cli[column].notna(), None).tolist()
        assert got == want, column


# --- found by fuzzing ------------------------------------------------------------------------------


def _dict_key_table(sweeps, keys: list) -> pa.Table:
    """Long format, sweep i under ``keys[i]``, the key column dictionary-encoded with a
    dictionary of its own order (not the rows'), holding an entry no row uses."""
    key = pa.array(np.repeat(np.array(keys, dtype=object), [len(s[0]) for s in sweeps]).tolist(), pa.string())
    dictionary = pa.array(["unused", *sorted({k for k in keys if k is not None}, reverse=True)])
    indices = pa.compute.index_in(key, value_set=dictionary)
    column = pa.DictionaryArray.from_arrays(indices, dictionary)
    lrs, losses = (np.concatenate([s[i] for s in sweeps]) for i in (0, 1))
    return pa.table({"k": column, "lr": lrs, "loss": losses})


def test_a_dictionary_key_groups_as_its_values_do():
    """A dictionary-encoded key (a pandas categorical, a hive partition column) gives what the
    same key as plain values gives: one row per sweep in order of first appearance, none for a
    dictionary entry that no row uses, the null rows as one sweep; in a stream too."""
    sweeps = _sweeps(4)
    keys = ["b", None, "a", "c"]
    table = _dict_key_table(sweeps, keys)
    assert table.column("k").chunk(0).dictionary.to_pylist() == ["unused", "c", "b", "a"]
    plain = table.set_column(0, "k", table.column("k").cast(pa.string()))
    want = analyze_table(plain, key="k")
    assert want.column("k").to_pylist() == keys
    assert _rows(want, _expected(sweeps)[0]) == _expected(sweeps)
    assert analyze_table(table, key="k").equals(want)
    for size in (7, 40, 1000):
        got = pa.Table.from_batches(list(analyze_batches(table.to_batches(max_chunksize=size), key="k")))
        assert got.equals(want), size


def test_a_filtered_hive_partition_key_gives_only_the_sweeps_read(tmp_path):
    sweeps = _sweeps(3)
    table = _long(sweeps)
    pq.write_to_dataset(table, tmp_path, partition_cols=["key"])
    part = pq.read_table(tmp_path, filters=[("key", "=", "k1")])
    assert pa.types.is_dictionary(part.schema.field("key").type) and len(part["key"].chunk(0).dictionary) == 3
    out = analyze_table(part, key="key")
    assert out.column("key").to_pylist() == ["k1"]
    assert _rows(out, _expected(sweeps[1:2])[0]) == _expected(sweeps[1:2])


def test_a_key_spanning_many_batches_is_read_once(monkeypatch):
    """The stream's work is linear in its rows: each row's key is compared a bounded number of
    times, however many batches a key spans (each batch used to compare every row held so far)."""
    import lrfind.arrow

    seen = []
    key_starts = lrfind.arrow._key_starts
    monkeypatch.setattr(lrfind.arrow, "_key_starts", lambda keys: seen.append(len(keys)) or key_starts(keys))
    lrs = lrfind.sweep_lrs(1e-7, 10.0, 4000)
    losses = 2.3 - np.tanh(np.log10(lrs) + 3) + np.exp(np.log10(lrs) + 1)
    keys = np.repeat([3, 1, 2], [2000, 1500, 500])
    table = pa.table({"k": keys, "lr": lrs, "loss": losses})
    got = pa.Table.from_batches(list(analyze_batches(table.to_batches(max_chunksize=20), key="k", methods="auto")))
    assert sum(seen) <= 2 * table.num_rows
    want = [lrfind.analyze(lrs[keys == k], losses[keys == k], methods="auto").suggested_lr for k in (3, 1, 2)]
    assert got.column("k").to_pylist() == [3, 1, 2] and got.column("lr_auto").to_pylist() == want
    one = pa.Table.from_batches(list(analyze_batches(table.to_batches(max_chunksize=20), methods="auto")))
    assert one.column("lr_auto").to_pylist() == [lrfind.analyze(lrs, losses, methods="auto").suggested_lr]


def test_fixed_size_list_columns_are_lists():
    """What a 2-D numpy array becomes in Arrow: the same rows as list columns give."""
    n = 20  # the shortest of _sweeps
    sweeps = [(lrs[:n], losses[:n]) for lrs, losses in _sweeps(6)]
    fixed = pa.list_(pa.float64(), n)
    table = pa.table({"lr": pa.array([s[0] for s in sweeps], fixed), "loss": pa.array([s[1] for s in sweeps], fixed)})
    out = analyze_table(table)
    assert _rows(out, _expected(sweeps)[0]) == _expected(sweeps)
