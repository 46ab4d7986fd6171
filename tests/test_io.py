"""read_sweeps: round trips for every format, real lrfind and torch-lr-finder files, and bad input."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrfind
import lrfind.cli
import lrfind.io
from lrfind.io import MAX_DEPTH, Rejected, Sweeps, iter_sweeps, read_sweeps

RNG = np.random.default_rng(0)


def ragged(n: int = 5) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """n sweeps of different lengths, with an explosion (inf, NaN) in some losses."""
    lrs, losses = [], []
    for i in range(n):
        length = 3 + 4 * i
        lrs.append(np.sort(RNG.uniform(1e-6, 1.0, length)))
        loss = RNG.normal(2.0, 0.3, length)
        if i % 2:
            loss[-1] = math.inf if i % 4 == 1 else math.nan
        losses.append(loss)
    return lrs, losses


def assert_sweeps(s: Sweeps, lrs: list[np.ndarray], losses: list[np.ndarray]) -> None:
    assert len(s) == len(lrs)
    assert s.offsets.dtype == np.int64 and len(s.offsets) == len(s) + 1
    assert s.lrs.dtype == np.float64 and s.losses.dtype == np.float64
    for i, (a, b) in enumerate(zip(lrs, losses, strict=True)):
        got_lr, got_loss = s.sweep(i)
        np.testing.assert_array_equal(got_lr, a)
        np.testing.assert_array_equal(got_loss, b)  # NaNs compare equal here
        assert np.shares_memory(got_lr, s.lrs)


def sources(s: Sweeps) -> list[str]:
    return [r.source for r in s.rejected]


# --- round trips ---------------------------------------------------------------------------------


def test_csv_long_groups_runs_in_order_of_first_appearance(tmp_path: Path) -> None:
    lrs, losses = ragged(3)
    rows = [(f"r{i}", lr, loss) for i in range(3) for lr, loss in zip(lrs[i].tolist(), losses[i].tolist(), strict=True)]
    rank = {id(row): k for i in range(3) for k, row in enumerate(r for r in rows if r[0] == f"r{i}")}
    rows.sort(key=lambda row: rank[id(row)])  # interleave the runs; each run's rows stay in order
    path = tmp_path / "long.csv"
    lines = ["Run,LR,Loss,extra"] + [f"{r},{lr!r},{loss!r},x" for r, lr, loss in rows]
    path.write_text("\n".join(lines) + "\n")
    s = read_sweeps([path])
    assert s.rejected == [] and s.files_read == 1
    first = list(dict.fromkeys(r for r, _, _ in rows))
    order = [int(r[1:]) for r in first]
    assert s.names == [f"long/{r}" for r in first]
    assert s.sources == [str(path)] * 3
    assert_sweeps(s, [lrs[i] for i in order], [losses[i] for i in order])


def _long_csv(path: Path, runs: list[tuple[str, int]], quote: bool = False) -> None:
    """``run,lr,loss`` rows: ``count`` rising LRs for each (name, count), in the order given."""
    rows = ["Run,LR,loss"]
    for k, (name, count) in enumerate(runs):
        shown = f'"{name}"' if quote else name
        rows += [f"{shown},{10.0 ** (i - 6 + k / 100)!r},{1.0 / (i + 1) + k!r}" for i in range(count)]
    path.write_text("\n".join(rows) + "\n")


def _assert_blocks_read_as_whole(path: Path, check: str, size: str, value: int) -> None:
    """``path`` read in blocks of ``value`` (``lrfind.io.<size>``) gives what it gives read whole
    (``lrfind.io.<check>``, which decides whether a file can be read in blocks, made to say no):
    the same sweeps, names and rejections."""
    saved = getattr(lrfind.io, size), getattr(lrfind.io, check)
    try:
        setattr(lrfind.io, check, lambda *args: False)
        whole = read_sweeps([path])
        setattr(lrfind.io, check, saved[1])
        setattr(lrfind.io, size, value)
        got = lrfind.io._merge(list(iter_sweeps([path], batch_size=2)))
    finally:
        setattr(lrfind.io, size, saved[0])
        setattr(lrfind.io, check, saved[1])
    assert got.names == whole.names and got.rejected == whole.rejected
    np.testing.assert_array_equal(got.offsets, whole.offsets)
    np.testing.assert_array_equal(got.lrs, whole.lrs)
    np.testing.assert_array_equal(got.losses, whole.losses)


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c", "run 4"]), st.integers(0, 7)), max_size=12),
    st.integers(1, 300),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_csv_read_in_blocks_gives_what_a_whole_read_gives(tmp_path_factory, runs, block, quote) -> None:
    """A long-format CSV file is read in blocks of ``CSV_BLOCK`` bytes when its runs' rows are
    contiguous and nothing is quoted (else whole): the sweeps, names and rejections are the
    same whatever the block size, runs spanning blocks included."""
    path = tmp_path_factory.mktemp("csv") / "log.csv"
    _long_csv(path, runs, quote)
    _assert_blocks_read_as_whole(path, "_in_blocks", "CSV_BLOCK", block)


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", None, "run 4"]), st.integers(0, 7)), max_size=12),
    st.integers(1, 6),
    st.sampled_from([pa.string(), pa.dictionary(pa.int32(), pa.string()), pa.large_string()]),
)
@settings(max_examples=150, deadline=None)
def test_long_parquet_read_in_record_batches_gives_what_a_whole_read_gives(tmp_path_factory, runs, rows, kind) -> None:
    """A long-format Parquet file is read in record batches of ``PARQUET_LONG_ROWS`` rows when
    each run's rows are together (else whole): the same sweeps, names (a null run too) and
    rejections whatever the batch size, runs spanning batches included."""
    path = tmp_path_factory.mktemp("parquet") / "log.parquet"
    names, lrs, losses = [], [], []
    for k, (name, count) in enumerate(runs):
        names += [name] * count
        lrs += [10.0 ** (i - 6 + k / 100) for i in range(count)]
        losses += [1.0 / (i + 1) + k for i in range(count)]
    table = pa.table({"run": pa.array(names, pa.string()).cast(kind), "lr": lrs, "loss": losses})
    pq.write_table(table, path, row_group_size=7)
    _assert_blocks_read_as_whole(path, "_parquet_together", "PARQUET_LONG_ROWS", rows)


def test_long_parquet_in_record_batches_only_when_runs_are_together(tmp_path: Path) -> None:
    import pyarrow.compute as pc

    path = tmp_path / "log.parquet"
    for names, together in [(["a", "a", "b", None, None], True), (["a", "b", "a"], False)]:
        pq.write_table(pa.table({"run": names, "lr": [1e-3] * len(names), "loss": [1.0] * len(names)}), path)
        assert lrfind.io._parquet_together(pq.ParquetFile(path), "run", pa, pc) is together


def test_csv_in_blocks_only_when_runs_are_contiguous_and_unquoted(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    for runs, quote, blocks in [
        ([("a", 3), ("b", 2), ("c", 4)], False, True),
        ([("a", 3), ("b", 2), ("a", 4)], False, False),  # a's rows come back: read whole
        ([("a", 3), ("b", 2), ("c", 4)], True, False),  # a quoted line break could straddle blocks
    ]:
        _long_csv(path, runs, quote)
        assert lrfind.io._in_blocks(str(path), 0) is blocks


def test_csv_single_sweep(tmp_path: Path) -> None:
    lrs, losses = ragged(2)
    path = tmp_path / "one.csv"
    path.write_text(
        "lr,loss\n" + "".join(f"{a!r},{b!r}\n" for a, b in zip(lrs[1].tolist(), losses[1].tolist(), strict=True))
    )
    s = read_sweeps([str(path)])
    assert s.names == ["one"] and s.rejected == []
    assert_sweeps(s, lrs[1:], losses[1:])


def test_json_history_list_dict_and_jsonl(tmp_path: Path) -> None:
    lrs, losses = ragged(3)
    hist = [{"lr": a.tolist(), "loss": b.tolist()} for a, b in zip(lrs, losses, strict=True)]
    (tmp_path / "one.json").write_text(json.dumps(hist[0]))
    (tmp_path / "list.json").write_text(json.dumps(hist))
    (tmp_path / "named.json").write_text(json.dumps({"a": hist[0], "b": hist[1]}))
    (tmp_path / "lines.jsonl").write_text(json.dumps({**hist[2], "name": "x"}) + "\n\n" + json.dumps(hist[0]) + "\n")
    s = read_sweeps([tmp_path], history_smoothing=0)  # raw losses: the layouts are what is tested here
    assert s.rejected == [] and s.files_read == 4
    assert s.names == ["lines/x", "lines/3", "list/0", "list/1", "list/2", "named/a", "named/b", "one"]
    assert_sweeps(
        s, [lrs[2], lrs[0], *lrs, lrs[0], lrs[1], lrs[0]], [losses[2], losses[0], *losses, *losses[:2], losses[0]]
    )


def test_npz_with_and_without_offsets(tmp_path: Path) -> None:
    lrs, losses = ragged(4)
    offsets = np.cumsum([0] + [len(x) for x in lrs])
    np.savez(tmp_path / "many.npz", lrs=np.concatenate(lrs), losses=np.concatenate(losses), offsets=offsets)
    np.savez_compressed(tmp_path / "named.npz", lrs=np.concatenate(lrs[:2]), losses=np.concatenate(losses[:2]),
                        offsets=offsets[:3], names=np.array(["a", "b"]))  # fmt: skip
    np.savez(tmp_path / "one.npz", lrs=lrs[0].astype(np.float32), losses=losses[0])
    s = read_sweeps([tmp_path / "many.npz", tmp_path / "named.npz", tmp_path / "one.npz"])
    assert s.rejected == []
    assert s.names == ["many/0", "many/1", "many/2", "many/3", "named/a", "named/b", "one"]
    assert_sweeps(s, [*lrs, *lrs[:2], lrs[0].astype(np.float32)], [*losses, *losses[:2], losses[0]])


def test_parquet_long_and_lists(tmp_path: Path) -> None:
    lrs, losses = ragged(3)
    run = np.repeat([7, 3, 5], [len(x) for x in lrs])
    pq.write_table(
        pa.table({"run": run, "lr": np.concatenate(lrs), "loss": np.concatenate(losses)}), tmp_path / "l.parquet"
    )
    lists = pa.table({"name": ["a", "b", "c"], "LR": [x.tolist() for x in lrs], "loss": [x.tolist() for x in losses]})
    pq.write_table(lists, tmp_path / "w.parquet", row_group_size=2)  # two chunks
    s = read_sweeps([tmp_path / "*.parquet"])
    assert s.rejected == []
    assert s.names == ["l/7", "l/3", "l/5", "w/a", "w/b", "w/c"]
    assert_sweeps(s, lrs + lrs, losses + losses)


def test_range_test_result_and_parallel_result_files(tmp_path: Path) -> None:
    finder = lrfind.LearningRateFinder(num_steps=30)
    result = finder.range_test(lambda lr: 1.0 / (1.0 + lr) if lr < 1.0 else math.inf)
    assert result.explosion_lr is not None  # the saved file keeps the explosion point last
    result.save(tmp_path / "single.json")
    doc = {"format": "lrfind.ParallelResult", "version": 1, "seeds": [4, 9], "runs": [result.to_dict()] * 2}
    (tmp_path / "par.json").write_text(json.dumps(doc))
    s = read_sweeps([tmp_path / "single.json", tmp_path / "par.json"])
    assert s.rejected == []
    assert s.names == ["single", "par/seed4", "par/seed9"]
    want_lrs = np.append(result.lrs, result.explosion_lr)
    want_losses = np.append(result.losses, result.explosion_loss)
    assert_sweeps(s, [want_lrs] * 3, [want_losses] * 3)
    assert math.isinf(s.losses[s.offsets[1] - 1])


def test_torch_lr_finder_history_is_read_as_its_raw_losses(tmp_path: Path) -> None:
    """The real torch-lr-finder records its EMA (smooth_f 0.05) of the losses; reading its
    history undoes that EMA, exactly: the losses read are those its criterion returned."""
    torch = pytest.importorskip("torch")
    from torch_lr_finder import LRFinder

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-7)
    raw: list[float] = []

    def criterion(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(outputs, targets)
        raw.append(loss.item())
        return loss

    finder = LRFinder(model, optimizer, criterion)
    finder.range_test(torch.utils.data.DataLoader(data, batch_size=8), end_lr=10, num_iter=20, diverge_th=1e9)
    (tmp_path / "tlf.json").write_text(json.dumps(finder.history))
    s = read_sweeps([tmp_path / "tlf.json"])
    assert s.rejected == [] and s.names == ["tlf"]
    np.testing.assert_array_equal(s.sweep(0)[0], finder.history["lr"])
    np.testing.assert_allclose(s.sweep(0)[1], raw, rtol=1e-9)
    assert not np.allclose(finder.history["loss"], raw, rtol=1e-3)  # the history really is smoothed
    # history_smoothing=0 reads a history as it is (raw losses, or Lightning's results).
    as_is = read_sweeps([tmp_path / "tlf.json"], history_smoothing=0)
    np.testing.assert_array_equal(as_is.sweep(0)[1], finder.history["loss"])


def test_a_history_of_raw_losses_is_rejected_with_the_fix(tmp_path: Path) -> None:
    """Non-negative losses un-smoothed into a negative one were never smoothed that way."""
    (tmp_path / "mine.json").write_text(json.dumps({"lr": [1e-3, 1e-2, 1e-1], "loss": [2.0, 1.0, 0.9]}))
    s = read_sweeps([tmp_path / "mine.json"])
    assert len(s) == 0 and s.rejected[0].source == str(tmp_path / "mine.json")
    assert "gives a negative loss at point 1" in s.rejected[0].reason
    assert "history_smoothing=0" in s.rejected[0].reason
    assert read_sweeps([tmp_path / "mine.json"], history_smoothing=0).sweep(0)[1].tolist() == [2.0, 1.0, 0.9]
    # Histories of negative losses (log-likelihoods) are un-smoothed without that check.
    (tmp_path / "nll.json").write_text(json.dumps({"lr": [1e-3, 1e-2], "loss": [-1.0, -2.0]}))
    assert read_sweeps([tmp_path / "nll.json"]).sweep(0)[1].tolist() == pytest.approx([-1.0, -21.0])


@pytest.mark.parametrize("weight", [-0.1, 1.0, "0.05"])
def test_history_smoothing_is_checked(weight: object) -> None:
    with pytest.raises(TypeError if isinstance(weight, str) else ValueError, match="history_smoothing must be"):
        read_sweeps([], history_smoothing=weight)  # type: ignore[arg-type]


def test_output_goes_straight_into_analyze_batch(tmp_path: Path) -> None:
    lrs = np.geomspace(1e-6, 1.0, 60)
    losses = 2.0 - np.tanh(np.log10(lrs) + 4) + np.where(lrs > 0.1, 100 * lrs, 0)
    np.savez(tmp_path / "a.npz", lrs=np.tile(lrs, 3), losses=np.tile(losses, 3), offsets=np.arange(4) * 60)
    s = read_sweeps([tmp_path])
    batch = lrfind.analyze_batch(s.lrs, s.losses, s.offsets)
    single = lrfind.analyze(lrs, losses)
    assert len(batch) == 3
    np.testing.assert_array_equal(batch.stop_index, [single.stop_index] * 3)


# --- paths ---------------------------------------------------------------------------------------


def test_directories_recursive_sorted_and_globs(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    sweep = {"lr": [1e-3, 1e-2], "loss": [1.0, 1.0]}
    for rel in ("b.json", "sub/a.json", "sub/deep/c.json", "sub/deep/a.json"):
        (tmp_path / rel).write_text(json.dumps(sweep))
    (tmp_path / "notes.txt").write_text("ignored: not a sweep extension")
    s = read_sweeps([tmp_path])
    assert s.files_read == 4 and s.rejected == []
    assert s.sources == sorted(
        str(tmp_path / p) for p in ("b.json", "sub/a.json", "sub/deep/c.json", "sub/deep/a.json")
    )
    assert s.names == ["b", "a", "a#2", "c"]  # same stems made unique
    g = read_sweeps([str(tmp_path / "**" / "a.json"), tmp_path / "sub" / "a.json"])  # a file named twice is read once
    assert g.files_read == 2 and len(g) == 2


def test_missing_path_and_unknown_extension(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps({"lr": [1.0], "loss": [2.0]}))
    (tmp_path / "x.txt").write_text("lr,loss\n1,2\n")
    s = read_sweeps([tmp_path / "nope.csv", str(tmp_path / "none*.json"), tmp_path / "x.txt", tmp_path / "good.json"])
    assert s.rejected[:2] == [
        Rejected(str(tmp_path / "nope.csv"), "no such file or directory"),
        Rejected(str(tmp_path / "none*.json"), "no such file or directory"),
    ]
    assert s.rejected[2].source == str(tmp_path / "x.txt") and "unknown extension '.txt'" in s.rejected[2].reason
    assert s.names == ["good"] and s.files_read == 1


def test_symlink_loop_says_so(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    loops = [tmp_path / "loop.json", tmp_path / "sub" / "loop.csv"]
    for loop in loops:
        os.symlink(loop, loop)
    (tmp_path / "sub" / "good.json").write_text(json.dumps(GOOD))
    s = read_sweeps([loops[0], tmp_path / "sub"])  # named, and found in a directory
    assert s.rejected == [Rejected(str(loop), os.strerror(errno.ELOOP)) for loop in loops]
    assert s.names == ["good"]


def test_fifo_is_rejected_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.csv")  # opening it would wait for a writer forever
    s = read_sweeps([tmp_path, tmp_path / "pipe.csv"])
    assert s.rejected == [Rejected(str(tmp_path / "pipe.csv"), "not a regular file")] and s.files_read == 0


def test_directory_with_nothing_to_read(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("not a sweep")
    s = read_sweeps([tmp_path / "empty", str(tmp_path / "*")])  # a glob's directories are not reported
    assert s.rejected == [
        Rejected(str(tmp_path / "empty"), "no .csv, .json, .jsonl, .npz, .parquet file in this directory or below it")
    ]


_DROP = "-dac_read_search,-dac_override"


def read_without_privileges(paths: list[Path | str]) -> tuple[list[str], list[Rejected]]:
    """read_sweeps(paths)'s names and rejections with file permissions in force: in this process,
    or, as root (whom chmod does not stop), in a child without the capabilities that bypass them."""
    if os.geteuid() != 0:
        s = read_sweeps(paths)
        return s.names, s.rejected
    setpriv = shutil.which("setpriv")
    drop = [f"--bounding-set={_DROP}", f"--inh-caps={_DROP}"]
    if setpriv is None or subprocess.run([setpriv, *drop, "true"], capture_output=True).returncode:
        pytest.skip("root, and cannot drop CAP_DAC_READ_SEARCH/CAP_DAC_OVERRIDE with setpriv")
    code = (
        "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); from lrfind.io import read_sweeps; "
        "s = read_sweeps(sys.argv[2:]); print(json.dumps([s.names, [[r.source, r.reason] for r in s.rejected]]))"
    )
    args = [setpriv, *drop, sys.executable, "-c", code, json.dumps(sys.path), *map(str, paths)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names, rejected = json.loads(done.stdout)
    return names, [Rejected(*r) for r in rejected]


def test_unreadable_paths_are_rejected_with_the_os_reason(tmp_path: Path) -> None:
    locked, closed = tmp_path / "locked", tmp_path / "closed"  # no permissions; listable but not traversable
    for folder in (locked, closed):
        folder.mkdir()
        (folder / "a.json").write_text(json.dumps(GOOD))
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    secret = tmp_path / "secret.csv"  # listed, but cannot be opened
    secret.write_text("lr,loss\n1e-3,1\n")
    try:
        locked.chmod(0)
        closed.chmod(0o600)
        secret.chmod(0)
        paths = [tmp_path / "good.json", locked, closed / "a.json", closed, str(locked / "*.json"), secret]
        names, rejected = read_without_privileges(paths)
    finally:
        locked.chmod(0o700)
        closed.chmod(0o700)
        secret.chmod(0o600)
    denied = os.strerror(errno.EACCES)
    assert names == ["good"]
    assert rejected == [
        Rejected(str(locked), f"cannot list the directory: {denied}"),
        Rejected(str(closed / "a.json"), denied),  # once: the directory lists it again
        Rejected(str(locked / "*.json"), denied),
        Rejected(str(secret), f"not a readable CSV file: {denied}"),
    ]


def test_nothing_to_read() -> None:
    s = read_sweeps([])
    assert len(s) == 0 and list(s.offsets) == [0] and s.files_read == 0 and s.rejected == []


# --- bad data: each reported with its file, the good files still read ----------------------------


GOOD = {"lr": [1e-3, 1e-2, 1e-1], "loss": [1.0, 1.0, "NaN"]}  # a constant is its own EMA


def read_with_good(tmp_path: Path, name: str, content: str | bytes) -> Sweeps:
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    bad = tmp_path / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    s = read_sweeps([tmp_path / "good.json", bad])
    assert s.names[0] == "good", s.rejected
    assert s.files_read == 2
    np.testing.assert_array_equal(s.sweep(0)[1], [1.0, 1.0, np.nan])
    return s


@pytest.mark.parametrize(
    ("name", "content", "where", "words"),
    [
        ("t.json", '{"lr": [1e-3, 1e-2], "loss": [1.0,', "", "not a readable JSON"),
        ("nan.json", '{"lr": [1e-3, NaN], "loss": [1.0, 2.0]}', "", "lr at point 1 is nan,"),
        ("down.json", '{"lr": [1e-3, 1e-2, 1e-2], "loss": [1, 2, 3]}', "", "not strictly increasing: point 2"),
        ("neg.json", '{"lr": [-1e-3, 1e-2], "loss": [1, 2]}', "", "not a finite positive"),
        ("len.json", '{"lr": [1e-3, 1e-2], "loss": [1]}', "", "2 values in 'lr' but 1 in 'loss'"),
        ("key.json", '{"lr": [1e-3], "losses": [1]}', "", "not a sweep"),
        ("str.json", '{"lr": [1e-3, "big"], "loss": [1, 2]}', "[lr]", "value 1 is 'big'"),
        ("fmt.json", '{"format": "lrfind.RangeTestResult", "version": 2}', "", "version 2"),
        ("empty.json", '{"lr": [], "loss": []}', "", "no points"),
        ("list.json", '[{"lr": [1e-3], "loss": [1]}, {"lr": [2, 1], "loss": [1, 2]}]', " run 1", "increasing"),
        ("dict.json", '{"a": {"lr": [1e-3], "loss": [1]}, "b": {"lr": 3, "loss": [1]}}', "[b][lr]", "expected a list"),
        ("par.json", '{"format": "lrfind.ParallelResult", "version": 1, "runs": 3}', "[runs]", "list of runs"),
        ("bad.jsonl", '{"lr": [1e-3], "loss": [1]}\n{"lr": [1e-3], "loss"\n', ":2", "not JSON"),
        ("arr.jsonl", "[1, 2]\n", ":1", "not an object"),
        (
            "u.jsonl",
            b'{"lr": [1e-3], "loss": [1]}\n{"name": "caf\xe9", "lr": [1e-3], "loss": [1]}\n',
            ":2",
            "not UTF-8 text (byte 0xe9, byte 14 of the line: invalid continuation byte)",
        ),
        ("h.csv", "learning_rate,loss\n1e-3,1\n", "", "lacks column lr"),
        ("e.csv", "", "", "lacks column lr and loss"),
        ("n.csv", "lr,loss\n1e-3,1\nnan,2\n", "", "lr at point 1 is nan,"),
        ("d.csv", "run,lr,loss\na,1e-3,1\nb,1e-3,1\na,1e-4,2\n", " run a", "not strictly increasing"),
        ("x.csv", "lr,loss\n1e-3,1\n\n2e-3,2\nabc,2\n", "", "line 5: could not convert 'abc' to float (column lr)"),
        ("s.csv", "lr,loss\n1e-3,1\n2e-3\n", "", "malformed CSV: line 3: 1 value(s), none for column loss"),
        (
            "q.csv",
            'run,LR,loss\r\n"a\nb",1e-3,1\r\n\r\nc,2e-3,\r\n',
            "",
            "line 5: could not convert '' to float (column loss)",
        ),
        ("u.csv", b"lr,loss\n1e-3,1\n2e-3,\xff\n", "", "line 3: not UTF-8 text (byte 0xff"),
        ("no.jsonl", "\n\n", "", "holds no sweep"),
        (
            "huge.json",
            '{"lr": [1e-3, 1%s], "loss": [1, 2]}' % ("0" * 400),
            "[lr]",
            "value 1 is an integer of 401 digits",
        ),
        (
            "huge.jsonl",
            '{"lr": [1e-3], "loss": [1]}\n{"lr": [-1%s], "loss": [1]}\n' % ("0" * 400),
            ":2[lr]",
            "too large",
        ),
        ("deep.json", "[" * 5000 + "]" * 5000, "", "not a readable JSON file: nested too deeply to parse"),
        ("deep.jsonl", '{"lr": [1e-3], "loss": [1]}\n' + "[" * 5000 + "]" * 5000, ":2", "not JSON: nested too deeply"),
        (
            "deep_lr.json",
            '{"lr": [1e-3, %s], "loss": [1, 2]}' % ("[" * 500 + "]" * 500),
            "[lr]",
            "value 1 is a JSON list",
        ),
        ("nest.json", "[" * 150 + json.dumps(GOOD) + "]" * 150, "[0]" * (MAX_DEPTH + 1), "nested deeper than 100"),
        ("t.npz", b"PK\x03\x04 truncated", "", "not a readable NPZ"),
        ("p.parquet", b"PAR1 truncated", "", "not a readable Parquet"),
    ],
)
def test_malformed_file_is_rejected_with_where_and_why(
    tmp_path: Path, name: str, content: str, where: str, words: str
) -> None:
    s = read_with_good(tmp_path, name, content)
    assert [r.source for r in s.rejected] == [str(tmp_path / name) + where]
    assert words in s.rejected[0].reason


def test_json_nested_up_to_max_depth_is_read(tmp_path: Path) -> None:
    doc: object = GOOD
    names: list[str] = []
    for level in range(MAX_DEPTH):  # dicts of sweeps and ParallelResults, alternately
        doc = {"format": "lrfind.ParallelResult", "seeds": [7], "runs": [doc]} if level % 2 else {"k": doc}
        names.insert(0, "seed7" if level % 2 else "k")
    (tmp_path / "deep.json").write_text(json.dumps(doc))
    s = read_sweeps([tmp_path / "deep.json"])
    assert s.rejected == [] and s.names == ["deep/" + "/".join(names)]


def test_an_integer_of_thousands_of_digits_reads_as_infinite(tmp_path: Path) -> None:
    """Past Python's int parsing limit (4300 digits) json.loads raises; as a float such a loss is
    what 1e5000 reads as: inf (the curve stops there)."""
    (tmp_path / "big.json").write_text('{"lr": [0.001, 0.01, 0.1], "loss": [1, ' + "9" * 5000 + ", 2]}")
    s = read_sweeps([tmp_path / "big.json"], history_smoothing=0)
    assert s.rejected == [] and s.sweep(0)[1].tolist() == [1.0, math.inf, 2.0]


def test_list_rejects_one_sweep_keeps_the_other(tmp_path: Path) -> None:
    (tmp_path / "l.json").write_text(json.dumps([GOOD, {"lr": [2, 1], "loss": [1, 2]}, GOOD]))
    s = read_sweeps([tmp_path / "l.json"])
    assert s.names == ["l/0", "l/2"] and sources(s) == [f"{tmp_path / 'l.json'} run 1"]
    assert list(s.offsets) == [0, 3, 6]


def npz(tmp_path: Path, name: str = "b.npz", **arrays: object) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("offsets", "words"),
    [
        ([0, 2, 1, 4], "decrease at index 2"),
        ([0, 2, 5], "must run from 0 to 4"),
        ([1, 4], "must run from 0 to 4"),
        ([0.0, 4.0], "integer"),
        (np.array([0, 2**64 - 1, 4], np.uint64), "must be below 2**63, got 18446744073709551615"),
        ([[0, 4]], "1-D"),
    ],
)
def test_npz_bad_offsets(tmp_path: Path, offsets: list[float], words: str) -> None:
    lrs = np.array([1e-3, 1e-2, 1e-3, 1e-2])
    path = npz(tmp_path, lrs=lrs, losses=lrs, offsets=np.array(offsets))
    s = read_sweeps([path])
    assert sources(s) == [f"{path}[offsets]"] and words in s.rejected[0].reason and len(s) == 0


def test_npz_bad_keys_and_lengths(tmp_path: Path) -> None:
    lrs = np.array([1e-3, 1e-2])
    paths = [
        npz(tmp_path, "a.npz", lrs=lrs),
        npz(tmp_path, "b.npz", lrs=lrs, losses=lrs[:1]),
        npz(tmp_path, "c.npz", lrs=lrs, losses=lrs, offsets=np.array([0, 1, 2]), names=np.array(["x"])),
        npz(tmp_path, "d.npz", lrs=np.array(["a", "b"]), losses=lrs),
    ]
    np.save(tmp_path / "e.npy", lrs)
    (tmp_path / "e.npy").rename(tmp_path / "e.npz")
    s = read_sweeps([*paths, tmp_path / "e.npz"])
    assert sources(s) == [
        f"{paths[0]}[losses]",
        str(paths[1]),
        f"{paths[2]}[names]",
        f"{paths[3]}[lrs]",
        str(tmp_path / "e.npz"),
    ]
    assert "1 losses" in s.rejected[1].reason and "a single array" in s.rejected[4].reason


def test_npz_rejects_bad_sweeps_by_segment(tmp_path: Path) -> None:
    good = np.geomspace(1e-5, 1.0, 5)
    bad_nan, bad_down = good.copy(), good[::-1].copy()
    bad_nan[2] = np.nan
    sweeps = [good, bad_nan, good, bad_down, np.empty(0), good]
    offsets = np.cumsum([0] + [len(x) for x in sweeps])
    path = npz(tmp_path, lrs=np.concatenate(sweeps), losses=np.concatenate(sweeps) * 2, offsets=offsets)
    s = read_sweeps([path])
    assert s.names == ["b/0", "b/2", "b/5"]
    assert sources(s) == [f"{path} run 1", f"{path} run 3", f"{path} run 4"]
    assert [r.reason.split(":")[0].split(" is")[0] for r in s.rejected] == [
        "lr at point 2",
        "lrs not strictly increasing",
        "no points",
    ]
    assert_sweeps(s, [good] * 3, [good * 2] * 3)


@pytest.mark.parametrize("kind", ["npz", "json", "jsonl", "parquet"])
def test_an_empty_last_sweep_is_rejected_and_the_others_kept(tmp_path: Path, kind: str) -> None:
    """An empty sweep at the very end starts past the buffers' last step (it crashed the count)."""
    good, flat = np.geomspace(1e-5, 1.0, 5), np.ones(5)  # a constant is its own EMA (JSON histories)
    path = tmp_path / f"e.{kind}"
    runs = [{"lr": good.tolist(), "loss": flat.tolist()}, {"lr": [], "loss": []}]
    if kind == "npz":
        np.savez(path, lrs=good, losses=flat, offsets=np.array([0, 5, 5]))
    elif kind == "json":
        path.write_text(json.dumps(runs))
    elif kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    else:
        pq.write_table(pa.table({"lr": [r["lr"] for r in runs], "loss": [r["loss"] for r in runs]}), path)
    s = read_sweeps([path])
    assert len(s) == 1 and [r.reason for r in s.rejected] == ["no points"]
    assert_sweeps(s, [good], [flat])


