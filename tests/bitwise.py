"""Everything a range test must leave as it found, observed and compared bit for bit."""

import copy
import random

import numpy as np
import torch


def observe(model, optimizer, scaler=None, loaders=()):
    """Deep copies of everything a range test must leave as it found, for ``assert_identical``."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.clone() for n, b in model.named_buffers()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        # What state_dict leaves out: parameters trained outside the model, and which dicts the
        # optimizer's groups are (schedulers and users hold them).
        "optimizer_params": [
            (p.detach().clone(), None if p.grad is None else p.grad.clone())
            for g in optimizer.param_groups
            for p in g["params"]
        ],
        "group_ids": [id(g) for g in optimizer.param_groups],
        "scaler": None if scaler is None else copy.deepcopy(scaler.state_dict()),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "loader_generators": [d.generator.get_state() for d in loaders if d.generator is not None],
    }


def assert_identical(before, after, where="state"):
    """Same structure, same values, tensors bit for bit (dtype and device too)."""
    if isinstance(before, torch.Tensor):
        assert isinstance(after, torch.Tensor), where
        assert (before.dtype, before.device, before.shape) == (after.dtype, after.device, after.shape), where
        bits = [t.detach().cpu().reshape(-1).contiguous().view(torch.uint8) for t in (before, after)]
        assert torch.equal(*bits), f"{where} changed"
    elif isinstance(before, np.ndarray):
        np.testing.assert_array_equal(before, after, err_msg=where)
    elif isinstance(before, dict):
        assert isinstance(after, dict) and before.keys() == after.keys(), f"{where}: other keys"
        for key in before:
            assert_identical(before[key], after[key], f"{where}[{key!r}]")
    elif isinstance(before, (list, tuple)):
        assert type(before) is type(after) and len(before) == len(after), f"{where}: {before!r} != {after!r}"
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            assert_identical(b, a, f"{where}[{i}]")
    else:
        assert before == after, f"{where}: {before!r} != {after!r}"
