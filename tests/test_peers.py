"""lrfind against the real torch-lr-finder 0.2.2 and Lightning 2.6.6 LR finders, on real training runs.

Each case trains a small MLP (in-64-64-out, ReLU) on a standardised scikit-learn data set on the CPU,
through the peer's own range test (1e-7 to 10, 100 exponential steps), and checks that lrfind
reproduces what the peer computed from that run (torch-lr-finder also sweeps linearly on two cases):

* torch-lr-finder: its history is ``ema(raw losses, alpha=0.05)``; ``plot(suggest_lr=True)`` picks
  ``suggest(..., "steepest", space="index", skip_start=10, skip_end=5, backoff=0)``; its ladder is
  ``sweep_lrs(1e-7, end, 100, mode)``; and its stop rule is ``DivergenceDetector(5, watch="smoothed")``.
* Lightning: ``_LRFinder.suggestion(skip_begin=10, skip_end=1)`` picks the same point as
  ``suggest(..., "steepest", space="linear", skip_start=10, skip_end=1, backoff=0)``. Lightning
  computes that gradient in float32, lrfind in float64; on every case here they agree exactly.

The cases mix data sets, optimisers and seeds so that both peers stop early on some and run all 100
steps on others (torch-lr-finder: digits/Adam/seed 1 runs to the end; Lightning: digits/Adam/seed 1
and diabetes/Adam/seed 1), and Lightning's pick falls on the window's first point on some.
"""

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.tuner import Tuner
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_lr_finder import LRFinder

import lrfind

START_LR, END_LR, NUM_ITER = 1e-7, 10.0, 100
DATASETS = {  # name: (loader, regression?, batch size)
    "digits": (load_digits, False, 64),
    "breast_cancer": (load_breast_cancer, False, 32),
    "diabetes": (load_diabetes, True, 32),
}
OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
CASES = [  # (data set, optimiser, seed)
    ("digits", "adam", 0),
    ("digits", "adam", 1),
    ("digits", "sgd", 0),
    ("breast_cancer", "adam", 1),
    ("diabetes", "adam", 0),
    ("diabetes", "sgd", 1),
    ("diabetes", "adam", 1),
]
# torch-lr-finder also sweeps linearly (to 1.0): there index space is linear space, not log space, so
# the exp and linear cases together tell all three of our ``space`` options apart.
TLF_CASES = [(*case, "exp", END_LR) for case in CASES] + [
    ("digits", "sgd", 0, "linear", 1.0),
    ("diabetes", "sgd", 0, "linear", 1.0),
]
# lightning/pytorch/utilities/_pytree.py on torch 2.15: a deprecation inside Lightning, not ours.
LIGHTNING_PYTREE = pytest.mark.filterwarnings(r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning")


def case_id(case):
    return "-".join(map(str, case))


def make_task(dataset, seed):
    """(data loader, criterion, MLP) for ``dataset``, seeded: same case, same run."""
    loader, regression, batch_size = DATASETS[dataset]
    x, y = loader(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    if regression:
        y = torch.tensor((y - y.mean()) / y.std(), dtype=torch.float32)[:, None]
        criterion, n_out = nn.MSELoss(), 1
    else:
        y = torch.tensor(y)
        criterion, n_out = nn.CrossEntropyLoss(), int(y.max()) + 1
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_out))
    data = DataLoader(
        TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    return data, criterion, net


class RecordingLoss:
    """Wraps a criterion and keeps every raw loss it returns (torch-lr-finder records only smoothed ones)."""

    def __init__(self, criterion):
        self.criterion = criterion
        self.raw = []

    def __call__(self, outputs, labels):
        loss = self.criterion(outputs, labels)
        self.raw.append(loss.item())
        return loss


class MLPModule(LightningModule):
    """The same MLP and loss as a LightningModule; the finder overrides the optimiser's LR."""

    def __init__(self, net, criterion, optimizer):
        super().__init__()
        self.net, self.criterion, self.optimizer_name = net, criterion, optimizer

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.criterion(self.net(x), y)

    def configure_optimizers(self):
        return OPTIMIZERS[self.optimizer_name](self.parameters(), lr=1e-3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=TLF_CASES, ids=case_id)
def tlf_run(request):
    """A real torch-lr-finder range test: (finder, raw losses, the LR its plot suggests)."""
    dataset, optimizer, seed, step_mode, end_lr = request.param
    data, criterion, net = make_task(dataset, seed)
    recording = RecordingLoss(criterion)
    finder = LRFinder(net, OPTIMIZERS[optimizer](net.parameters(), lr=START_LR), recording, device="cpu")
    finder.range_test(data, start_lr=START_LR, end_lr=end_lr, num_iter=NUM_ITER, step_mode=step_mode, diverge_th=5)
    figure = Figure()
    FigureCanvasAgg(figure)  # Agg, without pyplot: nothing global to show or close
    _, suggested = finder.plot(skip_start=10, skip_end=5, suggest_lr=True, ax=figure.subplots())
    return finder, np.array(recording.raw), suggested, (step_mode, end_lr)


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def lightning_finder(request, tmp_path_factory):
    """A real Lightning ``Tuner.lr_find`` run, returning its ``_LRFinder``."""
    dataset, optimizer, seed = request.param
    data, criterion, net = make_task(dataset, seed)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=-1,
        default_root_dir=tmp_path_factory.mktemp("lightning"),
    )
    return Tuner(trainer).lr_find(
        MLPModule(net, criterion, optimizer),
        train_dataloaders=data,
        min_lr=START_LR,
        max_lr=END_LR,
        num_training=NUM_ITER,
        update_attr=False,
    )


