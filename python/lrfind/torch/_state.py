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

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # a torch without distributed support (or before 2.4): no DTensors to meet
    DTensor = None


class _Shard:
    """A DTensor's own shard in a copied state: the local tensor on the CPU, and the index of
    what rebuilds it (its mesh, placements, global shape and stride, its device), which stays
    in memory: a device mesh does not go to disk, and no rank ever holds another's shard."""

    def __init__(self, index: int, local: torch.Tensor) -> None:
        self.index, self.local = index, local


class _Copier:
    """Deep copies of state trees with every tensor on the CPU (DTensors as their local shard),
    and their way back."""

    def __init__(self) -> None:
        self.shards: list[tuple[Any, Any, torch.Size, tuple[int, ...], torch.device]] = []

    def to_cpu(self, obj: Any) -> Any:
        if DTensor is not None and isinstance(obj, DTensor):
            local = obj.to_local()
            self.shards.append((obj.device_mesh, obj.placements, obj.shape, obj.stride(), local.device))
            return _Shard(len(self.shards) - 1, local.detach().to("cpu", copy=True))
        if isinstance(obj, torch.Tensor):
            return obj.detach().to("cpu", copy=True)
        if isinstance(obj, dict):
            return {k: self.to_cpu(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.to_cpu(v) for v in obj)
        return copy.deepcopy(obj)

    def back(self, obj: Any) -> Any:
        """A copy of ``obj`` with its shards rebuilt as DTensors on their meshes. Every tensor is
        a new one: ``load_state_dict`` keeps the optimizer's tensors when they are already on the
        right device, and training would then change the snapshot (before a second restore)."""
        if isinstance(obj, _Shard):
            assert DTensor is not None  # only a DTensor makes a _Shard
            mesh, placements, shape, stride, device = self.shards[obj.index]
            local = obj.local.to(device, copy=True)
            return DTensor.from_local(local, mesh, placements, run_check=False, shape=shape, stride=stride)
        if isinstance(obj, torch.Tensor):
            return obj.clone()
        if isinstance(obj, dict):
            return {k: self.back(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.back(v) for v in obj)
        return obj


def _devices(obj: Any) -> Any:
    """The device of every plain tensor in ``obj``, in its shape (None elsewhere: DTensor shards
    know their own)."""
    if DTensor is not None and isinstance(obj, DTensor):
        return None
    if isinstance(obj, torch.Tensor):
        return obj.device
    if isinstance(obj, dict):
        return {k: _devices(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_devices(v) for v in obj]
    return None


def _placed(obj: Any, devices: Any, old: Any = None) -> Any:
    """``obj`` (a fresh copy) on ``devices`` (``_devices``' tree), written into ``old`` instead
    when that is a tensor of the same kind: no second copy of the state on the GPU."""
    if isinstance(obj, torch.Tensor) and isinstance(devices, torch.device):
        same = (
            isinstance(old, torch.Tensor)
            and not (DTensor is not None and isinstance(old, DTensor))
            and (old.shape, old.dtype, old.device, old.layout) == (obj.shape, obj.dtype, devices, obj.layout)
            and old.layout == torch.strided
        )
        if same:
            with torch.no_grad():
                return old.copy_(obj)
        return obj.to(devices)
    if isinstance(obj, dict) and isinstance(devices, dict):
        return {k: _placed(v, devices[k], old.get(k) if isinstance(old, dict) else None) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and isinstance(devices, list):
        return type(obj)(_placed(v, d) for v, d in zip(obj, devices, strict=True))
    return obj


class _OptimizerCopy:
    """An optimizer's parameter groups and state (each parameter's by its position in the
    groups), and their way back in place.

    Not ``state_dict``/``load_state_dict``: loading casts floating-point state to its
    parameter's dtype (fp32 moments of bf16 weights, Adafactor's factors, master weights would
    come back rounded) and replaces the group dicts that schedulers and users hold. Here every
    value comes back with its own dtype and device, into the same group dicts, and into the
    state's own tensors where it can. Parameters the optimizer trains outside the model (a
    learnable loss temperature) are copied too."""

    def __init__(self, optimizer: Any, copier: _Copier, model_params: set[int]) -> None:
        self.optimizer = optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.extra = [p for p in dict.fromkeys(self.params) if id(p) not in model_params]
        state = optimizer.state
        live = {i: state[p] for i, p in enumerate(self.params) if p in state}
        self.devices = {
            "groups": [_devices({k: v for k, v in g.items() if k != "params"}) for g in optimizer.param_groups],
            "state": {i: _devices(v) for i, v in live.items()},
            "extra": [(p.device, None if p.grad is None else p.grad.device) for p in self.extra],
        }
        cpu = copier.to_cpu
        self.saved = {
            "groups": [cpu({k: v for k, v in g.items() if k != "params"}) for g in optimizer.param_groups],
            "state": {i: cpu(v) for i, v in live.items()},
            "extra": [(cpu(p), None if p.grad is None else cpu(p.grad)) for p in self.extra],
        }

    def restore(self, saved: dict[str, Any], back: Any) -> None:
        optimizer, devices = self.optimizer, self.devices
        for group, values, where in zip(optimizer.param_groups, saved["groups"], devices["groups"], strict=True):
            for key in [k for k in group if k != "params" and k not in values]:
                del group[key]
            group.update(_placed(back(values), where, group))
        state = optimizer.state
        for i, p in enumerate(self.params):
            if i in saved["state"]:
                state[p] = _placed(back(saved["state"][i]), devices["state"][i], state.get(p))
            else:
                state.pop(p, None)
        with torch.no_grad():
            for p, (data, grad), (_, grad_device) in zip(self.extra, saved["extra"], devices["extra"], strict=True):
                p.copy_(back(data))
                if grad is None:
                    p.grad = None
                elif p.grad is None:
                    p.grad = back(grad).to(grad_device)
                else:
                    p.grad.copy_(back(grad))


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
        # A sharded model (FSDP2) has DTensor parameters, gradients and optimizer state: each
        # rank keeps its own shards, never the gathered whole.
        self.copier = _Copier()
        cpu = self.copier.to_cpu
        self.optimizer_copy = (
            None if optimizer is None else _OptimizerCopy(optimizer, self.copier, {id(p) for p in model.parameters()})
        )
        state = {
            "model": cpu(model.state_dict()),
            # state_dict leaves out buffers registered with persistent=False.
            "buffers": {n: cpu(b) for n, b in model.named_buffers()},
            "grads": {n: None if p.grad is None else cpu(p.grad) for n, p in model.named_parameters()},
            "scaler": None if scaler is None else cpu(scaler.state_dict()),
            "optimizer": None if self.optimizer_copy is None else self.optimizer_copy.saved,
        }
        if self.optimizer_copy is not None:
            del self.optimizer_copy.saved  # the state dict holds it (on disk with cache="disk")
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
        # A DataLoader with persistent workers keeps the iterator the sweep opens, and the next
        # epoch would reuse its workers (their RNGs advanced, no new seed drawn): keep which one
        # it had. (One the user had already opened is reset by the sweep; that cannot be undone.)
        self.iterators = [
            (d, d._iterator) for d in data if isinstance(d, torch.utils.data.DataLoader) and d.persistent_workers
        ]
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
        back = self.copier.back
        with torch.no_grad():
            self.model.load_state_dict(back(state["model"]))
            for name, b in self.model.named_buffers():
                b.copy_(back(state["buffers"][name]))
            for name, p in self.model.named_parameters():
                saved = back(state["grads"].get(name))
                if saved is None:
                    p.grad = None
                elif p.grad is None:
                    p.grad = saved.to(p.device)
                else:
                    p.grad.copy_(saved)
        if self.optimizer_copy is not None:
            self.optimizer_copy.restore(state["optimizer"], back)
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
        for loader, iterator in self.iterators:
            opened, loader._iterator = loader._iterator, iterator
            if opened is not iterator and opened is not None:
                opened._shutdown_workers()

    def close(self) -> None:
        """Drop the copy (and its temporary directory)."""
        self._state = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
