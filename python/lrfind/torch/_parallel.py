"""K range tests side by side on one device: ``torch.func`` + ``vmap`` over stacked copies."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import numbers
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.func import functional_call, grad_and_value, stack_module_state, vmap
from torch.nn.utils import parametrize
from torch.utils._python_dispatch import TorchDispatchMode

from lrfind import _core
from lrfind.parallel import ParallelResult
from lrfind.result import RangeTestResult, Refinement, detector, sweep_options
from lrfind.torch import _refine
from lrfind.torch._range_test import (
    CHECK_EVERY,
    StoppedRankError,
    _batches,
    _check_distributed,
    _check_functions,
    _check_materialised,
    _check_model,
    _check_positive_int,
    _device_of,
    _modes,
    _one_shot,
    _progress_bar,
    _set_modes,
    _tensor_loss,
    _to_device,
)
from lrfind.torch._stacked_optim import _DEFAULTS, StackedOptimizer
from lrfind.torch._state import DTensor, Snapshot

#: Share of free GPU memory the default chunk size may plan for.
GPU_MEMORY_SHARE = 0.5

#: What vmap says when a random op runs under randomness="error".
VMAP_RANDOMNESS_ERROR = "randomness error mode"

#: Second entropy word of a run's random-op generator seed: a stream apart from the one that
#: torch.manual_seed(seed) gives the run's initialisation.
RANDOM_OPS_STREAM = 1


def parallel_range_test(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: Any,
    *,
    num_runs: int = 16,
    optimizer: str = "adamw",
    optimizer_kwargs: Mapping[str, Any] | None = None,
    min_lr: float | Sequence[float] = 1e-7,
    max_lr: float | Sequence[float] = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    seeds: Sequence[int] | None = None,
    init: str = "reinit",
    data_order: str = "shared",
    chunk_size: int | None = None,
    refine: int = 0,
    refine_steps: int | None = None,
    val_data: Any = None,
    val_batches: int = 1,
    smooth_factor: float = 0.05,
    diverge_threshold: float = 10.0,
    watch: str = "raw",
    patience: int = 1,
    check_every: int = CHECK_EVERY,
    methods: str | Sequence[str] | Mapping[str, Any] | None = None,
    suggest_on: str = "raw",
    arch: str | None = None,
    progress: bool = True,
    distributed: bool | None = None,
    dist_timeout: float = 300.0,
) -> ParallelResult:
    """Run ``num_runs`` range tests at once, in one vmapped forward/backward per step.

    Each run is a copy of ``model`` trained by its own optimizer over its own LR sweep; a run
    that diverges is frozen (its updates masked) while the others go on, and its curve is cut
    at its own stop. The user's model is never trained (and the RNGs come back as they were).

    Args:
        model: the model to copy; ``(inputs, targets)`` batches, ``loss_fn(model(inputs), targets)``.
            Modules that update buffers in place (BatchNorm with running statistics) cannot be
            vmapped: see the error for what to do. Frozen parameters (``requires_grad=False``)
            stay as they are, as ``torch.optim`` leaves them.
        loss_fn: the loss, a function of (outputs, targets).
        data: a DataLoader, an iterable of batches or one fixed batch, as ``range_test``; a
            one-shot iterator (a generator) only when it is read once (one chunk, no ``refine``).
        num_runs: K, the number of sweeps (default 16).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"`` (default), applied to each run exactly as
            ``torch.optim`` would; ``optimizer_kwargs`` are its hyperparameters (not ``lr``).
        min_lr, max_lr: each run's sweep ends (defaults 1e-7, 10.0): one value for all runs, or
            one per run.
        num_steps, mode: steps per sweep (default 100) and ``"exp"``/``"linear"`` spacing.
        seeds: one seed per run (default ``0..K-1``): the run's initialisation, data order and
            dropout/random masks come from its seed only, whatever ``num_runs`` and ``chunk_size``
            (each run draws its random ops from its own generator), so a run can be replayed alone.
        init: ``"reinit"`` (default) gives each run its own initialisation from its seed
            (``reset_parameters()`` of every module, through its parametrizations, such as
            ``weight_norm``); ``"copy"`` starts every run from the user's weights.
        data_order: ``"shared"`` (default) feeds the same batches to every run; ``"shuffled"``
            gives each run its own order (``data`` must then be a DataLoader).
        chunk_size: runs per vmapped chunk when K runs do not fit at once (default: all K on the
            CPU; on CUDA, as many as half the free memory allows, by the size of parameters,
            gradients and optimizer state, times 4 for activations).
        refine: 0 (default: off) or K >= 2 candidate LRs spread evenly in log over the runs'
            consensus range (``suggested_range``), trained side by side from ``model``'s own
            weights and in its mode, as the runs (every candidate the same; the data order and
            random ops of the first seed) for ``refine_steps`` steps each (default None:
            ``num_steps``) with ``optimizer``, and scored by the mean loss over the first
            ``val_batches`` batches (default 1) of ``val_data`` (required with ``refine``;
            ``(inputs, targets)`` batches, the same for every candidate). The best becomes
            ``suggested_lr``; ``result.refined`` holds every candidate's LR and score. Under
            ``torch.distributed`` the candidates are dealt out over the ranks like the runs.
        smooth_factor, diverge_threshold, watch, patience, check_every, methods, suggest_on,
        arch, progress: as ``range_test`` (the progress bar on rank 0 only).
        distributed: None (default): the runs are dealt out over the ranks whenever
            ``torch.distributed`` is initialised (every rank must call); True: the same, and an
            error when it is not; False: every run in this process, with no collective.
        dist_timeout: in a distributed run on gloo, the seconds a rank waits for the others at
            the gather of the runs (and of the candidates) before it raises
            ``StoppedRankError`` (default 300.0), so that a rank whose peer raised and lingers
            does not wait for the process group's timeout.

    Under ``torch.distributed`` (a process group initialised, e.g. by ``torchrun``), every rank
    calls it with the same arguments and the same ``data``: the runs are dealt out over the
    ranks (run k to rank ``k % world_size``), each rank vmaps its share on the device of its
    ``model``, and every rank gathers every run's curve and returns the same ``ParallelResult``.
    A run's curve depends on its seed only, not on the number of ranks.

    Returns:
        a ``ParallelResult``: ``runs`` (one ``RangeTestResult`` each), the consensus
        ``suggested_lr``, its ``spread``, ``agreeing`` and ``diagnosis``.
    """
    _check_model(model)
    _check_materialised(model)
    if loss_fn is None:
        raise TypeError("loss_fn must be a function of (outputs, targets) that returns the loss tensor, got None")
    _check_functions(loss_fn=loss_fn)
    if not isinstance(optimizer, str) or optimizer not in _DEFAULTS:
        raise ValueError(f"optimizer must be one of {tuple(_DEFAULTS)}, got {optimizer!r}")
    _check_positive_int("num_runs", num_runs)
    _check_positive_int("check_every", check_every)
    if init not in ("reinit", "copy"):
        raise ValueError(f'init must be "reinit" or "copy", got {init!r}')
    if data_order not in ("shared", "shuffled"):
        raise ValueError(f'data_order must be "shared" or "shuffled", got {data_order!r}')
    if data_order == "shuffled" and not isinstance(data, torch.utils.data.DataLoader):
        raise TypeError(f'data_order="shuffled" needs a DataLoader as data, got {type(data).__name__}')
    if data_order == "shuffled" and (
        isinstance(data.dataset, torch.utils.data.IterableDataset) or data.batch_size is None
    ):
        raise ValueError(
            'data_order="shuffled" reshuffles data.dataset into batches of data.batch_size for each run: it needs a '
            "map-style dataset and a batch_size, not an IterableDataset or a batch_sampler"
        )
    refine_steps = _refine.check_refine(refine, refine_steps, num_steps, val_data)
    _check_positive_int("val_batches", val_batches)
    seeds = _check_seeds(seeds, num_runs)
    lrs = np.stack([_core.sweep_lrs(lo, hi, num_steps, mode) for lo, hi in _per_run(min_lr, max_lr, num_runs)])
    kwargs = dict(optimizer_kwargs or {})
    if "lr" in kwargs:
        raise ValueError("optimizer_kwargs must not hold 'lr': the sweep sets it")
    unknown = sorted(set(kwargs) - set(_DEFAULTS[optimizer]), key=str)
    if unknown:
        raise TypeError(
            f"optimizer_kwargs has {unknown[0]!r}, which optimizer={optimizer!r} does not take "
            f"(it takes {', '.join(_DEFAULTS[optimizer])})"
        )
    _check_vmappable(model)
    device = _device_of(model)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameter (all have requires_grad=False): there is nothing to sweep")
    options = sweep_options(
        methods=methods,
        diverge_threshold=diverge_threshold,
        watch=watch,
        smooth_factor=smooth_factor,
        patience=patience,
        suggest_on=suggest_on,
        arch=arch,
    )
    # Validate the optimizer settings on one run's worth of parameters before any work.
    StackedOptimizer({"probe": torch.zeros(1, 1)}, optimizer, **kwargs)
    if chunk_size is not None:
        _check_positive_int("chunk_size", chunk_size)
    chunk = chunk_size or _default_chunk(model, num_runs, device, optimizer)

    # Under torch.distributed the runs are dealt out over the ranks (run k to rank k % world),
    # each rank vmaps its share on its own device, and every rank gathers every run.
    ranked = _check_distributed(distributed, dist_timeout)
    rank, world = (dist.get_rank(), dist.get_world_size()) if ranked else (0, 1)
    mine = list(range(rank, num_runs, world))
    if _one_shot(data) and (refine or len(mine) > chunk):
        raise ValueError(
            f"data is a one-shot iterator ({type(data).__name__}), but parallel_range_test reads it once per chunk of "
            f"runs and once more for refine, and every read must give the same batches: pass a DataLoader or a list "
            f"of batches"
        )
    snapshot = Snapshot(model, data=(data, val_data))  # reinit and shuffling draw on the RNGs
    sweeps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}  # run -> its recorded losses, norms
    bar = _progress_bar(len(mine) * num_steps, progress and rank == 0)
    try:
        # Checked before the sweep, not after it.
        val = (
            _refine.held_out(val_data, val_batches, lambda b: _to_device(_pair(b, "val_data"), device))
            if refine
            else []
        )
        for start in range(0, len(mine), chunk):
            # Every chunk starts from the same RNG and data order (shared batches from a DataLoader
            # that draws on the global RNG); random ops in the model draw on per-run generators.
            snapshot.restore()
            ids = mine[start : start + chunk]
            sweep = _Chunk(model, loss_fn, [seeds[k] for k in ids], init, device, optimizer, kwargs)
            batches = _chunk_batches(data, data_order, [seeds[k] for k in ids], device)
            detectors = [detector(options) for _ in ids]
            losses, norms, recorded = sweep.run(lrs[ids], batches, detectors, check_every, bar)
            for j, k in enumerate(ids):
                n = recorded[j]
                sweeps[k] = (lrs[k, :n], losses[j, :n], norms[j, :n])
        if bar is not None:
            bar.close()
            bar = None
        result = _gathered(sweeps, seeds, options, world, dist_timeout)
        consensus = result.consensus_lr
        candidates = _refine.candidates(consensus, result.suggested_range, refine) if refine else None
        if candidates is not None and consensus is not None:
            snapshot.restore()
            ids = list(range(rank, refine, world))  # candidate k on rank k % world
            scores = _refine.scores_vmapped(
                model, loss_fn, candidates[ids], refine_steps, data, val, (optimizer, kwargs), seeds[0], chunk,
                check_every, snapshot.restore, progress and rank == 0, train_mode=False,
            )  # fmt: skip
            by_id = _gather(dict(zip(ids, scores.tolist(), strict=True)), world, dist_timeout)
            refined = Refinement(candidates, np.array([by_id[k] for k in range(refine)]), refine_steps, consensus)
            result = dataclasses.replace(result, refined=refined)
    finally:
        if bar is not None:
            bar.close()
        snapshot.restore()
        snapshot.close()
    return result


def _gathered(
    sweeps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
    seeds: list[int],
    options: dict[str, Any],
    world: int,
    timeout: float,
) -> ParallelResult:
    """Every run's sweep, analysed (gathered from every rank in a distributed run)."""
    sweeps = _gather(sweeps, world, timeout)
    runs = []
    for k in range(len(seeds)):
        run_lrs, run_losses, run_norms = sweeps[k]
        result = RangeTestResult.from_sweep(run_lrs, run_losses, **options)
        runs.append(dataclasses.replace(result, grad_norms=run_norms[: len(result.lrs)]))
    return ParallelResult(runs=runs, seeds=seeds)


