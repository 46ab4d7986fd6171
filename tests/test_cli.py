"""The ``lrfind`` command line, run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrfind
from lrfind._core import csv_rows, json_rows
from lrfind.io import read_sweeps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N = 80


def lrfind_command() -> tuple[list[str], dict[str, str]]:
    """The installed ``lrfind`` script next to this Python (``make install`` puts it there), or,
    before installation, ``python -m lrfind`` on the source tree."""
    script = Path(sys.executable).parent / "lrfind"
    env = dict(os.environ)
    if script.exists():
        return [str(script)], env
    source = str(Path(__file__).resolve().parents[1] / "python")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "lrfind"], env


def run(
    *args: str | Path,
    cwd: Path | None = None,
    wrap: Sequence[str] = (),
    without: str | None = None,
    **env_vars: str,
) -> subprocess.CompletedProcess[str]:
    """``lrfind ARGS...``, checked never to show a traceback. ``wrap`` goes before the command
    (setpriv); ``without`` names a module made unimportable, as if not installed (the command
    then runs as ``python -c``, which blocks it first)."""
    command, env = lrfind_command()
    if without is not None:
        block = (
            f"import sys; sys.modules[{without!r}] = None; from lrfind.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        command = [sys.executable, "-c", block]
    env.update(env_vars)
    done = subprocess.run(
        [*wrap, *command, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def unprivileged() -> list[str]:
    """A prefix that runs a command with file permissions in force: none unless root, whom chmod
    does not stop; then setpriv without CAP_DAC_READ_SEARCH and CAP_DAC_OVERRIDE."""
    if os.geteuid() != 0:
        return []
    drop = "-dac_read_search,-dac_override"
    prefix = [shutil.which("setpriv") or "setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}"]
    if shutil.which("setpriv") is None or subprocess.run([*prefix, "true"], capture_output=True).returncode:
        pytest.skip("root, and cannot drop CAP_DAC_READ_SEARCH/CAP_DAC_OVERRIDE with setpriv")
    return prefix


def _good_loss() -> np.ndarray:
    loss = np.exp(-np.arange(N) / 20) + 0.01 * np.sin(np.arange(N))
    loss[60:] += np.linspace(0, 30, N - 60) ** 2  # the explosion
    return loss


LRS = lrfind.sweep_lrs(1e-6, 10.0, N)
#: The sweeps the files below hold, by the names the reader gives them.
SWEEPS = {"a/r1": _good_loss(), "a/r2": np.full(N, 2.3), "b": 1.5 * _good_loss()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.csv (two runs, long format), b.json (torch-lr-finder's history) and bad.csv (no lr column)."""
    root = tmp_path_factory.mktemp("sweeps")
    rows = [
        f"{run[2:]},{lr!r},{loss!r}"
        for run in ("a/r1", "a/r2")
        for lr, loss in zip(LRS.tolist(), SWEEPS[run].tolist(), strict=True)
    ]
    (root / "a.csv").write_text("run,lr,loss\n" + "\n".join(rows) + "\n")
    # As torch-lr-finder records it: its EMA (smooth_f 0.05) of the losses, undone on reading.
    (root / "b.json").write_text(json.dumps({"lr": LRS.tolist(), "loss": lrfind.ema(SWEEPS["b"], 0.05).tolist()}))
    (root / "bad.csv").write_text("foo,bar\n1,2\n")
    return root


def read(data: Path) -> dict[str, np.ndarray]:
    """The losses of the test files as the reader gives them (b.json's un-smoothed), by name."""
    sweeps = read_sweeps([data / "a.csv", data / "b.json"])
    return {name: sweeps.sweep(i)[1] for i, name in enumerate(sweeps.names)}


