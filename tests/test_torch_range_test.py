"""``lrfind.torch.range_test`` on real PyTorch training: small MLPs on scikit-learn's digits and breast
cancer data, real optimizers, real DataLoaders, real autocast and GradScaler, never a mock of torch.

What lrfind records is checked against independent references:

* torch-lr-finder 0.2.2, run on the same model, data order and seed (its raw losses captured by
  wrapping the criterion), for the losses, the stop and the plot's suggestion;
* ``replay``: the range test written out as a plain training loop on a copy of the model, for the
  losses, the gradient norms, gradient accumulation, clipping, validation and every data form;
* optimizer step hooks (``register_step_pre_hook``), which see the LR of every update the optimizer
  really makes, and step functions that record what each forward pass saw;
* ``observe``: a bitwise record of everything a range test must leave as it found (model tensors,
  optimizer and scaler state, every RNG, the DataLoader generators).

The CUDA variants skip on a machine without a GPU; they are written to run as they stand on one.
"""

import contextlib
import copy
import glob
import itertools
import os
import random
import sys
import tempfile
from collections import namedtuple
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch_lr_finder import LRFinder as TorchLRFinder

import lrfind
from lrfind.torch import range_test

from bitwise import assert_identical, observe

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
#: The step at which the interrupted range tests raise, drawn once from a seeded RNG.
RAISE_AT = random.Random(4846).randrange(2, 40)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- real data and models -------------------------------------------------------------------------


@cache
def dataset(name):
    """(standardised float32 features, int64 labels) of a scikit-learn data set; never modified."""
    loader = {"digits": load_digits, "breast_cancer": load_breast_cancer}[name]
    x, y = loader(return_X_y=True)
    return torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32), torch.tensor(y)


def loader(name="digits", seed=0, batch_size=64, shuffle=True, size=None):
    """A DataLoader over the first ``size`` samples, shuffled by its own seeded generator."""
    x, y = dataset(name)
    return DataLoader(
        TensorDataset(x[:size], y[:size]),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=torch.Generator().manual_seed(seed),
    )


def mlp(name="digits", seed=0, batch_norm=False, dropout=0.0):
    """in-32-out MLP (64-32-10 on digits), optionally with BatchNorm and Dropout, seeded."""
    x, y = dataset(name)
    torch.manual_seed(seed)
    norm = [nn.BatchNorm1d(32)] if batch_norm else []
    drop = [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(nn.Linear(x.shape[1], 32), *norm, nn.ReLU(), *drop, nn.Linear(32, int(y.max()) + 1))


@dataclass
class Output:
    """A Hugging Face-style model output."""

    logits: torch.Tensor
    loss: torch.Tensor


class ClassifierWithLoss(nn.Module):
    """Keyword inputs in, an ``Output`` with ``.loss`` out: the model computes its own loss."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, inputs, labels):
        logits = self.net(inputs)
        return Output(logits, F.cross_entropy(logits, labels))


class TwoInputNet(nn.Module):
    """Two halves of the digit image through two branches, then one head."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.left, self.right, self.head = nn.Linear(32, 16), nn.Linear(32, 16), nn.Linear(32, 10)

    def forward(self, left, right):
        return self.head(torch.relu(torch.cat([self.left(left), self.right(right)], dim=1)))


Sample = namedtuple("Sample", "inputs targets")


class NamedDigits(torch.utils.data.Dataset):
    """The digits as ``Sample`` namedtuples, which the default collate batches into ``Sample``s."""

    def __len__(self):
        return len(dataset("digits")[0])

    def __getitem__(self, i):
        x, y = dataset("digits")
        return Sample(x[i], y[i])


class JitteredDigits(torch.utils.data.Dataset):
    """The digits with torch.rand noise added per sample, as augmentation in a worker does."""

    def __len__(self):
        return 256

    def __getitem__(self, i):
        x, y = dataset("digits")
        return x[i] + 0.1 * torch.rand(x.shape[1]), y[i]


class RunningInputScale(nn.Module):
    """Scales its input by a running mean of its absolute value, kept in a non-persistent buffer."""

    def __init__(self, n):
        super().__init__()
        self.register_buffer("scale", torch.ones(n), persistent=False)

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.scale.mul_(0.9).add_(x.abs().mean(0), alpha=0.1)
        return x / self.scale


def supervised(model, batch):
    """The default ``(inputs, targets)`` step, written out."""
    inputs, targets = batch
    return F.cross_entropy(model(inputs), targets)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def endless(data):
    """Batches forever, re-iterating (and so reshuffling) the data when it runs out."""
    while True:
        yield from data


def to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: to(v, device) for k, v in batch.items()}
    moved = [to(v, device) for v in batch]
    return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)


def train_step(model, optimizer, batch, device="cpu"):
    """One plain training step; returns the loss."""
    optimizer.zero_grad()
    loss = supervised(model, to(batch, device))
    loss.backward()
    optimizer.step()
    return loss.item()


# --- the reference: the range test as a plain loop -------------------------------------------------


@dataclass
class Replay:
    """What ``replay`` recorded, per step (``micro_losses``: per micro-batch)."""

    losses: np.ndarray
    grad_norms: np.ndarray
    val_losses: np.ndarray
    micro_losses: list


def replay(
    model,
    optimizer,
    data,
    lrs,
    step=supervised,
    accumulation_steps=1,
    max_grad_norm=None,
    val_data=None,
    val_every=10,
    val_batches=1,
    device="cpu",
):
    """The range test written out: one optimizer step per LR over ``accumulation_steps`` micro-batches,
    the loss their mean, the gradient norm taken (in float64) before clipping, and the mean validation
    loss over the first ``val_batches`` batches of ``val_data`` (the same ones every time) after every
    ``val_every``-th step."""
    batches = endless(data)
    val = list(itertools.islice(endless(val_data), val_batches)) if val_data is not None else None
    losses, norms, val_losses, micro = [], [], [], []
    model.train()
    for i, lr in enumerate(lrs):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        optimizer.zero_grad()
        step_losses = []
        for _ in range(accumulation_steps):
            loss = step(model, to(next(batches), device))
            (loss / accumulation_steps).backward()
            step_losses.append(loss.item())
        grads = [p.grad for p in model.parameters()]
        norms.append(torch.cat([g.flatten() for g in grads]).double().norm().item())
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        losses.append(float(np.mean(step_losses)))
        micro.extend(step_losses)
        val_losses.append(np.nan)
        if val is not None and (i + 1) % val_every == 0:
            model.eval()
            with torch.no_grad():
                val_losses[-1] = np.mean([step(model, to(b, device)).item() for b in val])
            model.train()
    return Replay(np.array(losses), np.array(norms), np.array(val_losses), micro)


def assert_same_result(a, b):
    """Two range test results record the same curve, norms, validation and stop, bit for bit."""
    for field in ("lrs", "losses", "smoothed_losses", "grad_norms", "val_losses"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    for field in ("stop_index", "stop_reason", "explosion_lr", "explosion_loss", "suggested_lr", "skipped_steps"):
        assert getattr(a, field) == getattr(b, field), field


def lrfind_temp_dirs():
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "lrfind-*")))


def record_update_lrs(optimizer):
    """Every parameter group's LR at every optimizer step that really runs: (list of lists, hook handle)."""
    seen = []
    handle = optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: seen.append([g["lr"] for g in opt.param_groups])
    )
    return seen, handle


# --- torch-lr-finder 0.2.2 on the same run ---------------------------------------------------------


class RecordingLoss:
    """Wraps a criterion and keeps every raw loss it returns (torch-lr-finder records only smoothed ones)."""

    def __init__(self):
        self.raw = []

    def __call__(self, outputs, labels):
        loss = F.cross_entropy(outputs, labels)
        self.raw.append(loss.item())
        return loss


OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
#: (data set, optimizer, seed): torch-lr-finder with diverge_th=5 runs the first two to the end, stops the others.
RUNS_TO_THE_END = [("digits", "adam", 0), ("breast_cancer", "sgd", 1)]
STOPS = [("digits", "adam", 1), ("breast_cancer", "adam", 0)]


def case_id(case):
    return "-".join(map(str, case))


def both_finders(name, optimizer, seed, diverge_threshold, watch="raw"):
    """torch-lr-finder and lrfind on the same model, data order and schedule (1e-7 to 10, 100 exp steps):
    (torch-lr-finder, its raw losses, lrfind's result). ``watch`` applies to lrfind only."""
    batch_size = 64 if name == "digits" else 32
    model = mlp(name, seed)
    recording = RecordingLoss()
    finder = TorchLRFinder(model, OPTIMIZERS[optimizer](model.parameters(), lr=1e-7), recording, device="cpu")
    finder.range_test(
        loader(name, seed, batch_size), start_lr=1e-7, end_lr=10, num_iter=100, diverge_th=diverge_threshold
    )
    model = mlp(name, seed)
    result = range_test(
        model,
        OPTIMIZERS[optimizer](model.parameters(), lr=1e-7),
        F.cross_entropy,
        loader(name, seed, batch_size),
        min_lr=1e-7,
        max_lr=10.0,
        num_steps=100,
        watch=watch,
        diverge_threshold=diverge_threshold,
    )
    return finder, np.array(recording.raw), result


@pytest.fixture(scope="module", params=RUNS_TO_THE_END, ids=case_id)
def full_runs(request):
    """Both finders over all 100 steps (a threshold neither reaches)."""
    return both_finders(*request.param, diverge_threshold=1e30)


def test_full_curve_matches_torch_lr_finder(full_runs):
    finder, raw, result = full_runs
    assert len(raw) == len(result.losses) == 100 and result.stop_index == -1
    np.testing.assert_allclose(result.lrs, finder.history["lr"], rtol=1e-12, atol=0)
    np.testing.assert_array_equal(result.losses, raw)


def test_steepest_on_our_ema_picks_torch_lr_finders_suggestion(full_runs):
    finder, _, result = full_runs
    figure = Figure()
    FigureCanvasAgg(figure)  # Agg, without pyplot: nothing global to show or close
    _, suggested = finder.plot(skip_start=10, skip_end=5, suggest_lr=True, ax=figure.subplots())
    smoothed = lrfind.ema(result.losses, 0.05)
    s = lrfind.suggest(result.lrs, smoothed, "steepest", space="index", skip_start=10, skip_end=5, backoff=0)
    assert s.index == finder.history["lr"].index(suggested)
    assert s.lr == result.lrs[s.index] == pytest.approx(suggested, rel=1e-12, abs=0)


@pytest.mark.parametrize("case", STOPS, ids=case_id)
def test_stop_matches_torch_lr_finder(case):
    """torch-lr-finder keeps the point that stopped it as its last history entry."""
    finder, raw, result = both_finders(*case, diverge_threshold=5, watch="smoothed")
    assert result.stop_reason == "threshold"
    assert len(finder.history["loss"]) == len(raw) == result.stop_index + 1 < 100
    np.testing.assert_array_equal(result.losses, raw[:-1])
    assert result.explosion_loss == raw[-1]


# --- what the optimizer sees -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["exp", "linear"])
@pytest.mark.parametrize("device", DEVICES)
def test_recorded_lr_is_the_lr_of_each_update(device, mode):
    model = mlp().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    seen, hook = record_update_lrs(optimizer)
    result = range_test(model, optimizer, F.cross_entropy, loader(), min_lr=1e-4, max_lr=1e-2, num_steps=50, mode=mode)
    hook.remove()
    assert result.stop_index == -1 and len(result.lrs) == 50
    np.testing.assert_array_equal(result.lrs, [lrs[0] for lrs in seen])
    np.testing.assert_array_equal(result.lrs, lrfind.sweep_lrs(1e-4, 1e-2, 50, mode))
    assert result.lrs[0] == 1e-4 and result.lrs[-1] == 1e-2
    assert optimizer.param_groups[0]["lr"] == 0.5 and not optimizer.state  # no momentum buffers left


@pytest.mark.parametrize("group_lrs", ["ratio", "same"])
def test_param_groups(group_lrs):
    model = mlp()
    groups = [{"params": model[0].parameters(), "lr": 1e-3}, {"params": model[2].parameters(), "lr": 1e-2}]
    optimizer = torch.optim.SGD(groups, momentum=0.9)
    seen, hook = record_update_lrs(optimizer)
    result = range_test(
        model, optimizer, F.cross_entropy, loader(), min_lr=1e-5, max_lr=1e-1, num_steps=40, group_lrs=group_lrs
    )
    hook.remove()
    first, second = np.array(seen).T
    assert len(first) == 40
    np.testing.assert_array_equal(result.lrs, first)
    if group_lrs == "ratio":
        np.testing.assert_allclose(second, 10 * first, rtol=1e-15, atol=0)
    else:
        np.testing.assert_array_equal(second, first)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 1e-2]


def test_accumulation_averages_micro_batches_and_moves_the_lr_once_per_step():
    model, data = mlp(), loader()
    twin = copy.deepcopy(model)
    call_lrs, micro = [], []
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step(model, batch):
        call_lrs.append(optimizer.param_groups[0]["lr"])
        loss = supervised(model, batch)
        micro.append(loss.item())
        return loss

    updates, hook = record_update_lrs(optimizer)
    result = range_test(model, optimizer, None, data, step_fn=step, accumulation_steps=3, max_lr=1e-1, num_steps=20)
    hook.remove()
    assert len(result.lrs) == 20 and len(updates) == 20 and len(call_lrs) == 60
    np.testing.assert_array_equal(np.reshape(call_lrs, (20, 3)), np.repeat(result.lrs[:, None], 3, axis=1))
    np.testing.assert_allclose(result.losses, np.reshape(micro, (20, 3)).mean(axis=1), rtol=1e-6, atol=0)
    reference = replay(twin, torch.optim.SGD(twin.parameters()), loader(), result.lrs, accumulation_steps=3)
    assert reference.micro_losses == micro
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6, atol=0)


@pytest.mark.parametrize("max_grad_norm", [None, 0.5])
def test_grad_norms_are_the_total_norm_of_each_step(max_grad_norm):
    """The norm is taken before clipping; clipping then changes the update (and so the later losses)."""
    model = mlp("breast_cancer")
    twin = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    data = loader("breast_cancer", batch_size=32)
    result = range_test(
        model, optimizer, F.cross_entropy, data, min_lr=1e-3, max_lr=3.0, num_steps=40, max_grad_norm=max_grad_norm
    )
    reference = replay(
        twin,
        torch.optim.SGD(twin.parameters()),
        loader("breast_cancer", batch_size=32),
        result.lrs,
        max_grad_norm=max_grad_norm,
    )
    np.testing.assert_array_equal(result.losses, reference.losses)
    np.testing.assert_allclose(result.grad_norms, reference.grad_norms, rtol=1e-5, atol=0)
    if max_grad_norm is not None:
        assert (result.grad_norms > max_grad_norm).any()  # clipping really happened