def test_torch_lr_finder_history_is_our_ema(tlf_run):
    finder, raw, _, _ = tlf_run
    assert len(raw) == len(finder.history["loss"])
    np.testing.assert_allclose(lrfind.ema(raw, alpha=0.05), finder.history["loss"], rtol=1e-12, atol=0)


def test_torch_lr_finder_ladder_is_our_sweep(tlf_run):
    finder, _, _, (step_mode, end_lr) = tlf_run
    lrs = finder.history["lr"]
    np.testing.assert_allclose(lrs, lrfind.sweep_lrs(START_LR, end_lr, NUM_ITER, step_mode)[: len(lrs)], rtol=1e-12)


def test_torch_lr_finder_plot_suggestion_is_our_steepest(tlf_run):
    finder, _, suggested, _ = tlf_run
    lrs, losses = finder.history["lr"], finder.history["loss"]
    s = lrfind.suggest(lrs, losses, "steepest", space="index", skip_start=10, skip_end=5, backoff=0)
    assert s.lr == suggested
    assert lrs[s.index] == suggested
    assert 10 <= s.index < len(lrs) - 5


def test_torch_lr_finder_stop_is_our_detector(tlf_run):
    """torch-lr-finder appends the point, then stops if ``smoothed > 5 * best`` with that point already in
    ``best``; lrfind's detector compares with the best *before* the point. For positive losses they agree:
    a point that lowers the best equals the best and cannot exceed 5x it. The detector names the stop point,
    which torch-lr-finder keeps as its last entry, so its history holds ``stop_index + 1`` points; without
    a stop both run over every one of the ``num_iter`` losses."""
    finder, raw, _, _ = tlf_run
    assert (raw > 0).all()
    detector = lrfind.DivergenceDetector(threshold=5, watch="smoothed", alpha=0.05)
    for loss in raw:
        detector.update(loss)
    if detector.stopped:
        assert detector.stop_reason == "threshold"
        assert len(finder.history["loss"]) == detector.stop_index + 1
    else:
        assert len(finder.history["loss"]) == NUM_ITER


@LIGHTNING_PYTREE
def test_lightning_suggestion_is_our_steepest_linear(lightning_finder):
    lrs, losses = lightning_finder.results["lr"], lightning_finder.results["loss"]
    assert np.isfinite(losses).all()  # nothing for Lightning to drop (it drops non-finite points, we cut at the first)
    expected = lightning_finder.suggestion(skip_begin=10, skip_end=1)
    s = lrfind.suggest(lrs, losses, "steepest", space="linear", skip_start=10, skip_end=1, backoff=0)
    assert s.index == lightning_finder._optimal_idx
    assert s.lr == expected