def test_parquet_bad_rows_and_columns(tmp_path: Path) -> None:
    t = pa.table(
        {"run": ["a", "b", "c"], "lr": [[1e-3, 1e-2], [1e-3], [1e-3, 1e-3]], "loss": [[1.0, 2.0], [], [1.0, 2.0]]}
    )
    pq.write_table(t, tmp_path / "rows.parquet")
    pq.write_table(pa.table({"lr": [1.0], "value": [2.0]}), tmp_path / "cols.parquet")
    pq.write_table(pa.table({"lr": [[1.0]], "loss": [2.0]}), tmp_path / "mixed.parquet")
    s = read_sweeps([tmp_path / "rows.parquet", tmp_path / "cols.parquet", tmp_path / "mixed.parquet"])
    rows = tmp_path / "rows.parquet"
    assert s.names == ["rows/a"]
    assert sources(s) == [
        f"{rows} run b",
        f"{rows} run c",
        str(tmp_path / "cols.parquet"),
        str(tmp_path / "mixed.parquet"),
    ]
    assert "1 lrs but 0 losses" in s.rejected[0].reason and "lack column loss" in s.rejected[2].reason


# --- scale ----------------------------------------------------------------------------------------


def test_large_npz_and_parquet_keep_the_good_sweeps(tmp_path: Path) -> None:
    n, length = 100_000, 80
    lrs = np.tile(np.geomspace(1e-7, 10.0, length), n)
    losses = RNG.normal(size=n * length)
    lrs[5 * length + 3] = np.nan  # one bad sweep among them
    offsets = np.arange(n + 1, dtype=np.int64) * length
    np.savez(tmp_path / "big.npz", lrs=lrs, losses=losses, offsets=offsets)
    run = np.repeat(np.arange(n), length)
    pq.write_table(pa.table({"run": run, "lr": lrs, "loss": losses}), tmp_path / "big.parquet")
    for name in ("big.npz", "big.parquet"):
        s = read_sweeps([tmp_path / name])  # speed is measured in benches/, not asserted here
        assert len(s) == n - 1 and len(s.lrs) == (n - 1) * length
        assert sources(s) == [f"{tmp_path / name} run 5"]