def test_validation_every_5_steps_over_2_batches():
    """Validation runs in eval mode (BatchNorm on its running statistics) and training resumes after it."""
    model = mlp(batch_norm=True)
    twin = copy.deepcopy(model)
    optimizer = torch.optim.Adam(model.parameters())
    val = loader(shuffle=False, size=256)
    result = range_test(
        model,
        optimizer,
        F.cross_entropy,
        loader(),
        min_lr=1e-5,
        max_lr=1e-2,
        num_steps=30,
        val_data=val,
        val_every=5,
        val_batches=2,
    )
    assert len(result.lrs) == 30
    measured = np.flatnonzero(~np.isnan(result.val_losses))
    np.testing.assert_array_equal(measured, np.arange(4, 30, 5))
    reference = replay(
        twin, torch.optim.Adam(twin.parameters()), loader(), result.lrs, val_data=val, val_every=5, val_batches=2
    )
    np.testing.assert_allclose(result.val_losses, reference.val_losses, rtol=1e-6, atol=0)


# --- mixed precision -------------------------------------------------------------------------------


def test_bf16_autocast_on_cpu():
    model = mlp()
    twin = copy.deepcopy(model)
    seen = []

    def step(model, batch):
        out = model(batch[0])
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"), out.dtype))
        return F.cross_entropy(out, batch[1])

    def autocast_step(model, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return supervised(model, batch)

    result = range_test(
        model, torch.optim.SGD(model.parameters()), None, loader(), step_fn=step, amp="bf16", max_lr=1e-1, num_steps=30
    )
    assert set(seen) == {(True, torch.bfloat16, torch.bfloat16)}
    reference = replay(twin, torch.optim.SGD(twin.parameters()), loader(), result.lrs, step=autocast_step)
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_fp16_skipped_steps_do_not_advance_the_sweep():
    """A scale of 2**40 overflows fp16 gradients: the scaler skips (and halves the scale) until it fits."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    before = copy.deepcopy(scaler.state_dict())
    calls = []  # (LR, scale) at every forward pass, skipped steps included

    def step(model, batch):
        calls.append((optimizer.param_groups[0]["lr"], scaler.get_scale()))
        return supervised(model, batch)

    updates, hook = record_update_lrs(optimizer)
    result = range_test(
        model,
        optimizer,
        None,
        loader(),
        step_fn=step,
        amp="fp16",
        grad_scaler=scaler,
        min_lr=1e-4,
        max_lr=1e-2,
        num_steps=40,
    )
    hook.remove()
    call_lrs, scales = np.array(calls).T
    halvings = int(np.sum(scales[1:] < scales[:-1]))
    assert result.skipped_steps == halvings == len(calls) - 40 > 0
    assert result.stop_index == -1 and np.isfinite(result.losses).all()
    np.testing.assert_array_equal(result.lrs, lrfind.sweep_lrs(1e-4, 1e-2, 40))
    np.testing.assert_array_equal(result.lrs, [lrs[0] for lrs in updates])
    assert result.lrs[0] == 1e-4 and call_lrs[0] == 1e-4
    # The LR at each forward pass: a skipped step is retried at the same LR, none is left out.
    changes = np.flatnonzero(np.diff(call_lrs)) + 1
    np.testing.assert_array_equal(call_lrs[np.r_[0, changes]], result.lrs)
    assert scaler.state_dict() == before and scaler.get_scale() == 2.0**40


def test_fp16_skipped_steps_do_not_depend_on_check_every():
    results = []
    for check_every in (1, 100):
        model = mlp()
        results.append(
            range_test(
                model,
                torch.optim.SGD(model.parameters()),
                F.cross_entropy,
                loader(),
                amp="fp16",
                grad_scaler=torch.amp.GradScaler("cpu", init_scale=2.0**20),
                min_lr=1e-3,
                max_lr=1e3,
                num_steps=100,
                check_every=check_every,
            )
        )
    assert results[0].stop_index >= 0
    assert_same_result(*results)


# --- restore ----------------------------------------------------------------------------------------


def augmenting_step(model, batch):
    """Jitter the inputs with numpy and Python RNG draws (as data augmentation does), then the loss."""
    inputs, targets = batch
    noise = np.random.standard_normal(tuple(inputs.shape)).astype(np.float32) * random.uniform(0.0, 0.1)
    return F.cross_entropy(model(inputs + torch.from_numpy(noise).to(inputs.device)), targets)


def mid_training(device, data):
    """A model (BatchNorm, Dropout) three Adam steps into training, with a StepLR scheduler attached
    and the gradients of the last step still in place: (model, optimizer, scheduler)."""
    model = mlp(batch_norm=True, dropout=0.2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = endless(data)
    for _ in range(3):
        train_step(model, optimizer, next(batches), device)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cache", ["cpu", "disk"])
@pytest.mark.parametrize("ending", ["completes", "raises", "interrupted"])
def test_restore(ending, cache, device):
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training(device, data)
    model[1].eval()  # frozen BatchNorm statistics: the training flags come back too
    scaler = torch.amp.GradScaler(device, init_scale=2.0**20)
    before = observe(model, optimizer, scaler, [data])
    dirs_before = lrfind_temp_dirs()
    dirs_during = []

    def step(model, batch):
        dirs_during.append(lrfind_temp_dirs())
        if ending != "completes" and len(dirs_during) == RAISE_AT:
            raise (RuntimeError if ending == "raises" else KeyboardInterrupt)(f"at step {RAISE_AT}")
        return augmenting_step(model, batch)

    run = dict(step_fn=step, amp="fp16", grad_scaler=scaler, state_cache=cache, max_lr=1e-1, num_steps=40)
    if ending == "completes":
        result = range_test(model, optimizer, None, data, **run)
        assert result.stop_index == -1 and len(dirs_during) == 40 + result.skipped_steps
    else:
        with pytest.raises(RuntimeError if ending == "raises" else KeyboardInterrupt, match=f"at step {RAISE_AT}"):
            range_test(model, optimizer, None, data, **run)
        assert len(dirs_during) == RAISE_AT
    assert_identical(before, observe(model, optimizer, scaler, [data]))
    assert lrfind_temp_dirs() == dirs_before
    assert len(dirs_during[0] - dirs_before) == (cache == "disk")


def test_restore_covers_non_persistent_buffers():
    model = nn.Sequential(RunningInputScale(64), mlp())
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    before = observe(model, optimizer)
    range_test(model, optimizer, F.cross_entropy, loader(), max_lr=1e-1, num_steps=10)
    assert_identical(before, observe(model, optimizer))


@pytest.mark.parametrize("ending", ["completes", "interrupted"])
def test_restore_covers_parameters_outside_the_model(ending):
    """A learnable loss temperature the optimizer trains beside the model's weights."""
    model = mlp()
    temperature = nn.Parameter(torch.ones(()))
    optimizer = torch.optim.Adam([{"params": model.parameters()}, {"params": [temperature], "lr": 1e-2}], lr=1e-3)
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        if ending == "interrupted" and len(calls) == RAISE_AT:
            raise KeyboardInterrupt
        return F.cross_entropy(out / temperature, y)

    before = observe(model, optimizer)
    with contextlib.suppress(KeyboardInterrupt):
        range_test(model, optimizer, loss_fn, loader(), max_lr=1.0, num_steps=30, progress=False)
    assert len(calls) >= RAISE_AT
    assert_identical(before, observe(model, optimizer))
    assert temperature.item() == 1.0 and temperature.grad is None


def test_restore_keeps_the_optimizer_states_own_dtype():
    """Adafactor keeps float32 factors for bfloat16 weights; load_state_dict would cast them to
    bfloat16 (rounded), so the restore must not go through it."""
    Adafactor = pytest.importorskip("transformers.optimization").Adafactor
    model = mlp().to(torch.bfloat16)
    optimizer = Adafactor(model.parameters(), lr=1e-3, relative_step=False, scale_parameter=False)
    inputs, targets = next(iter(loader()))
    for _ in range(3):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs.bfloat16()), targets).backward()
        optimizer.step()
    factors = [t for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    assert torch.float32 in {t.dtype for t in factors}, "the premise: float32 state beside bfloat16 weights"
    before = observe(model, optimizer)
    range_test(model, optimizer, F.cross_entropy, (inputs.bfloat16(), targets), num_steps=10, progress=False)
    assert_identical(before, observe(model, optimizer))


def test_the_next_epoch_of_a_loader_with_persistent_workers_is_unchanged():
    """persistent_workers=True keeps the iterator a sweep opens, and the user's next epoch would
    reuse its workers (their RNGs advanced, no new base seed drawn from the restored RNG)."""

    def next_epoch(sweep):
        seed_everything(0)
        data = DataLoader(JitteredDigits(), batch_size=64, shuffle=True, num_workers=1, persistent_workers=True)
        model = mlp()
        if sweep:
            range_test(model, torch.optim.SGD(model.parameters()), F.cross_entropy, data, num_steps=6, progress=False)
        return torch.cat([x for x, _ in data]), torch.get_rng_state()

    without, with_sweep = next_epoch(False), next_epoch(True)
    assert torch.equal(without[0], with_sweep[0]) and torch.equal(without[1], with_sweep[1])


Moment = namedtuple("Moment", "mean count")  # optimizer state a user's optimizer may keep


class GrowingCache(nn.Module):
    """An MLP with two buffers its forward pass changes: one resized to the batch (a positional
    cache), one first None and set on the first call."""

    def __init__(self):
        super().__init__()
        self.net = mlp()
        self.register_buffer("cache", torch.zeros(4), persistent=False)
        self.register_buffer("lazy", None)

    def forward(self, x):
        if self.cache.shape[0] < x.shape[0]:
            self.cache = torch.zeros(x.shape[0])
        if self.lazy is None:
            self.lazy = torch.ones(3)
        return self.net(x)


class Versioned(nn.Linear):
    """A module whose _load_from_state_dict migrates old checkpoints (version < 2): a restore
    that loses the state dict's _metadata would migrate the current weights."""

    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, metadata, *args):
        if (metadata or {}).get("version") is None or metadata["version"] < 2:
            state_dict[prefix + "weight"] = state_dict[prefix + "weight"] * 2
        super()._load_from_state_dict(state_dict, prefix, metadata, *args)


