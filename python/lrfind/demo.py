"""End-to-end demo: a real PyTorch range test on scikit-learn's digits.

Run ``python -m lrfind.demo`` (``make demo``). Needs the ``demo`` extra (torch, scikit-learn);
nothing is downloaded: the digits ship inside scikit-learn.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

import lrfind


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the demo needs {module}: pip install 'lrfind[{extra}]'") from None


def run(seed: int = 0, batch_size: int = 64) -> lrfind.RangeTestResult:
    """A real range test of an MLP (64-64-64-10, AdamW) on the digits, one batch per LR step."""
    torch = _require("torch", "demo")
    datasets = _require("sklearn.datasets", "demo")
    from lrfind.torch import range_test

    torch.manual_seed(seed)
    x, y = datasets.load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    dataset = torch.utils.data.TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
    data = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
    )
    optimizer = torch.optim.AdamW(model.parameters())
    return range_test(model, optimizer, torch.nn.functional.cross_entropy, data, arch="mlp")


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


def main(out_dir: str = "lrfind-demo") -> None:
    """Print the curve, the suggestion, the diagnosis and a one-cycle schedule built from it,
    and write the plot (PNG) and the result (JSON) to ``out_dir``."""
    result = run()
    print("Range test: MLP on scikit-learn digits, AdamW, batch 64, LR 1e-7 -> 10\n")
    print(result.summary(), "\n")
    print(terminal_plot(result.lrs, result.smoothed_losses), "\n")
    if result.suggested_lr is not None:
        total = 1000
        schedule = lrfind.one_cycle(total, result.suggested_lr / 10, result.suggested_lr)
        marks = ", ".join(f"step {s}: {schedule[s]:.2e}" for s in (0, 150, 300, 650, 999))
        print(f"One-cycle over {total} steps peaking at the suggested LR: {marks}")
    out = Path(out_dir)
    out.mkdir(exist_ok=True)
    result.save(out / "result.json")
    try:
        result.plot(path=out / "range_test.png")
        print(f"\nWrote {out / 'range_test.png'} and {out / 'result.json'}")
    except ImportError as e:  # matplotlib is the plot extra
        print(f"\nWrote {out / 'result.json'} (no plot: {e})")


if __name__ == "__main__":
    main()
