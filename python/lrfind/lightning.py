"""lrfind for PyTorch Lightning: the ``LRFinder`` callback and ``lr_find``, the counterparts of
Lightning's ``LearningRateFinder`` callback and ``Tuner.lr_find``.

The sweep runs through the trainer's own fit loop, as Lightning's tuner does, so the module's
``training_step``, the strategy (DDP), the precision (AMP), gradient accumulation and clipping
are the ones configured on the ``Trainer``; ``self.log`` works as in training. lrfind's divergence
rule stops it, lrfind analyses the raw per-step losses, and everything comes back bitwise:
weights, buffers, optimizer state, the trainer's loop progress, its callbacks and loggers, and
every RNG, also after an exception.

Needs the ``lightning`` extra (``pip install 'lrfind[lightning]'``): ``lightning.pytorch``, the
``lightning`` package's namespace (the standalone ``pytorch_lightning`` package is not supported).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

try:
    import lightning.pytorch as pl
except ImportError:  # pragma: no cover - exercised in a subprocess without lightning
    raise ImportError("lrfind.lightning needs PyTorch Lightning: pip install 'lrfind[lightning]'") from None

import numpy as np
import torch
from lightning.pytorch.loggers.logger import DummyLogger
from lightning.pytorch.loops.loop import _Loop
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, Strategy
from lightning.pytorch.utilities.combined_loader import CombinedLoader
from lightning.pytorch.utilities.exceptions import _TunerExitException
from lightning.pytorch.utilities.parsing import lightning_hasattr, lightning_setattr
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from lrfind import _core
from lrfind.result import RangeTestResult, detector, sweep_options
from lrfind.torch._range_test import CHECK_EVERY, MAX_CONSECUTIVE_SKIPS, _progress_bar
from lrfind.torch._state import DTensor, Rngs, Snapshot, _Copier, _OptimizerCopy

__all__ = ["LRFinder", "lr_find"]

#: The names a LightningModule's learning rate is looked up under, in order (as Lightning's lr_find).
LR_ATTRS = ("lr", "learning_rate")

#: Where ``LRFinder`` logs its picture (loggers with ``add_figure`` or ``log_figure``) and its summary
#: (loggers with ``add_text`` or ``log_text``).
FIGURE_TAG, TEXT_TAG = "lrfind/range_test", "lrfind/summary"


class LRFinder(pl.Callback):
    """Run lrfind's LR range test at the start of ``trainer.fit`` and train at its suggestion.

    At ``on_fit_start`` the callback sweeps the LR from ``min_lr`` to ``max_lr``, one optimizer
    step per LR, through the trainer's own fit loop: the module's ``training_step`` and the
    trainer's strategy, precision, gradient accumulation and clipping, exactly as training runs
    them. It records the raw loss of every optimizer step (the mean of its accumulated
    micro-batches; in a distributed run, the mean over the ranks, so every rank records the same
    curve and stops at the same step), stops when lrfind's divergence rule fires, and restores
    everything: the module's weights, buffers and gradients, the optimizers (and the fp16 grad
    scaler), the loop progress (``global_step``, ``current_epoch``), the callbacks and loggers,
    the logged metrics and every RNG (Python, numpy, torch, CUDA and the train DataLoaders' own
    generators), bitwise, also when a step raises. Then it sets the suggestion (``result.suggested_lr``)
    on the module's LR attribute (``lr`` or ``learning_rate``, in the module or its ``hparams``,
    or ``attr_name``) and on the optimizers, and logs the picture and the summary.

    During the sweep the other callbacks do not run (no checkpoint, early stopping or progress
    bar sees it), nothing reaches the loggers, validation is off and Lightning steps no LR
    scheduler (with manual optimization, a scheduler that ``training_step`` steps itself does
    not move the sweep: its LR is set again right before every optimizer step); the module's own
    hooks (``on_train_start``, ``on_train_epoch_start``, ...) run as in training, as with
    Lightning's tuner. The sweep spans as many epochs as it needs. Subclasses may call
    ``self.lr_find(trainer, pl_module)`` from ``on_train_epoch_start`` instead (override
    ``on_fit_start`` to do nothing), as with Lightning's callback.

    Limits, as with Lightning's tuner: ``fit(ckpt_path=...)`` loads the checkpoint's optimizer
    state, its LRs included, after ``on_fit_start`` (sweep first, with ``lr_find``, then resume);
    with ``strategy="ddp_spawn"`` the result and the LR stay in the worker processes (use
    ``"ddp"``). Sharded models: FSDP2 through ``ModelParallelStrategy`` (``fully_shard`` in
    ``configure_model``) is supported, each rank keeping its own shards; ``FSDPStrategy`` (FSDP1)
    and ``DeepSpeedStrategy`` (whose engine owns the backward pass and the optimizer) are a
    ``TypeError`` that says so.

    How the suggestion is applied: each parameter group keeps its ratio to the first group of the
    first optimizer (``group_lrs="ratio"``, the ratios of discriminative LRs; ``"same"`` gives
    every group the suggestion). A group's base LR is the one it was configured with: OneCycleLR's
    peak (``max_lr``), else the ``initial_lr`` an LR scheduler set, else its ``lr``. The base
    becomes the suggestion (times the ratio), and the group's other LRs (``lr``, ``initial_lr``,
    OneCycleLR's ``max_lr`` and ``min_lr``) and the schedulers' ``base_lrs`` (chained ones too)
    and CyclicLR's ``max_lrs`` scale with it, so a schedule keeps its shape: a warm-up that starts
    at a tenth of the base starts at a tenth of the suggestion. A CyclicLR's base is its peak,
    as OneCycleLR's: the cycle runs up to the suggestion, never above it (a module that writes
    ``CyclicLR(base_lr=self.lr, max_lr=10 * self.lr)`` and gets the suggestion by hand, or from
    ``lr_find`` before ``fit``, which rebuilds the scheduler from ``self.lr``, cycles up to ten
    times it).
    When the sweep gives no LR to train at (``result.diagnosis.gives_lr`` is False: a flat sweep,
    an immediate explosion; or no suggestion), the LRs stay as they were and a warning carries
    the diagnosis.

    Args:
        min_lr: first LR of the sweep, in the optimizer's units (default 1e-7).
        max_lr: last LR of the sweep (default 10.0); both ends are exact.
        num_steps: optimizer steps of the sweep, one per LR (default 100). With
            ``accumulate_grad_batches=k`` each step takes ``k`` batches.
        mode: LR spacing, ``"exp"`` (default; Lightning's ``"exponential"`` is accepted) or
            ``"linear"``.
        attr_name: the module's LR attribute (default None: ``lr``, else ``learning_rate``, looked
            up in the module and in ``hparams``); one named here must exist (``AttributeError``
            before the sweep). A module with neither gets the suggestion in its optimizers only.
        update_attr: set the suggestion on the module and its optimizers (default True); False
            only keeps the result in ``.result``.
        method: the suggestion to train at (default ``"auto"``): a name of ``lrfind.METHODS``, or
            ``{name: params}`` for its parameters (e.g. ``{"minimum": {"factor": 10}}``); it is
            the result's main suggestion, ``result.suggested_lr``.
        diverge_threshold: stop when the watched loss exceeds this many times the best one
            (default 10.0; the rule is ``best + (threshold - 1) * max(|best|, 1.19e-7 * peak)``,
            ``peak`` the largest ``|loss|`` so far). NaN and infinity always stop.
        watch: the loss the stop rule watches, ``"raw"`` (default) or ``"smoothed"``.
        smooth_factor: EMA weight of the newest loss in ``smoothed_losses`` (default 0.05).
        patience: consecutive violations of the rule needed to stop (default 1).
        suggest_on: the series the suggestions read, ``"raw"`` (default) or ``"smoothed"``.
        arch: check the suggestion against the seed's table of usual ranges (default None; or
            ``"mlp"``, ``"cnn"``, ``"transformer"``, ``"fine-tuning"``, ``"large-batch"``).
        group_lrs: ``"ratio"`` (default) or ``"same"``, for the sweep and the suggestion (above).
        check_every: optimizer steps between host reads of the recorded losses (default 10):
            the only synchronisation with the device (and, in a distributed run, the only
            all-reduce of the losses); the curve is still cut at the exact step that diverged.
        state_cache: where the snapshot of the module and optimizers lives, ``"cpu"`` memory
            (default) or ``"disk"`` (a temporary directory), never the GPU.
        progress: a progress bar on a terminal, on global rank 0 only (default True).
        log_result: log the picture and the summary to the trainer's loggers (default True):
            the figure where a logger's experiment takes one (TensorBoard's ``add_figure``,
            MLflow's ``log_figure``; needs matplotlib), the summary as text where it takes text
            (``add_text``, ``log_text``); other loggers are skipped.

    Attributes:
        result: the last sweep's ``RangeTestResult`` (None before one ran), analysed from the raw
            per-step losses with the settings above; ``grad_norms`` holds each step's total
            gradient norm before clipping, ``skipped_steps`` the steps that did not advance
            the sweep (the fp16 grad scaler skipped them, or ``training_step`` returned None).
        applied_lr: the LR set by the last sweep (the first group's), None if none was set.
    """

    def __init__(
        self,
        min_lr: float = 1e-7,
        max_lr: float = 10.0,
        num_steps: int = 100,
        mode: str = "exp",
        attr_name: str | None = None,
        update_attr: bool = True,
        method: str | Mapping[str, Mapping[str, Any]] = "auto",
        *,
        diverge_threshold: float = 10.0,
        watch: str = "raw",
        smooth_factor: float = 0.05,
        patience: int = 1,
        suggest_on: str = "raw",
        arch: str | None = None,
        group_lrs: str = "ratio",
        check_every: int = CHECK_EVERY,
        state_cache: str = "cpu",
        progress: bool = True,
        log_result: bool = True,
    ) -> None:
        mode = {"exponential": "exp"}.get(mode, mode)
        # Every setting is checked here, when the Trainer is built, not after setup at fit time.
        self._lrs = _core.sweep_lrs(min_lr, max_lr, num_steps, mode)
        self._options = sweep_options(
            methods=_methods(method),
            diverge_threshold=diverge_threshold,
            watch=watch,
            smooth_factor=smooth_factor,
            patience=patience,
            suggest_on=suggest_on,
            arch=arch,
        )
        if group_lrs not in ("ratio", "same"):
            raise ValueError(f'group_lrs must be "ratio" or "same", got {group_lrs!r}')
        if not isinstance(check_every, int) or isinstance(check_every, bool) or check_every < 1:
            raise ValueError(f"check_every must be an int >= 1, got {check_every!r}")
        if state_cache not in ("cpu", "disk"):
            raise ValueError(f'state_cache must be "cpu" or "disk", got {state_cache!r}')
        if attr_name is not None and not isinstance(attr_name, str):
            raise TypeError(f"attr_name must be a str or None, got {attr_name!r}")
        for name, flag in (("update_attr", update_attr), ("progress", progress), ("log_result", log_result)):
            if not isinstance(flag, bool):  # "no" is truthy: it would update
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.attr_name, self.update_attr, self.group_lrs = attr_name, update_attr, group_lrs
        self.check_every, self.state_cache, self.progress, self.log_result = (
            check_every,
            state_cache,
            progress,
            log_result,
        )
        self.result: RangeTestResult | None = None
        self.applied_lr: float | None = None
        self._early_exit = False  # lr_find ends the fit after the sweep

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Run the sweep (``lr_find``) before the sanity check and the first epoch."""
        self.lr_find(trainer, pl_module)
        if self._early_exit:
            raise _TunerExitException()

    def lr_find(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> RangeTestResult | None:
        """Run one sweep now, restore everything, apply and log the suggestion; returns the
        result (also kept in ``.result``), or None when the sweep was skipped (``fast_dev_run``,
        no training batch)."""
        self.result, self.applied_lr = None, None
        if trainer.fast_dev_run:
            rank_zero_warn("lrfind.lightning.LRFinder: skipping the LR range test, since `fast_dev_run` is enabled.")
            return None
        _check_strategy(trainer.strategy)
        attr = _lr_attr(pl_module, self.attr_name) if self.update_attr else None
        groups = _Groups(trainer.optimizers, self.group_lrs, list(_schedulers(trainer)))
        result = _sweep(self, trainer, pl_module, groups)
        if result is None:
            return None
        self.result = result
        if self.update_attr:
            self.applied_lr = _apply(result, pl_module, attr, groups, trainer)
        if self.log_result and trainer.is_global_zero:
            _log(result, trainer)
        return result


def lr_find(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    datamodule: pl.LightningDataModule | None = None,
    **settings: Any,
) -> RangeTestResult | None:
    """lrfind's range test on a Lightning model, the counterpart of ``Tuner(trainer).lr_find``.

    Runs ``trainer.fit`` with an ``LRFinder(**settings)`` callback that ends the fit after the
    sweep (as Lightning's tuner does), so the sweep sees exactly the data, strategy, precision,
    accumulation and clipping that ``trainer.fit(model, ...)`` would; the model comes back as
    it was, with the suggestion set as its LR attribute (``update_attr=True``, the default:
    the model must then have ``lr`` or ``learning_rate``, or the ``attr_name`` you give, in
    itself or its hparams, else an ``AttributeError`` before the sweep), ready for
    ``trainer.fit``; the global RNGs come back as they were before the call, so the fit that
    follows draws what it would have drawn without ``lr_find``. Validation never runs.

    Args:
        trainer: the ``Trainer`` to sweep with; it must not hold an ``LRFinder`` already.
        model: the ``LightningModule``.
        train_dataloaders, val_dataloaders, datamodule: as ``trainer.fit`` (default None: the
            model's or the datamodule's own).
        settings: ``LRFinder``'s keyword arguments (``min_lr``, ``max_lr``, ``num_steps``,
            ``method``, ``diverge_threshold``, ...). Lightning users: ``num_training`` is
            ``num_steps``, and Lightning's stop rule, ``early_stop_threshold=4.0`` on its
            debiased EMA of the loss, is close to ``diverge_threshold=4.0, watch="smoothed",
            smooth_factor=0.02`` (Lightning debiases one power ahead, so its first smoothed
            values are lower).

    Returns:
        the ``RangeTestResult`` (also the callback's ``.result``), or None when the sweep was
        skipped (``fast_dev_run``, no training batch).
    """
    if not isinstance(trainer, pl.Trainer):
        raise TypeError(f"trainer must be a lightning Trainer, got {type(trainer).__name__}")
    if not isinstance(model, pl.LightningModule):
        raise TypeError(f"model must be a LightningModule, got {type(model).__name__}")
    if any(isinstance(callback, LRFinder) for callback in trainer.callbacks):
        raise ValueError(
            "the Trainer already has an lrfind.lightning.LRFinder callback: remove it to call lr_find, "
            "or let trainer.fit run that one"
        )
    finder = LRFinder(**settings)
    if datamodule is None and isinstance(train_dataloaders, pl.LightningDataModule):
        data_module: Any = train_dataloaders  # trainer.fit(model, dm) takes it as the datamodule
    else:
        data_module = datamodule
    if finder.update_attr and _lr_attr(model, finder.attr_name, data_module) is None:
        # The fit that follows builds new optimizers from configure_optimizers: an attribute it
        # reads is the only way the suggestion reaches them.
        raise AttributeError(
            f"lr_find sets the suggestion on the model's LR attribute, and the model has none of {LR_ATTRS} (in "
            "itself, its hparams or the datamodule's): read it in configure_optimizers (e.g. self.lr), name yours "
            "with attr_name=..., or pass update_attr=False and take result.suggested_lr"
        )
    finder._early_exit = True
    trainer.callbacks = [finder, *trainer.callbacks]
    # setup() and configure_optimizers() may draw random numbers (a random_split) before the
    # sweep's snapshot: the fit that follows must draw them as if lr_find had not run.
    rngs = Rngs()
    try:
        trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
    finally:
        trainer.callbacks = [callback for callback in trainer.callbacks if callback is not finder]
        rngs.restore()
    return finder.result


def _methods(method: str | Mapping[str, Mapping[str, Any]]) -> Any:
    """``analyze``'s ``methods`` with ``method`` first (the main suggestion); a name keeps the
    other methods too (for ``plot(methods=...)`` and the summary)."""
    if isinstance(method, Mapping):
        return dict(method)
    if method == "auto":
        return None  # analyze's default: every method, auto first
    if method not in _core.METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _core.METHODS))}, got {method!r}")
    return [method, *(m for m in _core.METHODS if m != method)]


