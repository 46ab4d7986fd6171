"""SGD, Adam and AdamW over stacked parameters: K runs side by side, one LR per run and step.

``torch.func.stack_module_state`` turns K copies of a model into one tensor per parameter with a
leading dimension K. ``StackedOptimizer`` updates those tensors in place so that every slice follows
exactly what ``torch.optim`` (single-tensor implementation) would do to that run alone, with its own
LR each step, while runs marked inactive (diverged ones) keep their parameters and optimizer state
bitwise. Everything stays on the device: the per-run choices are ``torch.where`` selections, never
Python branches on tensor values, so a step never waits for the GPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch

_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0, "maximize": False},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False, "maximize": False},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2, "amsgrad": False, "maximize": False},
}
_FLAGS = ("nesterov", "amsgrad", "maximize")


def _check_number(name: str, value: Any, label: str | None = None) -> float:
    """``value`` as a float when it is finite and >= 0; torch.optim's message otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"Invalid {label or name} value: {value}")
    return float(value)


def _check_hyperparams(kind: str, hp: dict[str, Any]) -> dict[str, Any]:
    """The validated hyperparameters of ``kind``, numbers as floats."""
    out = dict(hp)
    for flag in _FLAGS:
        if flag in out and not isinstance(out[flag], bool):
            raise TypeError(f"{flag} must be a bool, got {out[flag]!r}")
    out["weight_decay"] = _check_number("weight_decay", hp["weight_decay"])
    if kind == "sgd":
        out["momentum"] = _check_number("momentum", hp["momentum"])
        out["dampening"] = _check_number("dampening", hp["dampening"])
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        return out
    out["eps"] = _check_number("eps", hp["eps"], label="epsilon")
    betas = hp["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats, got {betas!r}")
    for i, beta in enumerate(betas):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError(f"betas[{i}] must be a real number, got {beta!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
    out["betas"] = (float(betas[0]), float(betas[1]))
    return out


class StackedOptimizer:
    """SGD, Adam or AdamW over stacked parameters (leading dim K = runs), numerically equal to torch.optim on each run.

    ``params`` maps names to stacked tensors of shape ``(K, ...)``, updated in place (they need not
    require grad: ``step`` takes the gradients). ``kind`` is one of ``KINDS``; the keyword
    arguments are torch.optim's, with its defaults:

    * ``"sgd"``: ``momentum=0``, ``dampening=0``, ``nesterov=False``, ``weight_decay=0``,
      ``maximize=False``;
    * ``"adam"``: ``betas=(0.9, 0.999)``, ``eps=1e-8``, ``weight_decay=0`` (added to the gradient),
      ``amsgrad=False``, ``maximize=False``;
    * ``"adamw"``: as ``"adam"`` but ``weight_decay=1e-2``, decoupled (the parameters shrink by
      ``lr * weight_decay``).

    The LR is not a hyperparameter here: ``step`` takes one per run. State is allocated on the first
    ``step``, K times torch.optim's per run: ``state[name]`` holds ``"momentum_buffer"`` (SGD with
    momentum) or ``"exp_avg"``, ``"exp_avg_sq"`` and ``"max_exp_avg_sq"`` (amsgrad), and ``steps``,
    shape ``(K,)``, counts the steps each run has taken.
    """

    KINDS = tuple(_DEFAULTS)

    def __init__(self, params: dict[str, torch.Tensor], kind: str, **kwargs: Any) -> None:
        if kind not in _DEFAULTS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        defaults = _DEFAULTS[kind]
        for key in kwargs:
            if key not in defaults:
                hint = " (the LR is per run and per step: pass it to step())" if key == "lr" else ""
                raise TypeError(f"StackedOptimizer({kind!r}) got an unexpected keyword argument {key!r}{hint}")
        self.kind = kind
        self.hyperparams = _check_hyperparams(kind, {**defaults, **kwargs})

        if not isinstance(params, dict) or not params:
            raise ValueError("params must be a non-empty dict of name -> stacked tensor")
        for name, p in params.items():
            if not isinstance(p, torch.Tensor) or not p.is_floating_point() or p.dim() == 0:
                raise ValueError(f"params[{name!r}] must be a real floating-point tensor with a leading run dimension")
        first = next(iter(params.values()))
        self.num_runs = first.shape[0]
        self.device = first.device
        for name, p in params.items():
            if p.shape[0] != self.num_runs:
                raise ValueError(
                    f"params[{name!r}] has shape {tuple(p.shape)}, expected a leading dimension {self.num_runs}"
                )
            if p.device != self.device:
                raise ValueError(f"params[{name!r}] is on {p.device}, the others on {self.device}")
        self.params = dict(params)
        self.state: dict[str, dict[str, torch.Tensor]] = {}
        self.steps: torch.Tensor | None = None

    def step(self, grads: dict[str, torch.Tensor], lr: torch.Tensor, active: torch.Tensor) -> None:
        """One update: run k moves with ``lr[k]`` when ``active[k]``, else stays exactly as it is.

        ``grads`` maps every parameter name to its stacked gradient (same shape as the parameter);
        ``lr`` is a float tensor of shape ``(K,)`` and ``active`` a bool tensor of shape ``(K,)``,
        both on the parameters' device.
        """
        if grads.keys() != self.params.keys():
            raise ValueError(f"grads must have the keys of params: {sorted(self.params)}, got {sorted(grads)}")
        for name, p in self.params.items():
            if grads[name].shape != p.shape:
                raise ValueError(f"grads[{name!r}] has shape {tuple(grads[name].shape)}, expected {tuple(p.shape)}")
        k = self.num_runs
        if lr.shape != (k,) or not lr.is_floating_point() or lr.device != self.device:
            raise ValueError(
                f"lr must be a float tensor of shape ({k},) on {self.device}, got {lr.dtype} {tuple(lr.shape)}"
            )
        if active.shape != (k,) or active.dtype != torch.bool or active.device != self.device:
            raise ValueError(f"active must be a bool tensor of shape ({k},) on {self.device}")

        with torch.no_grad():
            steps = self._init_state() if self.steps is None else self.steps
            # torch.optim takes the LR and its bias corrections as Python floats (doubles) and rounds
            # them to the parameter dtype only in the kernel: do the same where the device has float64.
            wide = torch.float32 if self.device.type == "mps" else torch.float64
            if self.kind == "sgd":
                self._sgd(grads, lr.to(wide), active, steps)
            else:
                self._adam(grads, lr.to(wide), active, steps, wide)
            steps.add_(active.to(steps.dtype))

    def _init_state(self) -> torch.Tensor:
        """Zeroed state, as torch.optim allocates it on the first step; returns the step counts."""
        names: tuple[str, ...]
        if self.kind == "sgd":
            names = ("momentum_buffer",) if self.hyperparams["momentum"] != 0 else ()
        else:
            names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.hyperparams["amsgrad"] else ())
        for name, p in self.params.items():
            self.state[name] = {s: torch.zeros_like(p, memory_format=torch.preserve_format) for s in names}
        # float32 step counts, like torch.optim's: exact up to 2**24 steps
        steps = torch.zeros(self.num_runs, dtype=torch.float32, device=self.device)
        self.steps = steps
        return steps

    @staticmethod
    def _per_run(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values`` (K,) shaped to broadcast over the stacked tensor ``like``, in its dtype."""
        return values.to(like.dtype).view((-1,) + (1,) * (like.dim() - 1))

    def _sgd(self, grads: dict[str, torch.Tensor], lr: torch.Tensor, active: torch.Tensor, steps: torch.Tensor) -> None:
        """torch.optim.sgd's ``_single_tensor_sgd``, per run."""
        hp = self.hyperparams
        momentum, dampening, wd = hp["momentum"], hp["dampening"], hp["weight_decay"]
        first = steps == 0
        for name, p in self.params.items():
            act = active.view((-1,) + (1,) * (p.dim() - 1))
            grad = -grads[name] if hp["maximize"] else grads[name]
            if wd != 0:
                grad = grad.add(p, alpha=wd)
            if momentum != 0:
                buf = self.state[name]["momentum_buffer"]
                # a run's first step takes the gradient as is, without dampening, as torch does
                new_buf = torch.where(first.view_as(act), grad, buf.mul(momentum).add_(grad, alpha=1 - dampening))
                grad = grad.add(new_buf, alpha=momentum) if hp["nesterov"] else new_buf
                buf.copy_(torch.where(act, new_buf, buf))
            # addcmul rounds like torch's param.add_(grad, alpha=-lr): once, where p - lr * grad rounds twice
            p.copy_(torch.where(act, torch.addcmul(p, grad, self._per_run(-lr, p)), p))

    def _adam(
        self,
        grads: dict[str, torch.Tensor],
        lr: torch.Tensor,
        active: torch.Tensor,
        steps: torch.Tensor,
        wide: torch.dtype,
    ) -> None:
        """torch.optim.adam's ``_single_tensor_adam`` (non-capturable path), per run; AdamW decouples the decay."""
        hp = self.hyperparams
        (beta1, beta2), eps, wd = hp["betas"], hp["eps"], hp["weight_decay"]
        decoupled = self.kind == "adamw"
        step = (steps + active.to(steps.dtype)).to(wide)
        # computed for inactive runs too (possibly 1/0 at step 0): torch.where discards them below
        step_size_neg = -(lr / (1 - beta1**step))
        bias_correction2_sqrt = (1 - beta2**step).sqrt()
        decay = 1 - lr * wd
        for name, p in self.params.items():
            act = active.view((-1,) + (1,) * (p.dim() - 1))
            state = self.state[name]
            grad = -grads[name] if hp["maximize"] else grads[name]
            decayed = p
            if wd != 0:
                if decoupled:
                    decayed = p * self._per_run(decay, p)
                else:
                    grad = grad.add(p, alpha=wd)
            exp_avg = state["exp_avg"].lerp(grad, 1 - beta1)
            exp_avg_sq = state["exp_avg_sq"].mul(beta2).addcmul_(grad, grad, value=1 - beta2)
            second = exp_avg_sq
            if hp["amsgrad"]:
                second = torch.maximum(state["max_exp_avg_sq"], exp_avg_sq)
                state["max_exp_avg_sq"].copy_(torch.where(act, second, state["max_exp_avg_sq"]))
            denom = (second.sqrt() / self._per_run(bias_correction2_sqrt, p)).add_(eps)
            # addcdiv's order: param + (step_size * exp_avg) / denom
            new_p = decayed + self._per_run(step_size_neg, p) * exp_avg / denom
            state["exp_avg"].copy_(torch.where(act, exp_avg, state["exp_avg"]))
            state["exp_avg_sq"].copy_(torch.where(act, exp_avg_sq, state["exp_avg_sq"]))
            p.copy_(torch.where(act, new_p, p))