def test_analyze_table(data: Path) -> None:
    done = run("analyze", data / "a.csv", data / "b.json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["name", "points", "stop", *lrfind.METHODS, "confidence", "range", "diagnosis"]
    by_name = {line.split()[0]: line.split() for line in lines[1:4]}
    assert set(by_name) == set(SWEEPS)
    losses = read(data)
    for name, loss in losses.items():
        a = lrfind.analyze(LRS, loss)
        row = by_name[name]
        assert row[1] == str(N) and row[-1] == a.diagnosis.kind
        if a.diagnosis.gives_lr:
            lrs = ["-" if s.lr is None else f"{s.lr:.2e}" for s in a.suggestions.values()]
            low, high = a.suggestions["auto"].range
            assert row[-2] == f"{low:.2e}..{high:.2e}"  # the suggested range, auto's
        else:  # the flat sweep: no LR to train at, whatever a method read off its noise
            lrs = ["-"] * len(a.suggestions)
            assert row[-3:-1] == ["-", "-"]
        assert row[-3 - len(lrs) : -3] == lrs
    tail = done.stdout.split("\n\n", 1)[1].splitlines()
    assert tail[0] == "3 sweep(s) from 2 file(s); 0 input(s) rejected"
    assert "diagnoses: good 2, flat 1" in tail
    levels = [_level(lrfind.analyze(LRS, loss).suggestions["auto"].confidence) for loss in losses.values()]
    assert "auto confidence: " + ", ".join(f"{k} {levels.count(k)}" for k in ("high", "medium", "low")) in tail
    flat = lrfind.analyze(LRS, losses["a/r2"]).diagnosis
    assert tail[-1] == f"flat: no LR to train at (first: a/r2). {flat.message}"


def test_analyze_json_matches_analyze(data: Path) -> None:
    done = run("analyze", data / "a.csv", data / "b.json", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["rejected"] == []
    levels = [_level(lrfind.analyze(LRS, loss).suggestions["auto"].confidence) for loss in SWEEPS.values()]
    assert doc["summary"] == {
        "files_read": 2,
        "sweeps_read": 3,
        "analysed": 3,
        "rejected": 0,
        "diagnoses": {"good": 2, "flat": 1},
        "auto_confidence": {level: levels.count(level) for level in ("high", "medium", "low")},
    }
    assert [s["name"] for s in doc["sweeps"]] == list(SWEEPS)
    losses = read(data)
    for sweep in doc["sweeps"]:
        a = lrfind.analyze(LRS, losses[sweep["name"]])
        assert sweep["source"].endswith(".csv" if sweep["name"].startswith("a/") else ".json")
        assert sweep["points"] == N
        assert sweep["stop_index"] == (a.stop_index if a.stop_index >= 0 else None)
        assert sweep["stop_reason"] == a.stop_reason
        assert list(sweep["suggestions"]) == lrfind.METHODS  # auto first
        for method, s in a.suggestions.items():
            want = {"lr": s.lr, "index": s.index, "reason": s.reason, "confidence": s.confidence}
            assert sweep["suggestions"][method] == {**want, "range": s.range and list(s.range)}
        d = a.diagnosis
        descent = d.descent and list(d.descent)
        assert sweep["diagnosis"] == {"kind": d.kind, "gives_lr": d.gives_lr, "message": d.message, "descent": descent}
    flat = doc["sweeps"][1]
    assert flat["stop_index"] is None and flat["diagnosis"]["descent"] is None and not flat["diagnosis"]["gives_lr"]


def test_analyze_csv_with_chosen_methods(data: Path) -> None:
    done = run("analyze", data / "a.csv", "--format", "csv", "--method", "valley", "--method", "steepest")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert list(rows[0]) == [
        *("name", "source", "points", "stop_index", "stop_reason", "lr_valley", "lr_steepest"),
        *("range_low", "range_high", "diagnosis", "gives_lr", "descent_low", "descent_high"),
    ]
    assert [r["name"] for r in rows] == ["a/r1", "a/r2"]
    for row in rows:
        a = lrfind.analyze(LRS, SWEEPS[row["name"]], methods=["valley", "steepest"])
        for method in ("valley", "steepest"):
            lr = a.suggestions[method].lr
            assert row[f"lr_{method}"] == ("" if lr is None else repr(lr))
        assert row["diagnosis"] == a.diagnosis.kind
        assert row["gives_lr"] == ("true" if a.diagnosis.gives_lr else "false")
        assert row["descent_low"] == ("" if a.diagnosis.descent is None else repr(a.diagnosis.descent[0]))
        assert row["stop_reason"] == (a.stop_reason or "")
        assert row["range_low"] == ""  # valley, the main method here, has no range
    assert rows[1]["stop_index"] == rows[1]["descent_low"] == ""  # the flat sweep: no stop, no descent


def _level(confidence: float | None) -> str | None:
    """auto's words for its confidence, written out here: 0.7 and up high, below 0.4 low."""
    if confidence is None:
        return None
    return "high" if confidence >= 0.7 else "medium" if confidence >= 0.4 else "low"


def test_auto_confidence_column(data: Path) -> None:
    done = run("analyze", data / "a.csv", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    for row in rows:
        s = lrfind.analyze(LRS, SWEEPS[row["name"]]).suggestions["auto"]
        assert row["confidence_auto"] == ("" if s.confidence is None else repr(s.confidence))
    table = run("analyze", data / "a.csv").stdout.splitlines()
    assert table[0].split()[3:5] == ["auto", "steepest"] and table[0].split()[-3] == "confidence"
    conf = lrfind.analyze(LRS, SWEEPS["a/r1"]).suggestions["auto"].confidence
    assert table[1].split()[-3] == f"{_level(conf)}({conf:.2f})"


def test_analyze_out_and_plot(data: Path, tmp_path: Path) -> None:
    done = run("analyze", data / "a.csv", data / "b.json", "--format", "json", "--out", tmp_path / "r.json")
    assert done.returncode == 0 and done.stdout == ""
    assert len(json.loads((tmp_path / "r.json").read_text())["sweeps"]) == 3

    done = run("analyze", data / "a.csv", data / "b.json", "--plot", tmp_path / "plots")
    assert done.returncode == 0, done.stderr
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["a_r1.png", "a_r2.png", "b.png"]  # "/" is not safe in a file name
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == PNG_MAGIC for p in pngs)


def test_plots_of_names_that_clash_once_made_safe_get_a_file_each(tmp_path: Path) -> None:
    """ "s/x y" and "s/x_y" both become s_x_y, and "s_x_y-2" is what the second would get, but the
    third sweep's own name: three files, not two."""
    pytest.importorskip("matplotlib")
    lrs, loss = np.geomspace(1e-5, 1.0, 40), _good_loss()[:40]
    np.savez(tmp_path / "s.npz", lrs=np.tile(lrs, 3), losses=np.tile(loss, 3), offsets=[0, 40, 80, 120],
             names=np.array(["x y", "x_y", "x_y-2"]))  # fmt: skip
    done = run("analyze", tmp_path / "s.npz", "--plot", tmp_path / "plots")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["s_x_y-2-2.png", "s_x_y-2.png", "s_x_y.png"]
    assert "wrote 3 plot(s)" in done.stderr


def test_a_name_with_a_newline_stays_on_its_row(tmp_path: Path) -> None:
    lrs = np.geomspace(1e-5, 1.0, 40)
    np.savez(tmp_path / "s.npz", lrs=lrs, losses=_good_loss()[:40], offsets=[0, 40], names=np.array(["a\nb"]))
    done = run("analyze", tmp_path / "s.npz")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("s/a\\nb ")


def test_rejected_input_exits_1_and_reports_the_rest(data: Path) -> None:
    done = run("analyze", data / "a.csv", data / "bad.csv", data / "b.json")
    assert done.returncode == 1
    assert "rejected" in done.stderr and "bad.csv" in done.stderr
    assert "3 sweep(s) from 3 file(s); 1 input(s) rejected" in done.stdout

    done = run("analyze", data / "a.csv", data / "bad.csv", "--format", "json")
    assert done.returncode == 1
    doc = json.loads(done.stdout)
    assert [r["source"] for r in doc["rejected"]] == [str(data / "bad.csv")]
    assert doc["summary"]["rejected"] == 1 and doc["summary"]["analysed"] == 2


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["analyze"],
        ["analyze", "{data}/a.csv", "--format", "xml"],
        ["analyze", "{data}/a.csv", "--method", "bogus"],
        ["schedule", "--policy", "one_cycle", "--total-steps", "100", "--base-lr", "1e-3"],  # no --max-lr
        ["schedule", "--policy", "one_cycle", "--total-steps", "100", "--base-lr", "1e-3", "--max-lr", "1e-4"],
        ["schedule", "--policy", "warmup_cosine", "--total-steps", "0", "--base-lr", "1e-3"],
        ["demo", "--parallel", "0"],
    ],
)
def test_usage_errors_exit_2(data: Path, args: list[str]) -> None:
    done = run(*(a.format(data=data) for a in args))
    assert done.returncode == 2, done.stdout
    assert "error:" in done.stderr and done.stdout == ""