@pytest.mark.parametrize("ending", ["completes", "interrupted"])
def test_buffers_the_forward_pass_resizes_or_sets_come_back(ending):
    model = GrowingCache()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = observe(model, optimizer)
    calls = []

    def loss_fn(out, y):
        calls.append(1)
        if ending == "interrupted" and len(calls) == RAISE_AT:
            raise KeyboardInterrupt
        return F.cross_entropy(out, y)

    with contextlib.suppress(KeyboardInterrupt):
        range_test(model, optimizer, loss_fn, loader(), num_steps=20, progress=False)
    assert_identical(before, observe(model, optimizer))
    assert model.cache.shape == (4,) and model.lazy is None and "cache" in model._non_persistent_buffers_set


def test_a_versioned_module_is_not_migrated_by_the_restore():
    model = nn.Sequential(Versioned(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = observe(model, optimizer)
    for where in ("cpu", "disk"):
        range_test(model, optimizer, F.cross_entropy, loader(), num_steps=10, state_cache=where, progress=False)
        assert_identical(before, observe(model, optimizer))


class MarginHead(nn.Module):
    """A loss module with a learnable scale and a running statistic, as margin losses keep."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.register_buffer("running", torch.zeros(()))

    def forward(self, out, y):
        if self.training:
            self.running.mul_(0.9).add_(0.1 * out.detach().mean())
        return F.cross_entropy(out * self.scale, y)


def test_a_loss_module_comes_back_with_the_model():
    model, head = mlp(), MarginHead()
    head.train()
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1)
    head_before = {k: v.clone() for k, v in head.state_dict().items()}
    before = observe(model, optimizer)
    range_test(model, optimizer, head, loader(), num_steps=20, progress=False)
    assert_identical(before, observe(model, optimizer))
    assert_identical(head_before, head.state_dict())


def test_optimizer_state_beyond_the_parameters_comes_back_in_the_same_objects():
    """State under a key that is no parameter, a namedtuple in the state, a tensor LR and a
    mutable value kept in a group: the same objects afterwards, with their values; the state
    dicts of the parameters too."""

    class Counting(torch.optim.SGD):
        def step(self, closure=None):
            self.state["global"]["count"] = self.state["global"].get("count", 0) + 1
            for p in self.param_groups[0]["params"]:
                old = self.state[p].get("moment", Moment(torch.zeros_like(p), 0))
                self.state[p]["moment"] = Moment(old.mean + p.grad, old.count + 1)
            return super().step(closure)

    model = mlp()
    tags = ["backbone"]
    optimizer = Counting([{"params": model.parameters(), "tags": tags}], lr=torch.tensor(0.1), momentum=0.9)
    inputs, targets = next(iter(loader()))
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    group, lr = optimizer.param_groups[0], optimizer.param_groups[0]["lr"]
    states = {id(p): optimizer.state[p] for p in model.parameters()}
    before = observe(model, optimizer)
    for where in ("cpu", "disk"):
        range_test(model, optimizer, F.cross_entropy, loader(), num_steps=10, state_cache=where, progress=False)
        assert_identical(before, observe(model, optimizer))
        assert optimizer.state["global"]["count"] == 2 and optimizer.param_groups[0] is group
        assert group["lr"] is lr and float(lr) == pytest.approx(0.1) and group["tags"] is tags
        assert all(optimizer.state[p] is states[id(p)] for p in model.parameters())
        assert type(optimizer.state[model[0].weight]["moment"]) is Moment


def test_an_unpicklable_group_value_does_not_stop_the_disk_cache():
    model = mlp()
    optimizer = torch.optim.SGD([{"params": model.parameters(), "note": lambda: "kept"}], lr=0.1)
    before = observe(model, optimizer)
    range_test(model, optimizer, F.cross_entropy, loader(), num_steps=10, state_cache="disk", progress=False)
    assert_identical(before, observe(model, optimizer))


def test_a_param_group_added_during_the_sweep_is_named_and_dropped():
    model, extra = mlp(), nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = observe(model, optimizer)
    calls = []

    def step_fn(model, batch):
        calls.append(1)
        if len(calls) == 5:
            optimizer.add_param_group({"params": [extra]})
        return F.cross_entropy(model(batch[0]), batch[1]) + 0 * extra.sum()

    with pytest.raises(RuntimeError, match="parameter groups changed during the sweep .*add_param_group"):
        range_test(model, optimizer, None, loader(), step_fn=step_fn, num_steps=20, progress=False)
    assert_identical(before, observe(model, optimizer))
    assert len(optimizer.param_groups) == 1 and extra not in optimizer.state


def test_requires_grad_toggled_during_the_sweep_comes_back():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def step_fn(model, batch):
        calls.append(1)
        model[0].weight.requires_grad_(len(calls) < 5)  # freeze the first layer's weight midway
        return F.cross_entropy(model(batch[0]), batch[1])

    range_test(model, optimizer, None, loader(), step_fn=step_fn, num_steps=10, progress=False)
    assert model[0].weight.requires_grad


def test_a_frozen_batchnorm_stays_frozen_during_the_sweep_and_a_model_in_eval_mode_trains():
    """A submodule put in eval mode inside a model in train mode (fine-tuning with frozen
    BatchNorm statistics) keeps them during the sweep, validation included; a model left
    in eval mode entirely is put in train mode, as before."""
    model = mlp(batch_norm=True)
    model[1].eval()
    stats = model[1].running_mean.clone()
    seen = []
    model[1].register_forward_pre_hook(lambda m, args: seen.append(m.training))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    range_test(model, optimizer, F.cross_entropy, loader(), val_data=loader(), val_every=3, num_steps=12,
               restore=False, progress=False)  # fmt: skip
    assert not any(seen) and torch.equal(model[1].running_mean, stats)
    model.eval()
    seen.clear()
    range_test(model, optimizer, F.cross_entropy, loader(), num_steps=5, progress=False)
    assert all(seen[:5]) and not model.training


def test_a_range_test_under_no_grad_still_trains():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reference = range_test(model, optimizer, F.cross_entropy, loader(), num_steps=10, progress=False)
    with torch.no_grad():
        result = range_test(model, optimizer, F.cross_entropy, loader(), num_steps=10, progress=False)
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_a_persistent_loader_mid_epoch_finishes_its_epoch_as_without_the_sweep():
    def epoch_with_sweep_at(batch, sweep):
        seed_everything(0)
        data = DataLoader(JitteredDigits(), batch_size=32, shuffle=True, num_workers=1, persistent_workers=True)
        model = mlp()
        seen = []
        for i, (x, _) in enumerate(data):
            seen.append(x)
            if i == batch and sweep:
                range_test(model, torch.optim.SGD(model.parameters()), F.cross_entropy, data, num_steps=6,
                           progress=False)  # fmt: skip
        return torch.cat(seen)

    assert torch.equal(epoch_with_sweep_at(2, False), epoch_with_sweep_at(2, True))


class BucketSampler:
    """A batch sampler with its own generator, as bucketing samplers have."""

    def __init__(self, n, size, generator):
        self.n, self.size, self.generator = n, size, generator

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator).tolist()
        return iter([order[i : i + self.size] for i in range(0, self.n, self.size)])

    def __len__(self):
        return -(-self.n // self.size)


def test_a_batch_samplers_own_generator_comes_back():
    x, y = dataset("digits")
    generator = torch.Generator().manual_seed(3)
    data = DataLoader(TensorDataset(x[:256], y[:256]), batch_sampler=BucketSampler(256, 32, generator))
    state = generator.get_state()
    model = mlp()
    range_test(model, torch.optim.SGD(model.parameters()), F.cross_entropy, data, num_steps=20, progress=False)
    assert torch.equal(generator.get_state(), state)


def test_scaler_usable_after_an_interrupt_inside_the_optimizer_step():
    """Ctrl-C (or an out-of-memory error) while the optimizer steps, after the scaler unscaled the
    gradients: the user's scaler must still train the next step."""
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu")
    updates = []

    def interrupt_third_update(optimizer, args, kwargs):
        updates.append(optimizer.param_groups[0]["lr"])
        if len(updates) == 3:
            raise KeyboardInterrupt

    hook = optimizer.register_step_pre_hook(interrupt_third_update)
    with pytest.raises(KeyboardInterrupt):
        range_test(model, optimizer, F.cross_entropy, loader(), amp="fp16", grad_scaler=scaler, num_steps=10)
    hook.remove()
    inputs, targets = next(iter(loader()))
    with torch.autocast("cpu", dtype=torch.float16):
        loss = F.cross_entropy(model(inputs), targets)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # RuntimeError if the interrupted step's "unscaled" stage leaked
    scaler.step(optimizer)
    scaler.update()


def test_restore_false_keeps_the_trained_weights():
    model = mlp()
    twin = copy.deepcopy(model)
    before = observe(model, torch.optim.SGD(model.parameters()))
    result = range_test(
        model, torch.optim.SGD(model.parameters()), F.cross_entropy, loader(), max_lr=1e-1, num_steps=20, restore=False
    )
    replay(twin, torch.optim.SGD(twin.parameters()), loader(), result.lrs)
    for (name, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert not torch.equal(p, before["params"][name]), name
        assert torch.equal(p, q), name


def training_story(device, with_range_test):
    """Train a few Adam steps, attach a StepLR scheduler, train on, (range test), then train 10 more
    steps from the same DataLoader iterator: the losses of those 10 steps and the final weights."""
    seed_everything(0)
    data = loader()
    model, optimizer, scheduler = mid_training(device, data)
    batches = endless(data)
    for _ in range(3):
        train_step(model, optimizer, next(batches), device)
        scheduler.step()
    if with_range_test:
        before = observe(model, optimizer, loaders=[data])
        result = range_test(model, optimizer, F.cross_entropy, data, min_lr=1e-4, num_steps=40)
        assert result.stop_index >= 0  # it trained into the explosion
        assert_identical(before, observe(model, optimizer, loaders=[data]))
    losses = []
    for _ in range(10):
        losses.append(train_step(model, optimizer, next(batches), device))
        scheduler.step()
    return losses, [p.detach().clone() for p in model.parameters()], scheduler.get_last_lr()


@pytest.mark.parametrize("device", DEVICES)
def test_training_continues_as_if_no_range_test_ran(device):
    """Lightning #4846: the range test in the middle of training changes nothing that follows."""
    losses, params, lr = training_story(device, with_range_test=True)
    twin_losses, twin_params, twin_lr = training_story(device, with_range_test=False)
    assert losses == twin_losses
    assert lr == twin_lr
    for p, q in zip(params, twin_params, strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("device", DEVICES)
def test_check_every_does_not_change_the_result(device):
    results = []
    for check_every in (1, 7, 13):
        model = mlp().to(device)
        optimizer = torch.optim.Adam(model.parameters())
        results.append(
            range_test(
                model,
                optimizer,
                F.cross_entropy,
                loader(),
                val_data=loader(seed=1, size=256),
                val_every=3,
                min_lr=1e-4,
                num_steps=50,
                check_every=check_every,
            )
        )
    # It stops within 50 steps: 7 and 13 are coprime, so at least one of them trains on past the stop.
    assert results[0].stop_index >= 0
    for other in results[1:]:
        assert_same_result(results[0], other)


# --- data forms -------------------------------------------------------------------------------------


def run_and_replay(model, data, replay_data=None, step=supervised, num_steps=30):
    """lrfind on ``data`` (SGD, 1e-7 to 0.1), then ``replay`` of its LRs on a copy of the model over
    ``replay_data`` (default: ``data`` again)."""
    twin = copy.deepcopy(model)
    result = range_test(
        model, torch.optim.SGD(model.parameters()), None, data, step_fn=step, max_lr=1e-1, num_steps=num_steps
    )
    assert len(result.lrs) == num_steps
    data = data if replay_data is None else replay_data
    return result, replay(twin, torch.optim.SGD(twin.parameters()), data, result.lrs, step=step)


def test_short_dataloader_is_re_iterated():
    seen = []

    def step(model, batch):
        seen.append(batch[0])
        return supervised(model, batch)

    data = loader(shuffle=False, size=256)  # 4 batches for 30 steps
    result, reference = run_and_replay(mlp(), data, step=step)
    batches = [inputs for inputs, _ in data]
    for i, inputs in enumerate(seen[:30]):  # lrfind's 30 steps (the replay's follow)
        assert torch.equal(inputs, batches[i % 4]), i
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_plain_list_of_batches():
    batches = list(loader(size=320))
    result, reference = run_and_replay(mlp(), batches)
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_one_fixed_batch_is_repeated():
    """The seed's mode: the same (inputs, targets) tuple every step."""
    batch = tuple(next(iter(loader())))  # a DataLoader's batch is a list: a list is an iterable of batches
    result, reference = run_and_replay(mlp(), batch, replay_data=[batch])
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_dict_batches_and_a_model_that_returns_its_loss():
    batches = list(loader(size=320))
    model = ClassifierWithLoss(mlp())
    as_dicts = [{"inputs": x, "labels": y} for x, y in batches]
    result = range_test(model, torch.optim.SGD(model.parameters()), None, as_dicts, max_lr=1e-1, num_steps=30)
    plain = mlp()
    as_tuples = range_test(
        plain, torch.optim.SGD(plain.parameters()), F.cross_entropy, batches, max_lr=1e-1, num_steps=30
    )
    assert len(result.lrs) == 30
    np.testing.assert_array_equal(result.losses, as_tuples.losses)
    np.testing.assert_array_equal(result.grad_norms, as_tuples.grad_norms)


def test_step_fn_for_a_two_input_model():
    x, y = dataset("digits")

    def two_halves(model, batch):
        left, right, targets = batch
        return F.cross_entropy(model(left, right), targets)

    def halves():
        return DataLoader(
            TensorDataset(x[:, :32], x[:, 32:], y),
            batch_size=64,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )

    result, reference = run_and_replay(TwoInputNet(), halves(), replay_data=halves(), step=two_halves)
    np.testing.assert_array_equal(result.losses, reference.losses)


def test_backward_fn_runs_each_micro_batchs_backward():
    """A framework's backward (accelerator.backward, say) gets each micro-batch's scaled loss
    once and replaces loss.backward(): same curve as the default when it does the same."""
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])
    seen = []

    def backward(loss):
        seen.append(float(loss.detach()))
        loss.backward()

    settings = dict(num_steps=12, accumulation_steps=2, progress=False)
    custom = range_test(model, optimizer, F.cross_entropy, data, backward_fn=backward, **settings)
    assert_identical(before, observe(model, optimizer, loaders=[data]))
    plain = range_test(model, optimizer, F.cross_entropy, data, **settings)
    np.testing.assert_array_equal(custom.losses, plain.losses)
    assert len(seen) == 2 * (len(custom.lrs) + (custom.explosion_lr is not None))
    with pytest.raises(ValueError, match="backward_fn owns the backward pass and its loss scaling"):
        range_test(model, optimizer, F.cross_entropy, data, backward_fn=backward, amp="fp16", **settings)


def test_namedtuple_batches():
    result, reference = run_and_replay(mlp(), DataLoader(NamedDigits(), batch_size=64))
    np.testing.assert_array_equal(result.losses, reference.losses)


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value, error",
    [
        ("accumulation_steps", 0, ValueError),
        ("check_every", 0, ValueError),
        ("val_every", 0, ValueError),
        ("amp", "fp8", ValueError),
        ("group_lrs", "x", ValueError),
        ("max_grad_norm", -1, ValueError),
        ("max_grad_norm", True, ValueError),
        ("max_grad_norm", "1", ValueError),
        ("loss_fn", nn.CrossEntropyLoss, TypeError),
        ("loss_fn", 5, TypeError),
        ("step_fn", 5, TypeError),
        ("backward_fn", 5, TypeError),
        ("model", [nn.Linear(2, 2)], TypeError),
        ("optimizer", [torch.zeros(1)], TypeError),
        ("optimizer", "adam", TypeError),
        ("distributed", "yes", ValueError),
        ("distributed", True, ValueError),  # torch.distributed is not initialised
        ("state_cache", "gpu", ValueError),
        ("data", 42, TypeError),
        ("min_lr", 0, ValueError),
        ("num_steps", 1.5, TypeError),
        ("diverge_threshold", 1, ValueError),
        ("diverge_threshold", "x", TypeError),
        ("smooth_factor", 0, ValueError),
        ("patience", 2.5, ValueError),
    ],
)
def test_bad_input_names_the_parameter_and_touches_nothing(name, value, error):
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])
    dirs_before = lrfind_temp_dirs()
    kwargs = {"model": model, "optimizer": optimizer, "loss_fn": F.cross_entropy, "data": data, "num_steps": 20}
    kwargs[name] = value
    with pytest.raises(error, match=name):
        range_test(**kwargs)
    assert_identical(before, observe(model, optimizer, loaders=[data]))
    assert lrfind_temp_dirs() == dirs_before


