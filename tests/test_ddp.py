"""``lrfind.torch.range_test`` under ``torch.distributed``: two CPU processes over gloo, each with a
``DistributedDataParallel`` MLP on scikit-learn's digits and an even half of every global batch.

The reference is a single-process range test on the same global batches: DDP averages the two
halves' gradients, which is the gradient of the global batch's mean loss, and lrfind records the
mean of the two halves' losses, which is that mean loss. Then a rank raises: the other one must
fail, not hang, whether the failed rank's process exits or lingers. The rank side is ``ddp_worker.py``.
"""

import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from lrfind.torch import StoppedRankError, range_test

from ddp_worker import RAISE_AT, RESULT_FIELDS, SETTINGS, digit_batches, main, mlp, sgd, warm_up
from ranks import spawn_ranks

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed with gloo"
)

WORLD = 2
#: Seconds a test may take, spawning included, before it fails (and its processes are ended).
DEADLINE = 40


def global_batches():
    """(training, validation) global batches: the last two of ``digit_batches()`` validate."""
    batches = digit_batches()
    return batches[:-2], batches[-2:]


def spawn(tmp_path, scenario, dist_timeout=10.0):
    """Run ``ddp_worker.main`` on ``WORLD`` fresh processes: {rank: report}."""
    release = mp.get_context("spawn").Event()
    batches, val = global_batches()
    args = (WORLD, f"file://{tmp_path / 'rendezvous'}", scenario, batches, val, dist_timeout, release)
    return spawn_ranks(main, args, world=WORLD, deadline=DEADLINE, what=scenario, release=release)


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    """Both ranks' reports of a range test that runs to its divergence."""
    return spawn(tmp_path_factory.mktemp("curve"), "curve")


def test_both_ranks_stop_at_the_same_step_with_the_same_curve(curve):
    for rank, report in curve.items():
        assert "error" not in report, f"rank {rank}: {report['error']}"
    a, b = curve[0]["result"], curve[1]["result"]
    assert 0 < a["stop_index"] < SETTINGS["num_steps"] - 1
    for field in RESULT_FIELDS:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    for part, other in zip(a["refined"], b["refined"], strict=True):
        np.testing.assert_array_equal(part, other, err_msg="refined")


@pytest.fixture
def one_torch_thread():
    """As on the ranks: the same float reductions."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_curve_is_a_single_process_run_on_the_global_batches(curve, one_torch_thread):
    batches, val = global_batches()
    model = mlp()
    optimizer = sgd(model)
    warm_up(model, optimizer, batches[-1])
    single = range_test(model, optimizer, F.cross_entropy, batches, val_data=val, progress=False, **SETTINGS)
    ddp = curve[0]["result"]
    assert (ddp["stop_index"], ddp["stop_reason"]) == (single.stop_index, single.stop_reason)
    np.testing.assert_array_equal(ddp["lrs"], single.lrs)
    for field in ("losses", "smoothed_losses", "grad_norms", "val_losses"):
        np.testing.assert_allclose(ddp[field], getattr(single, field), rtol=1e-5, err_msg=field)
    assert np.isfinite(ddp["val_losses"][4::5]).all()
    # refine's candidates: trained one after another on every rank, scored over the ranks.
    lrs, scores, best = ddp["refined"]
    np.testing.assert_allclose(lrs, single.refined.lrs, rtol=1e-5)  # read off curves equal to 1e-5
    np.testing.assert_allclose(scores, single.refined.scores, rtol=1e-5)
    assert best == lrs[np.argmin(single.refined.scores)] and np.isfinite(scores).all()


def test_every_rank_restores_its_model_and_only_rank_0_asks_for_a_bar(curve):
    assert [curve[rank]["restored"] for rank in range(WORLD)] == [True] * WORLD
    # One bar for the sweep, one per refine candidate: on rank 0 only.
    bars = 1 + SETTINGS["refine"]
    assert [curve[rank]["bar_wanted"] for rank in range(WORLD)] == [[True] * bars, [False] * bars]


def test_ddp_training_goes_on_as_if_no_range_test_ran(curve, one_torch_thread):
    batches, _ = global_batches()
    model = mlp()
    optimizer = sgd(model)
    warm_up(model, optimizer, batches[-1])
    warm_up(model, optimizer, batches[0])
    for name, p in model.named_parameters():
        ranks = [curve[rank]["trained"][f"module.{name}"] for rank in range(WORLD)]  # DDP's names
        np.testing.assert_array_equal(ranks[0], ranks[1], err_msg=name)
        np.testing.assert_allclose(ranks[0], p.detach().numpy(), rtol=1e-5, atol=1e-7, err_msg=name)


def assert_names_the_rank(text, rank):
    if sys.version_info >= (3, 11):  # the note (PEP 678)
        assert f"lrfind.torch.range_test: raised on rank {rank} of {WORLD}" in text, text


def test_a_rank_that_raises_and_exits_fails_the_other_at_once(tmp_path):
    reports = spawn(tmp_path, "raise")
    failed, other = reports[1], reports[0]
    assert failed["error"][0] is ValueError and f"bad batch at step {RAISE_AT}" in failed["error"][1]
    assert_names_the_rank(failed["error"][1], 1)
    # Rank 0 waits in DDP's gradient all-reduce of that step; gloo fails it when rank 1's process exits.
    assert issubclass(other["error"][0], RuntimeError), other["error"]
    assert_names_the_rank(other["error"][1], 0)
    assert failed["restored"] and other["restored"]


def test_a_rank_that_raises_and_lingers_fails_the_other_after_dist_timeout(tmp_path):
    reports = spawn(tmp_path, "linger", dist_timeout=3.0)
    failed, other = reports[1], reports[0]
    assert failed["error"][0] is ValueError and "bad update" in failed["error"][1]
    # Rank 0 finishes the step, all-reduces its loss alone and waits for it at its next host check.
    assert other["error"][0] is StoppedRankError and issubclass(StoppedRankError, RuntimeError)
    assert (
        "lrfind: rank 0: another rank stopped responding during the range test (timeout 3 s, set by dist_timeout)"
        in other["error"][1]
    ), other["error"][1]
    assert other["seconds"] >= 3.0, "it waited for dist_timeout before giving up"  # no upper bound: DEADLINE
    assert failed["restored"] and other["restored"]


def test_one_rank_alone_with_distributed_false_runs_no_collective(tmp_path, one_torch_thread):
    """The LR searched on rank 0 only (then broadcast, say): no collective is run, so the other
    rank's next one finds the group in step, and the curves are those of one process."""
    reports = spawn(tmp_path, "local")
    assert not [r["error"] for r in reports.values() if "error" in r]
    assert reports[0]["all_reduce"] == reports[1]["all_reduce"] == 2.0
    batches, _ = global_batches()
    model = mlp()
    np.testing.assert_array_equal(
        reports[0]["losses"], range_test(model, sgd(model), F.cross_entropy, batches, **dict(SETTINGS, refine=0)).losses
    )
    assert len(reports[0]["parallel"]) == 2
    assert "distributed=False runs this process alone" in reports[0]["refused"]


def test_parallel_runs_whose_peer_raised_and_lingers_fail_after_dist_timeout(tmp_path):
    reports = spawn(tmp_path, "parallel_linger", dist_timeout=3.0)
    failed, other = reports[1], reports[0]
    assert failed["error"][0] is ValueError and "bad loss" in failed["error"][1]
    assert other["error"][0] is StoppedRankError, other["error"]
    assert (
        "another rank did not reach parallel_range_test's gather within 3 s (set by dist_timeout)" in other["error"][1]
    )
    assert other["seconds"] >= 3.0
