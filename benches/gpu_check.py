"""The GPU check: run the CUDA tests, then time range tests on the device, in one script.

Usage on a CUDA machine (after ``make install``)::

    .venv/bin/python benches/gpu_check.py            # CUDA tests + the steps/s table
    .venv/bin/python benches/gpu_check.py --device cpu --quick   # smoke run anywhere

Contenders, each on the same 100 steps: lrfind with the default ``check_every`` and with
``check_every=1`` (a host read per step, like every peer), torch-lr-finder 0.2.2, and a bare loop
that sets the LR and steps (no records, no restore: the floor). Two models: an MLP at batch 256,
small enough that the per-step host sync shows, and a ResNet-18-sized CNN at 32x32, batch 128.
Inputs are random tensors: this measures throughput, not learning. Prints a table of steps per
second and each contender's time relative to the bare loop.

Then the parallel sweeps: ``parallel_range_test`` with K in {1, 16, 64, 256} runs of a small
MLP and a small CNN (no BatchNorm: vmap cannot update running statistics), sweep-steps per
second (K x steps / time) against K sequential ``range_test`` calls (timed on one run, times K).

Last, FSDP2 on one device (a smoke test: one process, a process group of one): ``range_test`` of
the MLP sharded with ``fully_shard``, its steps per second against the unsharded MLP, and
whether its shards, gradients and optimizer state came back bit for bit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import lrfind
from lrfind.torch import parallel_range_test, range_test
from lrfind.torch._range_test import CHECK_EVERY

ROOT = Path(__file__).resolve().parents[1]
MIN_LR, MAX_LR = 1e-6, 1e-3  # never diverges: every contender runs every step


def mlp() -> tuple[nn.Module, tuple[int, ...], int]:
    net = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    return net, (256, 512), 10


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def resnet18ish() -> tuple[nn.Module, tuple[int, ...], int]:
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    c = 64
    for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(c, c_out, stride), Block(c_out, c_out, 1)]
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 100)]
    return nn.Sequential(*layers), (128, 3, 32, 32), 100


def bare_loop(net: nn.Module, opt: torch.optim.Optimizer, batch: tuple, steps: int) -> None:
    x, y = batch
    for lr in lrfind.sweep_lrs(MIN_LR, MAX_LR, steps).tolist():
        for g in opt.param_groups:
            g["lr"] = lr
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def lrfind_run(check_every: int) -> Callable[..., None]:
    def run(net: nn.Module, opt: torch.optim.Optimizer, batch: tuple, steps: int) -> None:
        range_test(
            net,
            opt,
            nn.functional.cross_entropy,
            batch,
            min_lr=MIN_LR,
            max_lr=MAX_LR,
            num_steps=steps,
            check_every=check_every,
            progress=False,
        )

    return run


def torch_lr_finder(net: nn.Module, opt: torch.optim.Optimizer, batch: tuple, steps: int) -> None:
    from torch_lr_finder import LRFinder

    finder = LRFinder(net, opt, nn.CrossEntropyLoss(), device=batch[0].device)
    loader = torch.utils.data.DataLoader([batch], batch_size=None)  # the one batch, uncollated
    finder.range_test(loader, start_lr=MIN_LR, end_lr=MAX_LR, num_iter=steps, diverge_th=1e30)
    finder.reset()


CONTENDERS = {
    "bare loop": bare_loop,
    f"lrfind (check_every={CHECK_EVERY})": lrfind_run(CHECK_EVERY),
    "lrfind (check_every=1)": lrfind_run(1),
    "torch-lr-finder": torch_lr_finder,
}


def steps_per_second(run: Callable[..., None], model: Callable, device: str, steps: int, repeats: int) -> float:
    torch.manual_seed(0)
    net, shape, classes = model()
    net = net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    batch = (torch.randn(shape, device=device), torch.randint(0, classes, (shape[0],), device=device))
    run(net, opt, batch, 5)  # warm-up: kernels, allocator, autotuning
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        run(net, opt, batch, steps)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return steps / best


def small_mlp() -> tuple[nn.Module, tuple[int, ...], int]:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)), (64, 64), 10


def small_cnn() -> tuple[nn.Module, tuple[int, ...], int]:
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )  # fmt: skip
    return net, (64, 3, 32, 32), 10


def parallel_table(device: str, steps: int, sizes: tuple[int, ...]) -> None:
    """Sweep-steps per second of K parallel runs against K sequential single runs."""
    for title, model in (("small MLP, batch 64", small_mlp), ("small CNN, 32x32, batch 64", small_cnn)):
        torch.manual_seed(0)
        net, shape, classes = model()
        net = net.to(device)
        batch = (torch.randn(shape, device=device), torch.randint(0, classes, (shape[0],), device=device))
        one = steps_per_second(lrfind_run(CHECK_EVERY), model, device, steps, 1)
        print(f"\nparallel: {title}; one range_test: {one:.1f} steps/s")
        print(f"{'K':>6}{'sweep-steps/s':>16}{'vs K sequential':>18}")
        for k in sizes:
            kwargs = dict(num_runs=k, min_lr=MIN_LR, max_lr=MAX_LR, num_steps=steps, progress=False)
            parallel_range_test(net, nn.functional.cross_entropy, batch, **{**kwargs, "num_steps": 5})  # warm-up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            parallel_range_test(net, nn.functional.cross_entropy, batch, **kwargs)
            if device == "cuda":
                torch.cuda.synchronize()
            rate = k * steps / (time.perf_counter() - start)
            print(f"{k:>6}{rate:>16.1f}{rate / one:>17.1f}x")


def fsdp2_smoke(device: str, steps: int) -> bool:
    """One process, a process group of one: range_test on the MLP sharded with FSDP2, timed
    against the unsharded MLP; True if every shard came back bit for bit."""
    from torch.distributed.fsdp import fully_shard

    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"file://{tempfile.mktemp()}", rank=0, world_size=1)
    try:
        rates, restored = {}, True
        for sharded in (False, True):
            torch.manual_seed(0)
            net, shape, classes = mlp()
            net = net.to(device)
            if sharded:
                for layer in net:
                    if isinstance(layer, nn.Linear):
                        fully_shard(layer)
                fully_shard(net)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
            batch = (torch.randn(shape, device=device), torch.randint(0, classes, (shape[0],), device=device))
            nn.functional.cross_entropy(net(batch[0]), batch[1]).backward()
            opt.step()

            def local(t: torch.Tensor) -> torch.Tensor:
                return (t.to_local() if hasattr(t, "to_local") else t).detach().clone()

            before = [local(p) for p in net.parameters()] + [local(p.grad) for p in net.parameters()]
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            range_test(net, opt, nn.functional.cross_entropy, batch, min_lr=MIN_LR, max_lr=MAX_LR, num_steps=steps,
                       progress=False)  # fmt: skip
            if device == "cuda":
                torch.cuda.synchronize()
            rates[sharded] = steps / (time.perf_counter() - start)
            after = [local(p) for p in net.parameters()] + [local(p.grad) for p in net.parameters()]
            restored &= all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
        print(f"\nFSDP2 on one {device} device, MLP 512-1024-1024-10, batch 256, {steps} steps")
        print(f"  unsharded range_test: {rates[False]:.1f} steps/s; fully_shard: {rates[True]:.1f} steps/s")
        print(f"  shards and gradients restored bit for bit: {restored}")
        return restored
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="10 steps, 1 repeat, MLP only: a smoke run")
    parser.add_argument("--no-tests", action="store_true", help="skip the CUDA tests")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (use --device cpu for a smoke run)")
        return 2
    status = 0
    if not args.no_tests and args.device == "cuda":
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", str(ROOT / "tests")]
        status = subprocess.run(cmd, cwd=ROOT).returncode
        print(f"CUDA tests: {'passed' if status == 0 else 'FAILED'}\n")
    steps, repeats = (10, 1) if args.quick else (100, 3)
    models = {"MLP 512-1024-1024-10, batch 256": mlp}
    if not args.quick:
        models["ResNet-18-like, 32x32, batch 128"] = resnet18ish
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {name}; torch {torch.__version__}; {steps} steps, best of {repeats}")
    for title, model in models.items():
        print(f"\n{title}")
        print(f"{'contender':<28}{'steps/s':>10}{'time / bare':>14}")
        rates = {c: steps_per_second(run, model, args.device, steps, repeats) for c, run in CONTENDERS.items()}
        for contender, rate in rates.items():
            print(f"{contender:<28}{rate:>10.1f}{rates['bare loop'] / rate:>14.3f}")
    parallel_table(args.device, steps, (1, 4) if args.quick else (1, 16, 64, 256))
    if not fsdp2_smoke(args.device, steps):
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
