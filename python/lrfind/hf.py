"""The LR range test for Hugging Face: a ``transformers.Trainer`` (``range_test``,
``LRFinderCallback``) and a plain ``accelerate`` loop (``accelerate_range_test``).

Each runs ``lrfind.torch.range_test`` the way the training it stands for would step: the
Trainer's model, data, ``compute_loss``, optimizer, accumulation, clipping and mixed precision,
or the accelerator's backward and loss scaling; and each leaves everything as it found it.

Needs the ``hf`` extra (``pip install 'lrfind[hf]'``: torch, transformers and accelerate);
``import lrfind`` never imports them.
"""

from __future__ import annotations

import copy
import inspect
import sys
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

try:
    import accelerate
    import torch
    import transformers
except ImportError as error:
    raise ImportError(
        f"lrfind.hf needs torch, transformers and accelerate ({error}): pip install 'lrfind[hf]'"
    ) from None

from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import DistributedType

from lrfind.result import RangeTestResult
from lrfind.torch import range_test as _torch_range_test
from lrfind.torch._range_test import _check_bool, check_settings
from lrfind.torch._state import Rngs

__all__ = ["LRFinderCallback", "accelerate_range_test", "range_test"]

#: Settings the Trainer decides (``loss_fn``, ``step_fn``: its ``compute_loss``; ``backward_fn``,
#: ``amp``, ``grad_scaler``: its accelerator); passing one is a ``TypeError``.
TRAINER_OWNED = ("loss_fn", "step_fn", "backward_fn", "amp", "grad_scaler")

#: Settings the accelerator decides in ``accelerate_range_test``.
ACCELERATOR_OWNED = ("backward_fn", "amp", "grad_scaler")


