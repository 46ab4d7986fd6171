"""``lrfind.compat.torch_lr_finder`` against the real torch-lr-finder 0.2.2, on real training: a small MLP on
scikit-learn's digits, real optimizers, DataLoaders, autocast and GradScaler, never a mock of torch.

Each comparison runs both packages on twin models, data orders and seeds, and checks what a user of
torch-lr-finder sees: ``history`` (LRs and smoothed losses), the stop, ``best_loss``, ``plot``'s suggestion,
how often the criterion and the grad scaler are called, and the exceptions misuse raises. Then what lrfind
adds: everything restored bitwise after a run (also one that raises), ``result``, and the host reads saved.
Last, ``lrfind.torch.LRFinder`` refuses torch-lr-finder's names with lrfind's.

Counting is done with small wrappers (a criterion, a GradScaler subclass), not mocks.
"""

import gc
import glob
import os
import random
import re
import tempfile
from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch_lr_finder.lr_finder as real
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import lrfind
import lrfind.compat.torch_lr_finder as compat
import lrfind.torch

from bitwise import assert_identical, observe

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
#: A scale small enough that no fp16 step overflows: a skipped first step makes torch-lr-finder's own
#: scheduler warn (and warnings are errors here).
SMALL_SCALE = 2.0**8

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- real data and models -------------------------------------------------------------------------


@cache
def digits():
    """(standardised float32 features, int64 labels) of scikit-learn's digits; never modified."""
    x, y = load_digits(return_X_y=True)
    return torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32), torch.tensor(y)


def loader(seed=0, batch_size=64, size=None, shuffle=True):
    """A DataLoader over the first ``size`` digits, shuffled by its own seeded generator."""
    x, y = digits()
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(x[:size], y[:size]), batch_size=batch_size, shuffle=shuffle, generator=generator)


def mlp(seed=0, batch_norm=False, dropout=0.0):
    """A seeded 64-32-10 MLP, optionally with BatchNorm and Dropout."""
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(32)] if batch_norm else []
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(nn.Linear(64, 32), *norm, nn.ReLU(), *drop, nn.Linear(32, 10))


OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


class CountingLoss:
    """Cross-entropy that counts its calls and keeps every loss it returns (torch-lr-finder records only
    smoothed ones)."""

    def __init__(self, fail_at=None, error=RuntimeError):
        self.calls, self.raw, self.fail_at, self.error = 0, [], fail_at, error

    def __call__(self, outputs, labels):
        self.calls += 1
        if self.calls == self.fail_at:
            raise self.error(f"criterion call {self.calls}")
        loss = F.cross_entropy(outputs, labels)
        self.raw.append(loss.item())
        return loss


class CountingScaler(torch.amp.GradScaler):
    """A GradScaler that counts its ``scale`` calls."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale_calls = 0

    def scale(self, outputs):
        self.scale_calls += 1
        return super().scale(outputs)


def finder(package, optimizer="adam", seed=0, criterion=None, model=None, **settings):
    """An ``LRFinder`` of ``package`` (``real`` or ``compat``) on a fresh seeded MLP at LR 1e-7."""
    model = mlp(seed) if model is None else model
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=1e-7)
    return package.LRFinder(model, opt, CountingLoss() if criterion is None else criterion, **settings)


def plotted(lr_finder, **kwargs):
    """``plot``'s return value on Agg axes (no pyplot: nothing global to show or close)."""
    figure = Figure()
    FigureCanvasAgg(figure)
    return lr_finder.plot(ax=figure.subplots(), **kwargs)


def assert_same_history(expected, got):
    """Same LRs, same stop, and the same smoothed losses and best loss (to float rounding)."""
    assert got.history["lr"] == expected.history["lr"]
    np.testing.assert_allclose(got.history["loss"], expected.history["loss"], rtol=1e-12, atol=0)
    assert got.best_loss == pytest.approx(expected.best_loss, rel=1e-12, abs=0)


def lrfind_temp_files():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "lrfind*")))


# --- the same run as torch-lr-finder -----------------------------------------------------------------

