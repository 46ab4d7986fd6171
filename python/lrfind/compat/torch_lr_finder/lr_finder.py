"""torch-lr-finder 0.2.2's ``LRFinder`` and data loader iterators, run by lrfind.

Same API, same curve: ``history`` holds the LR of every step and torch-lr-finder's smoothed loss
(its EMA with ``smooth_f``, first point raw), the run stops where torch-lr-finder stops (the
smoothed loss above ``diverge_th`` times the best smoothed loss, that point recorded last),
``plot(suggest_lr=True)`` picks the same LR, and misuse raises the same exceptions with the same
messages. The LRs follow torch-lr-finder's ladder to the last bit (each parameter group from its
own LR, or from ``start_lr``, to ``end_lr``), so on the same seed the losses are the same too.

What lrfind adds, at no cost to that:

* The model, optimizer, grad scaler, every RNG and the DataLoaders' generators come back exactly
  as they were after ``range_test`` (also when a step raises, or on Ctrl-C), and the model goes
  back to its device; the copy lives in CPU memory (``memory_cache=True``) or on disk, never on
  the GPU. ``reset()`` still returns to the state at construction, as in torch-lr-finder.
* ``result``: lrfind's ``RangeTestResult`` of the raw (unsmoothed) losses of the run, with
  ``auto``'s suggestion, its range and the diagnosis (``result.summary()``, ``result.plot()``).
* Fewer host reads: a validation pass reads the device once instead of once per batch, and
  without validation or a grad scaler (both read the device every step anyway) the losses are
  read every ``check_every`` (10) steps. The history and the stop are the same as a step-by-step
  run's; after a stop, the steps run ahead of the read (at most ``check_every - 1``) are undone
  with the rest, but a criterion or a data iterator of yours sees them: ``check_every=1`` runs
  no step past the stop.

Differences: ``amp_backend="apex"`` is refused (NVIDIA apex is deprecated: use torch's AMP,
``amp_backend="torch"``), an optimizer with an LR scheduler attached is accepted (torch-lr-finder
refuses it because its own scheduler would clash; lrfind sets the LRs itself and restores them),
and so is a second ``range_test`` without ``reset()`` in between. The LR scheduler classes
(``LinearLR``, ``ExponentialLR``) and ``StateCacher`` are torch-lr-finder internals and are not
provided.
"""

from __future__ import annotations

import contextlib
import copy
import operator
import os
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from lrfind.result import RangeTestResult
from lrfind.torch._range_test import CHECK_EVERY, _progress_bar
from lrfind.torch._state import Snapshot

_APEX = (
    'amp_backend="apex" is not supported by lrfind.compat.torch_lr_finder (NVIDIA apex is deprecated): use '
    "torch's AMP instead, amp_backend=\"torch\" with amp_config={'device_type': 'cuda', 'dtype': torch.float16} "
    "and grad_scaler=torch.amp.GradScaler('cuda')"
)


class DataLoaderIter:
    """A DataLoader's batches as ``(inputs, labels)`` pairs, one pass (torch-lr-finder's base class).

    Subclass ``TrainDataLoaderIter`` or ``ValDataLoaderIter`` and override
    ``inputs_labels_from_batch`` for batches of another form (dicts, say).
    """

    def __init__(self, data_loader: Any) -> None:
        self.data_loader = data_loader
        self._iterator = iter(data_loader)

    @property
    def dataset(self) -> Any:
        """The data loader's dataset (its length divides the summed validation loss)."""
        return self.data_loader.dataset

    def inputs_labels_from_batch(self, batch_data: Any) -> tuple[Any, Any]:
        """``(inputs, labels)`` of one batch: the first two items of a list or tuple batch (any
        further items are ignored); a ValueError for a batch of any other type."""
        if not isinstance(batch_data, (list, tuple)):
            raise ValueError(
                f"Your batch type is not supported: {type(batch_data)}. Please inherit from "
                "`TrainDataLoaderIter` or `ValDataLoaderIter` and override the "
                "`inputs_labels_from_batch` method."
            )
        inputs, labels, *_ = batch_data
        return inputs, labels

    def __iter__(self) -> DataLoaderIter:
        return self

    def __next__(self) -> tuple[Any, Any]:
        return self.inputs_labels_from_batch(next(self._iterator))


