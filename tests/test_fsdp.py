"""``lrfind.torch`` on more than one process: a range test of an FSDP2-sharded model, and
``parallel_range_test`` spreading its runs over the ranks. Two CPU processes over gloo; the rank
side is ``fsdp_worker.py``.

The reference is one process: FSDP2 averages the ranks' gradients (the gradient of the global
batch's mean loss) and lrfind records the mean of the ranks' losses, so a single-process range
test of the unsharded model on the global batches draws the same curve. A parallel run's curve
depends on its seed only, so the runs a rank computes equal those of one process.
"""

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lrfind.torch import parallel_range_test, range_test

from ddp_worker import digit_batches
from fsdp_worker import PARALLEL, RAISE_AT, RESULT_FIELDS, SETTINGS, adamw, main, mlp, warm_up
from ranks import spawn_ranks

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"
)

WORLD = 2
#: Seconds a scenario may take, spawning included, before it fails (and its processes are ended).
DEADLINE = 60


def spawn(tmp_path, scenario):
    """Run ``fsdp_worker.main`` on ``WORLD`` fresh processes: {rank: report}."""
    args = (WORLD, f"file://{tmp_path / 'rendezvous'}", scenario, digit_batches())
    return spawn_ranks(main, args, world=WORLD, deadline=DEADLINE, what=scenario)


@pytest.mark.parametrize("cache", ["cpu", "disk"])
def test_fsdp2_curve_is_a_single_process_run_and_every_shard_comes_back(tmp_path, cache, one_torch_thread):
    reports = spawn(tmp_path, "curve" if cache == "cpu" else "disk")
    for rank, report in reports.items():
        assert "error" not in report, f"rank {rank}: {report['error']}"
    a, b = reports[0]["result"], reports[1]["result"]
    for field in RESULT_FIELDS:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    # Each rank held half of every Linear's rows, and gave back its own half bit for bit.
    assert reports[0]["shapes"]["0.weight"] == (16, 64) and all(r["restored"] for r in reports.values())
    batches = digit_batches()
    model = mlp()
    optimizer = adamw(model)
    warm_up(model, optimizer, batches[-1])
    single = range_test(model, optimizer, F.cross_entropy, batches, progress=False, **SETTINGS)
    assert 0 < single.stop_index < SETTINGS["num_steps"] - 1
    assert (a["stop_index"], a["stop_reason"]) == (single.stop_index, single.stop_reason)
    np.testing.assert_array_equal(a["lrs"], single.lrs)
    for field in ("losses", "grad_norms"):  # the norm is the global one, over both ranks' shards
        np.testing.assert_allclose(a[field], getattr(single, field), rtol=1e-5, err_msg=field)


def test_fsdp2_model_is_refused_by_what_cannot_run_it(tmp_path):
    reports = spawn(tmp_path, "curve")
    for report in reports.values():
        copies, alone = report["refusals"]
        assert "cannot copy a sharded (FSDP2) one" in copies and "distributed=False runs this process alone" in alone


def test_fsdp2_rank_that_raises_leaves_every_rank_restored(tmp_path):
    reports = spawn(tmp_path, "raise")
    failed, other = reports[1], reports[0]
    assert failed["error"][0] is ValueError and f"bad batch at step {RAISE_AT}" in failed["error"][1]
    assert "error" in other  # it waited in a collective of that step, which failed with rank 1's exit
    assert failed["restored"] and other["restored"]


def test_fsdp1_gets_an_error_that_names_fsdp2():
    from torch.distributed.fsdp import FullyShardedDataParallel

    class Fsdp1(FullyShardedDataParallel):
        def __init__(self):  # no process group needed to be recognised
            torch.nn.Module.__init__(self)
            self.inner = torch.nn.Linear(2, 2)

    model = Fsdp1()
    with pytest.raises(TypeError, match=r"FSDP2 \(torch.distributed.fsdp.fully_shard\)"):
        range_test(model, torch.optim.SGD(model.inner.parameters()), F.cross_entropy, torch.zeros(2, 2))


def test_parallel_runs_split_over_ranks_equal_one_process(tmp_path, one_torch_thread):
    reports = spawn(tmp_path, "parallel")
    for rank, report in reports.items():
        assert "error" not in report, f"rank {rank}: {report['error']}"
    a, b = reports[0], reports[1]
    assert a["seeds"] == b["seeds"] == PARALLEL["seeds"] and a["suggested_lr"] == b["suggested_lr"]
    single = parallel_range_test(mlp(), F.cross_entropy, digit_batches()[0], val_data=digit_batches()[1], **PARALLEL)
    assert single.seeds == a["seeds"]
    for (lrs, losses, stop), run, other in zip(a["runs"], single.runs, b["runs"], strict=True):
        np.testing.assert_array_equal(lrs, run.lrs)
        np.testing.assert_allclose(losses, run.losses, rtol=1e-5)
        assert stop == run.stop_index and np.array_equal(losses, other[1])  # every rank: every run
    assert a["suggested_lr"] == pytest.approx(single.suggested_lr, rel=1e-5)
    # refine's candidates, dealt out over the ranks too (2 and 1), gathered on every rank.
    for refined in (a["refined"], b["refined"]):
        np.testing.assert_allclose(refined[0], single.refined.lrs, rtol=1e-5)
        np.testing.assert_allclose(refined[1], single.refined.scores, rtol=1e-5)
