"""``lrfind.arrow.analyze_table`` as a Dask ``map_partitions`` function, on a local cluster of
two worker processes reading a directory of Parquet files: the README's recipe, run for real,
gives what the single-process ``lrfind analyze`` gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

import lrfind  # noqa: E402
from lrfind.arrow import analyze_table  # noqa: E402


def analyse(part: pd.DataFrame) -> pd.DataFrame:
    """The recipe's function: one partition of sweeps in, one report row per sweep out."""
    table = analyze_table(pa.Table.from_pandas(part, preserve_index=False), key="name")
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def _write_files(folder: Path, files: int, per_file: int) -> None:
    rng = np.random.default_rng(7)
    folder.mkdir()
    for f in range(files):
        lrs, losses = [], []
        for _ in range(per_file):
            k = int(rng.integers(30, 80))
            lr = np.geomspace(1e-6, 10.0, k)
            x = np.log10(lr)
            loss = 2.0 - 1.5 / (1 + np.exp(-(x + 3 - rng.normal()) * 3)) + np.where(x > -1, (x + 1) * 4, 0.0)
            lrs.append(lr)
            losses.append(loss * np.exp(0.03 * rng.standard_normal(k)))
        names = [f"f{f}-s{i}" for i in range(per_file)]
        table = pa.table({"name": names, "lr": lrs, "loss": losses})
        pq.write_table(table, folder / f"part{f}.parquet", row_group_size=per_file // 2)


def test_dask_map_partitions_on_two_processes_equals_the_cli(tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    folder = tmp_path / "sweeps"
    _write_files(folder, files=3, per_file=200)

    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 2
        sweeps = dd.read_parquet(str(folder), dtype_backend="pyarrow")
        reports = sweeps.map_partitions(analyse, meta=analyse(sweeps._meta))
        assert reports.npartitions >= 2
        got = reports.compute()
        workers = client.run(os.getpid)
    assert len(set(workers.values()) - {os.getpid()}) == 2  # two processes besides this one

    csv = tmp_path / "cli.csv"
    subprocess.run(
        [sys.executable, "-m", "lrfind", "analyze", str(folder), "--format", "csv", "--out", str(csv)],
        check=True,
    )
    cli = pd.read_csv(csv, keep_default_na=False, na_values=[""])
    assert len(got) == len(cli) == 600
    # The CLI names a sweep file/run: the same sweeps, in the same order.
    assert [n.split("/", 1)[1] for n in cli["name"]] == got["name"].tolist()
    for column in got.columns.drop("name"):
        want = got[column].astype(object).where(got[column].notna(), None).tolist()
        have = cli[column].astype(object).where(cli[column].notna(), None).tolist()
        assert have == want, column
    assert got["lr_auto"].notna().sum() > 500  # the data is not all edge cases
    assert set(got.columns) >= {f"lr_{m}" for m in lrfind.METHODS}