class TrainDataLoaderIter(DataLoaderIter):
    """Training batches as ``(inputs, labels)``; with ``auto_reset`` (default True) it starts a
    new pass over the data loader when one ends, so a range test may take more steps than the
    loader has batches. Without it, the end of the pass raises ``StopIteration``."""

    def __init__(self, data_loader: Any, auto_reset: bool = True) -> None:
        super().__init__(data_loader)
        self.auto_reset = auto_reset

    def __next__(self) -> tuple[Any, Any]:
        try:
            inputs, labels = self.inputs_labels_from_batch(next(self._iterator))
        except StopIteration:
            if not self.auto_reset:
                raise
            self._iterator = iter(self.data_loader)
            inputs, labels = self.inputs_labels_from_batch(next(self._iterator))
        return inputs, labels


class ValDataLoaderIter(DataLoaderIter):
    """Validation batches as ``(inputs, labels)``, one pass at a time: once a pass has ended
    (``len(data_loader)`` batches), ``iter()`` (a ``for`` loop) starts the next one; ``next()``
    alone never does."""

    def __init__(self, data_loader: Any) -> None:
        super().__init__(data_loader)
        self.run_limit = len(self.data_loader)
        self.run_counter = 0

    def __iter__(self) -> ValDataLoaderIter:
        if self.run_counter >= self.run_limit:
            self._iterator = iter(self.data_loader)
            self.run_counter = 0
        return self

    def __next__(self) -> tuple[Any, Any]:
        self.run_counter += 1
        return super().__next__()


