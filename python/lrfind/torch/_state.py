"""Snapshot and exact restore of everything a range test touches."""

from __future__ import annotations

import copy
import os
import random
import tempfile
from collections import OrderedDict
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
        return _rebuilt(obj, self.to_cpu, copy.deepcopy)

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
        return _rebuilt(obj, self.back, lambda v: v)


def _rebuilt(obj: Any, each: Any, leaf: Any) -> Any:
    """``obj`` with ``each`` applied to every item of its dicts, lists and tuples (namedtuples and
    a state dict's ``_metadata``, which ``load_state_dict`` hands to versioned modules, kept),
    and ``leaf`` to anything else."""
    if isinstance(obj, dict):
        out = {k: each(v) for k, v in obj.items()}
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            out = OrderedDict(out)
            out._metadata = copy.deepcopy(metadata)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(each(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(each(v) for v in obj)
    return leaf(obj)


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
            and (old.shape, old.dtype, old.device) == (obj.shape, obj.dtype, devices)
            and old.layout == obj.layout == torch.strided
        )
        if same:
            with torch.no_grad():
                return old.copy_(obj)
        return obj.to(devices)
    if isinstance(obj, dict) and isinstance(devices, dict):
        return {k: _placed(v, devices[k], old.get(k) if isinstance(old, dict) else None) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and isinstance(devices, list):
        items = (_placed(v, d) for v, d in zip(obj, devices, strict=True))
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return obj


class _OptimizerCopy:
    """An optimizer's parameter groups and state, and their way back in place.

    Not ``state_dict``/``load_state_dict``: loading casts floating-point state to its
    parameter's dtype (fp32 moments of bf16 weights, Adafactor's factors, master weights would
    come back rounded) and replaces the group dicts that schedulers and users hold. Here:

    - the groups come back as the same dicts holding the same objects (a tensor LR gets its
      values back in place; the sweep only ever reassigns), and groups added since are dropped;
    - each parameter's state (by its position in the groups) and any state under other keys
      comes back with its own dtype and device, into the same dicts and tensors where it can;
    - parameters the optimizer trains outside the model (a learnable loss temperature) come
      back with their gradients and ``requires_grad``.
    """

    def __init__(self, optimizer: Any, copier: _Copier, model_params: set[int]) -> None:
        self.optimizer = optimizer
        groups = optimizer.param_groups
        self.groups = [(g, list(g), dict(g)) for g in groups]  # each dict, its key order, its values
        self.params = [p for g in groups for p in g["params"]]
        self.extra = [p for p in dict.fromkeys(self.params) if id(p) not in model_params]
        state, ids = optimizer.state, {id(p) for p in self.params}
        live = {i: state[p] for i, p in enumerate(self.params) if p in state}
        self.other_keys = [k for k in state if not (isinstance(k, torch.Tensor) and id(k) in ids)]
        self.devices = {
            "state": {i: _devices(v) for i, v in live.items()},
            "other": [_devices(state[k]) for k in self.other_keys],
            "extra": [(p.device, None if p.grad is None else p.grad.device, p.requires_grad) for p in self.extra],
        }
        cpu = copier.to_cpu
        self.saved = {  # what goes to disk with cache="disk": tensors and plain values only
            "groups": [
                {k: cpu(v) for k, v in values.items() if k != "params" and isinstance(v, torch.Tensor)}
                for *_, values in self.groups
            ],
            "state": {i: cpu(v) for i, v in live.items()},
            "other": [cpu(state[k]) for k in self.other_keys],
            "extra": [(cpu(p), None if p.grad is None else cpu(p.grad)) for p in self.extra],
        }

    def restore(self, saved: dict[str, Any], back: Any) -> None:
        optimizer, devices = self.optimizer, self.devices
        del optimizer.param_groups[len(self.groups) :]  # add_param_group during the sweep
        with torch.no_grad():
            for (group, order, values), tensors in zip(self.groups, saved["groups"], strict=True):
                for key, saved_tensor in tensors.items():
                    values[key].copy_(back(saved_tensor))
                group.clear()
                group.update((k, values[k]) for k in order)
            state = optimizer.state
            for i, p in enumerate(self.params):
                if i in saved["state"]:
                    _put(state, p, _placed(back(saved["state"][i]), devices["state"][i], state.get(p)))
                else:
                    state.pop(p, None)
            kept = {id(k) for k in self.other_keys} | {id(p) for p in self.params}
            for key in [k for k in state if id(k) not in kept]:
                del state[key]
            for key, value, where in zip(self.other_keys, saved["other"], devices["other"], strict=True):
                _put(state, key, _placed(back(value), where, state.get(key)))
            for p, (data, grad), (_, grad_device, requires) in zip(
                self.extra, saved["extra"], devices["extra"], strict=True
            ):
                p.copy_(back(data))
                p.requires_grad_(requires)
                if grad is None:
                    p.grad = None
                elif p.grad is None:
                    p.grad = back(grad).to(grad_device)
                else:
                    p.grad.copy_(back(grad))


def _put(state: Any, key: Any, value: Any) -> None:
    """``state[key] = value``, into the dict already there if both are dicts (the same object
    that anything else may hold)."""
    old = state.get(key)
    if isinstance(old, dict) and isinstance(value, dict):
        old.clear()
        old.update(value)
    else:
        state[key] = value


def _generators(data: Sequence[Any]) -> list[torch.Generator]:
    """The torch.Generators in ``data``: those given, and those of DataLoaders (their own, their
    sampler's, their batch sampler's and its sampler's)."""
    found = []
    for d in data:
        if isinstance(d, torch.Generator):
            found.append(d)
            continue
        batch_sampler = getattr(d, "batch_sampler", None)
        for owner in (d, getattr(d, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
            g = getattr(owner, "generator", None)
            if isinstance(g, torch.Generator):
                found.append(g)
    return found


class Rngs:
    """The states of Python's, numpy's, torch's and CUDA's global RNGs, and of the generators
    of ``data`` (DataLoaders and generators, see ``_generators``); ``restore()`` puts them back."""

    def __init__(self, data: Sequence[Any] = ()) -> None:
        self.python = random.getstate()
        self.numpy = np.random.get_state()
        self.torch = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.generators = {id(g): (g, g.get_state()) for g in _generators(data)}

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        for generator, state in self.generators.values():
            generator.set_state(state)


class Snapshot:
    """The state of a model, its optimizer, a grad scaler and every RNG, held off the GPU.

    ``data`` lists DataLoaders (and generators) whose generators are restored too, and whose
    persistent workers' iterator is kept out of the sweep's way.
    ``cache="cpu"`` keeps the copy in host memory; ``cache="disk"`` writes it to a temporary
    directory (for models larger than RAM allows), removed by ``close()``. ``restore()`` puts
    every tensor back bitwise, in place, so references held elsewhere (the optimizer's
    parameters, the user's variables) stay valid; ``close()`` ends the snapshot.
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
        if scaler is not None and not scaler.is_enabled():
            scaler = None  # a disabled scaler holds no state and changes none
        self.model, self.scaler = model, scaler
        self.training = {name: m.training for name, m in model.named_modules()}
        self.requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        # Every module's own buffers, as the module holds them: one the forward pass resizes or
        # sets (a positional cache, first None) comes back as it was, as do the non-persistent.
        modules = dict(model.named_modules())
        self.buffer_places = {
            name: (
                {k: None if b is None else b.device for k, b in m._buffers.items()},
                set(m._non_persistent_buffers_set),
            )
            for name, m in modules.items()
        }
        # A sharded model (FSDP2) has DTensor parameters, gradients and optimizer state: each
        # rank keeps its own shards, never the gathered whole.
        self.copier = _Copier()
        cpu = self.copier.to_cpu
        self.optimizer_copy = (
            None if optimizer is None else _OptimizerCopy(optimizer, self.copier, {id(p) for p in model.parameters()})
        )
        state = {
            "model": cpu(model.state_dict()),
            "buffers": {
                name: {k: None if b is None else cpu(b) for k, b in m._buffers.items()} for name, m in modules.items()
            },
            "grads": {n: None if p.grad is None else cpu(p.grad) for n, p in model.named_parameters()},
            "scaler": None if scaler is None else cpu(scaler.state_dict()),
            "optimizer": None if self.optimizer_copy is None else self.optimizer_copy.saved,
        }
        if self.optimizer_copy is not None:
            del self.optimizer_copy.saved  # the state dict holds it (on disk with cache="disk")
        # A step interrupted after unscale_() leaves the scaler mid-step: keep its stage too.
        self.scaler_stages = None if scaler is None else {k: dict(v) for k, v in scaler._per_optimizer_states.items()}
        # DataLoaders may carry their own generators (shuffling, sampling): those are RNGs too.
        self.rngs = Rngs(data)
        # A DataLoader with persistent workers reuses its one iterator (and its workers, RNGs
        # advanced) on every iter(): the sweep gets an iterator of its own, and the user's, maybe
        # mid-epoch, waits untouched until close().
        self.iterators = [
            (d, d._iterator) for d in data if isinstance(d, torch.utils.data.DataLoader) and d.persistent_workers
        ]
        for loader, _ in self.iterators:
            loader._iterator = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if cache == "disk":
            self._dir = tempfile.TemporaryDirectory(prefix="lrfind-")
            self._path = os.path.join(self._dir.name, "state.pt")
            try:
                torch.save(state, self._path)
            except BaseException:
                self.close()  # no directory left behind, and the loaders get their iterators back
                raise
            self._state: dict[str, Any] | None = None
        else:
            self._state = state

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken. Each part is restored even
        if another fails (the first error is raised at the end)."""
        state = self._state if self._state is not None else torch.load(self._path, weights_only=False)
        back = self.copier.back
        errors: list[BaseException] = []
        for part in (
            lambda: self._restore_buffers(state["buffers"], back),  # first: load_state_dict copies into them
            lambda: self._restore_parameters(state, back),
            lambda: self.optimizer_copy is not None and self.optimizer_copy.restore(state["optimizer"], back),
            lambda: self.scaler is not None and self._restore_scaler(state["scaler"]),
            self.rngs.restore,
            self._close_sweep_iterators,
        ):
            try:
                part()
            except BaseException as e:  # noqa: BLE001 - every other part still gets restored, after a Ctrl-C too
                errors.append(e)
        if errors:
            raise errors[0]

    def _restore_buffers(self, saved: dict[str, dict[str, Any]], back: Any) -> None:
        modules = dict(self.model.named_modules())
        with torch.no_grad():
            for name, (devices, non_persistent) in self.buffer_places.items():
                m = modules.get(name)
                if m is None:
                    continue
                # keys() and `in`: a scripted module's buffer table has no iteration and no get().
                for key in [k for k in m._buffers.keys() if k not in devices]:  # registered during the sweep
                    del m._buffers[key]
                for key, device in devices.items():
                    value, now = back(saved[name][key]), m._buffers[key] if key in m._buffers else None
                    if value is None or now is None or now.shape != value.shape or now.dtype != value.dtype:
                        m._buffers[key] = None if value is None else value.to(device)
                    else:
                        now.copy_(value)
                m._non_persistent_buffers_set = set(non_persistent)

    def _restore_parameters(self, state: dict[str, Any], back: Any) -> None:
        with torch.no_grad():
            self.model.load_state_dict(back(state["model"]))
            for name, p in self.model.named_parameters():
                saved = back(state["grads"].get(name))
                if saved is None:
                    p.grad = None
                elif p.grad is None:
                    p.grad = saved.to(p.device)
                else:
                    p.grad.copy_(saved)
                if name in self.requires_grad:
                    p.requires_grad_(self.requires_grad[name])
        for name, m in self.model.named_modules():
            if name in self.training:
                m.training = self.training[name]

    def _restore_scaler(self, saved: dict[str, Any]) -> None:
        self.scaler.load_state_dict(saved)
        self.scaler._per_optimizer_states.clear()
        self.scaler._per_optimizer_states.update({k: dict(v) for k, v in self.scaler_stages.items()})

    def _close_sweep_iterators(self) -> None:
        """Shut down the iterators the sweep opened on persistent-worker loaders."""
        for loader, _ in self.iterators:
            opened, loader._iterator = loader._iterator, None
            if opened is not None:
                opened._shutdown_workers()

    def close(self) -> None:
        """Drop the copy (and its temporary directory), and give persistent-worker loaders their
        own iterators back."""
        self._state = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
        self._close_sweep_iterators()
        for loader, iterator in self.iterators:
            loader._iterator = iterator
