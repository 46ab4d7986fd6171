"""``StackedOptimizer`` against torch.optim: K real MLPs trained on scikit-learn's digits, stacked with
``torch.func.stack_module_state``, each run also trained by its own torch.optim optimizer
(``foreach=False``) with its own LR, changed every step.

Every step takes fresh gradients computed from each run's own current parameters, by one function
(``torch.func.grad`` of the functional loss) on both sides, so that any difference comes from the
optimizers alone. Runs marked inactive get NaN gradients, as a diverged run would, and must keep their
parameters and state bitwise while the others go on matching torch.optim.
"""

import copy
from functools import cache

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.func import functional_call, grad, stack_module_state

from lrfind.torch._stacked_optim import StackedOptimizer

K = 4
STEPS = 6
BATCH = 64
RTOL, ATOL = 1e-6, 1e-7
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}

CONFIGS = [
    ("sgd", {}),
    ("sgd", {"weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.9, "nesterov": True}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    ("sgd", {"momentum": 0.9, "dampening": 0.3}),
    ("sgd", {"momentum": 0.5, "dampening": 0.3, "weight_decay": 1e-2, "maximize": True}),
    ("adam", {}),
    ("adam", {"weight_decay": 1e-2}),
    ("adam", {"amsgrad": True}),
    ("adam", {"amsgrad": True, "weight_decay": 1e-2}),
    ("adam", {"betas": (0.8, 0.99), "eps": 1e-6, "maximize": True}),
    ("adamw", {"weight_decay": 0.0}),
    ("adamw", {}),
    ("adamw", {"weight_decay": 0.1, "amsgrad": True}),
]
CONFIG_IDS = [f"{kind}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for kind, kw in CONFIGS]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@cache
def digits():
    """(standardised float32 features, int64 labels) of scikit-learn's digits; never modified."""
    x, y = load_digits(return_X_y=True)
    return torch.tensor(StandardScaler().fit_transform(x), dtype=torch.float32), torch.tensor(y)


def batch(step, device):
    """The step-th mini-batch of digits: every step sees different data."""
    x, y = digits()
    rows = slice(step * BATCH, (step + 1) * BATCH)
    return x[rows].to(device), y[rows].to(device)


def mlp(seed):
    """A 64-16-10 MLP, seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


# the architecture for functional_call; its own (meta) tensors are never read
SHAPE = mlp(0).to("meta")
run_grad = grad(lambda params, x, y: F.cross_entropy(functional_call(SHAPE, params, (x,)), y))


def float32_lrs(values):
    """LRs as float32 rounds them, so that torch.optim's Python floats and the (K,) tensor agree exactly."""
    return torch.tensor(values, dtype=torch.float32).tolist()


class Pair:
    """K runs trained twice: stacked with ``StackedOptimizer`` and one by one with torch.optim."""

    def __init__(self, kind, kwargs, device="cpu", detach=True):
        models = [mlp(seed).to(device) for seed in range(K)]
        self.refs = [copy.deepcopy(m) for m in models]
        # torch.optim's constructor insists on an LR; each step sets the run's own
        self.optims = [TORCH_OPTIMIZERS[kind](m.parameters(), lr=1.0, foreach=False, **kwargs) for m in self.refs]
        params, _ = stack_module_state(models)
        self.params = {n: p.detach() for n, p in params.items()} if detach else params
        self.stacked = StackedOptimizer(self.params, kind, **kwargs)
        self.device = device

    def step(self, t, lrs, active):
        """Step ``t`` with per-run ``lrs`` (floats) and ``active`` (bools); returns the stacked state before."""
        x, y = batch(t, self.device)
        act = torch.tensor(active, device=self.device)
        grads = {n: [] for n in self.params}
        for k in range(K):
            for n, g in run_grad({n: p[k] for n, p in self.params.items()}, x, y).items():
                grads[n].append(g)
        nan = torch.tensor(float("nan"), device=self.device)
        stacked_grads = {
            n: torch.where(act.view((-1,) + (1,) * (gs[0].dim())), torch.stack(gs), nan) for n, gs in grads.items()
        }
        before = self.snapshot()
        self.stacked.step(stacked_grads, torch.tensor(lrs, dtype=torch.float32, device=self.device), act)
        for k, (model, opt) in enumerate(zip(self.refs, self.optims, strict=True)):
            if not active[k]:
                continue
            gs = run_grad({n: p.detach() for n, p in model.named_parameters()}, x, y)
            for n, p in model.named_parameters():
                p.grad = gs[n]
            opt.param_groups[0]["lr"] = lrs[k]
            opt.step()
        return before

    def snapshot(self):
        """Copies of the stacked parameters, state and step counts."""
        state = {n: {s: v.clone() for s, v in st_.items()} for n, st_ in self.stacked.state.items()}
        steps = None if self.stacked.steps is None else self.stacked.steps.clone()
        return {n: p.detach().clone() for n, p in self.params.items()}, state, steps

    def check(self, before, active):
        """Active runs match torch.optim (parameters and state); inactive ones are bitwise as ``before``."""
        params, state, steps = before
        for k in range(K):
            if not active[k]:
                for n, p in self.params.items():
                    assert torch.equal(p[k], params[n][k]), (k, n)
                    for s, v in self.stacked.state[n].items():
                        if n in state:
                            assert torch.equal(v[k], state[n][s][k]), (k, n, s)
                        else:  # frozen before the state existed: still torch's zero start
                            assert not v[k].any(), (k, n, s)
                assert self.stacked.steps[k] == (0 if steps is None else steps[k])
            ref = self.refs[k]
            opt = self.optims[k]
            for n, p in ref.named_parameters():
                torch.testing.assert_close(self.params[n][k], p.detach(), rtol=RTOL, atol=ATOL)
                for s, v in opt.state.get(p, {}).items():
                    if s == "step":
                        assert self.stacked.steps[k].item() == v.item()
                    elif v is not None:
                        torch.testing.assert_close(self.stacked.state[n][s][k], v, rtol=RTOL, atol=ATOL)


def train(kind, kwargs, lrs, active, device="cpu", detach=True):
    """Run both sides through the LR and activity schedules, checking after every step."""
    pair = Pair(kind, kwargs, device, detach)
    for t, (lr_t, act_t) in enumerate(zip(lrs, active, strict=True)):
        before = pair.step(t, lr_t, act_t)
        pair.check(before, act_t)
    return pair


def lr_schedule(kind, seed):
    """Per-run, per-step LRs spread over two decades, different for every run and step."""
    gen = torch.Generator().manual_seed(seed)
    high = 0.5 if kind == "sgd" else 0.05
    return [float32_lrs((high * 10 ** (-2 * torch.rand(K, generator=gen))).tolist()) for _ in range(STEPS)]


# --- equality with torch.optim -------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("kind", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_matches_torch_optim_per_run(kind, kwargs, device):
    pair = train(kind, kwargs, lr_schedule(kind, 0), [[True] * K] * STEPS, device)
    # the runs really trained, each its own way
    for n, p in pair.params.items():
        assert not torch.equal(p, stack_module_state([mlp(s) for s in range(K)])[0][n].to(device))


@pytest.mark.parametrize(("kind", "kwargs"), CONFIGS, ids=CONFIG_IDS)
def test_frozen_run_keeps_params_and_state_bitwise(kind, kwargs):
    # run 1 diverges at step 3: NaN gradients from then on, which must not reach it or the others
    active = [[True] * K] * 3 + [[True, False, True, True]] * (STEPS - 3)
    pair = train(kind, kwargs, lr_schedule(kind, 1), active)
    frozen_at = pair.snapshot()
    assert pair.stacked.steps.tolist() == [STEPS, 3, STEPS, STEPS]
    pair.step(STEPS, float32_lrs([1e-2] * K), [True, False, True, True])
    pair.check(frozen_at, [True, False, True, True])


@pytest.mark.parametrize(("kind", "kwargs"), [CONFIGS[4], CONFIGS[11], CONFIGS[15]], ids=["sgd", "adam", "adamw"])
def test_run_that_starts_late_begins_like_a_fresh_optimizer(kind, kwargs):
    # run 2 sits out the first two steps (while the state is allocated): its first step must be
    # torch's first step (SGD's buffer = gradient, Adam's step count 1)
    active = [[True, True, False, True]] * 2 + [[True] * K] * (STEPS - 2)
    pair = train(kind, kwargs, lr_schedule(kind, 2), active)
    assert pair.stacked.steps.tolist() == [STEPS, STEPS, STEPS - 2, STEPS]


def test_all_runs_inactive_changes_nothing():
    pair = Pair("adam", {"amsgrad": True})
    before = pair.step(0, float32_lrs([1e-3] * K), [False] * K)
    pair.check(before, [False] * K)
    assert pair.stacked.steps.tolist() == [0] * K


def test_params_that_require_grad_are_updated_in_place():
    pair = Pair("sgd", {"momentum": 0.9}, detach=False)
    originals = {n: (p, p.data_ptr()) for n, p in pair.params.items()}
    for t in range(3):
        pair.check(pair.step(t, float32_lrs([0.1, 0.2, 0.05, 0.3]), [True] * K), [True] * K)
    for n, (p, ptr) in originals.items():
        assert pair.stacked.params[n] is p and p.data_ptr() == ptr and p.requires_grad


@settings(max_examples=15)
@given(
    config=st.sampled_from(CONFIGS),
    lrs=st.lists(
        st.lists(st.floats(1e-4, 0.3), min_size=K, max_size=K).map(float32_lrs), min_size=STEPS, max_size=STEPS
    ),
    active=st.lists(st.lists(st.booleans(), min_size=K, max_size=K), min_size=STEPS, max_size=STEPS),
)
def test_random_lrs_and_activity_match_torch_optim(config, lrs, active):
    kind, kwargs = config
    pair = train(kind, kwargs, lrs, active)
    assert pair.stacked.steps.tolist() == [sum(a[k] for a in active) for k in range(K)]


def test_step_never_reads_a_tensor_value_on_the_host(monkeypatch):
    """No ``.item()``, ``bool(tensor)`` or ``float(tensor)``: on a GPU each would wait for the device."""
    pair = Pair("adamw", {"amsgrad": True})
    grads = {n: torch.ones_like(p) for n, p in pair.params.items()}
    lr, active = torch.full((K,), 1e-3), torch.tensor([True, False, True, True])

    def host_read(*args):
        raise AssertionError("host read of a tensor value")

    for method in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, method, host_read)
    for _ in range(2):
        pair.stacked.step(grads, lr, active)


@CUDA
def test_cuda_step_does_not_sync():
    pair = Pair("adam", {"amsgrad": True, "weight_decay": 1e-2}, device="cuda")
    grads = {n: torch.ones_like(p) for n, p in pair.params.items()}
    lr, active = torch.full((K,), 1e-3, device="cuda"), torch.tensor([True, False, True, True], device="cuda")
    pair.stacked.step(grads, lr, active)  # the first step allocates the state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            pair.stacked.step(grads, lr, active)
    finally:
        torch.cuda.set_sync_debug_mode("default")


# --- bad arguments ----------------------------------------------------------------------------------------


def params():
    return {n: p.detach() for n, p in stack_module_state([mlp(s) for s in range(K)])[0].items()}


@pytest.mark.parametrize(
    ("kind", "kwargs", "error", "message"),
    [
        ("rmsprop", {}, ValueError, r"kind must be one of \('sgd', 'adam', 'adamw'\), got 'rmsprop'"),
        ("sgd", {"lr": 0.1}, TypeError, r"unexpected keyword argument 'lr' \(the LR is per run"),
        (
            "sgd",
            {"betas": (0.9, 0.99)},
            TypeError,
            r"StackedOptimizer\('sgd'\) got an unexpected keyword argument 'betas'$",
        ),
        ("adam", {"momentum": 0.9}, TypeError, r"unexpected keyword argument 'momentum'"),
        ("sgd", {"momentum": -0.1}, ValueError, r"Invalid momentum value: -0.1"),
        ("sgd", {"momentum": float("nan")}, ValueError, r"Invalid momentum value: nan"),
        ("sgd", {"momentum": 0.9, "dampening": -1}, ValueError, r"Invalid dampening value: -1"),
        ("sgd", {"weight_decay": -1e-4}, ValueError, r"Invalid weight_decay value: -0.0001"),
        ("sgd", {"nesterov": True}, ValueError, r"Nesterov momentum requires a momentum and zero dampening"),
        (
            "sgd",
            {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
            ValueError,
            r"Nesterov momentum requires a momentum and zero dampening",
        ),
        ("sgd", {"nesterov": 1}, TypeError, r"nesterov must be a bool, got 1"),
        ("sgd", {"momentum": "0.9"}, TypeError, r"momentum must be a real number, got '0.9'"),
        ("adam", {"eps": -1e-8}, ValueError, r"Invalid epsilon value: -1e-08"),
        ("adam", {"betas": (1.0, 0.999)}, ValueError, r"Invalid beta parameter at index 0: 1.0"),
        ("adamw", {"betas": (0.9, -0.5)}, ValueError, r"Invalid beta parameter at index 1: -0.5"),
        ("adamw", {"betas": 0.9}, TypeError, r"betas must be a pair of floats, got 0.9"),
        ("adamw", {"weight_decay": -0.01}, ValueError, r"Invalid weight_decay value: -0.01"),
        ("adamw", {"amsgrad": "yes"}, TypeError, r"amsgrad must be a bool, got 'yes'"),
    ],
)
def test_bad_hyperparameters_name_the_parameter_and_value(kind, kwargs, error, message):
    with pytest.raises(error, match=message):
        StackedOptimizer(params(), kind, **kwargs)


def test_bad_params_and_step_arguments():
    with pytest.raises(ValueError, match="non-empty dict"):
        StackedOptimizer({}, "sgd")
    ps = params()
    with pytest.raises(ValueError, match=r"params\['odd'\] has shape \(3, 2\), expected a leading dimension 4"):
        StackedOptimizer({**ps, "odd": torch.zeros(3, 2)}, "sgd")
    with pytest.raises(ValueError, match=r"params\['ints'\] must be a real floating-point tensor"):
        StackedOptimizer({**ps, "ints": torch.zeros(K, 2, dtype=torch.int64)}, "sgd")

    opt = StackedOptimizer(ps, "adam")
    grads = {n: torch.zeros_like(p) for n, p in ps.items()}
    lr, active = torch.full((K,), 1e-3), torch.ones(K, dtype=torch.bool)
    with pytest.raises(ValueError, match="grads must have the keys of params"):
        opt.step({n: g for n, g in grads.items() if n != "0.bias"}, lr, active)
    with pytest.raises(ValueError, match=r"grads\['0.bias'\] has shape \(4,\), expected \(4, 16\)"):
        opt.step({**grads, "0.bias": torch.zeros(K)}, lr, active)
    with pytest.raises(ValueError, match=r"lr must be a float tensor of shape \(4,\)"):
        opt.step(grads, torch.full((K + 1,), 1e-3), active)
    with pytest.raises(ValueError, match=r"active must be a bool tensor of shape \(4,\)"):
        opt.step(grads, lr, torch.ones(K))
    assert opt.steps is None  # nothing was allocated by the refused steps