def test_a_loss_fn_that_returns_a_float_is_named_with_the_fix():
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])
    with pytest.raises(TypeError, match=r"loss_fn must return the loss as a tensor, got float .*not loss.item\(\)"):
        range_test(model, optimizer, lambda out, y: F.cross_entropy(out, y).item(), data, num_steps=5)
    with pytest.raises(TypeError, match="step_fn must return the loss as a tensor, got NoneType None"):
        range_test(model, optimizer, None, data, step_fn=lambda model, batch: None, num_steps=5)
    assert_identical(before, observe(model, optimizer, loaders=[data]))


def test_a_missing_loss_fn_or_a_wrong_step_fn_is_named_with_the_fix():
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])
    # loss_fn=None on (inputs, targets) batches: the model is called with both and takes one.
    with pytest.raises(
        TypeError, match=r"with loss_fn=None the model is called as model\(inputs, targets\).*pass loss_fn"
    ):
        range_test(model, optimizer, None, data, num_steps=5)
    with pytest.raises(TypeError, match=r"step_fn must take \(model, batch\) .* got a function of \(batch\)"):
        range_test(model, optimizer, None, data, num_steps=5, step_fn=lambda batch: batch)
    # A loss_fn beside a step_fn would never run (the step_fn computes the loss).
    calls = []

    def counted(out, y):
        calls.append(1)
        return F.cross_entropy(out, y)

    with pytest.raises(ValueError, match=r"loss_fn=<function .*counted.* and step_fn=.* both given.*pass loss_fn=None"):
        range_test(
            model,
            optimizer,
            counted,
            data,
            num_steps=5,
            step_fn=lambda model, batch: counted(model(batch[0]), batch[1]),
        )
    assert calls == []
    assert_identical(before, observe(model, optimizer, loaders=[data]))


