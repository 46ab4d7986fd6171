"""The LR range test on a PyTorch model: one optimizer step per LR of the Rust sweep."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import itertools
import math
import numbers
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from lrfind import _core
from lrfind.result import RangeTestResult, Refinement, detector, sweep_options
from lrfind.torch import _refine
from lrfind.torch._state import DTensor, Rngs, Snapshot

StepFn = Callable[[torch.nn.Module, Any], torch.Tensor]

#: Host reads happen every this many steps (see ``range_test``'s ``check_every``).
CHECK_EVERY = 10

#: After this many skipped steps in a row (fp16 overflow every time), the step counts as NaN.
MAX_CONSECUTIVE_SKIPS = 50

#: Steps in which the loss must give some gradient to what the optimizer trains.
GRADIENT_STEPS = 10


def range_test(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor] | None,
    data: Any,
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    mode: str = "exp",
    smooth_factor: float = 0.05,
    diverge_threshold: float = 10.0,
    watch: str = "raw",
    patience: int = 1,
    step_fn: StepFn | None = None,
    backward_fn: Callable[[torch.Tensor], Any] | None = None,
    accumulation_steps: int = 1,
    max_grad_norm: float | None = None,
    amp: str | None = None,
    grad_scaler: torch.amp.GradScaler | None = None,
    group_lrs: str = "ratio",
    val_data: Any = None,
    val_every: int = 10,
    val_batches: int = 1,
    refine: int = 0,
    refine_steps: int | None = None,
    check_every: int = CHECK_EVERY,
    restore: bool = True,
    state_cache: str = "cpu",
    methods: str | Sequence[str] | Mapping[str, Any] | None = None,
    suggest_on: str = "raw",
    arch: str | None = None,
    progress: bool = True,
    dist_timeout: float = 300.0,
    distributed: bool | None = None,
) -> RangeTestResult:
    """Run the LR range test: one optimizer step per LR, from ``min_lr`` to ``max_lr``.

    The model, optimizer, grad scaler and every RNG (and ``loss_fn`` when it is a module with
    state of its own) come back exactly as they were (unless ``restore=False``), also when a
    step raises or the run is interrupted (Ctrl-C).

    Args:
        model: the model; batches are moved to the device of its first parameter. It trains in
            train mode: a model left in eval mode is put in train mode for the sweep, while
            submodules you put in eval mode inside a model in train mode (a frozen BatchNorm)
            stay in eval mode. Frozen parameters stay frozen.
        optimizer: any ``torch.optim`` optimizer over the model's parameters.
        loss_fn: ``loss_fn(model(inputs), targets)`` for ``(inputs, targets)`` batches; may be
            None when ``step_fn`` is given or the model returns its loss (dict batches,
            outputs with a ``.loss``).
        data: a DataLoader or any iterable of batches (re-iterated when exhausted, so
            ``num_steps`` may exceed its length), or one fixed batch (a tensor, tuple or
            dict) repeated every step, the seed's mode.
        min_lr, max_lr: first and last LR of the sweep, both exact (defaults 1e-7, 10.0).
        num_steps: optimizer steps, one per LR (default 100).
        mode: ``"exp"`` (default) or ``"linear"`` spacing.
        smooth_factor: EMA weight of the newest loss (default 0.05).
        diverge_threshold: stop when the watched loss exceeds this times the best
            (default 10.0; the rule is ``best + (threshold - 1) * max(|best|, 1.19e-7 * peak)``,
            ``peak`` the largest ``|loss|`` so far). NaN/inf always stop.
        watch: ``"raw"`` (default) or ``"smoothed"`` loss for the stop rule.
        patience: consecutive violations needed to stop (default 1).
        step_fn: ``step_fn(model, batch) -> loss`` for anything else (multi-input models,
            GANs, custom outputs); it runs the forward pass and returns the loss tensor.
            ``loss_fn`` must then be None (a ValueError otherwise: it would never run).
        backward_fn: ``backward_fn(loss)`` runs the backward pass of each micro-batch's loss
            (already divided by ``accumulation_steps``) instead of ``loss.backward()``: for a
            framework that owns backward and loss scaling, such as ``accelerator.backward``. It
            then owns fp16 scaling too, so ``amp="fp16"`` and ``grad_scaler`` must stay unset.
        accumulation_steps: micro-batches per optimizer step (default 1); the recorded loss is
            their mean and the LR moves once per optimizer step.
        max_grad_norm: clip the total gradient norm to this (default None: no clipping).
        amp: None (default), ``"bf16"`` or ``"fp16"`` autocast; fp16 uses ``grad_scaler`` (or a
            fresh ``torch.amp.GradScaler``), and a step it skips does not advance the sweep.
        grad_scaler: the user's ``torch.amp.GradScaler`` for fp16 (restored afterwards); a
            disabled one (``enabled=False``) counts as None.
        group_lrs: ``"ratio"`` (default) moves every parameter group by the same factor, so
            discriminative LRs keep their ratios (the recorded LR is the first group's);
            ``"same"`` sets every group to the swept LR.
        val_data: optional validation data; every ``val_every`` steps (default 10) the mean
            loss over its first ``val_batches`` batches (default 1; the same batches at every
            check, so the curve moves with the model, not with the batch; read at the first
            check with every RNG put back after, so the training batches are those of a sweep
            without ``val_data``, and kept as the loader gives them) is recorded in
            ``val_losses``.
        refine: 0 (default: off) or K >= 2 candidate LRs to check after the sweep: K LRs spread
            evenly in log over the suggested range, each trained from the starting weights
            (model, optimizer state, RNGs and data order as they were before the sweep) for
            ``refine_steps`` steps at that constant LR, then scored by the mean loss over the
            first ``val_batches`` batches of ``val_data`` (required; the same batches for every
            candidate; raise ``val_batches`` for a steadier score). The best becomes
            ``suggested_lr``; ``result.refined`` holds every candidate's LR and score. The
            candidates train side by side (vmapped, as ``parallel_range_test``) when that is
            the same computation (equal up to float rounding): a fresh SGD/Adam/AdamW over all
            the model's parameters with one LR, a ``loss_fn`` on ``(inputs, targets)`` batches,
            no BatchNorm running statistics, AMP, accumulation, clipping or distributed run, and
            a model vmap can run; one after another with your optimizer and settings otherwise.
            Random ops (dropout) draw the same numbers either way. ``data`` must be readable
            again (a DataLoader or a list, not a generator). A sweep that gives no LR to train
            at is not refined.
        refine_steps: steps per candidate (default None: ``num_steps``); the cost of ``refine``
            is ``refine * refine_steps`` training steps.
        check_every: steps between host reads of the recorded losses (default 10). On a GPU
            this is the only synchronisation; the curve is cut at the first diverging step
            exactly, so the result equals a ``check_every=1`` run.
        restore: put the model, optimizer, scaler and RNGs back afterwards (default True).
        state_cache: where the snapshot lives: ``"cpu"`` memory (default, never GPU memory) or
            ``"disk"`` (a temporary directory, removed afterwards).
        methods, suggest_on, arch: as ``lrfind.analyze``.
        progress: a tqdm bar (step, LR, smoothed loss) on a terminal (default True); in a
            distributed run, on rank 0 only.
        dist_timeout: in a distributed run, the seconds a host check waits for the other ranks'
            losses before it raises ``StoppedRankError`` (default 300.0), so that a rank whose
            peer raised, exited or hung does not wait forever.
        distributed: None (default): a distributed run whenever ``torch.distributed`` is
            initialised (every rank must call); True: the same, and an error when it is not;
            False: a test of this process alone, with no
            collective (the LR searched on rank 0 only, then broadcast), for a model that is
            not a ``DistributedDataParallel`` or FSDP-sharded one (pass ``model.module``).

    Distributed runs (``torch.distributed`` initialised; typically a ``DistributedDataParallel``
    model, every rank calling ``range_test`` with the same settings on its own share of each
    batch): every rank records each loss and validation loss averaged over the ranks (those of
    the DDP model's process group, else of the default group), summed by an asynchronous
    ``all_reduce`` that the host waits for only at its checks, so every rank records the same
    curve and stops at the same step. Only rank 0 draws the progress bar; every rank restores
    its own state. Waits outside lrfind (DDP's gradient all-reduce on gloo, a host copy queued
    behind a stuck NCCL collective) end with the process group's timeout instead
    (``init_process_group(timeout=...)``); gloo fails at once when a peer's process exits. An
    exception that leaves a distributed range test carries a note naming its rank (Python 3.11+).

    torch-lr-finder users: ``start_lr`` is ``min_lr``, ``end_lr`` is ``max_lr``, ``num_iter``
    is ``num_steps``, ``step_mode`` is ``mode``, ``smooth_f`` is ``smooth_factor``,
    ``diverge_th`` is ``diverge_threshold`` (torch-lr-finder watches the smoothed loss with
    5: ``watch="smoothed", diverge_threshold=5``), ``accumulation_steps`` is the same,
    ``val_loader`` is ``val_data``, and ``train_loader`` is ``data``.

    Returns:
        a ``RangeTestResult`` with ``lrs``, ``losses``, ``smoothed_losses``, ``grad_norms``,
        ``val_losses``, ``stop_index``, ``stop_reason``, ``skipped_steps``, ``suggestions``,
        ``suggested_lr`` and ``diagnosis``.
    """
    lrs, options, refine_steps = _check_values(locals())
    if refine and _one_shot(data):
        raise ValueError(
            f"refine={refine} trains every candidate on the sweep's first batches, but data is a one-shot iterator "
            f"({type(data).__name__}) that the sweep uses up: pass a DataLoader or a list of batches"
        )
    if grad_scaler is not None and not grad_scaler.is_enabled():
        # GradScaler(enabled=use_amp) with AMP off, or a CUDA scaler without CUDA: it scales
        # nothing and holds no state, so the sweep runs as without one (a fresh one under fp16).
        grad_scaler = None
    stop = detector(options)
    _check_setup(model, optimizer, loss_fn=loss_fn, step_fn=step_fn, backward_fn=backward_fn)
    _check_materialised(model)
    if backward_fn is not None and (amp == "fp16" or grad_scaler is not None):
        raise ValueError(
            "backward_fn owns the backward pass and its loss scaling: leave amp='fp16' and grad_scaler unset "
            f"(got amp={amp!r}, grad_scaler={grad_scaler!r})"
        )
    if backward_fn is not None and getattr(optimizer, "scaler", None) is not None:
        # accelerate's AcceleratedOptimizer under fp16: accelerator.backward scales the loss and the
        # wrapper steps the scaler, so the sweep would clip and record scaled gradients and count
        # a skipped step as done.
        raise ValueError(
            "this optimizer steps its own GradScaler (accelerate under fp16): use lrfind.hf.accelerate_range_test, or "
            "pass the optimizer inside it (optimizer.optimizer) with grad_scaler=accelerator.scaler and no backward_fn"
        )
    if distributed is False and (
        isinstance(model, torch.nn.parallel.DistributedDataParallel)
        or (DTensor is not None and any(isinstance(p, DTensor) for p in model.parameters()))
    ):
        raise ValueError(
            "distributed=False runs this process alone, but a DistributedDataParallel or FSDP-sharded model runs "
            "collectives in every step: pass the plain module (model.module) or call range_test on every rank"
        )
    if step_fn is not None:
        _check_takes_two(step_fn)
    if loss_fn is None and step_fn is None:
        step = _tensor_loss(_model_loss(model), "the model (with loss_fn=None)")
    else:
        step = _tensor_loss(step_fn, "step_fn") if step_fn else _tensor_loss(_loss_fn_step(loss_fn), "loss_fn")
    base = [float(g["lr"]) for g in optimizer.param_groups]
    # The first group's LR is the recorded one; another group at 0 (frozen by its LR) stays at 0.
    if group_lrs == "ratio" and not (base[0] > 0 and all(b >= 0 for b in base)):
        raise ValueError(f"group_lrs=\"ratio\" needs the first group's lr > 0 and the others' >= 0, got {base}")
    ratios = [b / base[0] for b in base] if group_lrs == "ratio" else [1.0] * len(base)
    device = _device_of(model)

    def new_scaler() -> torch.amp.GradScaler | None:
        """The user's scaler (the snapshot restores it), or under fp16 a fresh one."""
        return torch.amp.GradScaler(device.type) if amp == "fp16" and grad_scaler is None else grad_scaler

    scaler = new_scaler()
    ranks = None if distributed is False else _Ranks.of(model, dist_timeout)
    run = _Run(
        model, optimizer, step, device, amp, scaler, max_grad_norm, accumulation_steps, num_steps, ranks, backward_fn
    )
    # A loss_fn that is a module (a margin head with running statistics, a learnable
    # temperature) is state the sweep trains too: snapshot it with the model.
    held = torch.nn.ModuleList([model, loss_fn]) if isinstance(loss_fn, torch.nn.Module) else model
    snapshot = Snapshot(held, optimizer, grad_scaler, state_cache, data=(data, val_data))
    failure: BaseException | None = None
    # Called under torch.no_grad() (an evaluation helper, a notebook cell), training still needs gradients.
    with torch.inference_mode(False), torch.enable_grad():
        try:
            run.sweep(lrs, ratios, data, val_data, val_every, val_batches, stop, check_every, progress)
            result = RangeTestResult.from_sweep(lrs[: run.recorded], run.host_losses[: run.recorded], **options)
            kept = len(result.lrs)
            # Skips past the explosion point (the loop runs on to the next check) do not count.
            skipped = sum(1 for i in run.skipped_at if i < run.recorded)
            result = dataclasses.replace(
                result, grad_norms=run.host_norms[:kept], val_losses=run.host_val[:kept], skipped_steps=skipped
            )
            if refine:
                result = _with_refinement(
                    result, refine, refine_steps, run, snapshot, new_scaler, ratios, data, val_data, val_batches,
                    (loss_fn, step_fn, backward_fn), check_every, progress,
                )  # fmt: skip
        except BaseException as err:
            failure = err
            # Interleaved logs of many ranks: say which one this is (StoppedRankError already does).
            if (
                isinstance(err, Exception)
                and ranks is not None
                and not isinstance(err, StoppedRankError)
                and sys.version_info >= (3, 11)
            ):
                err.add_note(
                    f"lrfind.torch.range_test: raised on rank {ranks.rank} of {ranks.size} (an error in a "
                    "collective usually means that another rank failed first: its log has the cause)"
                )
            raise
        finally:
            try:
                if restore:
                    snapshot.restore()
            except BaseException as restore_error:
                if failure is None:
                    raise
                # The sweep's own error is the one to read; the restore's rides along with it.
                if sys.version_info >= (3, 11):
                    failure.add_note(f"lrfind.torch.range_test: the restore after it failed too: {restore_error!r}")
            finally:
                snapshot.close()  # the temporary directory and the loaders' iterators, whatever happened
    return result


def check_settings(**settings: Any) -> None:
    """``range_test``'s checks of ``settings`` (its keyword arguments; the others at their
    defaults) that need no model, data or optimizer: for a callback that runs it later, so that
    a bad value fails when the callback is made. Raises what ``range_test`` raises."""
    bound = inspect.signature(range_test).bind_partial(None, None, None, None, **settings)
    bound.apply_defaults()
    _check_values(bound.arguments)


def _check_values(a: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, Any], int | None]:
    """The checks of ``range_test``'s arguments ``a`` (by name) that need no model: the sweep's
    LRs, the analysis options and ``refine_steps``."""
    if isinstance(a["num_steps"], bool):  # the core would read True as 1
        raise ValueError(f"num_steps must be an int >= 2, got {a['num_steps']!r}")
    lrs = _core.sweep_lrs(a["min_lr"], a["max_lr"], a["num_steps"], a["mode"])
    for name in ("progress", "restore"):
        _check_bool(name, a[name])
    refine_steps = _refine.check_refine(a["refine"], a["refine_steps"], a["num_steps"], a["val_data"])
    if a["refine"] and not a["restore"]:
        raise ValueError(f"refine={a['refine']} needs restore=True: every candidate starts from the model as it was")
    options = sweep_options(
        methods=a["methods"],
        diverge_threshold=a["diverge_threshold"],
        watch=a["watch"],
        smooth_factor=a["smooth_factor"],
        patience=a["patience"],
        suggest_on=a["suggest_on"],
        arch=a["arch"],
    )
    for name in ("accumulation_steps", "check_every", "val_every", "val_batches"):
        _check_positive_int(name, a[name])
    scaler = a["grad_scaler"]
    if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
        raise TypeError(f"grad_scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__} {scaler!r}")
    if a["amp"] not in (None, "bf16", "fp16"):
        raise ValueError(f'amp must be None, "bf16" or "fp16", got {a["amp"]!r}')
    if a["group_lrs"] not in ("ratio", "same"):
        raise ValueError(f'group_lrs must be "ratio" or "same", got {a["group_lrs"]!r}')
    norm = a["max_grad_norm"]
    if norm is not None and (isinstance(norm, bool) or not isinstance(norm, numbers.Real) or not norm > 0):
        raise ValueError(f"max_grad_norm must be a number > 0 or None, got {norm!r}")
    if a["state_cache"] not in ("cpu", "disk"):
        raise ValueError(f'state_cache must be "cpu" or "disk", got {a["state_cache"]!r}')
    _check_distributed(a["distributed"], a["dist_timeout"])
    return lrs, options, refine_steps


def _check_distributed(distributed: Any, timeout: Any) -> bool:
    """Checks ``distributed`` and ``dist_timeout`` (``range_test``'s and ``parallel_range_test``'s);
    whether this call runs over the ranks."""
    in_use = dist.is_available() and dist.is_initialized()
    if not (distributed is None or isinstance(distributed, bool)):
        raise ValueError(f"distributed must be None (automatic), True or False, got {distributed!r}")
    if distributed and not in_use:
        raise ValueError("distributed=True needs torch.distributed initialised (init_process_group) first")
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real) or not 0 < timeout < math.inf:
        raise ValueError(f"dist_timeout must be a finite number of seconds > 0, got {timeout!r}")
    return in_use and distributed is not False


