"""The quality benchmark's claims hold: the committed tables are what ``results.json`` gives, the
held-out row never sees its own family, ``auto`` is the default everywhere, the tasks cover what
the benchmark promises, and the cached results are reproducible.

These tests train one small run and one range test; the full benchmark is
``benches/quality/run.py``.
"""

import copy
import inspect
import math
from pathlib import Path

import numpy as np
import pytest

import lrfind

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fit import AutoFit  # noqa: E402
from run import (  # noqa: E402
    BUDGETS,
    CACHE,
    HELD_OUT,
    NOISE_FLOOR,
    POOLED_MEDIAN_CURVE,
    POOLED_MEDIAN_PICK,
    REFINED,
    SEEDS,
    Bench,
    Cache,
    key,
    report,
    score,
)
from tasks import LONG, TASKS, range_test, train  # noqa: E402

ROOT = Path(__file__).parents[2]
BEGIN, END = "<!-- quality table: benches/quality/run.py -->", "<!-- end quality table -->"
PEERS = ("torch-lr-finder", "Lightning", "fastai valley (fastai's default)")


@pytest.fixture(scope="module")
def bench() -> Bench:
    return Bench(Cache(CACHE, jobs=1, offline=True), list(TASKS))


@pytest.fixture(scope="module")
def table(bench: Bench) -> dict:
    return score(bench)


