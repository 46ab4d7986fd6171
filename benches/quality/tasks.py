"""The quality benchmark's tasks: small real models on data that ships inside a package.

Each task is a data set, a model, an optimizer and a fixed training budget. Everything is
deterministic for a given seed on one thread: the seed draws the initial weights and the batch
order; the train/validation split is fixed. A task trains in about a second on one CPU core.

``TASKS`` maps names to tasks. Change a task's ``version`` whenever its definition changes, so
that cached results of the old definition are not reused.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch
from torch import nn

Data = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x_train, y_train, x_val, y_val


@dataclass(frozen=True)
class Task:
    """One benchmark task: ``steps`` optimizer steps of ``batch_size`` at a constant LR."""

    name: str
    version: int
    data: Callable[[], Data]
    model: Callable[[], nn.Module]
    optimizer: Callable[[Any, float], torch.optim.Optimizer]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    steps: int
    batch_size: int
    description: str


class Batches:
    """Shuffled mini-batches, epoch after epoch, in an order fixed by ``seed``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(len(self.x), generator=self.generator)
        for i in range(0, len(order) - self.batch_size + 1, self.batch_size):
            idx = order[i : i + self.batch_size]
            yield self.x[idx], self.y[idx]


def _split(x: np.ndarray, y: np.ndarray, y_dtype: torch.dtype, val_share: float = 0.3) -> Data:
    """A fixed shuffled split; features standardised with the training statistics."""
    order = np.random.default_rng(12345).permutation(len(x))
    n_val = int(len(x) * val_share)
    val, train = order[:n_val], order[n_val:]
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    x = (x - mean) / std
    f = torch.float32
    return (
        torch.tensor(x[train], dtype=f),
        torch.tensor(y[train], dtype=y_dtype),
        torch.tensor(x[val], dtype=f),
        torch.tensor(y[val], dtype=y_dtype),
    )


@cache
def _sklearn(name: str) -> Data:
    import sklearn.datasets as ds

    x, y = getattr(ds, f"load_{name}")(return_X_y=True)
    if name == "diabetes":
        y = (y - y.mean()) / y.std()
        return _split(x, y[:, None], torch.float32)
    return _split(x, y, torch.long)


@cache
def _digits_images() -> Data:
    xt, yt, xv, yv = _sklearn("digits")
    return xt.view(-1, 1, 8, 8), yt, xv.view(-1, 1, 8, 8), yv


CONTEXT = 32


@cache
def _chars() -> Data:
    """Next-character prediction on the source of Python's own ``difflib`` module (ships with
    every CPython): windows of ``CONTEXT`` characters, targets shifted by one; the last 10% of
    the text is the validation set."""
    spec = importlib.util.find_spec("difflib")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, encoding="utf-8") as f:
        text = f.read()
    codes = np.frombuffer(text.encode("ascii", "replace"), dtype=np.uint8).astype(np.int64)
    codes = np.minimum(codes, 127)
    cut = int(len(codes) * 0.9)

    def windows(c: np.ndarray, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = np.arange(0, len(c) - CONTEXT - 1, stride)
        idx = starts[:, None] + np.arange(CONTEXT)[None, :]
        return torch.tensor(c[idx]), torch.tensor(c[idx + 1])

    xt, yt = windows(codes[:cut], 8)
    xv, yv = windows(codes[cut:], CONTEXT)
    return xt, yt, xv, yv


class CharGRU(nn.Module):
    """Embedding, one GRU layer, a linear read-out per position."""

    def __init__(self, vocab: int = 128, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(self.embed(x))[0])


class CharTransformer(nn.Module):
    """A one-layer causal transformer (pre-norm, 2 heads) with learned positions."""

    def __init__(self, vocab: int = 128, dim: int = 32):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(CONTEXT, dim) * 0.02)
        self.block = nn.TransformerEncoderLayer(
            dim, nhead=2, dim_feedforward=4 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) + self.pos[: x.shape[1]]
        return self.out(self.norm(self.block(h, src_mask=self.mask, is_causal=True)))


def _token_ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_out)
    )