def test_loss_shapes_and_gradients_are_checked_with_the_fix():
    """A one-element loss of shape (1,) trains as the scalar; a per-sample loss, a detached or an
    integer loss are named with the fix, before any update and with nothing changed."""
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])
    settings = dict(num_steps=12, progress=False)
    one = range_test(model, optimizer, lambda out, y: F.cross_entropy(out, y).reshape(1), data, **settings)
    scalar = range_test(model, optimizer, F.cross_entropy, data, **settings)
    np.testing.assert_array_equal(one.losses, scalar.losses)
    cases = [
        (
            lambda out, y: F.cross_entropy(out, y, reduction="none"),
            r"loss_fn must return one loss value, got a tensor of shape \(64,\)",
        ),
        (lambda out, y: F.cross_entropy(out, y).detach(), "loss_fn returned a loss that does not require grad"),
        (lambda out, y: torch.tensor(3), r"loss_fn returned a loss that does not require grad \(torch.int64"),
    ]
    for loss_fn, message in cases:
        with pytest.raises(ValueError, match=message):
            range_test(model, optimizer, loss_fn, data, **settings)
    assert_identical(before, observe(model, optimizer, loaders=[data]))


def test_a_dict_batch_with_a_loss_fn_is_refused_not_ignored():
    """A dict batch goes to model(**batch); a loss_fn given beside it was silently never called."""

    class Returns(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x, labels=None):
            out = self.fc(x)
            return {"logits": out, "loss": F.cross_entropy(out, labels)}

    x, y = next(iter(loader()))
    model = Returns()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = observe(model, optimizer)
    with pytest.raises(TypeError, match=r"loss_fn is called as loss_fn\(model\(inputs\), targets\).*dict \(keys \['x'"):
        range_test(model, optimizer, lambda out, t: out["loss"], [{"x": x, "labels": y}], num_steps=5)
    assert_identical(before, observe(model, optimizer))
    assert len(range_test(model, optimizer, None, [{"x": x, "labels": y}], num_steps=5).lrs) == 5