def _lr_attr(module: pl.LightningModule, name: str | None, datamodule: Any = None) -> str | None:
    """The module's LR attribute: ``name`` (which must exist), else the first of ``LR_ATTRS``
    found in the module or its hparams (or, once fitting, the trainer's datamodule, as Lightning
    looks; before the fit, ``datamodule`` and its hparams), else None (the optimizers still get
    the suggestion)."""

    def has(attr: str) -> bool:
        if lightning_hasattr(module, attr):
            return True
        return datamodule is not None and (
            hasattr(datamodule, attr) or attr in (getattr(datamodule, "hparams", None) or {})
        )

    if name:
        if not has(name):
            raise AttributeError(
                f"attr_name={name!r}: the LightningModule has no such attribute, neither in itself nor in its hparams"
            )
        return name
    return next((attr for attr in LR_ATTRS if has(attr)), None)


class _Groups:
    """Every parameter group of every optimizer, with its base LR and its ratio to the first."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer], mode: str, schedulers: Sequence[Any]) -> None:
        if not optimizers:
            raise ValueError("configure_optimizers returned no optimizer: the range test has nothing to sweep")
        self.optimizers = list(optimizers)
        peaks = _cyclic_peaks(schedulers)
        self.bases = [peaks.get(id(g), _base_lr(g)) for g in self.groups]
        if not self.bases:
            raise ValueError("the optimizers have no parameter group: the range test has nothing to sweep")
        if mode == "same":
            self.ratios = [1.0] * len(self.groups)
        elif self.bases[0] > 0:
            self.ratios = [b / self.bases[0] for b in self.bases]
        else:
            raise ValueError(f'group_lrs="ratio" needs the first parameter group\'s LR > 0, got {self.bases[0]!r}')

    @property
    def groups(self) -> list[dict[str, Any]]:
        """The groups now: ``load_state_dict`` (the restore) replaces an optimizer's group dicts."""
        return [g for optimizer in self.optimizers for g in optimizer.param_groups]

    def set(self, lr: float) -> None:
        """Every group at ``lr`` times its ratio (the sweep's LR for one step)."""
        for group, ratio in zip(self.groups, self.ratios, strict=True):
            group["lr"] = lr * ratio


