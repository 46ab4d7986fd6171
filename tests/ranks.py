"""The ranks of a multi-process test: fresh (spawned) CPU processes, one report each."""

import queue
import time

import pytest
import torch.multiprocessing as mp


def spawn_ranks(target, args, *, world, deadline, what, release=None):
    """Run ``target(rank, *args, reports)`` in ``world`` spawned processes, each of which puts one
    ``(rank, report)`` on ``reports``; returns {rank: report}.

    The test fails, naming ``what`` and the silent ranks, when a rank has not reported after
    ``deadline`` seconds or died without reporting. ``release`` (an Event of the spawn context)
    is set before the processes are joined, for ranks told to linger. Every process has ended
    when this returns or raises.
    """
    ctx = mp.get_context("spawn")
    reports = ctx.Queue()
    procs = [ctx.Process(target=target, args=(rank, *args, reports), daemon=True) for rank in range(world)]
    end = time.monotonic() + deadline
    for p in procs:
        p.start()
    try:
        found, gone = {}, False
        while len(found) < world:
            try:
                rank, report = reports.get(timeout=1.0)
            except queue.Empty:
                silent = [r for r in range(world) if r not in found]
                if gone or time.monotonic() > end:
                    pytest.fail(f"{what}: ranks {silent} reported nothing ({'died' if gone else 'too slow'})")
                # A rank that died without reporting: one more wait, for a report still in the pipe.
                gone = not any(procs[r].is_alive() for r in silent)
                continue
            found[rank] = report
        return found
    finally:
        if release is not None:
            release.set()
        for p in procs:
            p.join(timeout=max(end - time.monotonic(), 1.0))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