def test_batches_of_three_and_lbfgs_are_named():
    x, y = next(iter(loader()))
    model = mlp()
    with pytest.raises(TypeError, match="got tuple of 3 items, not \\(inputs, targets\\)"):
        range_test(model, torch.optim.SGD(model.parameters()), F.cross_entropy, [(x, y, y)], num_steps=5)
    with pytest.raises(ValueError, match="optimizer LBFGS is not supported"):
        range_test(model, torch.optim.LBFGS(model.parameters()), F.cross_entropy, (x, y), num_steps=5)


def test_a_group_frozen_by_lr_zero_stays_at_zero_under_ratio():
    """group_lrs="ratio" with a second group at lr 0 (frozen by its LR): it stays at 0, as
    Lightning's finder does, and the first group sweeps as alone."""
    x, y = next(iter(loader()))
    model = mlp()
    first, rest = list(model[0].parameters()), [p for m in list(model)[1:] for p in m.parameters()]
    optimizer = torch.optim.SGD([{"params": rest}, {"params": first, "lr": 0.0}], lr=1e-3)
    seen = []
    hook = optimizer.register_step_pre_hook(lambda opt, *_: seen.append([g["lr"] for g in opt.param_groups]))
    result = range_test(model, optimizer, F.cross_entropy, (x, y), num_steps=10, progress=False)
    hook.remove()
    assert all(lrs[1] == 0.0 for lrs in seen) and [lrs[0] for lrs in seen] == pytest.approx(result.lrs.tolist())
    optimizer.param_groups[0]["lr"] = 0.0
    with pytest.raises(ValueError, match='group_lrs="ratio" needs the first group\'s lr > 0'):
        range_test(model, optimizer, F.cross_entropy, (x, y), num_steps=10)


def test_numpy_settings_save_and_load(tmp_path):
    seed_everything(0)
    model, optimizer, _ = mid_training("cpu", loader())
    result = range_test(
        model, optimizer, F.cross_entropy, loader(), num_steps=20, diverge_threshold=np.float32(5), patience=np.int64(2)
    )
    result.save(tmp_path / "r.json")
    again = lrfind.RangeTestResult.load(tmp_path / "r.json")
    assert again.options == result.options and again.suggested_lr == result.suggested_lr
    assert type(result.options["threshold"]) is float and type(result.options["patience"]) is int


# --- CUDA -----------------------------------------------------------------------------------------


@CUDA
def test_cuda_sweep_syncs_only_at_the_host_check():
    """With ``check_every=num_steps`` the only host read is at the end: every step before it, with
    gradient accumulation, clipping and validation, must run without one device synchronisation."""
    x, y = dataset("digits")
    batches = [(x[i : i + 64].cuda(), y[i : i + 64].cuda()) for i in range(0, 640, 64)]
    model = mlp().cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    num_steps, updates = 30, []

    def step(model, batch):
        torch.cuda.set_sync_debug_mode("error")  # from the first forward pass on (the snapshot syncs)
        return supervised(model, batch)

    def until_the_last_update(optimizer, args, kwargs):
        updates.append(None)
        if len(updates) == num_steps:  # the host check follows
            torch.cuda.set_sync_debug_mode("default")

    hook = optimizer.register_step_post_hook(until_the_last_update)
    try:
        result = range_test(
            model,
            optimizer,
            None,
            batches,
            step_fn=step,
            min_lr=1e-4,
            max_lr=1e-1,
            num_steps=num_steps,
            check_every=num_steps,
            accumulation_steps=2,
            max_grad_norm=1.0,
            val_data=batches[:2],
            val_every=7,
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
        hook.remove()
    assert len(result.lrs) == num_steps and np.isfinite(result.losses).all() and np.isfinite(result.grad_norms).all()
    assert np.isfinite(result.val_losses[6::7]).all()


def test_a_disabled_grad_scaler_counts_as_none():
    """GradScaler(enabled=use_amp) with AMP off (or a CUDA scaler without CUDA) is disabled: it
    scales nothing and holds no state, so the sweep equals one without it (it used to crash)."""
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    seed_everything(1)
    before = observe(model, optimizer, loaders=[data])
    with_it = range_test(model, optimizer, F.cross_entropy, data, grad_scaler=scaler, num_steps=20, progress=False)
    assert_identical(before, observe(model, optimizer, loaders=[data]))
    seed_everything(1)
    without = range_test(model, optimizer, F.cross_entropy, data, num_steps=20, progress=False)
    np.testing.assert_array_equal(with_it.losses, without.losses)
    assert not scaler.is_enabled() and scaler.state_dict() == {}


def test_a_model_on_the_meta_device_a_bad_scaler_and_numpy_ints():
    seed_everything(0)
    data = loader()
    meta = torch.nn.Linear(64, 10, device="meta")
    with pytest.raises(ValueError, match=r"model's weight is on the meta device .*model.to_empty"):
        range_test(meta, torch.optim.SGD(meta.parameters()), F.cross_entropy, data, num_steps=5)
    model, optimizer, _ = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])
    with pytest.raises(TypeError, match="grad_scaler must be a torch.amp.GradScaler or None, got str 'yes'"):
        range_test(model, optimizer, F.cross_entropy, data, grad_scaler="yes", num_steps=5)
    for flag in ("restore", "progress"):  # "no" is truthy
        with pytest.raises(TypeError, match=f"{flag} must be True or False, got str 'no'"):
            range_test(model, optimizer, F.cross_entropy, data, num_steps=5, **{flag: "no"})
    with pytest.raises(ValueError, match="num_steps must be an int >= 2, got True"):
        range_test(model, optimizer, F.cross_entropy, data, num_steps=True)
    assert_identical(before, observe(model, optimizer, loaders=[data]))
    # numpy integers count as ints wherever range_test takes a count.
    counts = dict(accumulation_steps=2, check_every=5, val_every=2, val_batches=1)
    runs = [
        range_test(model, optimizer, F.cross_entropy, data, val_data=data, num_steps=10, progress=False,
                   **{k: cast(v) for k, v in counts.items()})
        for cast in (int, np.int64)
    ]  # fmt: skip
    np.testing.assert_array_equal(runs[0].losses, runs[1].losses)
    np.testing.assert_array_equal(runs[0].val_losses, runs[1].val_losses)


def test_the_stateful_finder_checks_what_it_is_given_when_it_is_given():
    from lrfind.torch import LRFinder

    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    for args, settings, error, message in [
        ((None, optimizer, F.cross_entropy), {}, TypeError, "model must be a torch.nn.Module, got NoneType"),
        ((model, "adam", F.cross_entropy), {}, TypeError, "optimizer must be a torch.optim optimizer"),
        ((model, optimizer, "mse"), {}, TypeError, "loss_fn must be callable, got str 'mse'"),
        ((model, optimizer, F.cross_entropy), {"num_steps": -5}, ValueError, "num_steps"),
        ((model, optimizer, F.cross_entropy), {"amp": "fp32"}, ValueError, 'amp must be None, "bf16" or "fp16"'),
    ]:
        with pytest.raises(error, match=message):
            LRFinder(*args, **settings)
    # refine's val_data may come with range_test(), and does.
    finder = LRFinder(model, optimizer, F.cross_entropy, refine=2, refine_steps=3, num_steps=10, progress=False)
    with pytest.raises(ValueError, match="refine=2 needs val_data"):
        finder.range_test(data)
    assert finder.range_test(data, val_data=data).refined is not None