def _base_lr(group: Mapping[str, Any]) -> float:
    """The LR a group was configured with: OneCycleLR's peak, a scheduler's ``initial_lr``, or ``lr``
    (CyclicLR keeps its peaks on itself: see ``_cyclic_peaks``)."""
    return float(group.get("max_lr", group.get("initial_lr", group["lr"])))


def _cyclic_peaks(schedulers: Sequence[Any]) -> dict[int, float]:
    """The groups (by id) a CyclicLR drives, and its peak for each: their base, as OneCycleLR's
    peak is (CyclicLR's ``initial_lr`` is its low end), so the cycle never trains above the
    suggestion."""
    peaks = {}
    for scheduler in schedulers:
        if isinstance(scheduler, torch.optim.lr_scheduler.CyclicLR):
            for group, peak in zip(scheduler.optimizer.param_groups, scheduler.max_lrs, strict=True):
                peaks[id(group)] = float(peak)
    return peaks


class _Sweep(pl.Callback):
    """The trainer's only callback during the sweep: sets the LR of each optimizer step and
    records its loss, as 0-d device tensors until the host reads them every ``check_every`` steps."""

    def __init__(self, finder: LRFinder, trainer: pl.Trainer, groups: _Groups, scaler: Any) -> None:
        self.lrs, self.groups, self.scaler, self.check_every = finder._lrs, groups, scaler, finder.check_every
        self.detector = detector(finder._options)
        self.automatic = trainer.lightning_module.automatic_optimization
        self.bar = _progress_bar(len(self.lrs), finder.progress and trainer.is_global_zero)
        self.i = 0  # sweep index of the next optimizer step
        self.window: list[torch.Tensor] = []  # this step's micro-batch losses, as Lightning returns them
        self.norm: torch.Tensor | None = None  # this step's gradient norm
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # steps the host has not read
        self.host = np.full((2, len(self.lrs)), np.nan)  # rows: loss, grad norm
        self.recorded = 0  # steps whose losses the detector has seen
        self.skipped_at: list[int] = []  # sweep index of each step that did not advance the sweep
        self.consecutive_skips = 0
        self.done = False
        self.seen_step = trainer.global_step
        self.scale = self._scale()
        groups.set(float(self.lrs[0]))

    def _scale(self) -> float | None:
        return self.scaler.get_scale() if self.scaler is not None and self.scaler.is_enabled() else None

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # Set again right before the step, whatever a scheduler the user steps by hand did since.
        self.groups.set(float(self.lrs[min(self.i, len(self.lrs) - 1)]))
        # Unscaled (Lightning unscales fp16 gradients before this hook) and before clipping.
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads).float() if grads else None
        if DTensor is not None and isinstance(norm, DTensor):
            # Sharded gradients (FSDP2) give each rank a partial norm: the global one is a
            # collective every rank runs here, with no host sync.
            norm = norm.full_tensor()
        if norm is not None:
            self.norm = norm if self.norm is None else torch.hypot(self.norm, norm)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = _loss_of(outputs)
        if loss is not None:
            self.window.append(loss)
        if trainer.global_step == self.seen_step or self.done:
            return  # a micro-batch of an accumulation window (or past the stop)
        self.seen_step = trainer.global_step
        window, self.window = self.window, []
        norm, self.norm = self.norm, None
        scale, self.scale = self.scale, self._scale()
        if not window and not self.automatic:
            raise RuntimeError(
                "lrfind.lightning.LRFinder: with manual optimization, training_step must return the loss (a tensor, "
                'or a dict with "loss") for the range test to record it'
            )
        # A step the fp16 scaler skipped lowers its scale; a step with no loss (training_step
        # returned None: Lightning skipped the batch) did nothing either.
        skipped = not window or (scale is not None and self.scale is not None and self.scale < scale)
        if skipped:
            self.skipped_at.append(self.i)
            self.consecutive_skips += 1
            if self.consecutive_skips < MAX_CONSECUTIVE_SKIPS:
                return  # same LR again
            if not window:  # not an fp16 overflow: nothing trains
                raise RuntimeError(
                    f"lrfind.lightning.LRFinder: training_step returned no loss for {MAX_CONSECUTIVE_SKIPS} steps in a "
                    "row (None skips the batch), so the range test has nothing to record: return the loss"
                )
            window = [torch.tensor(float("nan"), device=pl_module.device)]
        self.consecutive_skips = 0
        total = torch.stack(window).sum()
        # Automatic optimization returns each micro-batch's loss divided by accumulate_grad_batches.
        factor = (trainer.accumulate_grad_batches if self.automatic else 1) / len(window)
        mean = total if factor == 1 else total * factor
        nan = torch.tensor(float("nan"), device=mean.device)
        self.pending.append((self.i, mean, nan if norm is None else norm.to(mean.device)))
        self.i += 1
        if self.i < len(self.lrs):
            self.groups.set(float(self.lrs[self.i]))  # training_step reads the LR it trains at
        if self.i % self.check_every == 0 or self.i == len(self.lrs):
            if self.check(trainer) or self.i == len(self.lrs):
                self.done = True
                trainer.should_stop = True

    def check(self, trainer: pl.Trainer) -> bool:
        """Read the pending steps on the host (one sync; one all-reduce of their losses in a
        distributed run) and feed the detector; True if it stopped, with ``recorded`` cut just
        after the explosion point."""
        if not self.pending:
            return False
        steps = [i for i, _, _ in self.pending]
        losses = torch.stack([loss for _, loss, _ in self.pending]).double()
        losses = trainer.strategy.reduce(losses, reduce_op="mean")  # every rank records the ranks' mean
        norms = torch.stack([norm for _, _, norm in self.pending]).double()  # the same on every rank (DDP)
        self.host[0, steps], self.host[1, steps] = losses.cpu().numpy(), norms.cpu().numpy()
        self.pending.clear()
        start, end, stop = self.recorded, steps[-1] + 1, False
        self.recorded = end
        for j in range(start, end):
            if self.detector.update(float(self.host[0, j])):
                self.recorded, stop = j + 1, True
                break
        # One decision for all ranks, should their float sums ever differ.
        stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if self.bar is not None:
            self.bar.update(end - start)
            self.bar.set_postfix(lr=f"{self.lrs[end - 1]:.2e}", loss=f"{self.detector.smoothed:.4g}")
        return stop