def range_test(trainer: transformers.Trainer, *, apply: bool = False, **settings: Any) -> RangeTestResult:
    """Run the LR range test on a ``transformers.Trainer``, as its training would step.

    One optimizer step per LR, from ``min_lr`` to ``max_lr`` (``lrfind.torch.range_test``), with:

    * the Trainer's model and train DataLoader (``trainer.get_train_dataloader()``: its
      batch size, collator, sampler and data seed);
    * its ``compute_loss`` (dict batches, label smoothing, ``compute_loss_func``, and the
      ``compute_loss`` of a Trainer subclass), under ``compute_loss_context_manager()`` and
      the accelerator's autocast (``bf16``/``fp16`` as ``TrainingArguments`` set them);
    * backward through ``trainer.accelerator.backward``; under fp16, where the accelerator
      owns a ``GradScaler``, the range test drives that scaler itself instead (as
      ``accelerator.backward`` would scale), so that clipping reads unscaled gradients and a
      step the scaler skips does not advance the sweep;
    * the optimizer the Trainer trains with: the cached ``trainer.optimizer``, else
      ``trainer.create_optimizer()`` (its parameter groups, weight decay, betas, eps, fused
      kernel; ``optimizer_cls_and_kwargs`` when given). Only the LR is swept: every group
      moves by the same factor from its base LR (``initial_lr`` once a scheduler set one);
    * ``gradient_accumulation_steps`` micro-batches per optimizer step, and clipping to
      ``max_grad_norm`` (none when it is 0 or None): the LR moves once per optimizer step and
      the recorded loss is the mean of its micro-batches' losses, each its own batch mean (the
      Trainer weighs micro-batches by their label counts when the model takes
      ``num_items_in_batch``: the same gradients when those counts are equal).

    Nothing is left behind, after success or an exception (Ctrl-C too): the model, the
    optimizer's state, the fp16 scaler and every RNG come back bitwise (``range_test``'s
    snapshot), and so do the Trainer's attributes (no optimizer is cached if none was),
    ``trainer.state`` and ``trainer.control``, the accelerator's lists of prepared objects
    and its gradient state.

    Args:
        trainer: a ``transformers.Trainer`` (or subclass) with a ``train_dataset``.
        apply: if True (default False), make ``trainer.train()`` train at the suggestion:
            ``trainer.args.learning_rate`` (and the ``lr`` of ``optimizer_cls_and_kwargs``)
            becomes the suggested LR, a cached optimizer gets it in place (its groups keep
            their ratios; its ``initial_lr`` is dropped, so the scheduler the Trainer builds
            starts from the new LR: otherwise a cached optimizer trains at the old LR), and a
            scheduler the Trainer built is dropped, to be rebuilt by ``train()``. A scheduler
            you passed yourself (``optimizers=(optimizer, scheduler)``) cannot be rebuilt: it
            is a ``ValueError``, raised before the sweep. When the result gives no LR to train
            at (``result.diagnosis.gives_lr`` False, or no suggestion), nothing is applied and
            a ``UserWarning`` says ``result.diagnosis.message``.
        **settings: ``lrfind.torch.range_test``'s keyword arguments (``min_lr=1e-7``,
            ``max_lr=10.0``, ``num_steps=100``, ``methods``, ``val_data``, ``state_cache``,
            ...). ``accumulation_steps`` and ``max_grad_norm`` default to the Trainer's and
            may be overridden; ``loss_fn``, ``step_fn``, ``backward_fn``, ``amp`` and
            ``grad_scaler`` come from the Trainer and are a ``TypeError``. ``refine=K`` with
            ``val_data=trainer.get_eval_dataloader()`` trains K candidate LRs through the
            Trainer's own step and scores them on held-out batches; ``apply`` then applies the
            best.

    Returns:
        the ``RangeTestResult`` (``result.suggested_lr``, ``result.diagnosis``, ...).

    Raises:
        ValueError: under DeepSpeed (its engine owns backward and the optimizer step), or in a
            distributed job (before ``train()`` the model is not wrapped for it yet: use
            ``LRFinderCallback``, which runs on the wrapped model).
    """
    _refuse(settings, TRAINER_OWNED, "lrfind.hf.range_test", "the Trainer")
    _check_bool("apply", apply)
    _check_trainer(trainer)
    if trainer.args.world_size > 1:
        raise ValueError(
            f"trainer runs on {trainer.args.world_size} processes, and lrfind.hf.range_test runs before train(), "
            "where a distributed Trainer's model is not wrapped yet: add lrfind.hf.LRFinderCallback(...) to the "
            "Trainer instead, which runs on the wrapped model"
        )
    if apply:
        _check_can_apply(trainer, "lrfind.hf.range_test(apply=True)")
    with _Untouched(trainer, trainer.accelerator):
        optimizer = trainer.optimizer if trainer.optimizer is not None else trainer.create_optimizer()
        model = cast(torch.nn.Module, trainer.model)  # a Trainer always has one
        result = _run(trainer, model, optimizer, trainer.get_train_dataloader(), settings)
    if apply:
        _apply(trainer, result, settings.get("group_lrs", "ratio"), training=False)
    return result