#: (optimizer, seed, range_test arguments): runs that stop (Adam at step 88 of 100, SGD at 98, with 2 micro-
#: batches per step at 90), ones that run to the end (linear to 1.0; 60 steps from 1e-5 with torch-lr-finder's
#: other knobs set).
CASES = [
    ("adam", 0, {}),
    ("sgd", 1, {}),
    ("sgd", 1, {"step_mode": "linear", "end_lr": 1.0}),
    ("adam", 1, {"accumulation_steps": 2}),
    ("sgd", 2, {"start_lr": 1e-5, "end_lr": 3.0, "num_iter": 60, "smooth_f": 0.2, "diverge_th": 3}),
]


def case_id(case):
    optimizer, seed, kwargs = case
    return "-".join([optimizer, str(seed), *(f"{k}={v}" for k, v in kwargs.items())])


@pytest.fixture(scope="module", params=CASES, ids=case_id)
def twins(request):
    """torch-lr-finder and lrfind's compat layer on twin runs: (real finder, compat finder, arguments)."""
    optimizer, seed, kwargs = request.param
    runs = []
    for package in (real, compat):
        lr_finder = finder(package, optimizer, seed)
        lr_finder.range_test(loader(seed), **kwargs)
        runs.append(lr_finder)
    return (*runs, kwargs)