def _sgdm(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _adam(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def _adamw(params: Any, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 10),
    )


_ce = nn.functional.cross_entropy
_mse = nn.functional.mse_loss

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task(
            "digits-mlp-sgdm",
            1,
            lambda: _sklearn("digits"),
            lambda: _mlp(64, 64, 10),
            _sgdm,
            _ce,
            300,
            32,
            "digits (1,797 8x8 images), MLP 64-64-64-10, SGD momentum 0.9",
        ),
        Task(
            "cancer-mlp-adam",
            1,
            lambda: _sklearn("breast_cancer"),
            lambda: _mlp(30, 32, 2),
            _adam,
            _ce,
            200,
            32,
            "breast cancer (569 x 30), MLP 30-32-32-2, Adam",
        ),
        Task(
            "diabetes-mlp-adamw",
            1,
            lambda: _sklearn("diabetes"),
            lambda: _mlp(10, 32, 1),
            _adamw,
            _mse,
            200,
            32,
            "diabetes regression (442 x 10, standardised target, MSE), MLP 10-32-32-1, AdamW wd 0.01",
        ),
        Task(
            "wine-mlp-sgdm",
            1,
            lambda: _sklearn("wine"),
            lambda: _mlp(13, 32, 3),
            _sgdm,
            _ce,
            150,
            16,
            "wine (178 x 13), MLP 13-32-32-3, SGD momentum 0.9",
        ),
        Task(
            "digits-cnn-adam",
            1,
            _digits_images,
            _cnn,
            _adam,
            _ce,
            200,
            32,
            "digits as 1x8x8 images, CNN conv16-conv32-pool-linear, Adam",
        ),
        Task(
            "digits-cnn-sgdm",
            1,
            _digits_images,
            _cnn,
            _sgdm,
            _ce,
            200,
            32,
            "digits as 1x8x8 images, the same CNN, SGD momentum 0.9",
        ),
        Task(
            "chars-gru-adamw",
            1,
            _chars,
            CharGRU,
            _adamw,
            _token_ce,
            200,
            32,
            "next character of difflib.py's source (32-char windows), GRU 32-64, AdamW wd 0.01",
        ),
        Task(
            "chars-transformer-adamw",
            1,
            _chars,
            CharTransformer,
            _adamw,
            _token_ce,
            200,
            32,
            "next character of difflib.py's source, 1-layer causal transformer d=32 2 heads, AdamW wd 0.01",
        ),
    ]
}


def init(task: Task, seed: int) -> tuple[nn.Module, Batches]:
    """The seed's initial model and batch order."""
    torch.manual_seed(seed)
    model = task.model()
    x, y, _, _ = task.data()
    return model, Batches(x, y, task.batch_size, seed)


@torch.no_grad()
def val_loss(task: Task, model: nn.Module) -> float:
    """Mean loss over the whole validation set."""
    _, _, xv, yv = task.data()
    model.eval()
    loss = float(task.loss(model(xv), yv))
    model.train()
    return loss


def train(task: Task, seed: int, lr: float) -> dict[str, Any]:
    """Train the seed's model for the task's budget at constant ``lr``; the final validation loss
    (inf if the training loss ever went non-finite) and whether the run diverged: a non-finite
    loss, or a final validation loss above the untrained model's."""
    model, batches = init(task, seed)
    start = val_loss(task, model)
    opt = task.optimizer(model.parameters(), lr)
    step, finite = 0, True
    while step < task.steps and finite:
        for x, y in batches:
            loss = task.loss(model(x), y)
            if not math.isfinite(loss.item()):
                finite = False
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step == task.steps:
                break
    final = val_loss(task, model) if finite else math.inf
    if not math.isfinite(final):
        final = math.inf
    return {"val_loss": final, "diverged": not final <= start, "start_loss": start}


def range_test(task: Task, seed: int, num_steps: int = 100) -> tuple[list[float], list[float]]:
    """lrfind's range test from the seed's initial model and batches, 1e-7 to 10 in ``num_steps``
    steps, stopped only by a non-finite loss so that every method can apply its own stop rule."""
    from lrfind.torch import range_test as lrfind_range_test

    model, batches = init(task, seed)
    opt = task.optimizer(model.parameters(), 1e-7)
    r = lrfind_range_test(
        model, opt, task.loss, batches, min_lr=1e-7, max_lr=10.0, num_steps=num_steps,
        diverge_threshold=1e300, progress=False,
    )  # fmt: skip
    lrs = list(map(float, r.lrs))
    losses = list(map(float, r.losses))
    if r.explosion_lr is not None:
        lrs.append(float(r.explosion_lr))
        losses.append(float(r.explosion_loss))
    return lrs, losses
