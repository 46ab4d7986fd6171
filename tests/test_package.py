"""The package as users get it: light import, typed, and a wheel that installs without Rust."""

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_pulls_in_neither_torch_nor_matplotlib():
    code = "import sys, lrfind; print(sorted(m for m in ('torch', 'matplotlib', 'tqdm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_package_is_typed():
    import lrfind

    package = Path(lrfind.__file__).parent
    assert (package / "py.typed").exists() and (package / "_core.pyi").exists()


def test_public_functions_have_docstrings():
    import lrfind
    import lrfind.io
    import lrfind.torch

    for module in (lrfind, lrfind.torch):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj):
                assert obj.__doc__ and len(obj.__doc__.strip()) > 20, name
    assert lrfind.io.read_sweeps.__doc__ and lrfind.ParallelResult.plot.__doc__


def test_wheel_installs_and_runs_without_a_rust_toolchain(tmp_path):
    wheels = sorted((ROOT / "dist").glob("lrfind-*-abi3-*.whl"))
    if not wheels:
        pytest.fail("no abi3 wheel in dist/: run `make wheel` (make test does) before this test")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # No cargo or rustc reachable: only the venv and the system's basic tools.
    path = os.pathsep.join([str(env_dir / "bin"), "/usr/bin", "/bin"])
    env = {"PATH": path, "HOME": str(tmp_path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    assert subprocess.run(["which", "cargo"], env=env, capture_output=True).returncode != 0
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(wheels[-1])], env=env, check=True)
    code = (
        "import lrfind, numpy as np; lrs = lrfind.sweep_lrs(1e-7, 10, 100); "
        "print(lrfind.analyze(lrs, 2 - np.tanh(np.log10(lrs) + 3)).stop_index)"
    )
    out = subprocess.run([python, "-c", code], env=env, check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "-1"


def test_release_workflow_is_valid_yaml_for_three_platforms():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    jobs = workflow["jobs"]
    assert {"linux", "macos", "windows", "sdist", "release"} <= set(jobs)
    build_steps = [s for job in ("linux", "macos", "windows") for s in jobs[job]["steps"]]
    assert any(s.get("uses", "").startswith("PyO3/maturin-action") for s in build_steps)


# Lightning 2.6.6's own deprecation on torch 2.15 (test_peers.py ignores it too), and its
# DataLoader-worker advice on machines with more than 2 cores.
@pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")
@pytest.mark.filterwarnings(r"ignore:The '.*' does not have many workers")
# dask 2026.8's own use of a pandas API that pandas 3.1 deprecates.
@pytest.mark.filterwarnings(r"ignore:The inplace keyword in DataFrame.reset_index is deprecated")
def test_readme_python_examples_run():
    """The README's quick start stays true: every python block runs as written."""
    import re

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_demo_runs_end_to_end(tmp_path, capsys):
    """`make demo`'s job: a real range test, printed, plotted and saved."""
    import matplotlib

    matplotlib.use("Agg")
    from lrfind import demo

    demo.main(str(tmp_path))
    out = capsys.readouterr().out
    assert "Suggested LR" in out and "One-cycle over 1000 steps" in out
    assert (tmp_path / "range_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import lrfind

    saved = lrfind.RangeTestResult.load(tmp_path / "result.json")
    assert saved.suggested_lr is not None and len(saved.lrs) > 10


def test_readme_command_line_examples_run(tmp_path):
    """Every `lrfind ...` line of the README's bash blocks runs as written (exit code 0), in a
    folder holding the files the examples name."""
    import json
    import re
    import shlex

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    import lrfind

    lrs = lrfind.sweep_lrs(1e-7, 10.0, 80)
    loss = 2.3 - np.tanh(np.log10(lrs) + 3) + np.exp(np.log10(lrs) - 0.5)
    (tmp_path / "runs").mkdir()
    (tmp_path / "logs").mkdir()
    np.savetxt(tmp_path / "runs" / "a.csv", np.c_[lrs, loss], delimiter=",", header="lr,loss", comments="")
    # Histories as torch-lr-finder records them: its EMA (smooth_f 0.05) of the losses.
    history = json.dumps({"lr": lrs.tolist(), "loss": lrfind.ema(loss, 0.05).tolist()})
    (tmp_path / "logs" / "b.jsonl").write_text(history + "\n")
    (tmp_path / "history.json").write_text(history)
    pq.write_table(pa.table({"run": np.zeros(80, dtype=int), "lr": lrs, "loss": loss}), tmp_path / "sweeps.parquet")
    np.savez(tmp_path / "sweeps.npz", lrs=lrs, losses=loss, offsets=np.array([0, 80]))
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [line for line in lines if line.startswith("lrfind ")]
    assert len(commands) >= 4
    script = Path(sys.executable).parent / "lrfind"
    for command in commands:
        args = shlex.split(command)[1:]
        run = [str(script), *args] if script.exists() else [sys.executable, "-m", "lrfind", *args]
        done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr[-2000:])