def test_hostile_json_is_rejected_and_the_rest_reported(data: Path, tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text("[" * 5000 + "]" * 5000)
    (tmp_path / "huge.jsonl").write_text('{"lr": [1e-3, %s], "loss": [1, 2]}\n' % ("9" * 400))
    done = run("analyze", data / "a.csv", tmp_path / "deep.json", tmp_path / "huge.jsonl")
    assert done.returncode == 1
    assert f"rejected {tmp_path / 'deep.json'}: not a readable JSON file: nested too deeply" in done.stderr
    assert f"rejected {tmp_path / 'huge.jsonl'}:1[lr]: value 1 is an integer of 400 digits" in done.stderr
    assert "2 sweep(s) from 3 file(s); 2 input(s) rejected" in done.stdout


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_every_input_rejected_exits_1(data: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "report"
    done = run("analyze", data / "bad.csv", data / "missing.csv", "--format", fmt, "--out", out)
    assert done.returncode == 1 and done.stdout == "" and not out.exists()
    assert done.stderr.splitlines() == [
        f"lrfind: rejected {data / 'bad.csv'}: CSV header foo, bar lacks column lr and loss",
        f"lrfind: rejected {data / 'missing.csv'}: no such file or directory",
        f"lrfind: no sweeps to analyse in {data / 'bad.csv'}, {data / 'missing.csv'}",
    ]


def test_unreadable_directory_exits_1(data: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.json").write_text((data / "b.json").read_text())
    try:
        locked.chmod(0)
        done = run("analyze", data / "a.csv", locked, wrap=unprivileged())
    finally:
        locked.chmod(0o700)
    assert done.returncode == 1
    assert f"rejected {locked}: cannot list the directory: {os.strerror(errno.EACCES)}" in done.stderr
    assert "2 sweep(s) from 1 file(s); 1 input(s) rejected" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["analyze", "{data}/a.csv", "--plot", "{tmp}/plots", "--out", "{tmp}/report.txt"],
        ["analyze", "{data}/a.csv", "--plot", "{tmp}/plots"],
        [
            "schedule",
            "--policy",
            "warmup_cosine",
            "--total-steps",
            "100",
            "--base-lr",
            "1e-3",
            "--plot",
            "{tmp}/lr.png",
        ],
    ],
)
def test_plot_without_matplotlib_is_a_usage_error_before_any_output(
    data: Path, tmp_path: Path, args: list[str]
) -> None:
    done = run(*(a.format(data=data, tmp=tmp_path) for a in args), without="matplotlib")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "lrfind: error: plotting needs matplotlib: pip install 'lrfind[plot]'\n"
    assert list(tmp_path.iterdir()) == []  # no report, no plot folder


def test_demo_without_cuda_says_so(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    done = run("demo", "--device", "cuda", "--out", tmp_path, CUDA_VISIBLE_DEVICES="")  # hide any GPU
    assert done.returncode == 2
    assert "lrfind: error:" in done.stderr and "CUDA is not available" in done.stderr


def test_demo_settings_are_checked_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    for args, message in [(("--steps", "1"), "--steps must be at least 2"),
                          (("--out", str(tmp_path / "afile")), "exists and is not a directory")]:  # fmt: skip
        done = run("demo", *args)
        assert done.returncode == 2 and message in done.stderr and "Range test" not in done.stdout


def test_demo_default(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    done = run("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "MLP" in out and "AdamW" in out
    assert "Suggested LR" in out and "One-cycle over 1000 steps" in out and "log10(LR)" in out
    assert (tmp_path / "lrfind-demo" / "range_test.png").read_bytes()[:8] == PNG_MAGIC
    saved = lrfind.RangeTestResult.load(tmp_path / "lrfind-demo" / "result.json")
    assert saved.suggested_lr is not None and f"{saved.suggested_lr:.2e}" in out


def test_demo_parallel_cnn(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    args = ("--model", "cnn", "--optimizer", "sgd", "--parallel", "2", "--steps", "20", "--out", tmp_path / "d")
    done = run("demo", *args)
    assert done.returncode == 0, done.stderr
    assert "2 parallel range tests: CNN" in done.stdout and "Consensus LR" in done.stdout
    saved = lrfind.ParallelResult.load(tmp_path / "d" / "result.json")
    assert len(saved.runs) == 2 and saved.seeds == [0, 1]
    assert (tmp_path / "d" / "range_test.png").read_bytes()[:8] == PNG_MAGIC


def test_schedule_one_cycle_matches_the_library(tmp_path: Path) -> None:
    args = ("--total-steps", "1000", "--base-lr", "1e-3", "--max-lr", "1e-2", "--pct-start", "0.25")
    done = run("schedule", "--policy", "one_cycle", *args, "--plot", tmp_path / "lr.png")
    assert done.returncode == 0, done.stderr
    expected = lrfind.one_cycle(1000, 1e-3, 1e-2, 0.25)
    rows = [line.split() for line in done.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    steps = [int(r[0]) for r in rows]
    assert steps[0] == 0 and steps[-1] == 999 and len(steps) == 11  # 10 evenly spaced, and the peak
    peak = [int(r[0]) for r in rows if "peak" in r]
    assert peak == [int(np.argmax(expected))]
    for row in rows:
        assert float(row[1]) == pytest.approx(expected[int(row[0])], rel=1e-6)
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG_MAGIC


def test_schedule_warmup_cosine() -> None:
    done = run("schedule", "--policy", "warmup_cosine", "--total-steps", "200", "--base-lr", "1e-3", "--min-lr", "1e-5")
    assert done.returncode == 0, done.stderr
    expected = lrfind.warmup_cosine(200, 10, 1e-3, 1e-5)  # default warm-up: 5% of the steps
    rows = [line.split() for line in done.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    for row in rows:
        assert float(row[1]) == pytest.approx(expected[int(row[0])], rel=1e-6)
    assert ["10", f"{1e-3:.6e}", "<-", "peak"] in rows


def test_schedule_plot_file_is_checked_and_named_as_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    args = ("schedule", "--policy", "one_cycle", "--total-steps", "100", "--base-lr", "1e-3", "--max-lr", "1e-2")
    done = run(*args, "--plot", tmp_path / "cycle")
    assert done.returncode == 0 and done.stderr == f"lrfind: wrote {tmp_path / 'cycle.png'}\n"
    assert (tmp_path / "cycle.png").read_bytes()[:8] == PNG_MAGIC
    for value, message in [("", "--plot needs a file name, got ''"), (str(tmp_path), "(a directory)"),
                           (str(tmp_path / "x.nope"), "matplotlib cannot write '.nope' files")]:  # fmt: skip
        done = run(*args, "--plot", value)
        assert done.returncode == 2 and message in done.stderr and done.stdout == ""  # before the table


def test_schedule_all_warm_up_says_so() -> None:
    done = run("schedule", "--policy", "warmup_cosine", "--total-steps", "100", "--base-lr", "1e-3",
               "--warmup-steps", "100")  # fmt: skip
    assert done.returncode == 0 and "no cosine (all warm-up)" in done.stdout.splitlines()[0]


@pytest.mark.parametrize("command", [None, "analyze", "demo", "schedule"])
def test_help(command: str | None) -> None:
    done = run(*([command] if command else []), "--help")
    assert done.returncode == 0 and done.stderr == ""
    assert "examples:" in done.stdout and "usage: lrfind" in done.stdout
    if command is None:
        assert all(c in done.stdout for c in ("analyze", "demo", "schedule", "exit codes"))


def test_the_suggested_range_is_one_range_everywhere(data: Path) -> None:
    """The range to train in is the suggestion's: the same numbers under the same name in the
    summary, the plot, the saved result, and the table, CSV and JSON reports."""
    import matplotlib

    matplotlib.use("Agg")
    result = lrfind.RangeTestResult.from_sweep(LRS, read(data)["a/r1"])
    low, high = result.suggested_range
    assert (low, high) == result.suggestions["auto"].range
    assert f"Suggested range: {low:.2e} to {high:.2e}" in result.summary()
    (patch,) = result.plot().patches
    np.testing.assert_allclose([patch.get_x(), patch.get_x() + patch.get_width()], [low, high], rtol=1e-12)
    assert patch.get_label().startswith("suggested range")
    assert result.to_dict()["suggested_range"] == [low, high]
    table = run("analyze", data / "a.csv").stdout
    assert next(line for line in table.splitlines() if line.startswith("a/r1")).split()[-2] == f"{low:.2e}..{high:.2e}"
    (row, _) = csv.DictReader(io.StringIO(run("analyze", data / "a.csv", "--format", "csv").stdout))
    assert (row["range_low"], row["range_high"]) == (repr(low), repr(high))
    doc = json.loads(run("analyze", data / "a.csv", "--format", "json").stdout)
    assert doc["sweeps"][0]["suggestions"]["auto"]["range"] == [low, high]


def test_streaming_in_any_piece_size_gives_the_same_reports(data: Path, tmp_path: Path) -> None:
    """--batch-size only changes how much is held at once: every format says the same."""
    for fmt in ("csv", "jsonl", "table"):
        whole = run("analyze", data / "a.csv", data / "b.json", "--format", fmt)
        pieces = run("analyze", data / "a.csv", data / "b.json", "--format", fmt, "--batch-size", "1")
        assert whole.returncode == pieces.returncode == 0, pieces.stderr
        if fmt == "table":  # the widths come from the first piece: compare the cells
            assert [line.split() for line in whole.stdout.splitlines()] == [
                line.split() for line in pieces.stdout.splitlines()
            ]
        else:
            assert whole.stdout == pieces.stdout
    lines = [json.loads(line) for line in run("analyze", data / "a.csv", "--format", "jsonl").stdout.splitlines()]
    doc = json.loads(run("analyze", data / "a.csv", "--format", "json").stdout)
    assert lines == doc["sweeps"]


def test_parquet_report_holds_the_csv_reports_values(data: Path, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    done = run("analyze", data / "a.csv", data / "b.json", "--format", "parquet", "--out", tmp_path / "r.parquet")
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "r.parquet").to_pylist()
    rows = list(csv.DictReader(io.StringIO(run("analyze", data / "a.csv", data / "b.json", "--format", "csv").stdout)))
    assert [r["name"] for r in table] == [r["name"] for r in rows]
    for got, want in zip(table, rows, strict=True):
        assert set(got) == set(want)
        for column, text in want.items():
            value = got[column]
            expected = {"true": True, "false": False}.get(text, text)
            if isinstance(value, float):
                assert value == float(text)
            elif isinstance(value, int) and not isinstance(value, bool):
                assert value == int(text)
            else:
                assert value == (None if expected == "" else expected), column
    usage = run("analyze", data / "a.csv", "--format", "parquet")
    assert usage.returncode == 2 and "--format parquet writes a file: give it with --out FILE" in usage.stderr


# --- the CSV writer -------------------------------------------------------------------------------

_ROWS = st.integers(0, 30)


@st.composite
def _csv_columns(draw):
    """Columns of one length: text (commas, quotes, line breaks, any Unicode), float64 (any
    bits, NaN and infinities included), float32 and int64 (negative ones too)."""
    rows = draw(_ROWS)
    kinds = draw(st.lists(st.sampled_from(["text", "f64", "f32", "int"]), min_size=1, max_size=5))
    columns = []
    for kind in kinds:
        if kind == "text":
            alphabet = st.one_of(st.sampled_from(',"\n\r ab'), st.characters(codec="utf-8"))
            columns.append(draw(st.lists(st.text(alphabet, max_size=8), min_size=rows, max_size=rows)))
        elif kind == "int":
            columns.append(
                np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=rows, max_size=rows)), dtype=np.int64)
            )
        else:
            width = 64 if kind == "f64" else 32
            values = draw(st.lists(st.floats(width=width), min_size=rows, max_size=rows))
            columns.append(np.array(values, dtype=np.float64 if width == 64 else np.float32))
    return columns


def _python_csv(columns) -> str:
    """The same rows through Python's own ``repr`` and ``csv.writer``: the reference."""

    def cell(value):
        if isinstance(value, str):
            return value
        if isinstance(value, (int, np.integer)):
            return "" if value < 0 else str(int(value))
        return repr(float(value)) if np.isfinite(value) else ""

    # Rows end in "\n", yet a "\r" is quoted too (Python 3.11 quotes only what its line
    # terminator holds): each row is written with "\r\n", which is then cut off.
    rows = []
    for i in range(len(columns[0])):
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow([cell(c[i]) for c in columns])
        rows.append(out.getvalue().removesuffix("\r\n") + "\n")
    return "".join(rows)


@settings(max_examples=300, deadline=None)
@given(_csv_columns())
def test_csv_rows_writes_what_python_writes(columns):
    """``_core.csv_rows`` (the CSV report's writer) against ``repr`` and ``csv.writer``, byte for byte."""
    assert csv_rows(columns).decode() == _python_csv(columns)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_csv_floats_are_repr(x):
    assert csv_rows([np.array([x])]) == (repr(x) + "\n").encode()


def test_csv_rows_refuses_what_it_cannot_write():
    with pytest.raises(
        TypeError, match=r"columns\[1\] must be a list of str or a 1-D numeric array, got a list holding 2"
    ):
        csv_rows([["a"], ["b", 2]])
    with pytest.raises(TypeError, match=r"columns\[0\] must hold numbers, got an array of dtype <U1"):
        csv_rows([np.array(["x"])])
    with pytest.raises(ValueError, match=r"columns\[1\] must be as long as column 0, got 2 rows against 1"):
        csv_rows([["a"], np.zeros(2)])


@st.composite
def json_fields(draw, rows=None, depth=0):
    """A dict of fields for ``json_rows`` with ``rows`` rows, and the rows as Python objects."""
    rows = draw(st.integers(0, 5)) if rows is None else rows
    floats = st.floats(allow_subnormal=True) | st.sampled_from([math.nan, math.inf, -0.0, 1e-5, 1e16, 1e-310])
    fields, values = {}, [{} for _ in range(rows)]
    for key in draw(st.lists(st.text(max_size=4), min_size=1, max_size=4, unique=True)):  # a column below
        kind = draw(st.sampled_from(["text", "float", "int", "bool", "pair"] + (["object"] if depth < 2 else [])))
        if kind == "object":
            fields[key], column = draw(json_fields(rows, depth + 1))
        elif kind == "text":
            fields[key] = column = draw(st.lists(st.none() | st.text(), min_size=rows, max_size=rows))
        elif kind == "float":
            x = draw(st.lists(floats, min_size=rows, max_size=rows))
            fields[key], column = np.array(x), [v if math.isfinite(v) else None for v in x]
        elif kind == "int":
            x = draw(st.lists(st.integers(-3, 2**63 - 1), min_size=rows, max_size=rows))
            fields[key], column = np.array(x, dtype=np.int64), [v if v >= 0 else None for v in x]
        elif kind == "bool":
            x = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
            fields[key], column = np.array(x, dtype=bool), x
        else:
            lo, hi = (draw(st.lists(floats, min_size=rows, max_size=rows)) for _ in range(2))
            fields[key] = (np.array(lo), np.array(hi))
            column = [[a, b] if math.isfinite(a) and math.isfinite(b) else None for a, b in zip(lo, hi, strict=True)]
        for row, value in zip(values, column, strict=True):
            row[key] = value
    return fields, values


@settings(max_examples=300, deadline=None)
@given(json_fields(), st.sampled_from([("", "\n"), ("    ", ",\n")]))
def test_json_rows_writes_what_json_dumps_writes(fields_rows, ends):
    """``_core.json_rows`` (the JSON reports' writer) against ``json.dumps``, byte for byte:
    escapes, non-ASCII and astral characters, repr floats, nulls, nesting, key order."""
    fields, rows = fields_rows
    prefix, end = ends
    assert json_rows(fields, prefix=prefix, end=end).decode() == "".join(
        prefix + json.dumps(row, allow_nan=False) + end for row in rows
    )


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 are a Linux thing")
@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_a_file_name_that_is_not_utf8_is_reported_escaped(tmp_path, fmt):
    """``r\\xffn.npz``: Python sees the name with a lone surrogate, which no UTF-8 report can
    hold; every format writes it ``\\udcff``."""
    runs = tmp_path / "runs"
    runs.mkdir()
    np.savez(runs / "tmp.npz", lrs=np.geomspace(1e-5, 1.0, 50), losses=np.linspace(2.0, 1.0, 50))
    os.rename(runs / "tmp.npz", os.fsencode(runs) + b"/r\xffn.npz")
    out = tmp_path / f"report.{fmt}"
    done = run("analyze", runs, "--format", fmt, "--out", out)
    assert done.returncode == 0, done.stderr
    if fmt == "parquet":
        pq = pytest.importorskip("pyarrow.parquet")
        assert pq.read_table(out).column("name").to_pylist() == ["r\\udcffn"]
    else:
        assert "r\\udcffn" in out.read_text(encoding="utf-8").replace("\\\\", "\\")


def test_json_rows_refuses_what_it_cannot_write():
    with pytest.raises(TypeError, match=r'fields\["a"\] must be a list of str or None, got a list holding 2'):
        json_rows({"a": ["x", 2]})
    with pytest.raises(
        ValueError, match=r'fields must be columns of one length, got 1 rows in fields\["b"\] against 2'
    ):
        json_rows({"a": np.zeros(2), "b": {"c": ["x"]}})
    with pytest.raises(TypeError, match=r"fields keys must be str, got 1"):
        json_rows({1: ["x"]})


def test_the_summary_counts_levels_as_confidence_level_names_them():
    """The JSON summary counts auto's levels vectorised: at and around each bound it agrees
    with ``lrfind.confidence_level``, the one definition."""
    from lrfind.cli import _LEVEL_BOUNDS

    for bound in _LEVEL_BOUNDS:
        below, above = np.nextafter(bound, 0.0), bound
        assert lrfind.confidence_level(below) != lrfind.confidence_level(above)
        assert [np.digitize(x, _LEVEL_BOUNDS) for x in (below, above)] == [
            ("low", "medium", "high").index(lrfind.confidence_level(x)) for x in (below, above)
        ]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_stops_a_streamed_analysis_at_once(tmp_path):
    """Ctrl-C while pieces are being read ahead and analysed: exit 130 within a second, no
    traceback, the reading thread stopped with the rest."""
    import signal
    import time

    rng = np.random.default_rng(0)
    n, k = 200_000, 60
    lrs = np.tile(np.geomspace(1e-6, 10.0, k), n)
    losses = 2.0 + 0.1 * rng.standard_normal(n * k)
    np.savez(tmp_path / "many.npz", lrs=lrs, losses=losses, offsets=np.arange(n + 1) * k)
    command, env = lrfind_command()
    args = [*command, "analyze", str(tmp_path / "many.npz"), "--format", "csv", "--batch-size", "500"]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert proc.stdout.readline().startswith(b"name,source,")  # the report has begun
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        proc.stdout.close()  # unread rows: the writer may meet a closed pipe, which ends it too
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=30) in (130, 1)
    assert time.monotonic() - start < 5, "took too long to stop"
    assert "Traceback" not in err, err


# --- found by fuzzing ------------------------------------------------------------------------------


def _run_to(stdout: object, *args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``lrfind ARGS...`` with standard output as given (a file, or closed), never a traceback;
    buffered, as users run it (a report may then be written only as it ends)."""
    command, env = lrfind_command()
    env.pop("PYTHONUNBUFFERED", None)
    done = subprocess.run(
        [*command, *map(str, args)], stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, timeout=120, **kwargs
    )
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    return done


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full, a device that is always full, is Linux's")
@pytest.mark.parametrize("fmt", ["table", "csv", "parquet"])
def test_a_full_disk_is_reported_with_the_output_it_filled(data: Path, fmt: str) -> None:
    """Also when the report is small enough to be written only as the file is closed."""
    if fmt != "parquet":
        with open("/dev/full", "w") as full:
            done = _run_to(full, "analyze", data / "a.csv", "--format", fmt)
        assert done.returncode == 1
        assert done.stderr == "lrfind: error: cannot write to standard output: No space left on device\n"
    done = _run_to(subprocess.PIPE, "analyze", data / "a.csv", "--format", fmt, "--out", "/dev/full")
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr.startswith("lrfind: error: cannot write /dev/full: ") and "No space left on device" in done.stderr
    )


@pytest.mark.skipif(sys.platform == "win32", reason="closing a child's descriptor before it runs is POSIX")
def test_a_closed_standard_output_is_an_error_not_a_traceback(data: Path) -> None:
    done = _run_to(subprocess.DEVNULL, "analyze", data / "a.csv", preexec_fn=lambda: os.close(1))  # `>&-`
    assert done.returncode == 1
    assert done.stderr == "lrfind: error: cannot write to standard output: it is closed\n"


def test_plot_needs_a_directory_checked_before_any_work(data: Path, tmp_path: Path) -> None:
    """'' would put the PNGs in the current directory, unasked; a file cannot hold them."""
    pytest.importorskip("matplotlib")
    done = run("analyze", data / "a.csv", "--plot", "", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == "" and list(tmp_path.iterdir()) == []
    assert done.stderr == "lrfind: error: --plot needs a directory, got ''\n"
    done = run("analyze", data / "a.csv", "--plot", data / "a.csv")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"lrfind: error: --plot {data / 'a.csv'}: exists and is not a directory\n"


def test_a_plot_that_cannot_be_written_is_named(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "a_r1.png").mkdir()  # where the first plot goes
    done = run("analyze", data / "a.csv", "--plot", tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"lrfind: error: cannot write {tmp_path / 'a_r1.png'}: Is a directory\n"
