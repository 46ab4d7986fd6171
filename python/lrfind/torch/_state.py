"""Snapshot and exact restore of everything a range test touches."""

from __future__ import annotations

import copy
import os
import random
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _to_cpu(obj: Any) -> Any:
    """A deep copy with every tensor moved to (or copied on) the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def _generators(data: Sequence[Any]) -> list[torch.Generator]:
    """The torch.Generators of DataLoaders (their own, their sampler's, their batch sampler's)."""
    found = []
    for d in data:
        for owner in (d, getattr(d, "sampler", None), getattr(getattr(d, "batch_sampler", None), "sampler", None)):
            g = getattr(owner, "generator", None)
            if isinstance(g, torch.Generator):
                found.append(g)
    return found


class Snapshot:
    """The state of a model, its optimizer, a grad scaler and every RNG, held off the GPU.

    ``data`` lists DataLoaders whose generators are restored too.
    ``cache="cpu"`` keeps the copy in host memory; ``cache="disk"`` writes it to a temporary
    directory (for models larger than RAM allows), removed by ``close()``. ``restore()`` puts
    every tensor back bitwise, in place, so references held elsewhere (the optimizer's
    parameters, the user's variables) stay valid.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        scaler: Any = None,
        cache: str = "cpu",
        data: Sequence[Any] = (),
    ) -> None:
        if cache not in ("cpu", "disk"):
            raise ValueError(f'state_cache must be "cpu" or "disk", got {cache!r}')
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.training = {name: m.training for name, m in model.named_modules()}
        state = {
            "model": _to_cpu(model.state_dict()),
            # state_dict leaves out buffers registered with persistent=False.
            "buffers": {n: _to_cpu(b) for n, b in model.named_buffers()},
            "grads": {n: None if p.grad is None else _to_cpu(p.grad) for n, p in model.named_parameters()},
            "optimizer": None if optimizer is None else _to_cpu(optimizer.state_dict()),
            "scaler": None if scaler is None else _to_cpu(scaler.state_dict()),
        }
        # A step interrupted after unscale_() leaves the scaler mid-step: keep its stage too.
        self.scaler_stages = None if scaler is None else {k: dict(v) for k, v in scaler._per_optimizer_states.items()}
        self.rng = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        }
        # DataLoaders may carry their own generators (shuffling, sampling): those are RNGs too.
        self.generators = {id(g): (g, g.get_state()) for g in _generators(data)}
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if cache == "disk":
            self._dir = tempfile.TemporaryDirectory(prefix="lrfind-")
            self._path = os.path.join(self._dir.name, "state.pt")
            torch.save(state, self._path)
            self._state: dict[str, Any] | None = None
        else:
            self._state = state

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        state = self._state if self._state is not None else torch.load(self._path, weights_only=False)
        with torch.no_grad():
            self.model.load_state_dict(state["model"])
            for name, b in self.model.named_buffers():
                b.copy_(state["buffers"][name])
            for name, p in self.model.named_parameters():
                saved = state["grads"].get(name)
                if saved is None:
                    p.grad = None
                elif p.grad is None:
                    p.grad = saved.to(p.device)
                else:
                    p.grad.copy_(saved)
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None:
            self.scaler.load_state_dict(state["scaler"])
            self.scaler._per_optimizer_states.clear()
            self.scaler._per_optimizer_states.update({k: dict(v) for k, v in self.scaler_stages.items()})
        for name, m in self.model.named_modules():
            m.training = self.training[name]
        random.setstate(self.rng["python"])
        np.random.set_state(self.rng["numpy"])
        torch.set_rng_state(self.rng["torch"])
        if self.rng["cuda"] is not None:
            torch.cuda.set_rng_state_all(self.rng["cuda"])
        for generator, generator_state in self.generators.values():
            generator.set_state(generator_state)

    def close(self) -> None:
        """Drop the copy (and its temporary directory)."""
        self._state = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