def _with_refinement(
    result: RangeTestResult,
    k: int,
    steps: int,
    run: _Run,
    snapshot: Snapshot,
    new_scaler: Callable[[], torch.amp.GradScaler | None],
    ratios: list[float],
    data: Any,
    val_data: Any,
    val_batches: int,
    functions: tuple[Callable[..., torch.Tensor] | None, StepFn | None, Callable[[torch.Tensor], Any] | None],
    check_every: int,
    progress: bool,
) -> RangeTestResult:
    """``result`` refined by ``k`` candidates trained ``steps`` steps each from the snapshot:
    side by side when ``_vmappable_setup`` allows, else one after another with ``run``'s loop."""
    candidates = _refine.candidates(
        result.suggested_lr if result.diagnosis.gives_lr else None, result.suggested_range, k
    )
    if candidates is None or result.suggested_lr is None:
        return result
    snapshot.restore()
    val = _refine.held_out(val_data, val_batches, lambda b: _to_device(b, run.device))
    loss_fn = functions[0]
    vmapped = _vmappable_setup(run, *functions, val)
    scores = None
    if vmapped is not None and loss_fn is not None:
        from lrfind.torch._parallel import _default_chunk

        chunk = _default_chunk(run.model, k, run.device, vmapped[0])
        try:
            scores = _refine.scores_vmapped(
                run.model, loss_fn, candidates, steps, data, val, vmapped, 0, chunk, check_every, snapshot.restore,
                progress, train_mode=True,
            )  # fmt: skip
        except RuntimeError:
            # An op without a vmap batching rule (a spectral_norm parametrization), or no memory
            # for k copies: the loop below trains one candidate at a time from the snapshot, and
            # raises again whatever was not vmap's.
            scores = None
    if scores is None:
        scores = np.array([
            _candidate_score(run.again(steps, new_scaler()), lr, snapshot, ratios, data, val, check_every, progress)
            for lr in candidates
        ])  # fmt: skip
    return result.with_refinement(Refinement(candidates, scores, steps, result.suggested_lr))