def committed_table(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    assert BEGIN in text and END in text, f"{path} lacks the quality table markers"
    return text.split(BEGIN)[1].split(END)[0].strip()


@pytest.mark.parametrize("readme", ["README.md", "benches/README.md"])
def test_committed_tables_are_current(bench: Bench, readme: str) -> None:
    assert committed_table(ROOT / readme) == report(bench).strip()


def test_the_tables_lead_with_the_held_out_row(bench: Bench) -> None:
    rows = [line.split(" | ")[0].lstrip("| ") for line in report(bench).splitlines() if line.startswith("| ")]
    assert rows[0] == "method" and rows[1] == HELD_OUT and rows[2] == NOISE_FLOOR


def test_the_held_out_fit_never_sees_its_family(bench: Bench) -> None:
    """Scramble one family's trained results: the parameters fitted without that family stay, and
    the fit on everything moves (so the scrambling is not a no-op)."""
    family = "transformer-lm"
    scrambled = copy.copy(bench)
    scrambled.cache = copy.copy(bench.cache)
    scrambled.cache.runs = dict(bench.cache.runs)
    rng = np.random.default_rng(0)
    for k, run in bench.cache.runs.items():
        if TASKS[k.split("@")[0]].family == family:
            scrambled.cache.runs[k] = dict(run, val_loss=list(rng.permutation(run["val_loss"]) * rng.uniform(1, 3)))
    scrambled.__dict__.pop("fit", None)
    fit, other = bench.fit, AutoFit(scrambled)
    assert other.held_out_params[family] == fit.held_out_params[family]
    assert not np.array_equal(other.regrets, fit.regrets)


def test_the_peers_and_the_noise_floor(table: dict) -> None:
    """The rows the README compares: every peer's default rule is there and scored on every run,
    and the noise floor (another seed's oracle LR) lies below every method's median regret."""
    runs = len(TASKS) * len(SEEDS) * len(BUDGETS)
    for row in (*PEERS, "auto", HELD_OUT, NOISE_FLOOR):
        assert table[row]["all"]["runs"] == runs
    floor = table[NOISE_FLOOR]["all"]["median_regret"]
    assert all(floor < row["all"]["median_regret"] for m, row in table.items() if m != NOISE_FLOOR)


def test_what_the_readme_claims(table: dict) -> None:
    """Held out, and with lrfind's defaults, auto beats every peer's default; refine lowers the
    median further; several seeds do best by the median of their suggestions (what
    ParallelResult returns), not by auto on their median curve."""
    median = {m: row["all"]["median_regret"] for m, row in table.items()}
    assert all(median[auto] < median[peer] for peer in PEERS for auto in (HELD_OUT, "auto"))
    assert median[REFINED] < median["auto"]
    assert median[POOLED_MEDIAN_PICK] < median[POOLED_MEDIAN_CURVE]


def test_auto_is_the_default_everywhere(bench: Bench) -> None:
    from lrfind.cli import DEFAULT_METHODS
    from lrfind.torch import range_test as torch_range_test

    assert lrfind.METHODS[0] == DEFAULT_METHODS[0] == "auto"
    lrs, losses = bench.cache.sweep("digits-cnn-adam", 0)
    n = int(np.argmax(~np.isfinite(losses))) or len(losses)
    default, auto = lrfind.suggest(lrs[:n], losses[:n]), lrfind.suggest(lrs[:n], losses[:n], "auto")
    assert (default.method, default.lr, default.reason) == ("auto", auto.lr, auto.reason)
    assert lrfind.analyze(lrs, losses).suggestions["auto"].lr == lrfind.analyze(lrs, losses).suggested_lr
    assert lrfind.LearningRateFinder().options["methods"] is None  # None means every method, auto first
    assert inspect.signature(torch_range_test).parameters["methods"].default is None


def test_cached_results_reproduce(bench: Bench) -> None:
    """One cached training run and one cached range test, redone. Bitwise on the machine that
    filled the cache; a small tolerance for other CPUs' float summation orders."""
    torch.set_num_threads(1)
    task, seed, lr = "cancer-mlp-adam", 0, 1e-3
    again = train(TASKS[task], seed, lr)
    cached = bench.cache.runs[key(task, seed, lr)]
    assert len(again["val_loss"]) == LONG
    np.testing.assert_allclose(again["val_loss"], cached["val_loss"], rtol=1e-3)
    assert math.isclose(again["start_loss"], cached["start_loss"], rel_tol=1e-6)
    lrs, losses = range_test(TASKS[task], seed)
    want_lrs, want_losses = bench.cache.sweep(task, seed)
    np.testing.assert_allclose(lrs, want_lrs, rtol=1e-12)
    np.testing.assert_allclose(losses[:50], want_losses[:50], rtol=1e-3)  # before the LR gets large


def test_the_tasks_cover_what_the_benchmark_promises() -> None:
    """At least 16 tasks in 8 families of 2 or more, 3 seeds, two budgets 4x apart; read off the
    built models, optimizers and losses: MLPs, CNNs, BatchNorm ResNets, GRU, LSTM and attention,
    dropout, label smoothing, weight decay, a pretrained body; SGD plain, with momentum and
    Nesterov, Adam, AdamW, RMSprop, Adagrad; batches of 8 to the full training set."""
    families: dict[str, int] = {}
    for task in TASKS.values():
        families[task.family] = families.get(task.family, 0) + 1
    assert len(TASKS) >= 16 and len(families) >= 8 and min(families.values()) >= 2
    assert len(SEEDS) >= 3 and BUDGETS == ("short", "long") and LONG >= 4
    layers, optimizers, smoothing, decay = set(), set(), False, False
    for task in TASKS.values():
        torch.manual_seed(0)
        model = task.model()
        layers |= {type(m) for m in model.modules()}
        opt = task.optimizer(model.parameters(), 1e-3)
        group = opt.param_groups[0]
        kind = type(opt).__name__
        if kind == "SGD":
            kind += " nesterov" if group["nesterov"] else " momentum" if group["momentum"] else ""
        optimizers.add(kind)
        decay |= group.get("weight_decay", 0) > 0.01
        x, y, _, _ = task.data()
        with torch.no_grad():
            out = model.eval()(x[:4])
        if out.ndim == 2 and not y.is_floating_point():
            smoothing |= not math.isclose(
                float(task.loss(out, y[:4])), float(torch.nn.functional.cross_entropy(out, y[:4])), rel_tol=1e-6
            )
    nn = torch.nn
    assert {nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.GRU, nn.LSTM, nn.MultiheadAttention, nn.Dropout} <= layers
    assert {"SGD", "SGD momentum", "SGD nesterov", "Adam", "AdamW", "RMSprop", "Adagrad"} <= optimizers
    assert smoothing and decay
    sizes = {t.batch_size for t in TASKS.values()}
    assert min(s for s in sizes if s) <= 8 and 0 in sizes  # 0: the whole training set


def test_the_fine_tuning_tasks_start_pretrained() -> None:
    """A fine-tuning task's body is the pretrained one whatever the seed, not a fresh draw; its
    head is the seed's."""
    for task in (t for t in TASKS.values() if t.family == "finetune"):
        models = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            models.append(task.model())
        fresh = copy.deepcopy(models[0])
        torch.manual_seed(0)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        a, b, c = (list(m.parameters()) for m in (*models, fresh))
        assert all(torch.equal(p, q) for p, q in zip(a[:-2], b[:-2], strict=True))  # the body
        assert not any(torch.equal(p, q) for p, q in zip(a[:-2], c[:-2], strict=True))
        assert not torch.equal(a[-2], b[-2])  # the head's weights


class _Scripted:
    """A criterion whose loss is the next value of ``values`` (differentiable, of no weight)."""

    def __init__(self, values):
        self.values, self.i = list(values), 0

    def __call__(self, out, target):
        value = self.values[self.i % len(self.values)]
        self.i += 1
        return torch.tensor(value, dtype=torch.float64) + 0 * out.sum()


def _curves():
    """Scripted raw losses (float32 values, as Lightning reads them): a valley into an explosion,
    a bump before the descent, and a plateau that never explodes."""
    x = np.log10(lrfind.sweep_lrs(1e-7, 10.0, 100))
    valley = 2.3 - 1.5 / (1 + np.exp(-(x + 3) * 2)) + np.where(x > -1, 30 * (x + 1) ** 2, 0)
    bump = 2.0 + np.exp(-(((x + 5) / 0.4) ** 2)) - 1.2 / (1 + np.exp(-(x + 2) * 3)) + np.where(x > 0, 50 * x, 0)
    plateau = 1.0 + 0.01 * np.sin(np.arange(100.0))
    return [np.float32(c).astype(np.float64) for c in (valley, bump, plateau)]


def test_the_peer_replays_are_the_real_loops() -> None:
    """scoring.py replays each peer's loop over the recorded raw losses: the same history as the
    real torch-lr-finder and Lightning record, the point that stopped them included (the fastai
    replay is checked against the recorded fastai fixtures in tests/test_fastai_fixtures.py's way:
    the same Recorder order, documented in tests/fixtures/record_fastai.py)."""
    import contextlib
    import io
    import logging
    import warnings

    import lightning.pytorch as pl
    from torch_lr_finder import LRFinder

    from scoring import lightning_history, torch_lr_finder_history

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1), torch.ones(4, 1)), batch_size=1)

    class Scripted(pl.LightningModule):
        def __init__(self, values):
            super().__init__()
            self.lin, self.loss, self.lr = torch.nn.Linear(1, 1), _Scripted(values), 1e-3

        def training_step(self, batch, i):
            return self.loss(self.lin(batch[0]), batch[1]).float()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    lrs = lrfind.sweep_lrs(1e-7, 10.0, 100)
    for raw in _curves():
        net = torch.nn.Linear(1, 1)
        finder = LRFinder(net, torch.optim.SGD(net.parameters(), lr=1e-7), _Scripted(raw), device="cpu")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            finder.range_test(data, start_lr=1e-7, end_lr=10.0, num_iter=100, diverge_th=5)
        replay_lrs, replay = torch_lr_finder_history(lrs, raw)
        np.testing.assert_array_equal(replay, finder.history["loss"])
        np.testing.assert_allclose(replay_lrs, finder.history["lr"], rtol=1e-12)

        trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, max_epochs=-1)  # fmt: skip
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            found = pl.tuner.Tuner(trainer).lr_find(
                Scripted(raw), train_dataloaders=data, min_lr=1e-7, max_lr=10.0, num_training=100, update_attr=False
            )
        # Lightning spaces its own LRs (and so reads another sweep): the losses are what is replayed.
        _, replay = lightning_history(lrs, raw)
        np.testing.assert_array_equal(replay, found.results["loss"])