def _check_strategy(strategy: Strategy) -> None:
    """The strategies whose model or optimizer a sweep cannot snapshot and restore, refused
    with what to use instead."""
    if isinstance(strategy, FSDPStrategy):
        raise TypeError(
            "strategy is FSDPStrategy (the FullyShardedDataParallel wrapper, FSDP1); lrfind.lightning works with "
            "FSDP2: use strategy=ModelParallelStrategy(...) and shard the model with "
            "torch.distributed.fsdp.fully_shard in configure_model"
        )
    if isinstance(strategy, DeepSpeedStrategy):
        raise TypeError(
            "strategy is DeepSpeedStrategy, which lrfind.lightning does not support: its engine owns the backward "
            "pass, the optimizer step and their state"
        )


def _loss_of(outputs: Any) -> torch.Tensor | None:
    """The loss in ``training_step``'s output as Lightning passes it to ``on_train_batch_end``."""
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
    if loss is None:
        return None
    return torch.as_tensor(loss).detach().float().reshape(())


def _sweep(
    finder: LRFinder, trainer: pl.Trainer, module: pl.LightningModule, groups: _Groups
) -> RangeTestResult | None:
    """Run the sweep through ``trainer.fit_loop`` and put everything back; None if no step ran."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    scaler = scaler if isinstance(scaler, torch.amp.GradScaler) else None
    # The RNGs first: anything below may draw from them (a DataLoader's iterator does).
    snapshot = Snapshot(module, groups.optimizers[0], scaler, finder.state_cache, data=_train_loaders(trainer))
    copier = _Copier()  # each rank keeps its own shards of a sharded (FSDP2) optimizer state
    in_model = {id(p) for p in module.parameters()}
    others = [_OptimizerCopy(optimizer, copier, in_model) for optimizer in groups.optimizers[1:]]
    saved = _TrainerState(trainer)
    sweep: _Sweep | None = None
    try:
        sweep = _Sweep(finder, trainer, groups, scaler)
        saved.prepare(trainer, sweep)
        with torch.autograd.set_detect_anomaly(trainer._detect_anomaly):
            trainer.fit_loop.run()
        sweep.check(trainer)  # the loop may end between checks (the user's should_stop)
    finally:
        if sweep is not None and sweep.bar is not None:
            sweep.bar.close()
        try:
            saved.restore(trainer)
        finally:
            snapshot.restore()
            for other in others:
                other.restore(other.saved, copier.back)
            snapshot.close()
    # Rank 0's curve on every rank: the same result, the same LR, whatever the float sums did.
    recorded, host, skipped_at = trainer.strategy.broadcast((sweep.recorded, sweep.host, sweep.skipped_at))
    if recorded == 0:
        rank_zero_warn("lrfind.lightning.LRFinder: the range test ran no optimizer step (no training batch?)")
        return None
    result = RangeTestResult.from_sweep(finder._lrs[:recorded], host[0, :recorded], **finder._options)
    # Skips past the explosion point (the loop runs on to the next check) do not count.
    skipped = sum(1 for i in skipped_at if i < recorded)
    return dataclasses.replace(result, grad_norms=host[1, : len(result.lrs)], skipped_steps=skipped)


def _train_loaders(trainer: pl.Trainer) -> list[Any]:
    """The train DataLoaders known before the sweep (those passed to ``fit``, and those already
    set up), and the generators and DataLoaders a LightningModule or DataModule that makes the
    train data holds (its ``train_dataloader()`` runs only in the sweep, which draws on them):
    the generators that the snapshot restores."""
    loaders: list[Any] = []
    instance = trainer.fit_loop._data_source.instance
    if isinstance(instance, (pl.LightningModule, pl.LightningDataModule)):
        loaders += [v for v in vars(instance).values() if isinstance(v, (torch.Generator, DataLoader))]
    else:
        loaders += _flat(instance)
    if trainer.fit_loop._combined_loader is not None:
        loaders += trainer.fit_loop._combined_loader.flattened
    return loaders


def _flat(obj: Any) -> list[Any]:
    """The iterables in a collection of them, as ``fit`` takes (a CombinedLoader, lists, dicts)."""
    if isinstance(obj, CombinedLoader):
        return list(obj.flattened)
    if isinstance(obj, Mapping):
        return [leaf for value in obj.values() for leaf in _flat(value)]
    if isinstance(obj, (list, tuple)):
        return [leaf for value in obj for leaf in _flat(value)]
    return [] if obj is None else [obj]


def _loops(loop: _Loop) -> Iterator[_Loop]:
    yield loop
    for child in vars(loop).values():
        if isinstance(child, _Loop):
            yield from _loops(child)


class _TrainerState:
    """What the sweep changes on the trainer, saved in memory to be put back exactly (Lightning's
    tuner writes a checkpoint file and restores the trainer from it instead)."""

    #: Flags of every loop that ``load_state_dict`` sets.
    LOOP_FLAGS = ("_restarting", "_loaded_from_state_dict", "_resuming_from_checkpoint", "_restart_stage")
    #: The fit loop's train data, set up afresh for the sweep (it may start mid-training).
    DATA = ("_combined_loader", "_data_fetcher", "max_batches", "_last_train_dl_reload_epoch")
    #: The logger connector's metrics (``callback_metrics``, ...) and flags.
    METRICS = ("_callback_metrics", "_logged_metrics", "_progress_bar_metrics")

    def __init__(self, trainer: pl.Trainer) -> None:
        loop = trainer.fit_loop
        self.callbacks, self.loggers = trainer.callbacks, trainer.loggers
        self.schedulers = trainer.strategy.lr_scheduler_configs
        self.scheduler_states = [_Copier().to_cpu(config.scheduler.state_dict()) for config in self.schedulers]
        self.trainer_values = (trainer.should_stop, trainer.limit_val_batches, trainer.val_check_batch)
        self.limits = (loop.max_epochs, loop.min_epochs, loop.epoch_loop.max_steps, loop.epoch_loop.min_steps)
        self.loop_state = copy.deepcopy(loop.state_dict())
        self.loop_flags = [(child, [getattr(child, f, None) for f in self.LOOP_FLAGS]) for child in _loops(loop)]
        # Private attributes of Lightning 2.6's loops (getattr: another version may lack one).
        self.data = {name: getattr(loop, name) for name in self.DATA if hasattr(loop, name)}
        self.loader_states = getattr(loop, "_combined_loader_states_to_load", [])
        connector = trainer._logger_connector
        self.metrics = {name: dict(getattr(connector, name)) for name in self.METRICS}
        self.connector_flags = (connector._first_loop_iter, connector._current_fx)
        # The epoch's logged values so far (on_epoch=True sums, when called mid-epoch): the sweep
        # logs into a collection of its own, and this one comes back untouched.
        self.results = loop.epoch_loop._results

    def prepare(self, trainer: pl.Trainer, sweep: _Sweep) -> None:
        """The trainer set up for the sweep: only ``sweep`` as callback, no logging, validation
        or scheduler steps, no epoch or step limit (``sweep`` stops the loop), fresh train data."""
        loop = trainer.fit_loop
        trainer.callbacks = [sweep]
        trainer.loggers = [DummyLogger()] if self.loggers else []  # self.log(logger=True) stays quiet
        if trainer.lightning_module.automatic_optimization:
            # Lightning steps them (a plateau scheduler would also ask for validation metrics);
            # with manual optimization training_step steps them, and the sweep sets the LR again.
            trainer.strategy.lr_scheduler_configs = []
        trainer.limit_val_batches = 0
        loop.max_epochs, loop.min_epochs, loop.epoch_loop.max_steps, loop.epoch_loop.min_steps = -1, None, -1, None
        loop._combined_loader = None  # the sweep's own iterator: the next epoch's, when called mid-training
        loop._combined_loader_states_to_load = []
        loop.epoch_loop._results = type(self.results)(training=True)
        trainer.should_stop = False

    def restore(self, trainer: pl.Trainer) -> None:
        loop = trainer.fit_loop
        if loop._data_fetcher is not None and loop._data_fetcher is not self.data.get("_data_fetcher"):
            loop._data_fetcher.teardown()  # the sweep's iterator (and its worker processes)
        trainer.callbacks, trainer.loggers = self.callbacks, self.loggers
        trainer.strategy.lr_scheduler_configs = self.schedulers
        for config, state in zip(self.schedulers, self.scheduler_states, strict=True):
            config.scheduler.load_state_dict(state)
        trainer.should_stop, trainer.limit_val_batches, trainer.val_check_batch = self.trainer_values
        loop.max_epochs, loop.min_epochs, loop.epoch_loop.max_steps, loop.epoch_loop.min_steps = self.limits
        loop.load_state_dict(copy.deepcopy(self.loop_state))
        for child, flags in self.loop_flags:
            for name, value in zip(self.LOOP_FLAGS, flags, strict=True):
                if hasattr(child, name):
                    setattr(child, name, value)  # the attributes, not the setters, which cascade
        for name, value in self.data.items():
            setattr(loop, name, value)
        loop._combined_loader_states_to_load = self.loader_states
        loop.epoch_loop._results = self.results
        connector = trainer._logger_connector
        for name, value in self.metrics.items():
            setattr(connector, name, value)
        connector._first_loop_iter, connector._current_fx = self.connector_flags


def _apply(
    result: RangeTestResult, module: pl.LightningModule, attr: str | None, groups: _Groups, trainer: pl.Trainer
) -> float | None:
    """Set the suggestion on ``attr`` and the optimizers (with their schedulers); the LR set, or
    None (with a warning) when the result gives none to train at."""
    lr = result.suggested_lr
    if not result.diagnosis.gives_lr or lr is None or not math.isfinite(lr) or lr <= 0:
        main = next(iter(result.suggestions.values()), None)
        why = result.diagnosis.message if not result.diagnosis.gives_lr or main is None else main.reason
        rank_zero_warn(
            f"lrfind.lightning.LRFinder: the range test gives no LR to train at ({result.diagnosis.kind}); "
            f"the LR stays as it was. {why}"
        )
        return None
    if attr is not None:
        lightning_setattr(module, attr, lr)
    scales = []
    current = groups.groups
    for group, base, ratio in zip(current, groups.bases, groups.ratios, strict=True):
        new = lr * ratio
        scale = new / base if base > 0 else math.nan
        scales.append((new, base, scale))
        if not base > 0:
            group["lr"] = new
            continue
        keys = ("lr", "initial_lr", "max_lr", "min_lr") if "max_lr" in group else ("lr", "initial_lr")
        for key in keys:
            if key in group:
                # The base itself exactly; the schedule's other LRs by the same factor.
                group[key] = new if group[key] == base else group[key] * scale
    by_group = {id(group): s for group, s in zip(current, scales, strict=True)}
    for scheduler in _schedulers(trainer):
        optimizer = getattr(scheduler, "optimizer", None)
        if optimizer is None or not any(optimizer is o for o in groups.optimizers):
            continue
        if isinstance(getattr(scheduler, "base_lrs", None), list):
            scheduler.base_lrs = [
                _scaled(b, *by_group[id(g)]) for b, g in zip(scheduler.base_lrs, optimizer.param_groups, strict=True)
            ]
        if isinstance(getattr(scheduler, "max_lrs", None), list):  # CyclicLR keeps its peaks on itself
            scheduler.max_lrs = [
                _scaled(m, *by_group[id(g)]) for m, g in zip(scheduler.max_lrs, optimizer.param_groups, strict=True)
            ]
        if isinstance(getattr(scheduler, "_last_lr", None), list):
            scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]
    rank_zero_info(f"lrfind: learning rate set to {lr:.3g} ({result.diagnosis.kind} sweep)")
    return lr


def _schedulers(trainer: pl.Trainer) -> Iterator[Any]:
    """The trainer's LR schedulers and those they chain (SequentialLR's, ChainedScheduler's)."""
    todo = [config.scheduler for config in trainer.lr_scheduler_configs]
    while todo:
        scheduler = todo.pop(0)
        yield scheduler
        todo += list(getattr(scheduler, "_schedulers", []))