# --- streaming: iter_sweeps --------------------------------------------------------------------


def test_iter_sweeps_gives_read_sweeps_in_pieces(tmp_path: Path) -> None:
    """Pieces of at most batch_size sweeps (whole sweeps), which together are read_sweeps."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    lrs, losses = ragged(23)
    np.savez(tmp_path / "a.npz", lrs=np.concatenate(lrs[:9]), losses=np.concatenate(losses[:9]),
             offsets=np.cumsum([0, *map(len, lrs[:9])]))  # fmt: skip
    pq.write_table(
        pa.table({"name": [f"r{i}" for i in range(9, 20)], "lr": [x.tolist() for x in lrs[9:20]],
                  "loss": [y.tolist() for y in losses[9:20]]}),
        tmp_path / "b.parquet", row_group_size=4,
    )  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps([{"lr": a.tolist(), "loss": [1.0] * len(a)} for a in lrs[20:]]))
    (tmp_path / "bad.csv").write_text("lr,loss\n1e-3,1\n1e-4,2\n")  # LRs going down: rejected
    whole = read_sweeps([tmp_path])
    pieces = list(iter_sweeps([tmp_path], batch_size=4))
    assert all(len(p) <= 4 for p in pieces) and max(len(p) for p in pieces) == 4  # JSON too, read whole
    assert len(pieces) >= 4
    assert [n for p in pieces for n in p.names] == whole.names
    assert [s for p in pieces for s in p.sources] == whole.sources
    assert [r for p in pieces for r in p.rejected] == whole.rejected and len(whole.rejected) == 1
    assert sum(p.files_read for p in pieces) == whole.files_read == 4
    np.testing.assert_array_equal(np.concatenate([p.lrs for p in pieces]), whole.lrs)
    np.testing.assert_array_equal(np.concatenate([p.losses for p in pieces]), whole.losses)
    for p in pieces:
        assert p.offsets[0] == 0 and p.offsets[-1] == len(p.lrs)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        next(iter_sweeps([tmp_path], batch_size=0))


def test_json_lines_are_read_in_pieces(tmp_path: Path) -> None:
    """A JSON Lines log is read line by line: pieces of at most batch_size sweeps (a line of a
    parallel result brings several), with its bad lines rejected where they are; together what
    read_sweeps gives."""
    lrs, losses = ragged(12)
    lines = [
        json.dumps({"name": f"s{i}", "lr": a.tolist(), "loss": b.tolist()})
        for i, (a, b) in enumerate(zip(lrs, losses, strict=True))
    ]
    lines[3] = "{not json"
    lines.insert(7, "")
    runs = [{"lr": lrs[0].tolist(), "loss": losses[0].tolist()}] * 2
    lines.insert(9, json.dumps({"format": "lrfind.ParallelResult", "runs": runs, "seeds": [4, 5]}))
    (tmp_path / "log.jsonl").write_text("\n".join(lines) + "\n")
    whole = read_sweeps([tmp_path / "log.jsonl"], history_smoothing=0)
    pieces = list(iter_sweeps([tmp_path / "log.jsonl"], batch_size=3, history_smoothing=0))
    assert len(pieces) >= 4 and all(len(p) <= 3 for p in pieces)  # a line of two sweeps too
    assert [n for p in pieces for n in p.names] == whole.names and len(whole.names) == 13
    assert [r for p in pieces for r in p.rejected] == whole.rejected
    assert [r.source for r in whole.rejected] == [f"{tmp_path / 'log.jsonl'}:4"]
    np.testing.assert_array_equal(np.concatenate([p.losses for p in pieces]), whole.losses)


def test_pieces_are_bounded_by_points_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long sweeps make small pieces: at most PIECE_POINTS points (or one sweep), whatever
    batch_size says; together still read_sweeps."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    import lrfind.io

    lrs, losses = ragged(30)
    np.savez(tmp_path / "a.npz", lrs=np.concatenate(lrs[:15]), losses=np.concatenate(losses[:15]),
             offsets=np.cumsum([0, *map(len, lrs[:15])]))  # fmt: skip
    pq.write_table(pa.table({"lr": [x.tolist() for x in lrs[15:]], "loss": [y.tolist() for y in losses[15:]]}),
                   tmp_path / "b.parquet")  # fmt: skip
    whole = read_sweeps([tmp_path])
    limit = 3 * max(map(len, lrs))
    monkeypatch.setattr(lrfind.io, "PIECE_POINTS", limit)
    pieces = list(iter_sweeps([tmp_path], batch_size=1000))
    assert len(pieces) >= 6
    assert all(len(p.lrs) <= limit or len(p) == 1 for p in pieces)
    assert [n for p in pieces for n in p.names] == whole.names
    np.testing.assert_array_equal(np.concatenate([p.losses for p in pieces]), whole.losses)


def test_an_uncompressed_npz_is_mapped_and_its_crc_checked(tmp_path: Path) -> None:
    lrs, losses = ragged(6)
    path = tmp_path / "m.npz"
    np.savez(path, lrs=np.concatenate(lrs), losses=np.concatenate(losses), offsets=np.cumsum([0, *map(len, lrs)]))
    pieces = list(iter_sweeps([path], batch_size=2))
    assert [len(p) for p in pieces] == [2, 2, 2] and all(p.rejected == [] for p in pieces)
    # One byte of the losses flipped: the data still parses, and only the CRC can tell.
    data = bytearray(path.read_bytes())
    at = data.index(np.concatenate(losses).tobytes()[:8]) + 17
    data[at] ^= 0x40
    path.write_bytes(bytes(data))
    s = read_sweeps([path])
    assert s.rejected == [
        Rejected(f"{path}[losses]", "not a readable NPZ file: the data does not match its CRC (corrupt)")
    ]


# --- found by fuzzing ------------------------------------------------------------------------------


def test_parquet_columns_sharing_a_name_reject_their_file_only(tmp_path: Path) -> None:
    """Two columns of one name (legal in Parquet) are ambiguous: the file is rejected, saying so,
    and the other files are read; a repeated column that is not read does not matter."""
    lrs, losses = ragged(2)
    cases = {
        "lr": pa.Table.from_arrays([pa.array([lrs[1]]), pa.array([losses[1]]), pa.array([lrs[1]])],
                                   names=["lr", "loss", "lr"]),
        "run": pa.Table.from_arrays([pa.array(["a"] * len(lrs[1])), pa.array(["b"] * len(lrs[1])), pa.array(lrs[1]),
                                     pa.array(losses[1])], names=["run", "run", "lr", "loss"]),
        "name": pa.Table.from_arrays([pa.array(["a"]), pa.array(["b"]), pa.array([lrs[1]]), pa.array([losses[1]])],
                                     names=["name", "name", "lr", "loss"]),
    }  # fmt: skip
    for column, table in cases.items():
        pq.write_table(table, tmp_path / f"dup_{column}.parquet")
    unused = pa.Table.from_arrays([pa.array([lrs[0]]), pa.array([losses[0]]), pa.array([1]), pa.array([2])],
                                  names=["lr", "loss", "note", "note"])  # fmt: skip
    pq.write_table(unused, tmp_path / "notes.parquet")
    s = read_sweeps(sorted(tmp_path.iterdir()))
    assert s.names == ["notes/0"]
    assert_sweeps(s, [lrs[0]], [losses[0]])
    assert s.rejected == [
        Rejected(str(tmp_path / f"dup_{c}.parquet"), f"2 columns are named {c!r}: which one to read is ambiguous")
        for c in ("lr", "name", "run")
    ]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert lrfind.cli.main(["analyze", str(tmp_path)]) == 1
    assert "1 sweep(s) from 4 file(s); 3 input(s) rejected" in out.getvalue()


def test_fixed_size_list_columns_are_lists(tmp_path: Path) -> None:
    """What a 2-D array becomes in Arrow: read as the same sweeps as list columns."""
    lrs = [np.geomspace(1e-5, 1.0, 6) * k for k in (1, 2, 3)]
    losses = [RNG.normal(2.0, 0.3, 6) for _ in range(3)]
    for name, kind in [("fixed", pa.list_(pa.float64(), 6)), ("lists", pa.list_(pa.float64()))]:
        table = pa.table({"lr": pa.array(lrs, kind), "loss": pa.array(losses, kind)})
        pq.write_table(table, tmp_path / f"{name}.parquet")
    fixed, lists = read_sweeps([tmp_path / "fixed.parquet"]), read_sweeps([tmp_path / "lists.parquet"])
    assert fixed.rejected == [] and fixed.names == ["fixed/0", "fixed/1", "fixed/2"]
    assert_sweeps(fixed, lrs, losses)
    np.testing.assert_array_equal(fixed.offsets, lists.offsets)


def _csv_text(runs: list[tuple[str, np.ndarray, np.ndarray]], interleave: bool = False) -> list[str]:
    """``run,lr,loss`` lines: run by run, or dealt out round-robin (each run's rows in order)."""
    rows = [
        (k, f"{r},{a!r},{b!r}\n")
        for r, lrs, losses in runs
        for k, (a, b) in enumerate(zip(lrs.tolist(), losses.tolist(), strict=True))
    ]
    return [row for _, row in (sorted(rows, key=lambda kr: kr[0]) if interleave else rows)]


@pytest.mark.parametrize("layout", ["one sweep", "long, in blocks", "long, interleaved"])
def test_csv_blank_lines_anywhere_are_skipped(tmp_path: Path, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blank lines (empty, or spaces and tabs) before the header, between rows and at the end:
    the file reads as it does without them, its errors on the right file line."""
    lrs, losses = ragged(3)
    runs = [(f"r{i}", lrs[i], losses[i]) for i in range(3)]
    rows = _csv_text(runs, interleave=layout == "long, interleaved")
    if layout == "one sweep":
        rows, header = [row.split(",", 1)[1] for row in rows[: len(lrs[0])]], "lr,loss\n"
    else:
        header = "run,lr,loss\n"  # interleaved: runs' rows apart, read whole
    monkeypatch.setattr(lrfind.io, "CSV_BLOCK", 64)  # blocks of a few lines
    plain, blank = tmp_path / "plain.csv", tmp_path / "blank.csv"
    plain.write_text(header + "".join(rows))
    # Blank lines between runs: a file read in blocks stays one (runs together, not quoted).
    spaced = ["\n", " \t\n", *rows[:3], "   \n", *rows[3:], " \n", "\t\n"]
    blank.write_text("\n \n" + header + "".join(spaced))
    assert layout == "one sweep" or lrfind.io._in_blocks(str(blank), 0, 3) == (layout == "long, in blocks")
    want, got = read_sweeps([plain]), read_sweeps([blank])
    assert got.rejected == want.rejected == [] and len(got) == len(want) > 0
    assert [n.replace("blank", "plain") for n in got.names] == want.names
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.lrs, want.lrs)
    np.testing.assert_array_equal(got.losses, want.losses)
    # A bad value after the blank lines: the file line it is on (the header is line 3).
    bad = "abc,1\n" if layout == "one sweep" else "r0,abc,1\n"
    blank.write_text("\n \n" + header + "".join(spaced) + bad)
    line = 3 + len(spaced) + 1
    assert [r.reason for r in read_sweeps([blank]).rejected] == [
        f"malformed CSV: line {line}: could not convert 'abc' to float (column lr)"
    ]


def test_csv_error_on_a_line_longer_than_csvs_field_limit_names_the_line(tmp_path: Path) -> None:
    """A run name over Python csv's field limit (131,072 characters) still gets the file line."""
    name = "x" * 140_000
    path = tmp_path / "long.csv"
    path.write_text("run,lr,loss\n" + f"{name},1e-3,1\n{name},1e-2,2\n" + f"{name},abc,3\n")
    assert [r.reason for r in read_sweeps([path]).rejected] == [
        "malformed CSV: line 4: could not convert 'abc' to float (column lr)"
    ]


def test_a_bom_is_skipped_in_json_and_json_lines(tmp_path: Path) -> None:
    """As in CSV: a file an editor saved with a UTF-8 byte order mark reads as without it."""
    doc = json.dumps(GOOD)
    for name, text in [("a.json", doc), ("b.jsonl", f"{doc}\n{doc}\n")]:
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
        (tmp_path / f"plain_{name}").write_text(text)
    got = read_sweeps([tmp_path / "a.json", tmp_path / "b.jsonl"])
    want = read_sweeps([tmp_path / "plain_a.json", tmp_path / "plain_b.jsonl"])
    assert got.rejected == want.rejected == [] and got.names == ["a", "b/1", "b/2"]
    np.testing.assert_array_equal(got.losses, want.losses)


def test_a_file_bad_at_its_end_gives_no_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An NPZ whose CRC fails (found once its data is read), with or without offsets, and a CSV
    read in blocks whose last block is malformed: read_sweeps rejects the file and keeps none of
    its sweeps, as when it is read whole, and the good file's."""
    lrs, losses = ragged(3)
    np.savez(tmp_path / "single.npz", lrs=lrs[2], losses=losses[2])
    np.savez(tmp_path / "many.npz", lrs=np.concatenate(lrs), losses=np.concatenate(losses),
             offsets=np.cumsum([0, *map(len, lrs)]))  # fmt: skip
    for name in ("single.npz", "many.npz"):
        data = bytearray((tmp_path / name).read_bytes())
        data[data.index(losses[2][3].tobytes()) + 7] ^= 0x01  # a finite loss becomes another one
        (tmp_path / name).write_bytes(bytes(data))
        with pytest.raises(zipfile.BadZipFile, match="Bad CRC-32"):  # numpy's own reading
            np.load(tmp_path / name)["losses"]
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    for batch_size in (None, 1000):
        read = read_sweeps if batch_size is None else lambda p: lrfind.io._merge(list(iter_sweeps(p, batch_size=1000)))
        s = read([tmp_path / "good.json", tmp_path / "single.npz", tmp_path / "many.npz"])
        assert s.names == ["good"]
        assert s.rejected == [
            Rejected(f"{tmp_path / n}[losses]", "not a readable NPZ file: the data does not match its CRC (corrupt)")
            for n in ("single.npz", "many.npz")
        ]
    _long_csv(tmp_path / "log.csv", [("a", 5), ("b", 5), ("c", 5)])
    with (tmp_path / "log.csv").open("a") as f:
        f.write("c,abc,1\n")
    whole = read_sweeps([tmp_path / "log.csv"])
    monkeypatch.setattr(lrfind.io, "CSV_BLOCK", 100)
    assert lrfind.io._in_blocks(str(tmp_path / "log.csv"), 0)
    blocks = read_sweeps([tmp_path / "log.csv"])
    assert len(blocks) == len(whole) == 0 and blocks.rejected == whole.rejected
    assert whole.rejected[0].reason == "malformed CSV: line 17: could not convert 'abc' to float (column LR)"


def _pieces_hold(pieces: list[Sweeps], whole: Sweeps) -> None:
    """The pieces together are ``whole``."""
    assert [n for p in pieces for n in p.names] == whole.names
    assert [r for p in pieces for r in p.rejected] == whole.rejected
    np.testing.assert_array_equal(np.concatenate([p.lrs for p in pieces]), whole.lrs)
    np.testing.assert_array_equal(np.concatenate([p.losses for p in pieces]), whole.losses)
    for p in pieces:
        assert p.offsets[0] == 0 and p.offsets[-1] == len(p.lrs)


def test_batch_size_bounds_pieces_of_every_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long-format Parquet and CSV read in blocks, a long-format CSV read whole (runs
    interleaved) and a JSON document: pieces of at most batch_size sweeps, however many a
    block or a file holds; together what read_sweeps gives."""
    lrs, losses = ragged(10)
    runs = [(f"r{i}", lrs[i], losses[i]) for i in range(10)]
    names = np.concatenate([[r] * len(x) for r, x, _ in runs])
    pq.write_table(pa.table({"run": names, "lr": np.concatenate(lrs), "loss": np.concatenate(losses)}),
                   tmp_path / "a.parquet")  # fmt: skip
    (tmp_path / "b.csv").write_text("run,lr,loss\n" + "".join(_csv_text(runs)))
    (tmp_path / "c.csv").write_text("run,lr,loss\n" + "".join(_csv_text(runs, interleave=True)))
    (tmp_path / "d.json").write_text(json.dumps([{"lr": a.tolist(), "loss": [1.0] * len(a)} for a in lrs]))
    monkeypatch.setattr(lrfind.io, "PARQUET_LONG_ROWS", 30)
    for name in ("a.parquet", "b.csv", "c.csv", "d.json"):
        whole = read_sweeps([tmp_path / name])
        assert len(whole) == 10 and whole.rejected == []
        for batch_size in (1, 3, 4):
            pieces = list(iter_sweeps([tmp_path / name], batch_size=batch_size))
            assert [len(p) for p in pieces] == [batch_size] * (10 // batch_size) + [10 % batch_size] * (
                10 % batch_size > 0
            ), (name, batch_size)
            _pieces_hold(pieces, whole)


def test_list_parquet_pieces_stay_bounded_when_sweeps_grow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short sweeps first, then long ones: no piece holds more than PIECE_POINTS points (unless
    one sweep alone does), and together they are pyarrow's own reading of the file."""
    short, long = np.geomspace(1e-3, 1.0, 2), np.geomspace(1e-7, 10.0, 300)
    rows = [short] * 300 + [long] * 40 + [np.geomspace(1e-7, 10.0, 5000)]
    pq.write_table(pa.table({"lr": rows, "loss": [np.ones(len(r)) for r in rows]}), tmp_path / "s.parquet")
    monkeypatch.setattr(lrfind.io, "PIECE_POINTS", 2000)
    monkeypatch.setattr(lrfind.io, "PARQUET_LIST_ROWS", 16)
    pieces = list(iter_sweeps([tmp_path / "s.parquet"]))
    # The reader's record batches, which pieces are gathered from, are small too.
    assert max(len(b.runs) for b in lrfind.io._read_parquet(str(tmp_path / "s.parquet"), [], 1000)) == 16
    assert all(len(p.lrs) <= 2000 or len(p) == 1 for p in pieces) and len(pieces[-1].lrs) == 5000
    assert max(len(p.lrs) for p in pieces[:-1]) == 1800  # six sweeps of 300: full pieces
    table = pq.read_table(tmp_path / "s.parquet")
    np.testing.assert_array_equal(np.concatenate([p.lrs for p in pieces]), pa.compute.list_flatten(table["lr"]))
    assert [n for p in pieces for n in p.names] == [f"s/{i}" for i in range(len(rows))]


def test_a_history_with_bad_lrs_is_rejected_for_its_lrs(tmp_path):
    """Un-smoothing a torch-lr-finder history ran before the LR check, so decreasing LRs were
    rejected as "gives a negative loss ... read it with history_smoothing=0", a fix that fails."""
    (tmp_path / "broken.json").write_text('{"lr": [1e-3, 1e-4], "loss": [1.0, 0.9]}')
    for smoothing in (0.05, 0.0):
        (reject,) = read_sweeps([tmp_path], history_smoothing=smoothing).rejected
        assert reject.reason == "lrs not strictly increasing: point 1 is 0.0001 after 0.001"