class LRFinderCallback(transformers.TrainerCallback):
    """A ``TrainerCallback`` that runs the range test when training begins and trains at the suggestion.

    ``Trainer(..., callbacks=[LRFinderCallback(max_lr=1.0)])``: at the first ``on_train_begin``
    (the optimizer and scheduler exist by then, and the model, optimizer and DataLoader are
    prepared by the accelerator) it runs ``lrfind.hf.range_test``'s sweep on the objects the
    training is about to use (the wrapped model, the Trainer's optimizer, its train
    DataLoader), restores them bitwise, keeps the result in ``.result``, and with ``apply``
    sets the suggestion as the LR of the training that follows: ``args.learning_rate``, the
    optimizer's groups (keeping their ratios), and the Trainer's scheduler, rebuilt over the
    new LR (so warmup and decay run as configured, from the suggestion). A scheduler you
    passed yourself cannot be rebuilt: with ``apply`` that is a ``ValueError``, before the
    sweep. When the result gives no LR to train at, nothing is applied and a
    ``UserWarning`` says ``result.diagnosis.message``; training goes on at the configured LR.

    A resumed training (``state.global_step > 0`` at ``on_train_begin``) and later calls of
    ``train()`` run no range test: the schedule in progress is not touched.

    The Trainer hands its callbacks its model, optimizer, scheduler and DataLoaders but not
    itself, and the range test needs its ``compute_loss`` and accelerator: the callback finds
    the Trainer whose callback list holds it on the call stack of ``on_train_begin``, unless
    ``set_trainer(trainer)`` named it.

    Args:
        apply: set the suggestion as the training's LR (default True).
        **settings: ``lrfind.torch.range_test``'s keyword arguments, as for ``lrfind.hf.range_test``.
    """

    def __init__(self, *, apply: bool = True, **settings: Any) -> None:
        _refuse(settings, TRAINER_OWNED, "LRFinderCallback", "the Trainer")
        _check_bool("apply", apply)
        check_settings(**settings)  # a bad value fails here, not once the Trainer has set up
        self.apply, self.settings = apply, settings
        self.result: RangeTestResult | None = None
        self.trainer: transformers.Trainer | None = None
        self._done = False

    def set_trainer(self, trainer: transformers.Trainer) -> None:
        """Name the Trainer to test (it must hold this callback), instead of finding it on the call stack."""
        self.trainer = trainer

    def on_train_begin(
        self,
        args: transformers.TrainingArguments,
        state: transformers.TrainerState,
        control: transformers.TrainerControl,
        **kwargs: Any,
    ) -> None:
        """Run the range test (once) and, with ``apply``, set the suggested LR."""
        if self._done or state.global_step > 0:
            return
        trainer = self.trainer if self.trainer is not None else _calling_trainer(self)
        _check_trainer(trainer)
        if self.apply:
            _check_can_apply(trainer, "LRFinderCallback(apply=True)")
        data = kwargs.get("train_dataloader")
        if data is None:
            data = trainer.callback_handler.train_dataloader
        with _Untouched(trainer, trainer.accelerator, data):
            # By on_train_begin the Trainer has built its optimizer.
            optimizer = cast(torch.optim.Optimizer, trainer.optimizer)
            self.result = _run(trainer, trainer.model_wrapped, optimizer, data, self.settings)
        self._done = True
        if self.apply:
            _apply(trainer, self.result, self.settings.get("group_lrs", "ratio"), training=True)


def accelerate_range_test(
    accelerator: accelerate.Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., torch.Tensor] | None,
    data: Any,
    **settings: Any,
) -> RangeTestResult:
    """The range test in a plain ``accelerate`` loop, on what ``accelerator.prepare`` returned.

    ``model``, ``optimizer`` and ``data`` are the prepared model (autocast, device placement
    and DDP come with it), optimizer and DataLoader. The backward pass is
    ``accelerator.backward``, and ``accumulation_steps`` defaults to the accelerator's
    ``gradient_accumulation_steps``: the range test divides each micro-batch's loss by it
    and steps the optimizer once per group of micro-batches, so the accelerator's own
    division is set to 1 for the sweep (it would divide twice), and the torch optimizer
    inside accelerate's wrapper is stepped (the wrapper skips the step while the
    accelerator thinks it is accumulating). Under fp16 the
    range test drives the accelerator's ``GradScaler`` itself (as ``accelerator.backward``
    would scale), so that clipping reads unscaled gradients and a skipped step does not
    advance the sweep.

    Everything comes back as it was, after success or an exception: the model, the
    optimizer's state, the scaler and every RNG (``range_test``'s snapshot), the
    accelerator's accumulation setting and gradient state, and the DataLoader's iteration
    state (its epoch, its sampler's).

    Without accumulation (``gradient_accumulation_steps=1``) and without fp16, plain
    ``lrfind.torch.range_test(model, optimizer, loss_fn, data, backward_fn=accelerator.backward)``
    on the prepared objects gives the same curve; this helper also covers those two cases.

    Args:
        accelerator: the ``accelerate.Accelerator`` that prepared the objects (not DeepSpeed
            or Megatron-LM, whose engines own backward and the optimizer step).
        model, optimizer, data: as ``accelerator.prepare`` returned them.
        loss_fn: ``loss_fn(model(inputs), targets)``, or None when the model returns its loss
            (dict batches); as in ``lrfind.torch.range_test``.
        **settings: ``lrfind.torch.range_test``'s keyword arguments (``min_lr=1e-7``,
            ``max_lr=10.0``, ``num_steps=100``, ``accumulation_steps``, ``max_grad_norm``,
            ``step_fn``, ...); ``backward_fn``, ``amp`` and ``grad_scaler`` come from the
            accelerator and are a ``TypeError``.

    Returns:
        the ``RangeTestResult``.
    """
    _refuse(settings, ACCELERATOR_OWNED, "lrfind.hf.accelerate_range_test", "the accelerator")
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM):
        raise ValueError(
            f"accelerator runs {accelerator.distributed_type.value}, which lrfind.hf.accelerate_range_test does not "
            "support: its engine owns the backward pass and the optimizer step"
        )
    settings.setdefault("accumulation_steps", accelerator.gradient_accumulation_steps)
    with _Untouched(None, accelerator, data):
        return _torch_range_test(model, _unwrapped(optimizer), loss_fn, data, **_backward(accelerator), **settings)