def _scaled(value: float, new: float, base: float, scale: float) -> float:
    if not base > 0:
        return new
    return new if value == base else value * scale


def _log(result: RangeTestResult, trainer: pl.Trainer) -> None:
    """The picture and the summary to the loggers that take them (TensorBoard-style
    ``add_figure``/``add_text``, MLflow-style ``log_figure``/``log_text``); others are skipped."""
    targets: list[tuple[str, Any, Any]] = []
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        run_id = getattr(logger, "run_id", None)
        if hasattr(experiment, "add_figure") or hasattr(experiment, "add_text"):
            targets.append(("tensorboard", experiment, None))
        elif run_id is not None and (hasattr(experiment, "log_figure") or hasattr(experiment, "log_text")):
            targets.append(("mlflow", experiment, run_id))
    if not targets:
        return
    step = trainer.global_step
    text = result.summary()
    figure = (
        _figure(result) if any(hasattr(e, "add_figure") or hasattr(e, "log_figure") for _, e, _ in targets) else None
    )
    for kind, experiment, run_id in targets:
        if kind == "tensorboard":
            if figure is not None and hasattr(experiment, "add_figure"):
                experiment.add_figure(FIGURE_TAG, figure, global_step=step, close=False)
            if hasattr(experiment, "add_text"):
                # TensorBoard renders markdown: indented lines keep the table's columns.
                experiment.add_text(TEXT_TAG, "\n".join("    " + line for line in text.splitlines()), global_step=step)
        else:
            if figure is not None and hasattr(experiment, "log_figure"):
                experiment.log_figure(run_id, figure, f"{FIGURE_TAG}.png")
            if hasattr(experiment, "log_text"):
                experiment.log_text(run_id, text, f"{TEXT_TAG}.txt")


def _figure(result: RangeTestResult) -> Any:
    """The result's picture on a bare matplotlib ``Figure`` (pyplot's state untouched), or None
    without matplotlib."""
    try:
        from lrfind.plot import new_axes
    except ImportError:
        return None
    ax = new_axes(use_pyplot=False)
    result.plot(ax=ax)
    return ax.figure