class LRFinder:
    """torch-lr-finder's learning rate range test, run by lrfind.

    ``LRFinder(model, optimizer, criterion).range_test(train_loader)`` raises every parameter
    group's LR from its current value (or ``start_lr``) to ``end_lr`` over ``num_iter`` steps,
    records ``history`` (``{"lr": [...], "loss": [...]}``, the loss smoothed as torch-lr-finder
    smooths it) and ``best_loss`` (the lowest smoothed loss), and stops when the smoothed loss
    exceeds ``diverge_th`` times ``best_loss``. ``plot()`` draws the curve and suggests the LR of
    its steepest descent; ``result`` is lrfind's analysis of the raw losses of the run.

    Args:
        model: the model to train.
        optimizer: its optimizer; each group's current LR is where its sweep starts (unless
            ``range_test`` gets ``start_lr``).
        criterion: ``criterion(model(inputs), labels)`` returns the loss tensor; it is called
            once per micro-batch (and once per validation batch).
        device: where the model runs during ``range_test`` (a string such as ``"cuda:0"`` or a
            ``torch.device``); None (default) keeps the model's device. The batches are moved
            there, and the model goes back to its own device after the run.
        memory_cache: keep the copies of the model's and optimizer's states in CPU memory
            (default True), or on disk (False).
        cache_dir: the folder of the copy that ``reset()`` reads when ``memory_cache`` is False
            (default None: the system's temporary folder); the run's own copy goes to the system's
            temporary folder. Must be an existing folder.
        amp_backend: None (default, no mixed precision) or ``"torch"`` (``torch.amp``); ``"apex"``
            is refused (use ``"torch"``).
        amp_config: with ``amp_backend="torch"``, the keyword arguments of ``torch.amp.autocast``,
            such as ``{"device_type": "cuda", "dtype": torch.float16}``.
        grad_scaler: with ``amp_backend="torch"``, the ``torch.amp.GradScaler`` that scales each
            micro-batch's loss (required there; restored after the run).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: Any,
        device: str | torch.device | None = None,
        memory_cache: bool = True,
        cache_dir: str | None = None,
        amp_backend: str | None = None,
        amp_config: Mapping[str, Any] | None = None,
        grad_scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if amp_backend == "apex":
            raise ValueError(_APEX)
        if amp_backend and amp_backend != "torch":
            raise ValueError(f"Unknown amp backend: {amp_backend}")
        if amp_backend == "torch" and grad_scaler is None:
            raise ValueError("`grad_scaler` is required when using `torch.amp`")
        if cache_dir is not None and not os.path.isdir(cache_dir):
            raise ValueError("Given `cache_dir` is not a valid directory.")
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.history: dict[str, list[float]] = {"lr": [], "loss": []}
        self.best_loss: float | None = None
        #: lrfind's analysis of the last run's raw losses (None before a run, and after a sweep
        #: whose LRs do not rise, which lrfind cannot analyse).
        self.result: RangeTestResult | None = None
        self.memory_cache = memory_cache
        self.cache_dir = cache_dir
        self.amp_backend = amp_backend
        self.amp_config = amp_config
        self.grad_scaler = grad_scaler
        self.model_device = next(self.model.parameters()).device
        self.device = device if device else self.model_device
        self._initial = _InitialState(model, optimizer, memory_cache, cache_dir)

    def reset(self) -> None:
        """Put the model and the optimizer back as they were when this finder was made, the
        model on its device then. ``range_test`` already restores what it changed, so this
        undoes only what happened to them in between."""
        self.model.to(self.model_device)
        model_state, optimizer_state = self._initial.load()
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(optimizer_state)

    def range_test(
        self,
        train_loader: Any,
        val_loader: Any = None,
        start_lr: float | list[float] | None = None,
        end_lr: float = 10,
        num_iter: int = 100,
        step_mode: str = "exp",
        smooth_f: float = 0.05,
        diverge_th: float = 5,
        accumulation_steps: int = 1,
        non_blocking_transfer: bool = True,
        *,
        check_every: int | None = None,
    ) -> None:
        """Run the range test; ``history``, ``best_loss`` and ``result`` hold what it found.

        Args:
            train_loader: a ``torch.utils.data.DataLoader`` of ``(inputs, labels, *rest)``
                batches, or a ``TrainDataLoaderIter`` (subclass one for other batch forms).
            val_loader: None (default), or a DataLoader or ``ValDataLoaderIter``: then every step
                is followed by a pass over it (in eval mode, without gradients), and the recorded
                loss is its mean per sample (each batch's loss weighted by its size).
            start_lr: the first LR of every parameter group (one float, or a list with one per
                group); None (default) starts each group at its current LR.
            end_lr: the last LR of every group (default 10).
            num_iter: the number of steps, at least 2 (default 100).
            step_mode: ``"exp"`` (default) or ``"linear"`` spacing of the LRs.
            smooth_f: the EMA weight of the newest loss in the recorded loss, in [0, 1[ (default
                0.05; 0 records the raw loss).
            diverge_th: stop when the smoothed loss exceeds this times the best smoothed loss
                (default 5).
            accumulation_steps: micro-batches per optimizer step (default 1); the recorded loss
                is the sum of their losses, each divided by ``accumulation_steps``.
            non_blocking_transfer: move batches to the device asynchronously (default True).
            check_every: lrfind's addition: steps between host reads of the losses (default None:
                10, or 1 with a ``val_loader`` or ``amp_backend="torch"``, which read the device
                every step anyway). The history and the stop do not depend on it; see the module
                docstring for the steps run past a stop.
        """
        self.history = {"lr": [], "loss": []}
        self.best_loss = None
        self.result = None
        groups = self.optimizer.param_groups
        # Every check before anything moves: a refused call leaves everything as it was.
        if start_lr:
            bases = start_lr if isinstance(start_lr, list) else [start_lr] * len(groups)
            if len(bases) != len(groups):
                raise ValueError(
                    "Length of `new_lrs` is not equal to the number of parameter groups in the given optimizer"
                )
        else:
            bases = [group["lr"] for group in groups]
        mode = step_mode.lower()
        if mode not in ("exp", "linear"):
            raise ValueError(f"expected one of (exp, linear), got {step_mode}")
        if num_iter <= 1:
            raise ValueError("`num_iter` must be larger than 1")
        operator.index(num_iter)  # a float fails here, as range(num_iter) would, before any step
        if smooth_f < 0 or smooth_f >= 1:
            raise ValueError("smooth_f is outside the range [0, 1[")
        if not (isinstance(train_loader, DataLoader) or _is_a(train_loader, TrainDataLoaderIter)):
            raise ValueError(
                f"`train_loader` has unsupported type: {type(train_loader)}."
                "Expected types are `torch.utils.data.DataLoader`"
                "or child of `TrainDataLoaderIter`."
            )
        if val_loader and not (isinstance(val_loader, DataLoader) or _is_a(val_loader, ValDataLoaderIter)):
            raise ValueError(
                f"`val_loader` has unsupported type: {type(val_loader)}."
                "Expected types are `torch.utils.data.DataLoader`"
                "or child of `ValDataLoaderIter`."
            )
        _check_positive_int("accumulation_steps", accumulation_steps)
        if check_every is not None:
            _check_positive_int("check_every", check_every)
        if self.amp_backend == "torch" and not isinstance(self.amp_config, Mapping):
            raise TypeError(
                "amp_config must be a dict of torch.amp.autocast arguments with amp_backend='torch', such as "
                f"{{'device_type': 'cuda', 'dtype': torch.float16}}, got {self.amp_config!r}"
            )
        ladders = [_ladder(base, end_lr, num_iter, mode) for base in bases]
        if check_every is None:
            check_every = 1 if val_loader or self.amp_backend == "torch" else CHECK_EVERY

        loaders = [train_loader, val_loader, *(getattr(d, "data_loader", None) for d in (train_loader, val_loader))]
        snapshot = Snapshot(
            self.model, self.optimizer, self.grad_scaler, "cpu" if self.memory_cache else "disk", data=loaders
        )
        home = next(self.model.parameters()).device
        moved = torch.device(self.device) != home
        raw: list[float] = []
        bar = None
        try:
            if moved:
                self.model.to(self.device)
            # Made here, in torch-lr-finder's order: a new DataLoader iterator draws its seeds.
            train_iter = TrainDataLoaderIter(train_loader) if isinstance(train_loader, DataLoader) else train_loader
            val_iter = None
            if val_loader:
                val_iter = ValDataLoaderIter(val_loader) if isinstance(val_loader, DataLoader) else val_loader
            bar = _progress_bar(num_iter, True)
            pending: list[torch.Tensor] = []
            for i in range(num_iter):
                for group, ladder in zip(groups, ladders, strict=True):
                    group["lr"] = ladder[i]
                try:
                    loss = self._train_batch(train_iter, accumulation_steps, non_blocking_transfer)
                    if val_iter is not None:
                        loss = self._validate(val_iter, non_blocking_transfer)
                except BaseException:
                    # The losses before it are history, as torch-lr-finder records each at once
                    # (Ctrl-C included). A step run ahead of the read, past the stop, fails (a data
                    # iterator without auto_reset that ran out, say): torch-lr-finder never ran it.
                    if pending and self._record(pending, ladders[0], smooth_f, diverge_th, raw, bar):
                        break
                    raise
                pending.append(loss)
                if (len(pending) == check_every or i == num_iter - 1) and self._record(
                    pending, ladders[0], smooth_f, diverge_th, raw, bar
                ):
                    break
        finally:
            if bar is not None:
                bar.close()
            if moved:
                self.model.to(home)
            snapshot.restore()
            snapshot.close()
        print(
            "Learning rate search finished. See the graph with lr_finder.plot(), lrfind's analysis with "
            "lr_finder.result.summary()"
        )
        lrs = np.asarray(self.history["lr"], dtype=np.float64)
        if np.all(np.isfinite(lrs)) and lrs[0] > 0 and np.all(np.diff(lrs) > 0):
            self.result = RangeTestResult.from_sweep(lrs, raw)

    def _train_batch(self, train_iter: Iterator[Any], accumulation_steps: int, non_blocking: bool) -> torch.Tensor:
        """One optimizer step over ``accumulation_steps`` micro-batches; the sum of their
        losses, each divided by ``accumulation_steps``, as a tensor on the device."""
        self.model.train()
        self.optimizer.zero_grad()
        amp = self.amp_config if self.amp_backend == "torch" else None
        scaler = self.grad_scaler if self.amp_backend == "torch" else None
        total = None
        for _ in range(accumulation_steps):
            inputs, labels = next(train_iter)
            inputs, labels = _move(inputs, self.device, non_blocking), _move(labels, self.device, non_blocking)
            with torch.amp.autocast(**amp) if amp is not None else contextlib.nullcontext():
                outputs = self.model(inputs)
                loss = self.criterion(outputs, labels)
            loss = loss / accumulation_steps
            if scaler is not None:
                scaler.scale(loss).backward()
            else:
                loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        assert total is not None  # accumulation_steps >= 1
        return total

    def _validate(self, val_iter: Any, non_blocking: bool) -> torch.Tensor:
        """The validation loss per sample, as a float64 tensor on the device: the same sums in
        the same order as torch-lr-finder's host floats, so the same value, read once."""
        self.model.eval()
        total = None
        with torch.no_grad():
            for inputs, labels in val_iter:
                inputs, labels = _move(inputs, self.device, non_blocking), _move(labels, self.device, non_blocking)
                loss = self.criterion(self.model(inputs), labels)
                term = loss.detach().to(torch.float64) * len(labels)
                total = term if total is None else total + term
        if total is None:
            total = torch.zeros((), dtype=torch.float64)
        return total / len(val_iter.dataset)

    def _record(
        self,
        pending: list[torch.Tensor],
        lrs: list[float],
        smooth_f: float,
        diverge_th: float,
        raw: list[float],
        bar: Any,
    ) -> bool:
        """Read the pending steps' losses (one host read) and record them in order with
        torch-lr-finder's smoothing and stop rule; True when the loss diverged, with the
        diverging point recorded last and the steps run after it dropped."""
        values = torch.stack([loss.to(torch.float64) for loss in pending]).tolist()
        pending.clear()
        for value in values:
            i = len(self.history["lr"])
            raw.append(value)
            loss = best = value
            if i > 0 and self.best_loss is not None:
                if smooth_f > 0:
                    loss = smooth_f * loss + (1 - smooth_f) * self.history["loss"][-1]
                best = loss if loss < self.best_loss else self.best_loss
            self.best_loss = best
            self.history["lr"].append(lrs[i])
            self.history["loss"].append(loss)
            if bar is not None:
                bar.update(1)
            if loss > diverge_th * best:
                print("Stopping early, the loss has diverged")
                return True
        return False

    def plot(
        self,
        skip_start: int = 10,
        skip_end: int = 5,
        log_lr: bool = True,
        show_lr: float | None = None,
        ax: Any = None,
        suggest_lr: bool = True,
    ) -> Any:
        """Draw ``history``'s loss against the LR, as torch-lr-finder draws it.

        Args:
            skip_start, skip_end: points left out at the start (default 10) and the end
                (default 5).
            log_lr: a logarithmic LR axis (default True).
            show_lr: an LR to mark with a vertical line (a float; default None).
            ax: the matplotlib axes to draw in; None (default) makes a figure and shows it.
            suggest_lr: mark and return the LR of the steepest descent of the drawn losses (the
                smallest ``np.gradient`` in index space; default True). It needs at least
                ``skip_start + skip_end + 2`` points.

        Returns:
            the axes, and with ``suggest_lr`` the pair ``(axes, suggested LR)``. For lrfind's
            suggestion (``auto``, with its range and the diagnosis), see ``result``.
        """
        if skip_start < 0:
            raise ValueError("skip_start cannot be negative")
        if skip_end < 0:
            raise ValueError("skip_end cannot be negative")
        if show_lr is not None and not isinstance(show_lr, float):
            raise ValueError("show_lr must be float")
        n = len(self.history["lr"])
        if suggest_lr and n < skip_start + skip_end + 2:
            raise RuntimeError(
                f"Need at least {skip_start + skip_end + 2} iterations to suggest a learning rate. Got {n}"
            )
        end = -skip_end if skip_end else None
        lrs, losses = self.history["lr"][skip_start:end], self.history["loss"][skip_start:end]
        show = None
        if ax is None:
            import matplotlib.pyplot as plt

            _, ax = plt.subplots()
            show = plt.show
        ax.plot(lrs, losses)
        suggested = None
        if suggest_lr:
            index = int(np.argmin(np.gradient(np.asarray(losses, dtype=np.float64))))
            suggested = lrs[index]
            print("LR suggestion: steepest gradient")
            print(f"Suggested LR: {suggested:.2E}")
            ax.scatter(suggested, losses[index], s=75, marker="o", color="red", zorder=3, label="steepest gradient")
            ax.legend()
        if log_lr:
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if show_lr is not None:
            ax.axvline(x=show_lr, color="red")
        if show is not None:
            show()
        return (ax, suggested) if suggest_lr else ax


class _InitialState:
    """The model's and optimizer's state dicts at the finder's construction, for ``reset()``:
    in CPU memory, or in a file under ``cache_dir`` removed with the finder."""

    def __init__(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, in_memory: bool, cache_dir: str | None
    ) -> None:
        state = (_cpu_copy(model.state_dict()), _cpu_copy(optimizer.state_dict()))
        self._state: tuple[Any, Any] | None = state
        self._path: str | None = None
        if not in_memory:
            # Not "lrfind-*": that is range_test's temporary folder, which must not outlive a run.
            fd, self._path = tempfile.mkstemp(prefix="lrfind_reset_", suffix=".pt", dir=cache_dir)
            os.close(fd)
            torch.save(state, self._path)
            self._state = None
            weakref.finalize(self, _remove, self._path)

    def load(self) -> tuple[Any, Any]:
        """``(model state dict, optimizer state dict)``."""
        if self._state is not None:
            return self._state
        assert self._path is not None
        return torch.load(self._path, weights_only=False)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU (torch-lr-finder keeps a second copy on
    the model's device)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, _cpu_copy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _ladder(base: float, end: float, num_iter: int, mode: str) -> list[float]:
    """torch-lr-finder's LRs from ``base`` to ``end``, with its arithmetic (so bit for bit)."""
    if mode == "exp":
        return [base * (end / base) ** (i / (num_iter - 1)) for i in range(num_iter)]
    return [base + (i / (num_iter - 1)) * (end - base) for i in range(num_iter)]


def _move(obj: Any, device: Any, non_blocking: bool) -> Any:
    """``obj`` on ``device``: anything with ``.to``, and tuples, lists and dicts of them."""
    if hasattr(obj, "to"):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, tuple):
        return tuple(_move(o, device, non_blocking) for o in obj)
    if isinstance(obj, list):
        return [_move(o, device, non_blocking) for o in obj]
    if isinstance(obj, dict):
        return {k: _move(o, device, non_blocking) for k, o in obj.items()}
    return obj


def _is_a(obj: Any, cls: type) -> bool:
    """``isinstance(obj, cls)``, or an instance of the real torch-lr-finder's class of that name:
    an iterator subclassed from the real package elsewhere in the user's code still works."""
    return isinstance(obj, cls) or any(
        c.__name__ == cls.__name__ and c.__module__.split(".")[0] == "torch_lr_finder" for c in type(obj).__mro__
    )


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
