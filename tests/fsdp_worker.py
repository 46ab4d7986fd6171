"""The rank side of ``test_fsdp.py``: ``main`` runs in a fresh (spawned) process per rank, over gloo.

Each rank builds the same MLP, shards it with FSDP2 (``fully_shard`` per Linear, then the root),
warms it up with AdamW and runs lrfind's range test on its even share of every global batch; or,
for ``parallel_range_test``, takes its share of the runs.
"""

import traceback

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.fsdp import fully_shard

from lrfind.torch import parallel_range_test, range_test

from ddp_worker import share, warm_up

#: The range test of every scenario: it diverges well before its last step.
SETTINGS = dict(min_lr=1e-5, max_lr=10.0, num_steps=60, check_every=10)
#: What a rank reports of its result (a ``RangeTestResult`` itself does not pickle).
RESULT_FIELDS = ("lrs", "losses", "grad_norms", "stop_index", "stop_reason", "suggested_lr")
#: The training step at which a failing rank raises.
RAISE_AT = 13
#: parallel_range_test's settings: 5 runs and 3 refine candidates (scored on the second batch),
#: so that two ranks get unequal shares.
PARALLEL = dict(
    num_runs=5, num_steps=30, optimizer="adamw", seeds=[3, 1, 4, 1_000, 5], progress=False, refine=3, refine_steps=10
)


def mlp():
    """64-32-32-10 on the digits, the same weights on every rank (and in the reference)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))


def adamw(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3)


def local(t):
    """A rank's own shard of a (DTensor) tensor, as numpy."""
    return (t.to_local() if hasattr(t, "to_local") else t).detach().clone().numpy()


def shards(model, optimizer):
    """This rank's shards of the parameters, gradients and AdamW moments, and the torch RNG."""
    return {
        "params": {n: local(p) for n, p in model.named_parameters()},
        "grads": {n: local(p.grad) for n, p in model.named_parameters()},
        "moments": {
            f"{i}.{k}": local(v)
            for i, s in optimizer.state_dict()["state"].items()
            for k, v in s.items()
            if k != "step"
        },
        "rng": torch.get_rng_state().numpy(),
    }


def same(a, b):
    """Bit for bit."""
    return all(
        np.array_equal(a[part][k], b[part][k]) for part in ("params", "grads", "moments") for k in a[part]
    ) and np.array_equal(a["rng"], b["rng"])


def failing_step(model, batch):
    """The default step that raises at training step ``RAISE_AT``."""
    failing_step.calls += 1
    if failing_step.calls == RAISE_AT:
        raise ValueError(f"bad batch at step {RAISE_AT}")
    return F.cross_entropy(model(batch[0]), batch[1])


failing_step.calls = 0


def main(rank, world, init_method, scenario, batches, queue):
    """Rank ``rank``'s part of ``scenario``; puts ``(rank, report)`` on ``queue``.

    Scenarios: ``"curve"`` and ``"disk"`` (every rank completes; the snapshot in memory or on
    disk), ``"raise"`` (rank 1 raises in its step), ``"parallel"`` (parallel_range_test).
    """
    torch.set_num_threads(1)  # two ranks on a small machine: intra-op threads only spin
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    report = {}
    try:
        if scenario == "parallel":
            data = batches[0]  # one fixed batch, the same on every rank: the runs are what is shared
            result = parallel_range_test(mlp(), F.cross_entropy, data, val_data=batches[1], **PARALLEL)
            report["runs"] = [(r.lrs, r.losses, r.stop_index) for r in result.runs]
            report["refined"] = (result.refined.lrs, result.refined.scores)
            report["seeds"] = result.seeds
            report["suggested_lr"] = result.suggested_lr
        else:
            model = mlp()
            for layer in model:
                if isinstance(layer, nn.Linear):
                    fully_shard(layer)
            fully_shard(model)
            optimizer = adamw(model)
            data = share(batches, rank, world)
            warm_up(model, optimizer, data[-1])
            before = shards(model, optimizer)
            run = dict(SETTINGS, progress=False, state_cache="disk" if scenario == "disk" else "cpu")
            if rank == 1 and scenario == "raise":
                run["step_fn"] = failing_step
            try:
                result = range_test(model, optimizer, None if "step_fn" in run else F.cross_entropy, data, **run)
            except Exception as err:
                report["error"] = type(err), "".join(traceback.format_exception_only(err))
            else:
                report["result"] = {field: getattr(result, field) for field in RESULT_FIELDS}
            report["restored"] = same(before, shards(model, optimizer))
            report["shapes"] = {n: p.to_local().shape for n, p in model.named_parameters()}
            if scenario == "curve":  # refused before any collective, on any rank alone
                report["refusals"] = []
                for call in (
                    lambda: parallel_range_test(model, F.cross_entropy, data[0], num_runs=2, progress=False),
                    lambda: range_test(model, optimizer, F.cross_entropy, data, distributed=False, progress=False),
                ):
                    try:
                        call()
                    except ValueError as err:
                        report["refusals"].append(str(err))
    except Exception as err:  # a bug in the scenario itself: report it rather than hang the test
        report["error"] = type(err), "".join(traceback.format_exception(err))
    queue.put((rank, report))
    if "error" not in report:
        dist.destroy_process_group()