# --- the shared sweep ------------------------------------------------------------------------------


def _run(
    trainer: transformers.Trainer,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Any,
    settings: dict[str, Any],
) -> RangeTestResult:
    """The sweep with the Trainer's loss, accelerator and settings (the caller restores the rest)."""
    args = trainer.args
    # Accumulation and clipping as the Trainer trains; the caller's settings win.
    settings = {
        "accumulation_steps": args.gradient_accumulation_steps,
        "max_grad_norm": args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None,
        **settings,
    }
    inner = _unwrapped(optimizer)
    groups = [{k: v for k, v in g.items() if k != "params"} for g in inner.param_groups]
    try:
        # The sweep keeps the groups' ratios from their base LRs: a scheduler's warmup can hold
        # the current LR at 0 (at on_train_begin), a finished decay ends there.
        for group in inner.param_groups:
            group["lr"] = group.get("initial_lr", group["lr"])
        return _torch_range_test(
            model, inner, None, data, step_fn=_compute_loss(trainer), **_backward(trainer.accelerator), **settings
        )
    finally:
        # range_test restored the optimizer as it found it, base LRs in place: the real ones back.
        for group, saved in zip(inner.param_groups, groups, strict=True):
            group.update(saved)


def _compute_loss(trainer: transformers.Trainer) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    """A ``step_fn`` that computes the loss as ``Trainer.training_step`` does, without its backward."""

    def step(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        inputs = trainer._prepare_inputs(batch)
        # The accelerator's autocast: a model not yet prepared (before train()) has none of its own.
        with trainer.accelerator.autocast(), trainer.compute_loss_context_manager():
            loss = cast(torch.Tensor, trainer.compute_loss(model, inputs))  # no outputs asked for
        # DataParallel returns one loss per device, as in training_step.
        return loss.mean() if isinstance(loss, torch.Tensor) and loss.ndim else loss

    return step


def _backward(accelerator: accelerate.Accelerator) -> dict[str, Any]:
    """How range_test runs the backward pass for this accelerator.

    With a ``GradScaler`` (fp16), ``accelerator.backward`` would scale the loss but range_test
    would then clip scaled gradients and count skipped steps as done: range_test drives the
    accelerator's scaler instead, which is what ``accelerator.backward`` does outside DeepSpeed.
    """
    if accelerator.scaler is not None:
        return {"grad_scaler": accelerator.scaler}
    return {"backward_fn": accelerator.backward}


def _unwrapped(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper, whose ``step`` is skipped while the
    accelerator accumulates and which would step the fp16 scaler a second time."""
    while isinstance(optimizer, AcceleratedOptimizer):
        optimizer = optimizer.optimizer
    return optimizer


# --- checks ----------------------------------------------------------------------------------------


def _refuse(settings: dict[str, Any], owned: tuple[str, ...], where: str, owner: str) -> None:
    """Settings that are not ``lrfind.torch.range_test``'s, or that ``owner`` decides, are a
    TypeError at once (a callback's would otherwise surface only when training starts)."""
    taken = [name for name in owned if name in settings]
    if taken:
        raise TypeError(
            f"{where} takes {', '.join(taken)} from {owner}: leave {'it' if len(taken) == 1 else 'them'} out"
        )
    params = inspect.signature(_torch_range_test).parameters
    known = [name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = [name for name in settings if name not in known]
    if unknown:
        accepted = ", ".join(name for name in known if name not in owned)
        raise TypeError(
            f"{where} got unexpected keyword argument(s) {', '.join(unknown)}: its settings are "
            f"lrfind.torch.range_test's {accepted}"
        )


def _check_trainer(trainer: Any) -> None:
    if not isinstance(trainer, transformers.Trainer):
        raise TypeError(f"expected a transformers.Trainer, got {type(trainer).__name__}")
    if trainer.is_deepspeed_enabled:
        raise ValueError(
            "trainer runs DeepSpeed, which lrfind.hf does not support: its engine owns the backward pass and the "
            "optimizer step"
        )


def _check_can_apply(trainer: transformers.Trainer, where: str) -> None:
    """A scheduler the user passed holds its own copy of the LR, which lrfind cannot rebuild."""
    # transformers 4.x before the flag existed: any scheduler counts as the user's.
    if trainer.lr_scheduler is not None and not getattr(trainer, "_created_lr_scheduler", False):
        raise ValueError(
            f"{where} cannot set the LR of the scheduler passed to the Trainer (optimizers=(..., "
            f"{type(trainer.lr_scheduler).__name__})): let the Trainer build it (lr_scheduler_type, warmup_steps), "
            "or leave apply False and set the LR from result.suggested_lr yourself"
        )


# --- applying the suggestion -----------------------------------------------------------------------


def _apply(trainer: transformers.Trainer, result: RangeTestResult, group_lrs: str, *, training: bool) -> None:
    """Make the training that follows run at the suggestion, or warn and change nothing.

    ``training``: called at ``on_train_begin``, where the Trainer's scheduler is rebuilt at
    once; before ``train()`` it is dropped, and ``train()`` builds it.
    """
    lr = result.suggested_lr
    if lr is None or not result.diagnosis.gives_lr:
        warnings.warn(
            f"lrfind: the range test gives no LR to train at, the LR stays {trainer.args.learning_rate:g}: "
            f"{result.diagnosis.message}",
            UserWarning,
            stacklevel=3,
        )
        return
    lr = float(lr)
    trainer.args.learning_rate = lr
    given = getattr(trainer, "optimizer_cls_and_kwargs", None)  # transformers >= 4.46
    if given is not None:
        # create_optimizer takes the LR from these kwargs, not from the arguments; a new dict,
        # the caller's is left alone.
        cls, kwargs = given
        trainer.optimizer_cls_and_kwargs = (cls, {**kwargs, "lr": lr})
    if trainer.optimizer is not None:
        groups = _unwrapped(trainer.optimizer).param_groups
        base = [float(g.get("initial_lr", g["lr"])) for g in groups]
        keep_ratios = group_lrs == "ratio" and base[0] > 0
        for group, b in zip(groups, base, strict=True):
            # The first group (and any at its LR) exactly at the suggestion: lr * b / b can be an ulp off.
            group["lr"] = lr * b / base[0] if keep_ratios and b != base[0] else lr
            # LambdaLR & co. take initial_lr over lr when it is there: the trap of a cached optimizer.
            group.pop("initial_lr", None)
        # transformers builds some schedulers (polynomial, cosine_with_min_lr) from defaults["lr"].
        _unwrapped(trainer.optimizer).defaults["lr"] = lr
    if trainer.lr_scheduler is not None:
        trainer.lr_scheduler = None
        trainer._created_lr_scheduler = False
        if training:
            trainer.create_scheduler(num_training_steps=trainer.state.max_steps)
        trainer.callback_handler.lr_scheduler = trainer.lr_scheduler


# --- leaving no trace ------------------------------------------------------------------------------


class _Untouched:
    """A context that puts back what a range test on a Trainer or an accelerator could change
    besides the model, optimizer and scaler (which ``lrfind.torch.range_test`` restores):

    the Trainer's attributes (rebinding, such as a cached optimizer), its ``state`` and
    ``control`` (their contents), the accelerator's lists of prepared objects (a DataLoader
    prepared for the sweep), its accumulation setting and gradient state (the DataLoaders it
    thinks are iterating: a sweep stops mid-epoch), the DataLoader's iteration state (its
    epoch, its sampler's epoch and generator), and every RNG (python, numpy, torch, CUDA).
    """

    def __init__(self, trainer: Any, accelerator: accelerate.Accelerator, data: Any = None) -> None:
        self.accelerator = accelerator
        # The Trainer's attributes as they are bound, its state's and control's contents.
        self.saved = (
            [(trainer, dict(vars(trainer)))]
            + [(obj, copy.deepcopy(vars(obj))) for obj in (trainer.state, trainer.control)]
            if trainer is not None
            else []
        )
        self.prepared = {
            name: list(getattr(accelerator, name))
            for name in ("_models", "_optimizers", "_schedulers", "_dataloaders", "_custom_objects")
            if isinstance(getattr(accelerator, name, None), list)
        }
        gradient_state = accelerator.gradient_state
        self.gradient_state = dict(vars(gradient_state))
        self.plugin_kwargs = dict(gradient_state.plugin_kwargs)
        self.parts = [(part, dict(vars(part))) for part in _loader_parts(data)]
        self.rngs = Rngs()

    def __enter__(self) -> _Untouched:
        # Accumulation is range_test's: the accelerator must not divide each loss again.
        self.accelerator.gradient_accumulation_steps = 1
        return self

    def __exit__(self, *exc: Any) -> None:
        for obj, saved in self.saved:
            _put_back(obj, saved)
        for name, items in self.prepared.items():
            getattr(self.accelerator, name)[:] = items
        gradient_state = self.accelerator.gradient_state
        _put_back(gradient_state, self.gradient_state)
        gradient_state.plugin_kwargs.clear()
        gradient_state.plugin_kwargs.update(self.plugin_kwargs)
        for part, saved in self.parts:
            _put_back(part, saved)
        self.rngs.restore()


def _put_back(obj: Any, saved: dict[str, Any]) -> None:
    """``obj``'s attributes as ``saved`` holds them: added ones removed, rebound ones rebound
    (through ``__dict__``: a DataLoader refuses to set some of its attributes once built)."""
    attrs = vars(obj)
    for name in [name for name in attrs if name not in saved]:
        del attrs[name]
    attrs.update(saved)


def _loader_parts(data: Any) -> list[Any]:
    """A DataLoader and the objects whose attributes its iteration changes: accelerate's
    wrapper and the DataLoader inside it, the samplers (their epoch, their generator)."""
    parts: list[Any] = []
    todo = [data]
    while todo:
        obj = todo.pop()
        if obj is None or isinstance(obj, (torch.Tensor, tuple, list, dict)) or not hasattr(obj, "__dict__"):
            continue
        if any(obj is part for part in parts):
            continue
        parts.append(obj)
        attrs = vars(obj)
        todo += [attrs.get(name) for name in ("base_dataloader", "sampler", "batch_sampler")]
    return parts


def _calling_trainer(callback: LRFinderCallback) -> transformers.Trainer:
    """The Trainer whose callback list holds ``callback``, found on the call stack."""
    frame: FrameType | None = sys._getframe(1)
    try:
        while frame is not None:
            owner = frame.f_locals.get("self")
            if isinstance(owner, transformers.Trainer) and any(
                cb is callback for cb in owner.callback_handler.callbacks
            ):
                return owner
            frame = frame.f_back
    finally:
        del frame  # a frame held here would keep every local of the stack alive
    raise RuntimeError(
        "LRFinderCallback could not find its Trainer on the call stack (is it called by Trainer.train()?): "
        "call callback.set_trainer(trainer)"
    )