def _vmappable_setup(
    run: _Run,
    loss_fn: Callable[..., torch.Tensor] | None,
    step_fn: StepFn | None,
    backward_fn: Callable[[torch.Tensor], Any] | None,
    val: list[Any],
) -> tuple[str, dict[str, Any]] | None:
    """The stacked optimizer that trains ``refine``'s candidates side by side exactly as
    ``optimizer`` trains ``model`` one at a time, or None when the setup needs the loop: any
    step or backward function, AMP, accumulation, clipping, ranks, BatchNorm running
    statistics, batches that are not ``(inputs, targets)`` pairs, an optimizer with state."""
    plain = (
        loss_fn is not None
        and step_fn is None
        and backward_fn is None
        and run.amp is None
        and run.k == 1
        and run.max_grad_norm is None
        and run.ranks is None
        and all(isinstance(b, (tuple, list)) and len(b) == 2 for b in val)
        and not any(
            isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in run.model.modules()
        )
    )
    return _refine.stacked_optimizer(run.optimizer, run.model) if plain else None


def _candidate_score(
    run: _Run,
    lr: float,
    snapshot: Snapshot,
    ratios: list[float],
    data: Any,
    val: list[Any],
    check_every: int,
    progress: bool,
) -> float:
    """One ``refine`` candidate trained from the snapshot by ``run`` (the sweep's loop and
    settings, for the candidates' steps) at a constant ``lr``: its mean loss over the held-out
    batches ``val`` (inf if it diverged)."""
    snapshot.restore()
    stop = _core.DivergenceDetector(_refine.NEVER)
    run.sweep(np.full(len(run.host_losses), lr), ratios, data, None, 1, 1, stop, check_every, progress)
    return math.inf if stop.stopped else run.held_out_loss(val)


