"""End-to-end demo: a real PyTorch range test on scikit-learn's digits.

Run ``lrfind demo`` (``make demo``; ``lrfind demo --help`` lists the options). Needs the ``demo``
extra (torch, scikit-learn); nothing is downloaded: the digits ship inside scikit-learn.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

import lrfind

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd", "adam", "adamw")
DEVICES = ("cpu", "cuda")

#: Hyperparameters besides the LR, the same for ``torch.optim`` and the parallel test's optimizers.
_OPTIMIZER_KWARGS: dict[str, dict[str, Any]] = {"sgd": {"momentum": 0.9}, "adam": {}, "adamw": {}}
_OPTIMIZER_NAMES = {"sgd": "SGD (momentum 0.9)", "adam": "Adam", "adamw": "AdamW"}
_MODEL_NAMES = {"mlp": "MLP 64-64-64-10", "cnn": "CNN (2 conv layers, no BatchNorm)"}


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the demo needs {module}: pip install 'lrfind[{extra}]'") from None


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _setup(model: str, device: str, seed: int, batch_size: int) -> tuple[Any, Any, Any]:
    """The digits as a shuffled DataLoader on ``device``, and a fresh model there."""
    _check("model", model, MODELS)
    _check("device", device, DEVICES)
    torch = _require("torch", "demo")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available here (use --device cpu)")
    datasets = _require("sklearn.datasets", "demo")
    torch.manual_seed(seed)
    x, y = datasets.load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    inputs = torch.tensor(x, dtype=torch.float32, device=device)
    if model == "cnn":
        inputs = inputs.reshape(-1, 1, 8, 8)  # the digits are 8x8 greyscale images
    dataset = torch.utils.data.TensorDataset(inputs, torch.tensor(y, device=device))
    data = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    nn = torch.nn
    if model == "mlp":
        net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    else:
        # No BatchNorm: its running statistics are updated in place, which the parallel test cannot vmap.
        net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 10),
        )
    return torch, data, net.to(device)


def run(
    seed: int = 0,
    batch_size: int = 64,
    *,
    model: str = "mlp",
    optimizer: str = "adamw",
    device: str = "cpu",
    num_steps: int = 100,
) -> lrfind.RangeTestResult:
    """A real range test of ``model`` (``"mlp"``: 64-64-64-10, or ``"cnn"``) on the digits with
    ``optimizer`` (``"sgd"``, ``"adam"`` or ``"adamw"``), one batch per LR step, LR 1e-7 -> 10."""
    _check("optimizer", optimizer, OPTIMIZERS)
    torch, data, net = _setup(model, device, seed, batch_size)
    from lrfind.torch import range_test

    optim_class = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[optimizer]
    # The LR given here is a placeholder: the range test sets it at every step.
    optim = optim_class(net.parameters(), lr=1e-3, **_OPTIMIZER_KWARGS[optimizer])
    return range_test(net, optim, torch.nn.functional.cross_entropy, data, num_steps=num_steps, arch=model)


def run_parallel(
    num_runs: int,
    seed: int = 0,
    batch_size: int = 64,
    *,
    model: str = "mlp",
    optimizer: str = "adamw",
    device: str = "cpu",
    num_steps: int = 100,
) -> lrfind.ParallelResult:
    """``num_runs`` range tests of ``run``'s setup at once (``lrfind.torch.parallel_range_test``),
    each run with its own initialisation, seeds ``seed .. seed + num_runs - 1``."""
    _check("optimizer", optimizer, OPTIMIZERS)
    torch, data, net = _setup(model, device, seed, batch_size)
    from lrfind.torch import parallel_range_test

    return parallel_range_test(
        net,
        torch.nn.functional.cross_entropy,
        data,
        num_runs=num_runs,
        optimizer=optimizer,
        optimizer_kwargs=_OPTIMIZER_KWARGS[optimizer],
        num_steps=num_steps,
        seeds=range(seed, seed + num_runs),
        arch=model,
    )


def terminal_plot(lrs: np.ndarray, losses: np.ndarray, width: int = 64, height: int = 14) -> str:
    """The loss against log10(LR) as text."""
    if len(lrs) < 2:
        return "(too few points to plot)"
    x = np.log10(lrs)
    col = np.round((x - x[0]) / (x[-1] - x[0]) * (width - 1)).astype(int)
    lo, hi = float(np.min(losses)), float(np.max(losses))
    row = np.round((hi - losses) / max(hi - lo, 1e-12) * (height - 1)).astype(int)
    grid = [[" "] * width for _ in range(height)]
    for c, r in zip(col, row, strict=True):
        grid[r][c] = "*"
    lines = [f"{hi:7.3f} |" + "".join(grid[0])]
    lines += ["        |" + "".join(g) for g in grid[1:-1]]
    lines += [f"{lo:7.3f} |" + "".join(grid[-1]), "        +" + "-" * width]
    lines.append(f"         {lrs[0]:.0e}{'log10(LR)':^{width - 12}}{lrs[-1]:.0e}")
    return "\n".join(lines)


def main(
    out_dir: str = "lrfind-demo",
    *,
    model: str = "mlp",
    optimizer: str = "adamw",
    device: str = "cpu",
    parallel: int | None = None,
    num_steps: int = 100,
) -> None:
    """Print the curve, the suggestion, the diagnosis and a one-cycle schedule built from it,
    and write the plot (PNG) and the result (JSON) to ``out_dir``.

    ``parallel=K`` runs K range tests at once and reports their consensus instead of one test.
    """
    options = dict(model=model, optimizer=optimizer, device=device, num_steps=num_steps)
    setup = f"{_MODEL_NAMES.get(model, model)} on scikit-learn digits, {_OPTIMIZER_NAMES.get(optimizer, optimizer)}"
    setup += f", batch 64, LR 1e-7 -> 10 in {num_steps} steps, {device}"
    result: lrfind.RangeTestResult | lrfind.ParallelResult
    if parallel is None:
        result = run(**options)
        print(f"Range test: {setup}\n")
        print(result.summary(), "\n")
        print("The lag-free loss (what the suggestion reads) against the LR:")
        print(terminal_plot(result.lrs, result.trend), "\n")
    else:
        result = run_parallel(parallel, **options)
        print(f"{parallel} parallel range tests: {setup}\n")
        print(result.summary(), "\n")
        lrs, median = result.median_curve()
        print("Median lag-free loss of the runs (what their suggestions read) against the LR:")
        print(terminal_plot(lrs, median), "\n")
    no_lr = isinstance(result, lrfind.RangeTestResult) and not result.diagnosis.gives_lr
    if result.suggested_lr is not None and not no_lr:
        total = 1000
        schedule = lrfind.one_cycle(total, result.suggested_lr / 10, result.suggested_lr)
        marks = ", ".join(f"step {s}: {schedule[s]:.2e}" for s in (0, 150, 300, 650, 999))
        print(f"One-cycle over {total} steps peaking at the suggested LR: {marks}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.save(out / "result.json")
    try:
        result.plot(path=out / "range_test.png")
        print(f"\nWrote {out / 'range_test.png'} and {out / 'result.json'}")
    except ImportError as e:  # matplotlib is the plot extra
        print(f"\nWrote {out / 'result.json'} (no plot: {e})")