def test_same_history_and_stop_as_torch_lr_finder(twins):
    expected, got, kwargs = twins
    assert_same_history(expected, got)
    steps = len(expected.history["lr"])
    assert 10 < steps <= kwargs.get("num_iter", 100)
    # Every micro-batch's loss the same; the compat layer reads the losses every 10 steps, so after a stop
    # it ran on to the next read (and undid those steps).
    micro = len(expected.criterion.raw)
    np.testing.assert_allclose(got.criterion.raw[:micro], expected.criterion.raw, rtol=1e-12, atol=0)
    assert micro == steps * kwargs.get("accumulation_steps", 1)
    assert len(got.criterion.raw) == kwargs.get("accumulation_steps", 1) * min(
        kwargs.get("num_iter", 100), -(-steps // 10) * 10
    )


def test_ctrl_c_keeps_the_history_so_far_as_torch_lr_finder():
    """A long run interrupted at step 16 (between two host reads): the 15 steps before it are
    history, to plot, as torch-lr-finder has them."""
    runs = []
    for package in (real, compat):
        lr_finder = finder(package, criterion=CountingLoss(16, KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            lr_finder.range_test(loader(0))
        runs.append(lr_finder)
    assert len(runs[0].history["lr"]) == 15
    assert_same_history(*runs)


def test_same_plot_and_suggestion_as_torch_lr_finder(twins):
    expected, got, _ = twins
    for kwargs in ({}, {"skip_start": 0, "skip_end": 0}, {"skip_start": 5, "skip_end": 10, "log_lr": False}):
        (ax_expected, lr_expected), (ax_got, lr_got) = plotted(expected, **kwargs), plotted(got, **kwargs)
        assert lr_got == lr_expected
        np.testing.assert_array_equal(ax_got.lines[0].get_xdata(), ax_expected.lines[0].get_xdata())
        np.testing.assert_allclose(ax_got.lines[0].get_ydata(), ax_expected.lines[0].get_ydata(), rtol=1e-12)
        assert len(ax_got.collections) == len(ax_expected.collections) == 1
        assert ax_got.get_xscale() == ax_expected.get_xscale()
    ax = plotted(got, suggest_lr=False, show_lr=1e-3)
    assert len(ax.lines) == 2 and len(ax.collections) == 0


def test_result_is_lrfinds_analysis_of_the_raw_losses(twins):
    expected, got, kwargs = twins
    result = got.result
    assert isinstance(result, lrfind.RangeTestResult)
    lrs, raw = result.recorded
    np.testing.assert_array_equal(lrs, expected.history["lr"])
    # The raw losses the criterion returned (with accumulation, the mean of the micro-batches' losses).
    k = kwargs.get("accumulation_steps", 1)
    micro = np.reshape(expected.criterion.raw, (-1, k)).mean(axis=1)
    np.testing.assert_allclose(raw, micro, rtol=1e-6 if k > 1 else 0, atol=0)
    # torch-lr-finder's history is their EMA, first point raw.
    np.testing.assert_allclose(lrfind.ema(raw, kwargs.get("smooth_f", 0.05)), expected.history["loss"], rtol=1e-12)
    again = lrfind.RangeTestResult.from_sweep(lrs, raw)
    assert result.suggested_lr == again.suggested_lr and result.diagnosis.kind == again.diagnosis.kind
    assert result.suggested_range == again.suggested_range and result.stop_index == again.stop_index


def test_plot_picks_as_torch_lr_finder_on_any_history():
    """The histories of torch-lr-finder's own suggestion test (integer LRs from 0 included), a flat one and
    one with a NaN, where lrfind.suggest would differ: the compat layer picks as torch-lr-finder does."""
    histories = [
        (range(6), [10, 8, 4, 1, 4, 16]),
        (range(6), [1, 0, 1, 2, 3, 4]),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]),
        ([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, float("nan"), 1.0]),
    ]
    expected, got = finder(real), finder(compat)
    for lrs, losses in histories:
        for lr_finder in (expected, got):
            lr_finder.history = {"lr": lrs, "loss": losses}
        (_, lr_expected), (_, lr_got) = (
            plotted(expected, skip_start=0, skip_end=0),
            plotted(got, skip_start=0, skip_end=0),
        )
        assert lr_got == lr_expected and type(lr_got) is type(lr_expected)


def test_validation_loss_is_recorded_as_torch_lr_finder():
    """A validation pass after every step (a last batch of 44 samples: the loss is weighted per sample),
    through a DataLoader and through a ValDataLoaderIter."""
    runs = []
    for package in (real, compat):
        for wrap in (False, True):
            lr_finder = finder(package, "sgd", seed=3)
            val = loader(shuffle=False, size=300)
            lr_finder.range_test(loader(3), val_loader=package.ValDataLoaderIter(val) if wrap else val, num_iter=25)
            runs.append(lr_finder)
    expected = runs[0]
    assert len(expected.history["lr"]) == 25
    for got in runs[1:]:
        assert_same_history(expected, got)
        assert got.criterion.calls == expected.criterion.calls == 25 * (1 + 5)


class DictDigits(Dataset):
    """The digits as ``{"image": ..., "label": ...}`` samples: batches that need ``inputs_labels_from_batch``."""

    def __len__(self):
        return len(digits()[0])

    def __getitem__(self, i):
        x, y = digits()
        return {"image": x[i], "label": y[i]}


class DictBatches:
    def inputs_labels_from_batch(self, batch_data):
        return batch_data["image"], batch_data["label"]


class RealTrainIter(DictBatches, real.TrainDataLoaderIter):
    pass


class RealValIter(DictBatches, real.ValDataLoaderIter):
    pass


class CompatTrainIter(DictBatches, compat.TrainDataLoaderIter):
    pass


class CompatValIter(DictBatches, compat.ValDataLoaderIter):
    pass


def test_dict_batches_through_data_loader_iter_subclasses():
    """Subclasses of the compat iterators, and of the real package's (written against torch-lr-finder and
    left as they were), give the same run as torch-lr-finder's."""

    def run(package, train_cls, val_cls):
        lr_finder = finder(package, "adam", seed=4)
        train = DataLoader(DictDigits(), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(4))
        val = DataLoader(torch.utils.data.Subset(DictDigits(), range(128)), batch_size=64)
        lr_finder.range_test(train_cls(train), val_loader=val_cls(val), num_iter=20, end_lr=1.0)
        return lr_finder

    expected = run(real, RealTrainIter, RealValIter)
    assert len(expected.history["lr"]) == 20
    for got in (run(compat, CompatTrainIter, CompatValIter), run(compat, RealTrainIter, RealValIter)):
        assert_same_history(expected, got)


def test_data_loader_iters_behave_as_torch_lr_finders():
    data = loader(shuffle=False, size=256)  # 4 batches
    for package in (real, compat):
        train = package.TrainDataLoaderIter(data)
        assert [torch.equal(next(train)[0], batch[0]) for batch in [*data, *data]] == [True] * 8  # resets itself
        once = package.TrainDataLoaderIter(data, auto_reset=False)
        assert len([next(once) for _ in range(4)]) == 4
        with pytest.raises(StopIteration):
            next(once)
        val = package.ValDataLoaderIter(data)
        assert len(list(val)) == 4 and len(list(val)) == 4  # iter() starts a new pass
        with pytest.raises(StopIteration):
            next(val)
        assert val.dataset is data.dataset
        with pytest.raises(ValueError, match="Your batch type is not supported"):
            package.DataLoaderIter(DataLoader(DictDigits(), batch_size=4)).__next__()


# --- call counts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer, end_lr", [("sgd", 1e-2), ("adam", 10.0)], ids=["runs-to-the-end", "stops"])
def test_criterion_and_scaler_called_once_per_micro_batch(optimizer, end_lr):
    """fp16 autocast on the CPU with a GradScaler and 2 micro-batches per step, as torch-lr-finder."""
    runs = []
    for package in (real, compat):
        scaler = CountingScaler("cpu", init_scale=SMALL_SCALE)
        amp = {"device_type": "cpu", "dtype": torch.float16}
        lr_finder = finder(package, optimizer, seed=5, amp_backend="torch", amp_config=amp, grad_scaler=scaler)
        lr_finder.range_test(loader(5, batch_size=32), end_lr=end_lr, num_iter=40, accumulation_steps=2)
        runs.append(lr_finder)
    expected, got = runs
    assert_same_history(expected, got)
    steps = len(got.history["lr"])
    assert (steps == 40) == (end_lr == 1e-2)
    assert got.criterion.calls == got.grad_scaler.scale_calls == 2 * steps
    assert expected.criterion.calls == expected.grad_scaler.scale_calls == 2 * steps


def test_check_every_changes_only_the_steps_run_past_the_stop():
    """Reading the losses every 10 steps gives the same history and stop as every step; only the steps
    after the stop, up to the next read, ran (and were undone)."""
    runs = []
    for check_every in (1, 10, None):
        lr_finder = finder(compat, "adam", seed=0)
        lr_finder.range_test(loader(0), accumulation_steps=2, check_every=check_every)
        runs.append(lr_finder)
    step_by_step, every_10, default = runs
    steps = len(step_by_step.history["lr"])
    assert steps < 100 and step_by_step.criterion.calls == 2 * steps
    for got in (every_10, default):
        assert got.history == step_by_step.history and got.best_loss == step_by_step.best_loss
        assert got.criterion.calls == 2 * min(100, -(-steps // 10) * 10)


@pytest.mark.parametrize("past_the_stop", [True, False])
def test_a_failing_step_after_the_stop_is_no_error(past_the_stop):
    """torch-lr-finder never runs a step after the stop, so an error there (a data iterator that ran out,
    say) must not surface from the steps the compat layer ran ahead; an error up to the stop does."""
    stop = len(finder_run(real, CountingLoss()).history["lr"])
    assert stop < 100
    fail_at = stop + 1 if past_the_stop else stop
    runs = []
    for package in (real, compat):
        criterion = CountingLoss(fail_at)
        if past_the_stop:
            runs.append(finder_run(package, criterion))
        else:
            with pytest.raises(RuntimeError, match=f"criterion call {stop}"):
                finder_run(package, criterion)
            assert criterion.calls == stop
    if past_the_stop:
        assert_same_history(*runs)


def finder_run(package, criterion):
    """Adam, seed 0, the default sweep (it stops at step 88 of 100): the finder after its range test."""
    lr_finder = finder(package, "adam", seed=0, criterion=criterion)
    lr_finder.range_test(loader(0))
    return lr_finder


# --- what lrfind adds: the model comes back --------------------------------------------------------


def mid_training(seed=0):
    """A model (BatchNorm, Dropout) three Adam steps into training, gradients still in place, a StepLR
    scheduler attached (torch-lr-finder refuses that; everything is restored here): (model, optimizer)."""
    model = mlp(seed, batch_norm=True, dropout=0.2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x, y in list(loader(seed))[:3]:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return model, optimizer


@pytest.mark.parametrize("memory_cache", [True, False], ids=["memory", "disk"])
@pytest.mark.parametrize("setup", ["plain", "amp-and-val"])
@pytest.mark.parametrize("ending", ["completes", "raises", "interrupted"])
def test_restores_everything(ending, setup, memory_cache, tmp_path):
    """Model, optimizer, grad scaler, every RNG and the loaders' generators, bit for bit, also when the
    criterion raises (or Ctrl-C) mid-run; no temporary file outlives the run but ``reset()``'s own."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    model, optimizer = mid_training()
    model[1].eval()  # frozen BatchNorm statistics: the training flags come back too
    data, val = loader(seed=1), loader(seed=2, size=128)
    scaler = torch.amp.GradScaler("cpu", init_scale=SMALL_SCALE)
    settings = {}
    if setup == "amp-and-val":
        settings = dict(amp_backend="torch", amp_config={"device_type": "cpu", "dtype": torch.float16})
    fail_at = None if ending == "completes" else 23
    criterion = CountingLoss(fail_at, RuntimeError if ending == "raises" else KeyboardInterrupt)
    before = observe(model, optimizer, scaler, [data, val])
    files_before = lrfind_temp_files()
    lr_finder = compat.LRFinder(
        model, optimizer, criterion, grad_scaler=scaler, memory_cache=memory_cache, cache_dir=tmp_path, **settings
    )
    run = dict(val_loader=val if setup == "amp-and-val" else None, end_lr=1.0, num_iter=40)
    if ending == "completes":
        lr_finder.range_test(data, **run)
        assert len(lr_finder.history["lr"]) == 40 and lr_finder.result is not None
    else:
        with pytest.raises(RuntimeError if ending == "raises" else KeyboardInterrupt, match="criterion call 23"):
            lr_finder.range_test(data, **run)
        assert lr_finder.result is None
    assert_identical(before, observe(model, optimizer, scaler, [data, val]))
    assert lrfind_temp_files() == files_before
    assert len(os.listdir(tmp_path)) == (not memory_cache)  # reset()'s copy, removed with the finder
    del lr_finder
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_reset_returns_to_the_state_at_construction():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    initial = observe(model, optimizer)
    lr_finder = compat.LRFinder(model, optimizer, CountingLoss())
    for x, y in list(loader())[:2]:  # the user trains on after making the finder
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    lr_finder.range_test(loader(), num_iter=10)
    lr_finder.reset()
    after = observe(model, optimizer)
    assert_identical(initial["params"], after["params"])
    assert_identical(initial["optimizer"], after["optimizer"])


@CUDA
def test_device_moves_the_model_there_and_back():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-7)
    before = observe(model, optimizer)
    devices = []

    def criterion(outputs, labels):
        devices.append((outputs.device.type, labels.device.type))
        return F.cross_entropy(outputs, labels)

    lr_finder = compat.LRFinder(model, optimizer, criterion, device="cuda")
    lr_finder.range_test(loader(), num_iter=20, end_lr=1.0)
    assert set(devices) == {("cuda", "cuda")} and len(lr_finder.history["lr"]) == 20
    assert_identical(before, observe(model, optimizer), "after a CUDA run")


# --- misuse ------------------------------------------------------------------------------------------

#: (call, arguments): torch-lr-finder's misuse, raised with the same exception and message.
MISUSE = [
    ("range_test", {"num_iter": 1}),
    ("range_test", {"num_iter": 0, "step_mode": "linear"}),
    ("range_test", {"step_mode": "cosine"}),
    ("range_test", {"smooth_f": 1.0}),
    ("range_test", {"smooth_f": -0.1}),
    ("range_test", {"start_lr": [1e-5, 1e-4]}),
    ("range_test", {"train_loader": [(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long))]}),
    ("range_test", {"val_loader": [(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long))]}),
    ("plot", {}),
    ("plot", {"skip_start": -1}),
    ("plot", {"skip_end": -1, "suggest_lr": False}),
    ("plot", {"show_lr": 1}),
    ("init", {"amp_backend": "deepspeed"}),
    ("init", {"amp_backend": "torch"}),
    ("init", {"cache_dir": "/no/such/folder"}),
]


def call(package, what, kwargs):
    """Make a finder (with ``kwargs`` for ``init``) and call ``what``: the exception it raises."""
    with pytest.raises(Exception) as raised:
        lr_finder = finder(package, **(kwargs if what == "init" else {}))
        if what == "range_test":
            lr_finder.range_test(**{"train_loader": loader(), **kwargs})
        elif what == "plot":
            lr_finder.history = {"lr": list(np.geomspace(1e-5, 1.0, 11)), "loss": [1.0] * 11}
            plotted(lr_finder, **kwargs)
    return raised.value


@pytest.mark.parametrize("what, kwargs", MISUSE, ids=lambda v: v if isinstance(v, str) else ",".join(v))
def test_misuse_raises_as_torch_lr_finder(what, kwargs):
    expected, got = call(real, what, kwargs), call(compat, what, kwargs)
    assert type(got) is type(expected) and str(got) == str(expected)


def test_misuse_touches_nothing():
    model, optimizer = mid_training()
    lr_finder = compat.LRFinder(model, optimizer, CountingLoss())
    before = observe(model, optimizer)
    for kwargs in ({"num_iter": 1}, {"step_mode": "cosine"}, {"smooth_f": 1.0}, {"start_lr": [1e-5, 1e-4]}):
        with pytest.raises(ValueError):
            lr_finder.range_test(loader(), **kwargs)
    assert_identical(before, observe(model, optimizer))
    assert lr_finder.criterion.calls == 0


def test_apex_is_refused_with_torchs_amp_named():
    with pytest.raises(ValueError, match=r'amp_backend="apex" is not supported.*amp_backend="torch"'):
        finder(compat, amp_backend="apex")


# --- lrfind.torch.LRFinder refuses torch-lr-finder's names -------------------------------------------

#: torch-lr-finder's names and what lrfind.torch's message must say instead.
RENAMED = [
    ("end_lr", 10.0, "max_lr"),
    ("start_lr", 1e-7, "min_lr"),
    ("num_iter", 100, "num_steps"),
    ("step_mode", "exp", "mode"),
    ("smooth_f", 0.05, "smooth_factor"),
    ("diverge_th", 5, "diverge_threshold"),
    ("device", "cuda", "move the model yourself"),
    ("memory_cache", False, 'state_cache="cpu"'),
    ("cache_dir", "/tmp", 'state_cache="disk"'),
    ("amp_backend", "torch", 'amp="bf16" or amp="fp16"'),
    ("amp_config", {}, 'amp="bf16" or amp="fp16"'),
    ("val_loader", [], "val_data"),
    ("train_loader", [], "the data argument"),
    ("non_blocking_transfer", True, "not needed"),
]


@pytest.mark.parametrize("name, value, instead", RENAMED, ids=[r[0] for r in RENAMED])
def test_lrfind_torch_lr_finder_refuses_torch_lr_finders_names(name, value, instead):
    model, optimizer = mid_training()
    before = observe(model, optimizer)
    expected = rf"got torch-lr-finder's argument\(s\) {name}; in lrfind\.torch: {name} -> .*{re.escape(instead)}.*"
    expected += r"lrfind\.compat\.torch_lr_finder\.LRFinder keeps torch-lr-finder's names"
    with pytest.raises(TypeError, match=r"LRFinder\(\) " + expected):
        lrfind.torch.LRFinder(model, optimizer, F.cross_entropy, **{name: value})
    lr_finder = lrfind.torch.LRFinder(model, optimizer, F.cross_entropy, num_steps=10)
    with pytest.raises(TypeError, match=r"LRFinder\.range_test\(\) " + expected):
        lr_finder.range_test(loader(), **{name: value})
    assert_identical(before, observe(model, optimizer))


def test_lrfind_torch_lr_finder_refuses_unknown_names_and_takes_its_own():
    model, optimizer = mid_training()
    with pytest.raises(TypeError, match=r"LRFinder\(\) got unexpected keyword argument\(s\) max_steps, lr: "):
        lrfind.torch.LRFinder(model, optimizer, F.cross_entropy, max_steps=10, lr=1e-3)
    lr_finder = lrfind.torch.LRFinder(model, optimizer, F.cross_entropy, num_steps=10, max_lr=1.0, progress=False)
    with pytest.raises(TypeError, match=r"got torch-lr-finder's argument\(s\) end_lr \(and unknown: steps\)"):
        lr_finder.range_test(loader(), end_lr=1.0, steps=3)
    with pytest.raises(TypeError, match=r"range_test\(\) got unexpected .* takes min_lr, max_lr, num_steps, mode, "):
        lr_finder.range_test(loader(), stop_factor=4)
    result = lr_finder.range_test(loader(), min_lr=1e-5)
    assert len(result.lrs) == 10 and result.lrs[0] == 1e-5 and result.lrs[-1] == 1.0