class LRFinder:
    """A range test that keeps its model, optimizer and settings between calls.

    ``LRFinder(model, optimizer, loss_fn, **settings).range_test(data, **overrides)`` runs
    ``lrfind.torch.range_test`` with the stored settings (overrides win) and keeps the last
    result in ``.result``; ``plot()`` and ``summary()`` read it.

    Settings and overrides are ``range_test``'s keyword arguments, checked when they are given:
    an unknown name is a TypeError, and so is a torch-lr-finder name (``end_lr``, ``num_iter``,
    ``device``, ``val_loader``, ...), whose message gives lrfind's name for it.
    ``lrfind.compat.torch_lr_finder.LRFinder`` keeps torch-lr-finder's names and behaviour.
    """

    # torch-lr-finder's keyword arguments, and what lrfind.torch calls them (or does instead).
    _TORCH_LR_FINDER_NAMES = {
        "start_lr": "min_lr",
        "end_lr": "max_lr",
        "num_iter": "num_steps",
        "step_mode": "mode",
        "smooth_f": "smooth_factor",
        "diverge_th": 'diverge_threshold (torch-lr-finder\'s rule is watch="smoothed", diverge_threshold=5)',
        "device": "(no argument: move the model yourself, model.to(device); lrfind uses the model's device)",
        "memory_cache": 'state_cache="cpu" (memory_cache=True) or state_cache="disk" (False)',
        "cache_dir": 'state_cache="disk" (a temporary folder, removed afterwards)',
        "amp_backend": 'amp="bf16" or amp="fp16"',
        "amp_config": 'amp="bf16" or amp="fp16" (autocast on the model\'s device)',
        "val_loader": "val_data",
        "train_loader": "the data argument, range_test(data)",
        "non_blocking_transfer": "(no argument: not needed, batches move with non_blocking=True)",
        "criterion": "loss_fn",
    }

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[..., torch.Tensor] | None = None,
        **settings: Any,
    ) -> None:
        self._check_names(settings, "LRFinder()")
        # Checked when given, as range_test would check them; val_data may come with range_test().
        _check_setup(model, optimizer, loss_fn=loss_fn, step_fn=settings.get("step_fn"))
        check_settings(**({"val_data": [()]} | settings))
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.settings = settings
        self.result: RangeTestResult | None = None

    def range_test(self, data: Any = None, **overrides: Any) -> RangeTestResult:
        """Run the test on ``data``; keyword arguments as ``lrfind.torch.range_test``."""
        self._check_names(overrides, "LRFinder.range_test()")
        self.result = range_test(self.model, self.optimizer, self.loss_fn, data, **{**self.settings, **overrides})
        return self.result

    def plot(self, **kwargs: Any) -> Any:
        """``RangeTestResult.plot`` of the last result."""
        return self._last().plot(**kwargs)

    def summary(self) -> str:
        """``RangeTestResult.summary`` of the last result."""
        return self._last().summary()

    def _last(self) -> RangeTestResult:
        if self.result is None:
            raise RuntimeError("no range test has run yet: call range_test(data) first")
        return self.result

    @classmethod
    def _check_names(cls, given: Mapping[str, Any], where: str) -> None:
        """Refuse, before anything runs, keyword arguments that ``range_test`` does not take:
        torch-lr-finder's with lrfind's names for them, any other with the names it takes."""
        params = inspect.signature(range_test).parameters
        known = [name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        theirs = [name for name in given if name in cls._TORCH_LR_FINDER_NAMES]
        unknown = [name for name in given if name not in known and name not in theirs]
        if theirs:
            renames = "; ".join(f"{name} -> {cls._TORCH_LR_FINDER_NAMES[name]}" for name in theirs)
            also = f" (and unknown: {', '.join(unknown)})" if unknown else ""
            raise TypeError(
                f"{where} got torch-lr-finder's argument(s) {', '.join(theirs)}{also}; in lrfind.torch: {renames}. "
                "lrfind.compat.torch_lr_finder.LRFinder keeps torch-lr-finder's names"
            )
        if unknown:
            raise TypeError(
                f"{where} got unexpected keyword argument(s) {', '.join(unknown)}: lrfind.torch.range_test takes "
                f"{', '.join(known)}"
            )


class StoppedRankError(RuntimeError):
    """Another rank of a distributed range test stopped responding: it raised, exited or hung."""


class _Ranks:
    """The ranks of a distributed range test, which record the mean of their losses."""

    def __init__(self, group: Any, timeout: float) -> None:
        self.group, self.timeout = group, timeout
        self.rank, self.size = dist.get_rank(group), dist.get_world_size(group)
        self.works: list[dist.Work] = []

    @classmethod
    def of(cls, model: torch.nn.Module, timeout: float) -> _Ranks | None:
        """The ranks to average over (a DDP model's group, else the default one); None when
        ``torch.distributed`` is not in use."""
        if not (dist.is_available() and dist.is_initialized()):
            return None
        group = model.process_group if isinstance(model, torch.nn.parallel.DistributedDataParallel) else None
        return cls(group, timeout)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        """A copy of ``value`` that holds its sum over the ranks once ``wait`` has returned.

        The all-reduce runs asynchronously (on NCCL, in stream order), so no step waits for it;
        gloo has no ``ReduceOp.AVG``, hence a sum, divided on the host.
        """
        total = value.clone()  # the step's loss may be the user's own tensor: reduce a copy
        self.works.append(dist.all_reduce(total, group=self.group, async_op=True))
        return total

    def wait(self) -> None:
        """Wait for every sum launched since the last call, each at most ``timeout`` seconds."""
        try:
            for work in self.works:
                work.wait(datetime.timedelta(seconds=self.timeout))
        except RuntimeError as err:  # a timeout, or the peer's connection closed
            raise StoppedRankError(
                f"lrfind: rank {self.rank}: another rank stopped responding during the range test "
                f"(timeout {self.timeout:g} s, set by dist_timeout): it most likely raised or exited, "
                "and its log has the cause"
            ) from err
        self.works.clear()


class _Run:
    """One sweep's loop and its records: 0-d device tensors until the host reads them."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        step: StepFn,
        device: torch.device,
        amp: str | None,
        scaler: torch.amp.GradScaler | None,
        max_grad_norm: float | None,
        accumulation_steps: int,
        num_steps: int,
        ranks: _Ranks | None,
        backward: Callable[[torch.Tensor], Any] | None,
    ) -> None:
        self.model, self.optimizer, self.step, self.device = model, optimizer, step, device
        self.ranks, self.backward = ranks, backward
        self.amp, self.scaler, self.max_grad_norm, self.k = amp, scaler, max_grad_norm, accumulation_steps
        self.autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
            if amp
            else nullcontext()
        )
        # (step, loss, grad norm) and (step, validation loss) since the last host read, kept as
        # device tensors: a per-step write into a preallocated buffer costs more than the step
        # of a small model. The host copies them every check_every steps, in one transfer.
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.pending_val: list[tuple[int, torch.Tensor]] = []
        # Rows: loss, grad norm, validation loss, as the host has read them.
        self.host = np.full((3, num_steps), np.nan)
        self.host_losses, self.host_norms, self.host_val = self.host
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.num_steps, self.saw_gradient = num_steps, False
        self.recorded = 0  # steps whose losses the detector has seen
        self.skipped_at: list[int] = []  # sweep index of each step the scaler skipped
        self.consecutive_skips = 0

    def sweep(
        self,
        lrs: np.ndarray,
        ratios: list[float],
        data: Any,
        val_data: Any,
        val_every: int,
        val_batches: int,
        detector: _core.DivergenceDetector,
        check_every: int,
        progress: bool,
    ) -> None:
        batches = _batches(data)
        val: list[Any] | None = None  # read at the first check (see _held_out_batches)
        bar = _progress_bar(len(lrs), progress and (self.ranks is None or self.ranks.rank == 0))
        if not self.model.training:  # left in eval mode; submodules put in eval inside a training model stay so
            self.model.train()
        i = 0
        try:
            while i < len(lrs):
                lr = float(lrs[i])
                if len(self.optimizer.param_groups) != len(ratios):
                    raise RuntimeError(
                        f"the optimizer's parameter groups changed during the sweep ({len(ratios)} at the start, "
                        f"{len(self.optimizer.param_groups)} now, add_param_group?): a range test sweeps a fixed set"
                    )
                for group, ratio in zip(self.optimizer.param_groups, ratios, strict=True):
                    group["lr"] = lr * ratio
                if not self._train_step(i, batches):
                    # The GradScaler skipped it: same LR again, unless it never recovers.
                    self.skipped_at.append(i)
                    self.consecutive_skips += 1
                    if self.consecutive_skips < MAX_CONSECUTIVE_SKIPS:
                        continue
                    nan = torch.tensor(float("nan"), device=self.device)
                    self._record(i, nan, nan)
                self.consecutive_skips = 0
                if val_data is not None and (i + 1) % val_every == 0:
                    if val is None:
                        val = _held_out_batches(val_data, val_batches, data)
                    self._validate(i, val)
                i += 1
                if i % check_every == 0 or i == len(lrs):
                    if self._check(i, detector, bar):
                        return
        finally:
            if bar is not None:
                bar.close()

    def again(self, num_steps: int, scaler: torch.amp.GradScaler | None) -> _Run:
        """A fresh loop with the same settings and ``scaler`` for ``num_steps`` steps."""
        return _Run(
            self.model, self.optimizer, self.step, self.device, self.amp, scaler, self.max_grad_norm, self.k,
            num_steps, self.ranks, self.backward,
        )  # fmt: skip

    @torch.no_grad()
    def held_out_loss(self, batches: list[Any]) -> float:
        """The model's mean loss over ``batches`` in eval mode (over the ranks in a distributed
        run); inf if it is not finite."""
        modes = _modes(self.model)
        self.model.eval()
        try:
            with self.autocast:
                total = sum(self.step(self.model, b).detach().float() for b in batches) / len(batches)
        finally:
            _set_modes(modes)
        total = self._summed(total)
        if self.ranks is not None:
            self.ranks.wait()
        value = float(total) / (self.ranks.size if self.ranks is not None else 1)
        return value if math.isfinite(value) else math.inf

    def _train_step(self, i: int, batches: Iterator[Any]) -> bool:
        """One optimizer step over k micro-batches; False if the scaler skipped it."""
        self.optimizer.zero_grad(set_to_none=True)
        set_lrs = [group["lr"] for group in self.optimizer.param_groups]
        total: torch.Tensor | None = None
        for j in range(self.k):
            batch = _to_device(next(batches), self.device)
            with self.autocast:
                loss = self.step(self.model, batch).float()
            if i == 0 and j == 0 and any(p.grad is not None for p in self.params):
                raise ValueError(
                    "the parameters had gradients before the range test's backward: the loss function ran backward "
                    "itself (return the loss and leave backward, the division by accumulation_steps and fp16 scaling "
                    "to the range test), or the optimizer's zero_grad() did not clear them (a wrapper mid-accumulation)"
                )
            scaled = loss / self.k if self.k > 1 else loss
            if self.backward is not None:
                self.backward(scaled)
            else:
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None  # k >= 1
        if not self.saw_gradient:
            # An optimizer over another copy of the model, or over frozen parameters only, records a curve of
            # nothing; a step or two without gradients (an empty first batch) is no such case.
            self.saw_gradient = any(p.grad is not None for p in self.params)
            if not self.saw_gradient and i + 1 >= min(GRADIENT_STEPS, self.num_steps):
                raise ValueError(
                    f"the loss gave no gradient to any of the {len(self.params)} parameter(s) the optimizer trains "
                    f"in {i + 1} step(s): it was built over another model (a copy?) or over frozen parameters; "
                    "build it over the parameters the loss depends on, e.g. model.parameters()"
                )
        now = [group["lr"] for group in self.optimizer.param_groups[: len(set_lrs)]]  # a group added: see sweep
        if now != set_lrs:
            raise ValueError(
                f"the LR changed during the step (set to {set_lrs[0]:.6g}, now {now[0]:.6g}): step_fn or a hook ran an "
                "LR scheduler or set the LR, so the recorded LR would not be the one used; the range test sets the LR "
                "of every step itself: remove the scheduler.step() from the step"
            )
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.params if p.grad is not None])
        if self.scaler is not None:
            scale = self.scaler.get_scale()  # GradScaler.step reads found_inf on the host anyway
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() < scale:
                return False
        else:
            self.optimizer.step()
        self._record(i, total / self.k if self.k > 1 else total, norm)
        return True

    def _record(self, i: int, loss: torch.Tensor, norm: torch.Tensor) -> None:
        # DDP averages the gradients, so the norm is the same on every rank already; FSDP2's
        # gradients are sharded DTensors, whose norm is a partial sum until reduced (a
        # collective, no host sync).
        if DTensor is not None and isinstance(norm, DTensor):
            norm = norm.full_tensor()
        self.pending.append((i, self._summed(loss), norm))

    def _summed(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` itself, or in a distributed run its sum over the ranks (``_check`` divides)."""
        return value if self.ranks is None else self.ranks.sum(value)

    @torch.no_grad()
    def _validate(self, i: int, val: list[Any]) -> None:
        modes = _modes(self.model)
        self.model.eval()
        try:
            total = torch.zeros((), device=self.device)
            for batch in val:
                total += self.step(self.model, _to_device(batch, self.device)).detach().float()
        finally:
            _set_modes(modes)
        self.pending_val.append((i, self._summed(total / len(val))))

    def _check(self, end: int, detector: _core.DivergenceDetector, bar: Any) -> bool:
        """Read steps ``recorded..end`` on the host (one sync) and feed the detector; True if
        it stopped, with ``recorded`` cut just after the explosion point."""
        start = self.recorded
        if self.ranks is not None:
            self.ranks.wait()  # before any read of the summed losses
        tensors = [t.float() for _, loss, norm in self.pending for t in (loss, norm)]
        tensors += [v for _, v in self.pending_val]
        if tensors:
            values = torch.stack(tensors).double().cpu().numpy()
            m = len(self.pending)
            steps = [i for i, _, _ in self.pending]
            # Losses are sums over the ranks in a distributed run: their mean, the same on every rank.
            size = self.ranks.size if self.ranks is not None else 1
            self.host[0, steps], self.host[1, steps] = values[0 : 2 * m : 2] / size, values[1 : 2 * m : 2]
            self.host[2, [i for i, _ in self.pending_val]] = values[2 * m :] / size
        self.pending.clear()
        self.pending_val.clear()
        for j in range(start, end):
            if detector.update(float(self.host_losses[j])):
                self.recorded = j + 1
                return True
        self.recorded = end
        if bar is not None:
            bar.update(end - start)
            bar.set_postfix(lr=f"{self.optimizer.param_groups[0]['lr']:.2e}", loss=f"{detector.smoothed:.4g}")
        return False


