"""The rank side of ``test_ddp.py``: ``main`` runs in a fresh (spawned) process per rank, over gloo.

The model, optimizer, warm-up and settings live here so that the single-process reference in
``test_ddp.py`` builds exactly what every rank builds.
"""

import time
import traceback

import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn.parallel import DistributedDataParallel

import lrfind.torch._range_test as range_test_module
from lrfind.torch import parallel_range_test, range_test

#: The range test of every scenario: it diverges well before its last step; then 3 candidates
#: of 10 steps each (``refine``), scored on the 2 validation batches.
SETTINGS = dict(
    min_lr=1e-4, max_lr=10.0, num_steps=80, check_every=10, val_every=5, val_batches=2, refine=3, refine_steps=10
)
#: What a rank reports of its result (a ``RangeTestResult`` itself does not pickle).
RESULT_FIELDS = ("lrs", "losses", "smoothed_losses", "grad_norms", "val_losses", "stop_index", "stop_reason")
#: The (training) step at which a failing rank raises: inside the sweep, before its 2nd host check.
RAISE_AT = 13


def mlp():
    """64-32-10 on the digits, the same weights on every rank."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)


def warm_up(model, optimizer, batch):
    """Two training steps, so that the range test starts mid-training (optimizer state, gradients in place)."""
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(model(batch[0]), batch[1]).backward()
        optimizer.step()


def digit_batches():
    """Global batches of 64 standardised digits, in a fixed shuffled order (the last, partial
    one dropped): what every rank shares out and the one-process references train on."""
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return [(x[i], torch.tensor(y)[i]) for i in order[: len(x) // 64 * 64].split(64)]


def share(batches, rank, world):
    """This rank's even share of every global batch: rows ``rank::world``."""
    return [(x[rank::world], y[rank::world]) for x, y in batches]


def state(model, optimizer):
    """Copies of the parameters, gradients, optimizer state and torch RNG."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
        "momentum": {i: s["momentum_buffer"].clone() for i, s in optimizer.state_dict()["state"].items()},
        "rng": torch.get_rng_state(),
    }


def same_state(a, b):
    """Bit for bit (none of these tensors holds a NaN before the range test)."""
    return all(torch.equal(a[part][k], b[part][k]) for part in ("params", "grads", "momentum") for k in a[part]) and (
        torch.equal(a["rng"], b["rng"])
    )


def failing_step(model, batch):
    """The default step that raises at training step ``RAISE_AT`` (validation steps do not count)."""
    if model.training:
        failing_step.calls += 1
        if failing_step.calls == RAISE_AT:
            raise ValueError(f"bad batch at step {RAISE_AT}")
    return F.cross_entropy(model(batch[0]), batch[1])


failing_step.calls = 0


def raise_before_the_check(optimizer, args, kwargs):
    """An optimizer pre-hook that raises at the last step before the 2nd host check (step index 19),
    after the step's gradient all-reduce: the other rank finishes the step and then waits at its check."""
    raise_before_the_check.calls += 1
    if raise_before_the_check.calls == 2 * SETTINGS["check_every"]:
        raise ValueError("bad update")


raise_before_the_check.calls = 0


def failing_parallel_loss(outputs, targets):
    raise ValueError("bad loss")


def local(rank, batches):
    """``"local"``: rank 0 alone runs a range test and a parallel one with ``distributed=False``
    (the LR searched on one rank), while rank 1 goes straight to the next collective; both then
    all-reduce, which must find the group in step. Rank 0 also tries a DDP model, refused."""
    report = {}
    ddp = DistributedDataParallel(mlp())  # made on every rank: its construction is a collective
    if rank == 0:
        model = mlp()
        result = range_test(model, sgd(model), F.cross_entropy, batches, distributed=False, **dict(SETTINGS, refine=0))
        report["losses"] = result.losses
        par = parallel_range_test(mlp(), F.cross_entropy, batches[0], num_runs=2, num_steps=20, init="copy",
                                  distributed=False, progress=False)  # fmt: skip
        report["parallel"] = [r.losses for r in par.runs]
        try:
            range_test(ddp, sgd(ddp), F.cross_entropy, batches, distributed=False, **dict(SETTINGS, refine=0))
        except ValueError as err:
            report["refused"] = str(err)
    total = torch.ones(1)
    dist.all_reduce(total)
    report["all_reduce"] = float(total)
    return report


def main(rank, world, init_method, scenario, batches, val_batches, dist_timeout, release, queue):
    """Rank ``rank``'s range test; puts ``(rank, report)`` on ``queue``.

    Scenarios: ``"curve"`` (every rank completes), ``"raise"`` (rank 1 raises in its step and exits),
    ``"linger"`` (rank 1 raises in its optimizer step and its process stays, silent, until ``release``).
    """
    torch.set_num_threads(1)  # two ranks on a small machine: intra-op threads only spin
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    if scenario == "parallel_linger":  # rank 1's loss raises at once and its process stays
        start = time.monotonic()
        loss = F.cross_entropy if rank == 0 else failing_parallel_loss
        try:
            parallel_range_test(mlp(), loss, batches[0], num_runs=2, num_steps=20, dist_timeout=dist_timeout,
                                progress=False)  # fmt: skip
            report = {}
        except Exception as err:
            report = {"error": (type(err), "".join(traceback.format_exception_only(err)))}
        report["seconds"] = time.monotonic() - start
        queue.put((rank, report))
        if rank == 1:
            release.wait(60)
        return
    if scenario == "local":
        try:
            report = local(rank, batches)
        except Exception as err:  # a bug in the scenario itself: report it rather than hang the test
            report = {"error": "".join(traceback.format_exception(err))}
        queue.put((rank, report))
        dist.destroy_process_group()
        return
    model = DistributedDataParallel(mlp())
    optimizer = sgd(model)
    data, val = share(batches, rank, world), share(val_batches, rank, world)
    warm_up(model, optimizer, data[-1])
    before = state(model, optimizer)
    bars = []
    show_bar = range_test_module._progress_bar
    range_test_module._progress_bar = lambda total, wanted: bars.append(wanted) or show_bar(total, wanted)
    run = dict(SETTINGS, val_data=val, dist_timeout=dist_timeout, progress=True)
    if rank == 1 and scenario == "raise":
        run["step_fn"] = failing_step
    if rank == 1 and scenario == "linger":
        optimizer.register_step_pre_hook(raise_before_the_check)
    report = {"bar_wanted": bars}
    start = time.monotonic()
    try:
        result = range_test(model, optimizer, None if "step_fn" in run else F.cross_entropy, data, **run)
    except Exception as err:
        report["error"] = type(err), "".join(traceback.format_exception_only(err))
    else:
        report["result"] = {field: getattr(result, field) for field in RESULT_FIELDS}
        report["result"]["refined"] = (result.refined.lrs, result.refined.scores, result.suggested_lr)
    report["seconds"] = time.monotonic() - start
    report["restored"] = same_state(before, state(model, optimizer))
    if "result" in report:
        warm_up(model, optimizer, data[0])  # DDP training goes on after the range test
        # numpy, not tensors: torch shares those through file descriptors of a process that may be gone
        report["trained"] = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    queue.put((rank, report))
    if "error" in report:
        if rank == 1 and scenario == "linger":
            release.wait(60)
        # No destroy_process_group: it would wait for the collectives that the failure left unfinished.
        return
    dist.destroy_process_group()
