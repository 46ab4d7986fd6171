"""K=16 parallel range tests against 16 sequential ones and against one, on the CPU.

An MLP (64-64-10) on scikit-learn's digits, AdamW, 100 steps from 1e-6 to 1e-2 (no divergence,
so every contender does all the work). ``parallel`` runs the 16 sweeps vmapped in one
forward/backward per step; ``sequential`` calls ``range_test`` 16 times; ``one`` calls it once
(the price of a single curve). With benchmarks enabled the module prints the speed-up (goal:
parallel at least 4x faster than sequential) and what the 16-run spread costs over one run.
Under plain ``pytest`` each runs once with K=2 and 10 steps, as a test.
"""

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrfind.torch import parallel_range_test, range_test

from report import print_summary

SIZES = ((16, 100), (2, 10))  # (runs, steps) with benchmarks (enabled, disabled)


def _task():
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    data = DataLoader(TensorDataset(x, torch.tensor(y)), batch_size=64, shuffle=True)
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), data


def parallel(model, data, runs, steps):
    parallel_range_test(
        model, nn.functional.cross_entropy, data, num_runs=runs, min_lr=1e-6, max_lr=1e-2, num_steps=steps,
        progress=False,
    )  # fmt: skip


def sequential(model, data, runs, steps):
    for _ in range(runs):
        one(model, data, runs, steps)


def one(model, data, runs, steps):
    opt = torch.optim.AdamW(model.parameters())
    range_test(model, opt, nn.functional.cross_entropy, data, min_lr=1e-6, max_lr=1e-2, num_steps=steps, progress=False)


RUNS = {"parallel": parallel, "sequential": sequential, "one": one}


@pytest.fixture(scope="module")
def best(request):
    times = {}
    yield times
    if len(times) == 3:
        lines = [
            f"parallel is {times['sequential'] / times['parallel']:.1f}x faster than 16 sequential",
            f"16 parallel runs cost {times['parallel'] / times['one']:.1f}x one range test",
        ]
        print_summary(request, "parallel range tests, K=16 (best of N)", lines)


@pytest.mark.benchmark(group="16 range tests: MLP on digits, 100 steps, CPU", min_rounds=3)
@pytest.mark.parametrize("name", list(RUNS))
def test_parallel_vs_sequential(benchmark, best, name):
    torch.set_num_threads(1)
    model, data = _task()
    runs, steps = SIZES[benchmark.disabled]
    benchmark.pedantic(RUNS[name], args=(model, data, runs, steps), rounds=3 if benchmark.enabled else 1)
    if benchmark.enabled:
        best[name] = benchmark.stats.stats.min
