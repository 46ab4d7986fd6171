"""`lrfind analyze` on logged sweeps of any size: time and peak memory, streamed.

The data is Parquet as a logger writes it: files of up to 1,000,000 sweeps from `make_sweeps`
(60-100 points each, float64 list columns `name`, `lr`, `loss`, row groups of 65,536 sweeps,
about 1.3 GB per million sweeps), made once into ``$LRFIND_BENCH_DATA`` (default
``/tmp/lrfind-bench-data``): 100,000 sweeps in one file, 1,000,000 in one file, 10,000,000 in
ten files of a million (a directory of 13 GB).

The files are read through once, untimed, so that both sides start from the same page cache.
Each size runs in a fresh process, timed from outside, its peak RSS read from ``wait4``:

- `lrfind analyze DIR --format csv --out OUT` with the default methods (all seven);
- the baseline: pyarrow alone reading the same files (the same columns, record batch by record
  batch, as lrfind reads them) and writing a CSV of the report's shape (one row per sweep: the
  name, the file, the point count and 16 more columns of numbers and words) with
  ``pyarrow.csv``.

Then the directory's CSV is checked against the concatenation of per-file runs (every size
with more than one file). With benchmarks enabled, the sizes are ``$LRFIND_BENCH_STREAM``
(comma-separated, default ``100000,1000000``; add ``10000000`` for the 10M run, about 20
minutes with the data made); under plain ``pytest`` the module runs once on two files of 1,000
sweeps, as a test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from report import print_summary
from sweeps import make_sweeps

PER_FILE = 1_000_000
ROW_GROUP = 65_536
DATA = Path(os.environ.get("LRFIND_BENCH_DATA", "/tmp/lrfind-bench-data"))
LRFIND = [sys.executable, "-m", "lrfind"]

# pyarrow alone: read every record batch of the files, write one CSV row per sweep of the
# report's shape (3 + 16 columns). Arguments: OUT FILE...
BASELINE = r"""
import sys
import pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as csv, pyarrow.parquet as pq
out, writer = sys.argv[1], None
for path in sys.argv[2:]:
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    for rb in pf.iter_batches(batch_size=16384, columns=["name", "lr", "loss"]):
        n, first = rb.num_rows, pc.list_element(rb.column("lr"), 0)
        points = pc.list_value_length(rb.column("lr"))
        columns = {"name": rb.column("name"), "source": pa.array([path] * n), "points": points}
        columns |= {f"x{i}": first for i in range(13)}
        words = {"reason": ["threshold"] * n, "diagnosis": ["good"] * n, "gives": [True] * n}
        columns |= {k: pa.array(v) for k, v in words.items()}
        table = pa.table(columns)
        writer = writer or csv.CSVWriter(out, table.schema, write_options=csv.WriteOptions(quoting_style="needed"))
        writer.write_table(table)
writer.close()
"""


def _sizes(benchmark) -> list[int]:
    if benchmark.disabled:
        return [2_000]
    return [int(s) for s in os.environ.get("LRFIND_BENCH_STREAM", "100000,1000000").split(",")]


def _files(n: int, per_file: int, root: Path) -> list[Path]:
    """``n`` sweeps in files of ``per_file``, made once (the ``.done`` mark says a file is whole)."""
    folder = root / f"sweeps_{n}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f, start in enumerate(range(0, n, per_file)):
        path = folder / f"part{f:03d}.parquet"
        done = path.with_suffix(".done")
        if not done.exists():
            _write(path, start, min(per_file, n - start))
            done.touch()
        paths.append(path)
    return paths


def _write(path: Path, start: int, n: int) -> None:
    writer = None
    for first in range(start, start + n, 100_000):
        m = min(100_000, start + n - first)
        lrs, losses, offsets = make_sweeps(m, min_points=60, max_points=100, seed=first)
        o = pa.array(offsets.astype(np.int32))
        table = pa.table(
            {
                "name": [f"s{first + i}" for i in range(m)],
                "lr": pa.ListArray.from_arrays(o, pa.array(lrs)),
                "loss": pa.ListArray.from_arrays(o, pa.array(losses)),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=ROW_GROUP)
    writer.close()


def _measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of ``command`` in a fresh process."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        assert proc.returncode == 0, (command, errors.read().decode()[-2000:])
    return seconds, usage.ru_maxrss / 2**20


@pytest.fixture(scope="module")
def table(request):
    rows = []
    yield rows
    lines = [
        f"{n:>10,} sweeps: lrfind analyze {t:6.2f} s, {rss:4.2f} GiB peak | pyarrow read + CSV {bt:6.2f} s, "
        f"{brss:4.2f} GiB | ratio {t / bt:4.2f}x"
        for n, t, rss, bt, brss in rows
    ]
    print_summary(request, "lrfind analyze, streamed (best of N)", lines)


@pytest.mark.benchmark(group="analyze, streamed")
@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")  # timed from outside
def test_stream(benchmark, table, tmp_path):
    """Time and peak memory per size, side by side with the baseline, best of N rounds; the
    directory's CSV equals the concatenation of per-file runs."""
    for n in _sizes(benchmark):
        if benchmark.disabled:
            files = _files(n, n // 2, tmp_path)
        else:
            files = _files(n, PER_FILE, DATA)
        folder, out = files[0].parent, tmp_path / f"report_{n}.csv"
        rounds = 1 if benchmark.disabled or n >= 10_000_000 else 3
        _read_through(files)  # both sides then start from the same page cache
        ours = min(
            _measure([*LRFIND, "analyze", str(folder), "--format", "csv", "--out", str(out)]) for _ in range(rounds)
        )
        base = min(
            _measure([sys.executable, "-c", BASELINE, str(tmp_path / "baseline.csv"), *map(str, files)])
            for _ in range(rounds)
        )
        if benchmark.enabled:
            table.append((n, *ours, *base))
        if len(files) > 1:
            _check_concatenation(files, out, tmp_path)
        out.unlink()


def _read_through(files: list[Path]) -> None:
    """Read every byte of ``files`` once, untimed: otherwise the first command timed reads them
    from disk and the second from the page cache."""
    for path in files:
        with path.open("rb") as f:
            while f.read(1 << 24):
                pass


def _check_concatenation(files: list[Path], whole: Path, tmp_path: Path) -> None:
    """The directory's report is the per-file reports back to back (one header)."""
    with whole.open("rb") as got:
        header = got.readline()
        for path in files:
            part = tmp_path / "part.csv"
            subprocess.run([*LRFIND, "analyze", str(path), "--format", "csv", "--out", str(part)], check=True)
            with part.open("rb") as want:
                assert want.readline() == header
                for line in want:
                    assert got.readline() == line, path
            part.unlink()
        assert got.read() == b""