def _modes(model: torch.nn.Module) -> list[tuple[torch.nn.Module, bool]]:
    """Every module's train/eval flag, for ``_set_modes`` after an evaluation: ``train()`` would
    also wake the submodules a user put in eval mode (a frozen BatchNorm)."""
    return [(m, m.training) for m in model.modules()]


def _set_modes(modes: list[tuple[torch.nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training


def _check_setup(model: Any, optimizer: Any, **functions: Any) -> None:
    """The model, optimizer and functions are what a range test can drive: said before the
    sweep, not as an AttributeError or "not callable" halfway into it."""
    _check_model(model)
    if not isinstance(getattr(optimizer, "param_groups", None), list) or not optimizer.param_groups:
        raise TypeError(
            f"optimizer must be a torch.optim optimizer with parameter groups, got {type(optimizer).__name__}: "
            "build one over the parameters, e.g. torch.optim.AdamW(model.parameters())"
        )
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ValueError(
            "optimizer LBFGS is not supported: its step() needs a closure that re-evaluates the loss several times, "
            "where a range test takes one step per LR"
        )
    _check_functions(**functions)
    loss_fn, step_fn = functions.get("loss_fn"), functions.get("step_fn")
    if loss_fn is not None and step_fn is not None:
        # step_fn computes the loss itself, so a loss_fn given beside it would be ignored.
        raise ValueError(
            f"loss_fn={loss_fn!r} and step_fn={step_fn!r} are both given: step_fn computes the loss, so loss_fn "
            "would never run; pass loss_fn=None, or call loss_fn inside step_fn"
        )


def _check_model(model: Any) -> None:
    """``model`` is a module whose tensors hold data."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _refuse_fsdp1(model)
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    meta = next((name for name, t in tensors if t.is_meta), None)
    if meta is not None:
        raise ValueError(
            f"model's {meta} is on the meta device (a shape without data), which cannot be trained or restored: "
            "materialise the model first (model.to_empty(device=...), then load or initialise its weights)"
        )


def _held_out_batches(val_data: Any, n: int, data: Any) -> list[Any]:
    """The first ``n`` batches of ``val_data``, validated on at every check, so that the curve
    moves with the model, not with the batch. Read at the first check, as a loop that validates
    then would (not before the first training batch, which a loader shared with ``data``, or
    one on the same RNG, would give again), with every RNG put back after (the global ones and
    the loaders' own), so that the training batches are those of a sweep without ``val_data``.
    Kept where the loader gives them (host memory), moved to the device one at a time."""
    rngs = Rngs((data, val_data))
    try:
        return _refine.held_out(val_data, n, lambda b: b)
    finally:
        rngs.restore()


def _check_materialised(model: torch.nn.Module) -> None:
    """No lazy module still waits for its first forward pass, which the snapshot could not copy
    (checked when the sweep starts: a stateful finder may be built before that first pass)."""
    lazy = next(
        (n for n, p in model.named_parameters() if isinstance(p, torch.nn.parameter.UninitializedParameter)), None
    )
    if lazy is not None:
        raise ValueError(
            f"model's {lazy} is not initialised yet (a lazy module): run one forward pass on a batch first, "
            "model(inputs), then build the optimizer over model.parameters()"
        )


def _check_functions(**functions: Any) -> None:
    """Each of ``functions`` (by name) is None or something to call, not a class."""
    for name, fn in functions.items():
        if fn is None:
            continue
        if isinstance(fn, type):
            raise TypeError(
                f"{name} must be a function or a module instance, got the class {fn.__name__}: pass {fn.__name__}()"
            )
        if not callable(fn):
            raise TypeError(f"{name} must be callable, got {type(fn).__name__} {fn!r}")


def _check_bool(name: str, value: Any) -> None:
    """A flag is a bool: ``"no"`` or ``"false"`` would read as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _device_of(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    raise ValueError("model has no parameters: there is nothing to train")


def _is_single_batch(data: Any) -> bool:
    return isinstance(data, (torch.Tensor, tuple, Mapping))


def _one_shot(data: Any) -> bool:
    """Whether ``data`` is an iterator (a generator), which a second read finds used up."""
    return isinstance(data, Iterator) and not _is_single_batch(data)


def _batches(data: Any, name: str = "data") -> Iterator[Any]:
    """Endless batches: one fixed batch repeated, or an iterable re-iterated when exhausted;
    ``name`` is the argument's, for the errors."""
    if _is_single_batch(data):
        return itertools.repeat(data)
    if not isinstance(data, Iterable):
        raise TypeError(f"{name} must be a DataLoader, an iterable of batches or one batch, got {type(data).__name__}")

    def cycle() -> Iterator[Any]:
        passes = 0
        while True:
            count = 0
            for batch in data:
                count += 1
                yield batch
            if count == 0:
                if passes == 0:
                    raise ValueError(f"{name} yielded no batch")
                raise ValueError(
                    f"{name} ran out and cannot be iterated again (a one-shot iterator?): "
                    "pass the DataLoader or a list of batches, which are re-iterated"
                )
            passes += 1

    return cycle()


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [_to_device(v, device) for v in batch]
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    return batch


def _loss_fn_step(loss_fn: Callable[..., torch.Tensor] | None) -> StepFn:
    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if isinstance(batch, Mapping):
            if loss_fn is not None:
                raise TypeError(
                    "loss_fn is called as loss_fn(model(inputs), targets) on (inputs, targets) batches, but this batch "
                    f"is a dict (keys {list(batch)[:5]}), which goes to model(**batch): pass loss_fn=None when the "
                    "model's output holds the loss, or step_fn(model, batch) to compute it yourself"
                )
            return _output_loss(model(**batch))
        if isinstance(batch, (tuple, list)) and len(batch) == 2:
            inputs, targets = batch
            return loss_fn(model(inputs), targets) if loss_fn is not None else _output_loss(model(inputs))
        if isinstance(batch, (tuple, list)):
            hint = f" of {len(batch)} items, not (inputs, targets)"
        elif isinstance(batch, torch.Tensor):
            hint = " (a list batch such as next(iter(loader)) must be passed as a tuple)"
        else:
            hint = ""
        raise TypeError(
            f"the default step needs (inputs, targets) or dict batches, got {type(batch).__name__}{hint}: "
            "pass step_fn for anything else"
        )

    return step


def _tensor_loss(step: StepFn, source: str) -> StepFn:
    """``step``, checked to return a tensor: a float loss cannot be backpropagated, and would
    otherwise fail later with a message that names neither the culprit nor the fix."""

    def checked(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        loss = step(model, batch)
        if not isinstance(loss, torch.Tensor):
            shown = repr(loss) if len(repr(loss)) <= 40 else repr(loss)[:37] + "..."
            raise TypeError(
                f"{source} must return the loss as a tensor, got {type(loss).__name__} {shown}: return the loss "
                "tensor itself (not loss.item() or float(loss)), so that it can be backpropagated"
            )
        if loss.numel() != 1:
            raise ValueError(
                f"{source} must return one loss value, got a tensor of shape {tuple(loss.shape)}: reduce it "
                "(reduction='mean', or .mean())"
            )
        if torch.is_grad_enabled() and not loss.requires_grad:
            raise ValueError(
                f"{source} returned a loss that does not require grad ({loss.dtype}, grad_fn None): it must come from "
                "the model's trainable parameters, not be detached, an integer, or from a fully frozen model"
            )
        return loss.reshape(())

    return checked


def _refuse_fsdp1(model: torch.nn.Module) -> None:
    """FSDP1's flat parameters live outside the module's state as a range test sees it; FSDP2's
    DTensor parameters do not, so point there."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # a torch without distributed support
        return
    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise TypeError(
            "lrfind.torch.range_test works on models sharded with FSDP2 (torch.distributed.fsdp.fully_shard), not "
            "on the FullyShardedDataParallel wrapper (FSDP1): shard the model with fully_shard instead (accelerate: "
            "FullyShardedDataParallelPlugin(fsdp_version=2); transformers: fsdp_config={'version': 2})"
        )


def _check_takes_two(step_fn: Callable[..., Any]) -> None:
    """A step_fn of the wrong arity fails at its first call with a message about its own
    parameters; say at once what range_test calls it with."""
    try:
        signature = inspect.signature(step_fn)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to check
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise TypeError(
            f"step_fn must take (model, batch) and return the loss tensor, got a function of {signature}"
        ) from None


def _model_loss(model: torch.nn.Module) -> StepFn:
    """The step of a model that computes its own loss. A pair goes in as ``model(inputs,
    targets)``, unless ``forward`` takes ``labels`` later than second (a Hugging Face model,
    whose second parameter is the attention mask): then ``model(inputs, labels=targets)``."""
    inner = model
    while True:  # DDP's, DataParallel's and torch.compile's wrappers take (*args, **kwargs): read what they wrap
        if isinstance(inner, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            inner = inner.module
        elif type(inner).__name__ == "OptimizedModule" and isinstance(
            getattr(inner, "_orig_mod", None), torch.nn.Module
        ):
            inner = inner._orig_mod
        else:
            break
    try:
        params = list(inspect.signature(inner.forward).parameters.values())
    except (TypeError, ValueError):  # no signature to read
        params = []
    # A second parameter with a default (attention_mask=None) is not where targets go.
    names = [p.name for p in params]
    by_label = len(params) > 2 and params[1].default is not inspect.Parameter.empty and "labels" in names[2:]

    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if by_label and isinstance(batch, (tuple, list)) and len(batch) == 2:
            return _output_loss(model(batch[0], labels=batch[1]))
        return _pair_loss(model, batch)

    return step


def _pair_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    if isinstance(batch, Mapping):
        return _output_loss(model(**batch))
    if isinstance(batch, (tuple, list)):
        try:
            return _output_loss(model(*batch))
        except TypeError as error:
            if len(batch) != 2 or _binds(model, batch):
                raise
            raise TypeError(
                f"with loss_fn=None the model is called as model(inputs, targets) and must return its loss, but "
                f"{type(model).__name__}.forward takes {inspect.signature(model.forward)}: pass loss_fn (for "
                "example torch.nn.functional.cross_entropy) to compute the loss from model(inputs), or step_fn"
            ) from error
    return _output_loss(model(batch))


def _binds(model: torch.nn.Module, batch: Sequence[Any]) -> bool:
    """Whether ``model.forward`` takes the batch's items as its arguments."""
    try:
        inspect.signature(model.forward).bind(*batch)
    except TypeError:
        return False
    except ValueError:  # no signature to read
        return True
    return True


def _output_loss(out: Any) -> torch.Tensor:
    """The loss a model returned: a tensor, an object with ``.loss``, or a dict with "loss"."""
    loss = getattr(out, "loss", None)
    if loss is None and isinstance(out, Mapping):
        loss = out.get("loss")
    if loss is None and isinstance(out, torch.Tensor) and out.ndim == 0:
        loss = out
    if loss is None:
        raise TypeError(f"cannot find a loss in the model's output ({type(out).__name__}): pass loss_fn or step_fn")
    return loss


def _progress_bar(total: int, wanted: bool) -> Any:
    if not wanted or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="lrfind", unit="step", leave=False)
