"""The PyTorch range test against a bare training loop and torch-lr-finder, on the CPU.

A small CNN on scikit-learn's digits (8x8 images), Adam, batch 64, 100 steps from 1e-6 to 1e-2
(a range that never diverges, so every contender runs all 100 steps). Three contenders:

* ``lrfind``: ``lrfind.torch.range_test`` (snapshot and restore, grad norms, device records);
* ``bare_loop``: the same 100 steps written by hand (set the LR, forward, backward, step);
* ``torch_lr_finder``: torch-lr-finder 0.2.2's ``range_test`` plus its ``reset()``.

Under plain ``pytest`` each runs once on 10 steps, as a test. With benchmarks enabled the module
prints the overhead ratio (goal: lrfind at most 1.03x the bare loop) and the speed-up over
torch-lr-finder.
"""

import statistics
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrfind
from lrfind.torch import range_test

from report import print_summary

STEPS = (100, 10)  # (benchmarks enabled, disabled)
MIN_LR, MAX_LR = 1e-6, 1e-2


def _task():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean()) / x.std(), dtype=torch.float32).reshape(-1, 1, 8, 8)
    data = DataLoader(TensorDataset(x, torch.tensor(y)), batch_size=64, shuffle=True)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    return net, torch.optim.Adam(net.parameters(), lr=1e-3), nn.CrossEntropyLoss(), data


def run_lrfind(net, opt, loss_fn, data, steps):
    result = range_test(net, opt, loss_fn, data, min_lr=MIN_LR, max_lr=MAX_LR, num_steps=steps, progress=False)
    assert len(result.lrs) == steps


def run_bare_loop(net, opt, loss_fn, data, steps):
    lrs = lrfind.sweep_lrs(MIN_LR, MAX_LR, steps)
    batches = iter(data)
    for lr in lrs.tolist():
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(data)
            x, y = next(batches)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def run_torch_lr_finder(net, opt, loss_fn, data, steps):
    from torch_lr_finder import LRFinder

    finder = LRFinder(net, opt, loss_fn, device="cpu")
    finder.range_test(data, start_lr=MIN_LR, end_lr=MAX_LR, num_iter=steps, diverge_th=1e30)
    finder.reset()
    assert len(finder.history["lr"]) == steps


RUNS = {"lrfind": run_lrfind, "bare_loop": run_bare_loop, "torch_lr_finder": run_torch_lr_finder}


@pytest.fixture(scope="module")
def best(request):
    times = {}
    yield times
    lines = []
    if {"lrfind", "bare_loop"} <= times.keys():
        lines.append(f"lrfind / bare loop: {times['lrfind'] / times['bare_loop']:.3f} (goal <= 1.03)")
    if {"lrfind", "torch_lr_finder"} <= times.keys():
        lines.append(f"torch-lr-finder / lrfind: {times['torch_lr_finder'] / times['lrfind']:.2f}x")
    if "paired" in times:
        line = "lrfind / bare loop, median of {} back-to-back pairs: {:.3f} (goal <= 1.03)"
        lines.append(line.format(*times["paired"]))
    print_summary(request, "lrfind range test vs a bare loop (best of N)", lines)


@pytest.mark.benchmark(group="range test: CNN on digits, 100 steps, CPU", min_rounds=5)
@pytest.mark.parametrize("name", list(RUNS))
def test_range_test(benchmark, best, name):
    """One range test's worth of training steps by each contender, on identical work."""
    torch.set_num_threads(1)  # steadier timings on a shared 2-core machine
    net, opt, loss_fn, data = _task()
    steps = STEPS[benchmark.disabled]
    before = [p.detach().clone() for p in net.parameters()]
    benchmark(RUNS[name], net, opt, loss_fn, data, steps)
    if name != "bare_loop":  # both finders put the weights back
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    if benchmark.enabled:
        best[name] = benchmark.stats.stats.min
    np.testing.assert_equal(torch.get_num_threads(), 1)


PAIRS = (12, 1)


@pytest.mark.benchmark(group="range test overhead, back-to-back pairs")
def test_paired_overhead(benchmark, best):
    """lrfind and the bare loop run back to back, alternating which goes first; the median of the
    per-pair ratios is steadier on a shared machine than a ratio of separate minima."""
    torch.set_num_threads(1)
    steps, pairs = STEPS[benchmark.disabled], PAIRS[benchmark.disabled]
    ratios = []

    def pair(order):
        times = {}
        for name in order:
            net, opt, loss_fn, data = _task()
            start = time.perf_counter()
            RUNS[name](net, opt, loss_fn, data, steps)
            times[name] = time.perf_counter() - start
        ratios.append(times["lrfind"] / times["bare_loop"])

    def all_pairs():
        for i in range(pairs):
            pair(("lrfind", "bare_loop") if i % 2 else ("bare_loop", "lrfind"))

    benchmark.pedantic(all_pairs, rounds=1, iterations=1)
    if benchmark.enabled:
        best["paired"] = (pairs, statistics.median(ratios))