def test_a_ctrl_c_or_an_error_in_the_restore_leaves_every_other_part_restored():
    """A KeyboardInterrupt in one part of the restore skipped the others (the optimizer kept the
    sweep's LR and state, the RNGs their draws); a failing restore also skipped the cleanup (the
    loader's iterator, the disk cache) and hid the sweep's own error."""
    seed_everything(0)
    data = loader()
    model, optimizer, _ = mid_training("cpu", data)
    calls = []

    def interrupt_once(module, *args):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    handle = model[0]._register_load_state_dict_pre_hook(interrupt_once)
    before = observe(model, optimizer, loaders=[data])
    with pytest.raises(KeyboardInterrupt):
        range_test(model, optimizer, F.cross_entropy, data, num_steps=10, progress=False)
    after = observe(model, optimizer, loaders=[data])
    for part in ("optimizer", "group_ids", "torch_rng", "python_rng", "numpy_rng", "loader_generators"):
        assert_identical({part: before[part]}, {part: after[part]})
    handle.remove()

    def failing(module, *args):
        raise RuntimeError("a strict custom hook")

    workers = DataLoader(TensorDataset(*dataset("digits")), batch_size=64, num_workers=1, persistent_workers=True)
    mine = iter(workers)
    next(mine)  # mid-epoch
    dirs = lrfind_temp_dirs()
    model[0]._register_load_state_dict_pre_hook(failing)

    def broken_step(model, batch):
        raise ValueError("the sweep's own error")

    with pytest.raises(ValueError, match="the sweep's own error") as raised:
        range_test(
            model, optimizer, None, workers, step_fn=broken_step, num_steps=10, state_cache="disk", progress=False
        )
    if sys.version_info >= (3, 11):
        assert "the restore after it failed too: RuntimeError('a strict custom hook')" in raised.value.__notes__[0]
    assert workers._iterator is mine and lrfind_temp_dirs() == dirs


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_scripted_model_is_restored():
    seed_everything(0)
    data = loader()
    model = torch.jit.script(mlp())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = observe(model, optimizer, loaders=[data])
    result = range_test(model, optimizer, F.cross_entropy, data, num_steps=20, progress=False)
    assert len(result.lrs) > 5
    assert_identical(before, observe(model, optimizer, loaders=[data]))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before:UserWarning")
def test_steps_that_do_the_range_tests_work_are_named():
    """A step_fn that steps a scheduler (the recorded LRs were 2x the ones used), runs backward
    itself (torch's 'backward through the graph a second time', or doubled gradients), or an
    optimizer over another copy of the model (a curve of nothing) are errors, with nothing changed."""
    seed_everything(0)
    data = loader()
    model, optimizer, scheduler = mid_training("cpu", data)
    before = observe(model, optimizer, loaders=[data])

    def stepping(model, batch):
        scheduler.step()
        return F.cross_entropy(model(batch[0]), batch[1])

    def backward(model, batch):
        loss = F.cross_entropy(model(batch[0]), batch[1])
        loss.backward(retain_graph=True)
        return loss

    frozen_scale = torch.ones((), requires_grad=True)  # the loss still needs a graph through the frozen model
    for step, message in [(stepping, "the LR changed during the step"), (backward, "ran backward")]:
        with pytest.raises(ValueError, match=message):
            range_test(model, optimizer, None, data, step_fn=step, num_steps=10, progress=False)
        assert_identical(before, observe(model, optimizer, loaders=[data]))
    other = torch.optim.Adam(copy.deepcopy(model).parameters())
    with pytest.raises(
        ValueError, match=r"the loss gave no gradient to any of the 6 parameter\(s\) the optimizer trains"
    ):
        range_test(model, other, F.cross_entropy, data, num_steps=10, progress=False)
    assert_identical(before, observe(model, optimizer, loaders=[data]))
    frozen = mlp()
    frozen.requires_grad_(False)
    with pytest.raises(ValueError, match="the loss gave no gradient"):
        range_test(frozen, torch.optim.SGD(frozen.parameters()), lambda out, y: F.cross_entropy(out * frozen_scale, y),
                   data, num_steps=10, progress=False)  # fmt: skip
    # Nor a first batch that gives no gradient (empty, skipped by the step):
    calls = []

    def skip_first(model, batch):
        calls.append(1)
        if len(calls) == 1:
            return torch.tensor(2.3, requires_grad=True)  # a placeholder loss of no parameter
        return F.cross_entropy(model(batch[0]), batch[1])

    assert len(range_test(model, optimizer, None, data, step_fn=skip_first, num_steps=12, progress=False).lrs) > 1
    # A linear probe is no such case: a frozen backbone as the model, the head trained in the loss.
    head = torch.nn.Linear(10, 10)
    probe = torch.optim.SGD(head.parameters(), lr=0.1)
    weights = head.weight.detach().clone()
    result = range_test(frozen, probe, lambda out, y: F.cross_entropy(head(out), y), data, num_steps=20, progress=False)
    assert result.suggested_lr is not None and torch.equal(head.weight, weights)
    lazy = torch.nn.Sequential(torch.nn.LazyLinear(10))
    with pytest.raises(ValueError, match=r"model's 0.weight is not initialised yet \(a lazy module\)"):
        range_test(lazy, torch.optim.SGD(lazy.parameters()), F.cross_entropy, data, num_steps=10)


def test_validation_reads_the_same_batches_at_every_check():
    """It read the next val_batches batches at each check: a curve of the batches, not the model."""
    seed_everything(0)
    data = loader(shuffle=False)
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    result = range_test(model, optimizer, F.cross_entropy, data, val_data=data, val_every=2, val_batches=2,
                        min_lr=1e-12, max_lr=1e-11, num_steps=12, progress=False)  # fmt: skip
    with torch.no_grad():
        first_two = [F.cross_entropy(model(x), y).item() for x, y in itertools.islice(data, 2)]
    measured = result.val_losses[~np.isnan(result.val_losses)]
    assert len(measured) == 6
    np.testing.assert_allclose(measured, np.mean(first_two), rtol=1e-6)  # an LR of 1e-11 moves nothing
    # Reading them draws no random number the training batches would: a shuffled loader (its
    # order drawn from the global RNG) trains on the same batches with val_data as without.
    shuffled = DataLoader(TensorDataset(*dataset("digits")), batch_size=64, shuffle=True)
    plain_val = DataLoader(TensorDataset(*dataset("digits")), batch_size=64)  # its iter() draws a seed too
    seeded = loader()  # its own generator, shared when it is data and val_data at once
    for train, vals in ((shuffled, (plain_val, shuffled)), (seeded, (seeded,))):
        runs = []
        for val in (None, *vals):
            torch.manual_seed(5)
            runs.append(range_test(model, optimizer, F.cross_entropy, train, val_data=val, num_steps=12,
                                   val_every=3, progress=False))  # fmt: skip
        for run in runs[1:]:
            np.testing.assert_array_equal(runs[0].losses, run.losses)


def test_a_hugging_face_model_takes_its_labels_by_name():
    """(input_ids, labels) pairs with loss_fn=None went in as model(input_ids, labels), the
    labels landing on attention_mask (an IndexError deep in transformers)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=3,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    batch = (torch.randint(1, 64, (32, 12)), torch.randint(0, 3, (32,)))
    with torch.no_grad():
        model.eval()
        want = model(batch[0], labels=batch[1]).loss.item()
    result = range_test(model, torch.optim.SGD(model.parameters()), None, batch, num_steps=5, progress=False)
    assert result.losses[0] == pytest.approx(want, rel=1e-5)  # the first loss comes before any update

    class Translator(torch.nn.Module):
        """forward(src, tgt, labels=None): the targets go second, positionally, as before."""

        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, src, tgt, labels=None):
            return F.cross_entropy(self.lin(src), tgt)

    pairs = (torch.randn(16, 4), torch.randint(0, 3, (16,)))
    translator = Translator()
    with torch.no_grad():
        want = F.cross_entropy(translator.lin(pairs[0]), pairs[1]).item()
    result = range_test(translator, torch.optim.SGD(translator.parameters()), None, pairs, num_steps=5, progress=False)
    assert result.losses[0] == pytest.approx(want, rel=1e-6)
