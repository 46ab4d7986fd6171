"""The quality benchmark's claims hold: the committed tables are what ``results.json`` gives, the
default suggestion method is the benchmark's winner, and the cached results are reproducible.

These tests train at most two small runs; the full benchmark is ``benches/quality/run.py``.
"""

import inspect
import math
from pathlib import Path

import numpy as np
import pytest

import lrfind

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from run import CACHE, SEEDS, Cache, cases_of, ensure_grids, key, report, score  # noqa: E402
from scoring import METHODS  # noqa: E402
from tasks import TASKS, range_test, train  # noqa: E402

ROOT = Path(__file__).parents[2]
BEGIN, END = "<!-- quality table: benches/quality/run.py -->", "<!-- end quality table -->"


@pytest.fixture(scope="module")
def cache() -> Cache:
    return Cache(CACHE, jobs=1, offline=True)


def committed_table(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{path} lacks the quality table markers"
    return text.split(BEGIN)[1].split(END)[0].strip()


@pytest.mark.parametrize("readme", ["README.md", "benches/README.md"])
def test_committed_tables_are_current(cache: Cache, readme: str) -> None:
    assert committed_table(ROOT / readme) == report(cache, cases_of(list(TASKS), SEEDS)).strip()


def test_the_default_is_the_winner(cache: Cache) -> None:
    cases = cases_of(list(TASKS), SEEDS)
    table = score(cache, cases, ensure_grids(cache, cases))
    single_run = {m: row for m, row in table.items() if m in METHODS}
    winner = min(single_run, key=lambda m: single_run[m]["all"]["median_regret"])
    assert winner == "auto"
    for peer in ("torch-lr-finder", "Lightning", "fastai valley (fastai's default)"):
        assert table["auto"]["all"]["median_regret"] < table[peer]["all"]["median_regret"]
    # ... and auto is the default everywhere a user meets one.
    from lrfind.cli import DEFAULT_METHODS
    from lrfind.torch import range_test as torch_range_test

    assert lrfind.METHODS[0] == DEFAULT_METHODS[0] == "auto"
    lrs, losses = cache.sweep("digits-cnn-adam", 0)
    n = int(np.argmax(~np.isfinite(losses))) or len(losses)
    default, auto = lrfind.suggest(lrs[:n], losses[:n]), lrfind.suggest(lrs[:n], losses[:n], "auto")
    assert (default.method, default.lr, default.reason) == ("auto", auto.lr, auto.reason)
    assert lrfind.analyze(lrs, losses).suggestions["auto"].lr == lrfind.analyze(lrs, losses).suggested_lr
    assert lrfind.LearningRateFinder().options["methods"] is None  # None means every method, auto first
    assert inspect.signature(torch_range_test).parameters["methods"].default is None


def test_cached_results_reproduce(cache: Cache) -> None:
    """One cached training run and one cached range test, redone. Bitwise on the machine that
    filled the cache; a small tolerance for other CPUs' float summation orders."""
    torch.set_num_threads(1)
    task, seed, lr = "cancer-mlp-adam", 0, 1e-3
    again = train(TASKS[task], seed, lr)
    cached = cache.runs[key(task, seed, lr)]
    assert again["diverged"] == cached["diverged"]
    assert math.isclose(again["val_loss"], cached["val_loss"], rel_tol=1e-3)
    lrs, losses = range_test(TASKS[task], seed)
    want_lrs, want_losses = cache.sweep(task, seed)
    np.testing.assert_allclose(lrs, want_lrs, rtol=1e-12)
    np.testing.assert_allclose(losses[:50], want_losses[:50], rtol=1e-3)  # before the LR gets large


def test_the_tasks_cover_what_the_benchmark_promises() -> None:
    """At least 6 tasks x 3 seeds, with an MLP, a CNN, a recurrent and an attention model, and
    SGD with momentum, Adam and AdamW among them, read off the built models and optimizers."""
    assert len(TASKS) >= 6 and len(SEEDS) >= 3
    layers, optimizers = set(), set()
    for task in TASKS.values():
        model = task.model()
        layers |= {type(m) for m in model.modules()}
        opt = task.optimizer(model.parameters(), 1e-3)
        momentum = opt.param_groups[0].get("momentum", 0)
        optimizers.add(type(opt).__name__ + (" momentum" if momentum else ""))
    nn = torch.nn
    assert {nn.Linear, nn.Conv2d, nn.GRU, nn.MultiheadAttention} <= layers
    assert {"SGD momentum", "Adam", "AdamW"} <= optimizers