def _gather(mine: dict[int, Any], world: int, timeout: float) -> dict[int, Any]:
    """This rank's share of runs (or candidates), by index, merged with every other rank's. On
    gloo a monitored barrier first bounds the wait for a rank that raised or hung (NCCL has
    none: its process group's timeout applies)."""
    if world == 1:
        return mine
    if dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout))
        except RuntimeError as err:
            raise StoppedRankError(
                f"lrfind: rank {dist.get_rank()}: another rank did not reach parallel_range_test's gather within "
                f"{timeout:g} s (set by dist_timeout): it most likely raised, exited or hung, and its log has the "
                f"cause ({str(err).splitlines()[0]})"
            ) from err
    shares: list[Any] = [None] * world
    dist.all_gather_object(shares, mine)
    return {k: v for share in shares for k, v in share.items()}


class _Chunk:
    """Stacked copies of the model, their optimizer, and the loop over the sweep."""

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        seeds: list[int],
        init: str,
        device: torch.device,
        optimizer: str,
        kwargs: dict[str, Any],
        same_random: bool = False,
    ) -> None:
        copies = [_copy(model, seed, init) for seed in seeds]
        params, buffers = stack_module_state(copies)
        # Frozen parameters (requires_grad=False) are constants, as torch.optim leaves them.
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.params = {k: v.detach() for k, v in params.items() if k in trainable}
        self.buffers = {**buffers, **{k: v.detach() for k, v in params.items() if k not in trainable}}
        self.k = len(seeds)
        self.seeds = seeds
        self.device = device
        # Set on the first step that draws random numbers (dropout ...): see ``_step``.
        self.randomness: _PerRunRandomness | nullcontext[None] | None = None
        self.same_random = same_random
        self.optimizer = StackedOptimizer(self.params, optimizer, **kwargs)
        base = _on_meta(copies[0])
        self.base = base

        checked = _tensor_loss(lambda model, batch: loss_fn(model(batch[0]), batch[1]), "loss_fn")

        def loss_of(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: Any, y: Any) -> torch.Tensor:
            return checked(lambda inputs: functional_call(base, (p, b), (inputs,)), (x, y))

        self.loss_of = loss_of

    def run(
        self,
        lrs: np.ndarray,
        batches: tuple[Iterator[Any], bool],
        detectors: list[_core.DivergenceDetector],
        check_every: int,
        bar: Any,
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """The sweep; returns host losses and grad norms (K, steps) and each run's recorded
        length (its explosion point included)."""
        iterator, stacked = batches
        in_dims = (0, 0, 0 if stacked else None, 0 if stacked else None)
        step_fns = tuple(
            vmap(grad_and_value(self.loss_of), in_dims=in_dims, randomness=r)
            for r in ("error", "same" if self.same_random else "different")
        )
        num_steps = lrs.shape[1]
        lr_dev = torch.tensor(lrs, dtype=torch.float32, device=self.device)
        active = torch.ones(self.k, dtype=torch.bool, device=self.device)
        host = np.full((2, self.k, num_steps), np.nan)
        recorded = [num_steps] * self.k
        done = [False] * self.k
        pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        checked = 0
        for i in range(num_steps):
            x, y = next(iterator)
            grads, loss = self._step(step_fns, x, y)
            norm = torch.sqrt(sum((g.reshape(self.k, -1).float() ** 2).sum(1) for g in grads.values()))
            self.optimizer.step(grads, lr_dev[:, i], active)
            pending.append((i, loss.detach().float(), norm))
            if (i + 1) % check_every and i + 1 < num_steps:
                continue
            values = torch.stack([t for _, loss_i, norm_i in pending for t in (loss_i, norm_i)]).double().cpu().numpy()
            steps = [s for s, _, _ in pending]
            host[0][:, steps] = values[0::2].T
            host[1][:, steps] = values[1::2].T
            pending.clear()
            for r in range(self.k):
                if done[r]:
                    continue
                for j in range(checked, i + 1):
                    if detectors[r].update(float(host[0, r, j])):
                        done[r], recorded[r] = True, j + 1
                        break
            if bar is not None:
                bar.update((i + 1 - checked) * self.k)
            checked = i + 1
            if all(done):
                break
            active = torch.tensor([not d for d in done], dtype=torch.bool, device=self.device)
        return host[0], host[1], recorded

    @torch.no_grad()
    def evaluate(self, batches: Sequence[Any]) -> np.ndarray:
        """Each run's mean loss over ``batches`` (``(inputs, targets)`` pairs, shared by every
        run), the model in eval mode."""
        modes = _modes(self.base)
        self.base.eval()
        try:
            total = sum(self._losses(x, y).double() for x, y in batches)
        finally:
            _set_modes(modes)
        return (total / len(batches)).cpu().numpy()

    def _losses(self, x: Any, y: Any) -> torch.Tensor:
        """Each run's loss on one shared batch: vmapped, or run by run where an op has no
        batching rule outside autograd (a GRU in eval mode under no_grad)."""
        try:
            return vmap(self.loss_of, in_dims=(0, 0, None, None))(self.params, self.buffers, x, y)
        except RuntimeError as error:
            if "atching rule" not in str(error):
                raise
        runs = [
            ({k: v[r] for k, v in self.params.items()}, {k: v[r] for k, v in self.buffers.items()})
            for r in range(self.k)
        ]
        return torch.stack([self.loss_of(p, b, x, y) for p, b in runs])

    def _step(self, step_fns: tuple[Callable[..., Any], Callable[..., Any]], x: Any, y: Any) -> Any:
        """Gradients and losses of one step. A model without random ops runs as plain vmap (no
        per-op overhead); the first random op switches the chunk to randomness="different" with
        every run's random numbers drawn from its own generator, or with ``same_random`` to
        randomness="same": every run draws the numbers one model would, from the global RNG."""
        plain, different = step_fns
        try:
            if self.randomness is None:
                try:
                    return plain(self.params, self.buffers, x, y)
                except RuntimeError as error:
                    if VMAP_RANDOMNESS_ERROR not in str(error):
                        raise
                # vmap refused before drawing anything, and the failed call changed no state (the
                # optimizer step comes after it): run the step again, with randomness.
                self.randomness = nullcontext() if self.same_random else _PerRunRandomness(self.seeds)
            with self.randomness:
                return different(self.params, self.buffers, x, y)
        except RuntimeError as error:
            if "atching rule" not in str(error):
                raise
            raise RuntimeError(
                f"the model cannot be vmapped (torch.func.vmap: {str(error).splitlines()[0]}), which "
                "parallel_range_test and refine's side-by-side candidates need; run lrfind.torch.range_test once "
                "per seed instead"
            ) from error


class _PerRunRandomness(TorchDispatchMode):
    """Draws row ``r`` of every random op under ``vmap(randomness="different")`` from run r's own
    generator, seeded from run r's seed only.

    vmap alone draws all K runs' numbers from the global RNG in one call, so a run's masks would
    depend on its place in the chunk and on the chunk size (and every chunk of size 1 would get
    the same masks). Below vmap, this mode sees the physical random ops, with the run dimension
    first, and redoes them one row per run, each with its run's generator.
    """

    def __init__(self, seeds: list[int]) -> None:
        super().__init__()
        self.k = len(seeds)
        self.seeds = [
            int(np.random.SeedSequence([seed % 2**64, RANDOM_OPS_STREAM]).generate_state(1, np.uint64)[0])
            for seed in seeds
        ]
        self.generators: dict[torch.device, list[torch.Generator]] = {}
        self.dropout_dtypes: dict[torch.dtype, tuple[torch.dtype, torch.dtype]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded not in func.tags:
            return func(*args, **kwargs)
        if func is torch.ops.aten.native_dropout.default:  # CUDA's dropout: no generator argument
            return self._native_dropout(*args, **kwargs)
        return self._per_row(func, args, kwargs)

    def _generators(self, device: torch.device) -> list[torch.Generator]:
        """The runs' generators on ``device``, made on first use and kept for the whole sweep."""
        if device not in self.generators:
            self.generators[device] = [torch.Generator(device=device).manual_seed(s) for s in self.seeds]
        return self.generators[device]

    def _per_row(self, func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        schema = func._schema
        values = dict(zip((a.name for a in schema.arguments), args, strict=False))  # kwargs follow
        values.update(kwargs)
        target = func if _has_generator(func) else _with_generator(func)
        if target is None and func.overloadpacket in _LIKE_FILLS:
            target = _fill_like(func)
        if target is None:
            raise _unsplittable(func, "it takes no generator")
        tensors = [v for v in values.values() if isinstance(v, torch.Tensor)]
        size = values.get("size")
        if tensors:
            lead = tensors[0]
            if lead.dim() == 0 or lead.shape[0] != self.k:
                raise _unsplittable(func, _not_run_first(lead.shape, self.k))
            device = lead.device
            # vmap puts the run dimension first on batched inputs; unbatched ones have fewer dims.
            split = {
                n
                for n, v in values.items()
                if isinstance(v, torch.Tensor) and v.dim() == lead.dim() and len(v) == self.k
            }
        elif size is not None and len(size) > 0 and size[0] == self.k:
            device = torch.device(values.get("device") or torch.empty(0).device)  # None: the default device
            split = set()
        else:
            raise _unsplittable(func, f"vmap draws it without the chunk's {self.k} runs as first dimension")
        if len(schema.returns) != 1:
            raise _unsplittable(func, "it returns more than one tensor")
        written = [a.name for a in schema.arguments if a.alias_info is not None and a.alias_info.is_write]
        rows = []
        for r, generator in enumerate(self._generators(device)):
            row = {n: v[r] if n in split else v for n, v in values.items()}
            if not tensors:
                row["size"] = list(size[1:])
            # A generator the model passed itself is replaced too: a run draws on its own only.
            row["generator"] = generator
            rows.append(target(**row))
        if written:  # in place: each row wrote through its view
            return values[written[0]]
        return torch.stack(rows)

    def _native_dropout(self, input: torch.Tensor, p: float, train: bool | None = None) -> Any:
        if train is False or p == 0:
            return torch.ops.aten.native_dropout.default(input, p, train)
        if input.dim() == 0 or input.shape[0] != self.k:
            raise _unsplittable(torch.ops.aten.native_dropout.default, _not_run_first(input.shape, self.k))
        if input.dtype not in self.dropout_dtypes:  # native_dropout's own dtypes, off its meta kernel
            out, mask = torch.ops.aten.native_dropout.default(
                torch.empty(1, dtype=input.dtype, device="meta"), p, train
            )
            self.dropout_dtypes[input.dtype] = out.dtype, mask.dtype
        out_dtype, mask_dtype = self.dropout_dtypes[input.dtype]
        keep = 1.0 - p
        mask = torch.empty(input.shape, dtype=input.dtype, device=input.device)
        for r, generator in enumerate(self._generators(input.device)):
            mask[r].bernoulli_(keep, generator=generator)
        scale = 0.0 if keep == 0 else 1.0 / keep  # as native_dropout: p == 1 zeroes everything
        return input.mul(mask).mul_(scale).to(out_dtype), mask.to(mask_dtype)


def _has_generator(func: Any) -> bool:
    return any(a.name == "generator" for a in func._schema.arguments)


_GENERATOR_OVERLOADS: dict[Any, Any] = {}


def _with_generator(func: Any) -> Any:
    """The overload of ``func`` that takes the same arguments plus a generator (``rand.default``
    -> ``rand.generator``), or None."""
    if func not in _GENERATOR_OVERLOADS:
        want = [(a.name, str(a.type)) for a in func._schema.arguments]
        found = None
        for name in func.overloadpacket.overloads():
            other = getattr(func.overloadpacket, name)
            have = [(a.name, str(a.type)) for a in other._schema.arguments]
            if any(n == "generator" for n, _ in have) and [h for h in have if h[0] != "generator"] == want:
                found = other
                break
        _GENERATOR_OVERLOADS[func] = found
    return _GENERATOR_OVERLOADS[func]


#: Older torch releases have no generator overload of rand_like/randn_like: empty_like filled in place.
_LIKE_FILLS = {torch.ops.aten.rand_like: torch.ops.aten.uniform_, torch.ops.aten.randn_like: torch.ops.aten.normal_}


def _fill_like(func: Any) -> Callable[..., torch.Tensor]:
    fill = _LIKE_FILLS[func.overloadpacket]

    def draw(self: torch.Tensor, generator: torch.Generator, **options: Any) -> torch.Tensor:
        return fill(torch.empty_like(self, **options), generator=generator)

    return draw


def _not_run_first(shape: torch.Size, k: int) -> str:
    return f"vmap gives it shape {tuple(shape)}, without the chunk's {k} runs as first dimension"


def _unsplittable(func: Any, why: str) -> RuntimeError:
    return RuntimeError(
        f"parallel_range_test cannot give each run its own random numbers for {func} ({why}). Draw them "
        "outside the model, or run lrfind.torch.range_test per seed."
    )


def _per_run(min_lr: Any, max_lr: Any, k: int) -> list[tuple[float, float]]:
    def expand(name: str, v: Any) -> list[float]:
        # A number of any kind (numpy, a 0-d tensor) is one LR for every run, as range_test takes it.
        if isinstance(v, (str, bytes)) or not (isinstance(v, numbers.Real) or np.ndim(v) == 0 or np.ndim(v) == 1):
            raise TypeError(f"{name} must be a number or num_runs={k} numbers, got {v!r}")
        if np.ndim(v) == 0:
            return [_lr(name, v)] * k
        values = [_lr(name, x) for x in v]
        if len(values) != k:
            raise ValueError(f"{name} must be one value or num_runs={k} values, got {len(values)}")
        return values

    return list(zip(expand("min_lr", min_lr), expand("max_lr", max_lr), strict=True))


def _lr(name: str, v: Any) -> float:
    """One LR as a float (``sweep_lrs`` checks its range)."""
    if isinstance(v, (str, bytes, bool)) or not (isinstance(v, numbers.Real) or np.ndim(v) == 0):
        raise TypeError(f"{name} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None


def _check_seeds(seeds: Sequence[Any] | None, k: int) -> list[int]:
    """``seeds`` as ints (default ``0..k-1``): whole numbers in [0, 2**64), one per run."""
    if seeds is None:
        return list(range(k))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Iterable):
        raise TypeError(f"seeds must be a sequence of num_runs={k} ints, got {seeds!r}")
    seeds = list(seeds)
    for s in seeds:
        whole = isinstance(s, numbers.Integral) and not isinstance(s, bool)
        if not whole or not 0 <= int(s) < 2**64:
            raise ValueError(f"seeds must be whole numbers in [0, 2**64), got {s!r} in {seeds!r}")
    if len(seeds) != k:
        raise ValueError(f"seeds must hold num_runs={k} values, got {len(seeds)}")
    return [int(s) for s in seeds]


def _copy(model: torch.nn.Module, seed: int, init: str) -> torch.nn.Module:
    m = copy.deepcopy(model)
    if init == "reinit":
        # Seeded apart from the global RNG, which the chunk's batches (a shuffling DataLoader)
        # draw on next: a run's data must not depend on the seed of the chunk's last run.
        cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            for module in m.modules():
                _reset(module)
    return m


def _on_meta(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with its tensors on the meta device (``functional_call`` gives the real
    ones), tied tensors still tied: ``.to("meta")`` would untie them, and ``functional_call``
    would then leave the tied copy (an output layer sharing the embedding) at its meta value."""
    m = copy.deepcopy(model)
    meta: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for module in m.modules():
            for table in (module._parameters, module._buffers):
                for name, t in table.items():
                    if t is None:
                        continue
                    if id(t) not in meta:
                        on_meta = t.to("meta")
                        meta[id(t)] = (
                            torch.nn.Parameter(on_meta, t.requires_grad) if table is module._parameters else on_meta
                        )
                    table[name] = meta[id(t)]
    return m


def _reset(module: torch.nn.Module) -> None:
    """``module.reset_parameters()``, also through parametrizations (weight_norm, orthogonal,
    spectral_norm): there it would initialise the computed weight, a value thrown away, so it
    runs on a plain twin whose weights are then assigned through the parametrization."""
    reset = getattr(module, "reset_parameters", None)
    if not callable(reset):
        return
    if not parametrize.is_parametrized(module):
        reset()
        return
    twin = type(module).__bases__[0].__new__(type(module).__bases__[0])  # the class before parametrize
    twin.__dict__.update(module.__dict__)
    names = list(module.parametrizations)
    with torch.no_grad():
        # Contiguous, as a plain layer's weight is: an init fills memory in order, and a computed
        # weight may be a transposed view (orthogonal).
        plain = {n: torch.nn.Parameter(getattr(module, n).clone(memory_format=torch.contiguous_format)) for n in names}
        twin._parameters = {**module._parameters, **plain}
        twin._modules = {k: v for k, v in module._modules.items() if k != "parametrizations"}
        twin.reset_parameters()  # the other parameters (a bias) are the module's own, reset in place
        for n in names:
            # As a fresh registration stores it: the first parametrization's right_inverse of the
            # weight (weight_norm's (g, v), orthogonal's base), or the weight itself without one;
            # parametrizations added later leave the original as it is.
            chain, weight = module.parametrizations[n], twin._parameters[n].detach()
            first = chain[0]
            try:
                value = first.right_inverse(weight) if hasattr(first, "right_inverse") else weight
            except NotImplementedError:  # as torch's registration reads it: the identity
                value = weight
            if isinstance(value, torch.Tensor):
                chain.original.copy_(value)
            else:
                for k, part in enumerate(value):
                    getattr(chain, f"original{k}").copy_(part)


def _check_vmappable(model: torch.nn.Module) -> None:
    if DTensor is not None and any(isinstance(p, DTensor) for p in model.parameters()):
        raise ValueError(
            "parallel_range_test copies the model once per run and cannot copy a sharded (FSDP2) one: pass the "
            "unsharded module (runs are dealt out over the ranks anyway), or use lrfind.torch.range_test"
        )
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            raise ValueError(
                f"parallel_range_test cannot vmap {name or 'the model'} ({type(module).__name__}): it updates its "
                "running statistics in place. Call torch.func.replace_all_batch_norm_modules_(model) (or build it "
                "with track_running_stats=False) before the parallel test, or run lrfind.torch.range_test per seed."
            )


def _chunk_batches(data: Any, order: str, seeds: list[int], device: torch.device) -> tuple[Iterator[Any], bool]:
    """Batches for a chunk: the same for every run (not stacked), or one order per run,
    stacked along a new leading dimension."""
    if order == "shared":
        shared = _batches(data)
        return (_to_device(_pair(b), device) for b in shared), False
    loaders = [
        torch.utils.data.DataLoader(
            data.dataset,
            batch_size=data.batch_size,
            shuffle=True,
            drop_last=True,  # every run's batch must have the same shape to stack
            collate_fn=data.collate_fn,
            generator=torch.Generator().manual_seed(seed),
        )
        for seed in seeds
    ]
    iterators = [_batches(loader) for loader in loaders]

    def stacked() -> Iterator[Any]:
        while True:
            parts = [_pair(next(it)) for it in iterators]
            yield tuple(torch.stack([_to_device(p[j], device) for p in parts]) for j in range(2))

    return stacked(), True


def _pair(batch: Any, name: str = "data") -> Any:
    """``batch``, checked to be an ``(inputs, targets)`` pair, what ``loss_fn(model(inputs), targets)`` takes."""
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        shape = (
            f"{type(batch).__name__} of {len(batch)} items"
            if isinstance(batch, (tuple, list))
            else type(batch).__name__
        )
        raise TypeError(f"parallel_range_test needs (inputs, targets) batches in {name}, got a {shape}")
    return batch


def _default_chunk(model: torch.nn.Module, k: int, device: torch.device, optimizer: str) -> int:
    if device.type != "cuda":
        return k
    per_run = sum(p.numel() * p.element_size() for p in model.parameters())
    state = 1 if optimizer == "sgd" else 2
    need = per_run * (2 + state) * 4  # params + grads + optimizer state, x4 for activations
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(k, int(GPU_MEMORY_SHARE * free // max(need, 1))))
