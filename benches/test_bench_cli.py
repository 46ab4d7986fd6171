"""`lrfind analyze` end to end on one file of 100,000 sweeps (NPZ and Parquet), against pandas.

``lrfind analyze FILE --method steepest --format csv --out OUT`` reads the sweeps, analyses them
in one ``analyze_batch`` call and writes one CSV row per sweep. The phases are timed apart
(``read_sweeps``; ``analyze_batch``; the whole command, whose remainder is the CSV writing).
The baseline is what a user would write today: pandas reads the file, a ``groupby`` loop runs
the seed's pipeline with numpy on each sweep, and pandas writes the CSV. With benchmarks
enabled the module prints the split and the ratio; under plain ``pytest`` it runs once on 2,000
sweeps, as a test.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lrfind
from lrfind import cli
from lrfind.io import read_sweeps

from baselines import per_sweep_loop
from report import print_summary
from sweeps import make_sweeps

SWEEPS = (100_000, 2_000)  # (benchmarks enabled, disabled)


@pytest.fixture(scope="module")
def files(tmp_path_factory, request):
    """The same sweeps as one NPZ and one long-format Parquet file, per data size."""
    made = {}

    def get(n):
        if n not in made:
            lrs, losses, offsets = make_sweeps(n)
            d = tmp_path_factory.mktemp(f"sweeps{n}")
            np.savez(d / "sweeps.npz", lrs=lrs, losses=losses, offsets=offsets)
            run = np.repeat(np.arange(n), np.diff(offsets))
            pq.write_table(pa.table({"run": run, "lr": lrs, "loss": losses}), d / "sweeps.parquet")
            made[n] = d
        return made[n]

    return get


@pytest.fixture(scope="module")
def best(request):
    times = {}
    yield times
    lines = []
    for fmt in ("npz", "parquet"):
        if {f"cli-{fmt}", f"read-{fmt}", f"pandas-{fmt}"} <= times.keys():
            total, read = times[f"cli-{fmt}"], times[f"read-{fmt}"]
            analyse, pandas = times.get("analyze", float("nan")), times[f"pandas-{fmt}"]
            lines.append(
                f"{fmt}: total {total:.3f} s = read {read:.3f} s + analyse {analyse:.3f} s + write and the rest "
                f"{total - read - analyse:.3f} s; pandas + numpy loop {pandas:.2f} s ({pandas / total:.0f}x slower)"
            )
    print_summary(request, "lrfind analyze, 100,000 sweeps (best of N)", lines)


def _size(benchmark):
    return SWEEPS[benchmark.disabled]


def pandas_pipeline(path, out):
    df = pd.read_parquet(path) if path.suffix == ".parquet" else _npz_frame(path)
    rows = []
    for run, g in df.groupby("run", sort=False):
        lrs, losses = g["lr"].to_numpy(), g["loss"].to_numpy()
        stop, index, lr = per_sweep_loop(lrs, losses, np.array([0, len(lrs)], dtype=np.int64))
        rows.append((run, len(lrs), stop[0], index[0], lr[0]))
    pd.DataFrame(rows, columns=["run", "points", "stop_index", "index", "lr"]).to_csv(out, index=False)


def _npz_frame(path):
    z = np.load(path)
    return pd.DataFrame({"run": np.repeat(np.arange(len(z["offsets"]) - 1), np.diff(z["offsets"])),
                         "lr": z["lrs"], "loss": z["losses"]})  # fmt: skip


@pytest.mark.benchmark(group="lrfind analyze: 100,000 sweeps", min_rounds=3)
@pytest.mark.parametrize("fmt", ["npz", "parquet"])
@pytest.mark.parametrize("what", ["cli", "read", "pandas"])
def test_analyze_file(benchmark, best, files, tmp_path, fmt, what):
    path = files(_size(benchmark)) / f"sweeps.{fmt}"
    out = tmp_path / "out.csv"
    if what == "cli":
        args = ["analyze", str(path), "--method", "steepest", "--format", "csv", "--out", str(out)]
        assert benchmark(cli.main, args) == 0
        assert len(out.read_text().splitlines()) == _size(benchmark) + 1
    elif what == "read":
        assert len(benchmark(read_sweeps, [path])) == _size(benchmark)
    else:
        rounds = 1 if _size(benchmark) > 10_000 else 3
        benchmark.pedantic(pandas_pipeline, args=(path, out), rounds=rounds)
    if benchmark.enabled:
        best[f"{what}-{fmt}"] = benchmark.stats.stats.min


@pytest.mark.benchmark(group="lrfind analyze: 100,000 sweeps", min_rounds=3)
def test_analyze_phase(benchmark, best, files):
    s = read_sweeps([files(_size(benchmark)) / "sweeps.npz"])
    b = benchmark(lrfind.analyze_batch, s.lrs, s.losses, s.offsets, methods=["steepest"])
    assert len(b) == len(s)
    if benchmark.enabled:
        best["analyze"] = benchmark.stats.stats.min
