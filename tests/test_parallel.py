"""Parallel range tests: K vmapped sweeps against K single range tests on real data."""

import copy
import json
import random

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrfind
from lrfind.torch import parallel_range_test, range_test

STEPS = 40


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def digits(batch_size=64, seed=0):
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    data = TensorDataset(x, torch.tensor(y))
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def single(model, lo, hi, data, optimizer=torch.optim.AdamW, **kwargs):
    """One ordinary range test of a copy of ``model``, for comparison."""
    import copy

    m = copy.deepcopy(model)
    return range_test(
        m, optimizer(m.parameters(), lr=1.0, **kwargs), nn.functional.cross_entropy, data,
        min_lr=lo, max_lr=hi, num_steps=STEPS, progress=False,
    )  # fmt: skip


def test_copy_runs_equal_single_range_tests_per_run_ranges():
    """init="copy", shared data: run k is the single range test over run k's LR range."""
    model = mlp()
    ranges = [(1e-5, 1.0), (1e-4, 10.0), (1e-6, 0.1)]
    batch = next(iter(digits()))
    batch = (batch[0], batch[1])  # one fixed batch: both paths see identical data
    par = parallel_range_test(
        model, nn.functional.cross_entropy, batch, num_runs=3, init="copy",
        min_lr=[r[0] for r in ranges], max_lr=[r[1] for r in ranges], num_steps=STEPS, progress=False,
    )  # fmt: skip
    for run, (lo, hi) in zip(par.runs, ranges, strict=True):
        ref = single(model, lo, hi, batch)
        np.testing.assert_array_equal(run.lrs, ref.lrs)
        assert run.stop_index == ref.stop_index
        np.testing.assert_allclose(run.losses, ref.losses, rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(run.grad_norms, ref.grad_norms, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("optimizer, kwargs", [("sgd", dict(momentum=0.9)), ("adam", dict(weight_decay=1e-4))])
def test_other_optimizers_match_torch_optim(optimizer, kwargs):
    model = mlp()
    batch = tuple(next(iter(digits())))
    par = parallel_range_test(
        model, nn.functional.cross_entropy, batch, num_runs=2, init="copy", optimizer=optimizer,
        optimizer_kwargs=kwargs, min_lr=1e-4, max_lr=1.0, num_steps=STEPS, progress=False,
    )  # fmt: skip
    torch_opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    ref = single(model, 1e-4, 1.0, batch, torch_opt, **kwargs)
    for run in par.runs:
        np.testing.assert_allclose(run.losses, ref.losses, rtol=2e-4, atol=1e-5)


def test_frozen_parameters_stay_frozen_as_torch_optim_leaves_them():
    """A frozen first layer (fine-tuning a head): the runs equal torch.optim's range test, which
    never updates a parameter with requires_grad=False, and differ from training everything."""
    model = mlp()
    model[0].requires_grad_(False)
    batch = tuple(next(iter(digits())))
    par = parallel_range_test(
        model, nn.functional.cross_entropy, batch, num_runs=2, init="copy", min_lr=1e-4, max_lr=1.0,
        num_steps=STEPS, progress=False,
    )  # fmt: skip
    ref = single(model, 1e-4, 1.0, batch)
    unfrozen = single(mlp(), 1e-4, 1.0, batch)
    for run in par.runs:
        np.testing.assert_allclose(run.losses, ref.losses, rtol=2e-4, atol=1e-5)
        assert not np.allclose(run.losses[: len(unfrozen.losses)], unfrozen.losses[: len(run.losses)], rtol=1e-3)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="model has no trainable parameter"):
        parallel_range_test(model, nn.functional.cross_entropy, batch, num_runs=2, progress=False)


def test_lr_ends_may_be_numpy_or_tensor_scalars_as_in_range_test():
    batch = tuple(next(iter(digits())))
    par = parallel_range_test(
        mlp(), nn.functional.cross_entropy, batch, num_runs=2, min_lr=np.float32(1e-4), max_lr=torch.tensor(1.0),
        num_steps=STEPS, progress=False,
    )  # fmt: skip
    expected = np.geomspace(float(np.float32(1e-4)), 1.0, STEPS)
    for run in par.runs:
        np.testing.assert_allclose(run.lrs, expected[: len(run.lrs)], rtol=1e-12)


def test_diverged_runs_are_frozen_and_cut_at_their_own_stop():
    model = mlp()
    batch = tuple(next(iter(digits())))
    par = parallel_range_test(
        model, nn.functional.cross_entropy, batch, num_runs=2, init="copy", optimizer="sgd",
        min_lr=[1e-3, 1e-3], max_lr=[1e4, 1.0], num_steps=STEPS, check_every=7, progress=False,
    )  # fmt: skip
    fast, slow = par.runs
    assert fast.stop_index >= 0 and len(fast.lrs) < len(slow.lrs)
    ref = single(model, 1e-3, 1.0, batch, torch.optim.SGD)
    np.testing.assert_allclose(slow.losses, ref.losses, rtol=2e-4, atol=1e-5)
    assert slow.stop_index == ref.stop_index


def test_reinit_seeds_and_chunks():
    model = mlp()
    data = digits()
    kw = dict(num_runs=4, min_lr=1e-5, max_lr=10.0, num_steps=STEPS, progress=False)
    a = parallel_range_test(model, nn.functional.cross_entropy, data, seeds=[3, 4, 5, 6], **kw)
    b = parallel_range_test(model, nn.functional.cross_entropy, data, seeds=[3, 4, 5, 6], chunk_size=2, **kw)
    assert a.seeds == [3, 4, 5, 6]
    for ra, rb in zip(a.runs, b.runs, strict=True):
        np.testing.assert_allclose(ra.losses, rb.losses, rtol=1e-5)
    assert not np.allclose(a.runs[0].losses[:5], a.runs[1].losses[:5]), "reinit gives each run its own weights"


def test_shuffled_order_is_each_runs_own_loader():
    model = mlp()
    data = digits()
    par = parallel_range_test(
        model, nn.functional.cross_entropy, data, num_runs=2, init="copy", data_order="shuffled",
        seeds=[7, 8], min_lr=1e-5, max_lr=1.0, num_steps=STEPS, progress=False,
    )  # fmt: skip
    own = DataLoader(
        data.dataset, batch_size=64, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(7)
    )
    ref = single(model, 1e-5, 1.0, own)
    np.testing.assert_allclose(par.runs[0].losses, ref.losses, rtol=2e-4, atol=1e-5)
    assert not np.allclose(par.runs[0].losses, par.runs[1].losses)


def test_user_model_and_rng_untouched():
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    parallel_range_test(model, nn.functional.cross_entropy, digits(), num_runs=2, num_steps=10, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.equal(rng, torch.get_rng_state())


class Noisy(nn.Module):
    """The digits MLP with one random op between its layers: ``"dropout"`` (what dropout runs on the
    CPU: bernoulli), ``"native_dropout"`` (what it runs on CUDA, called here on the CPU), ``"noise"``
    (randn_like), ``"randperm"`` (which vmap draws run by run: no way to split it per run)."""

    def __init__(self, kind, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.kind, self.a, self.b = kind, nn.Linear(64, 32), nn.Linear(32, 10)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if self.kind == "dropout":
            h = nn.functional.dropout(h, 0.5, self.training)
        elif self.kind == "native_dropout":
            h = torch.native_dropout(h, 0.5, self.training)[0]
        elif self.kind == "noise":
            h = h + 0.5 * torch.randn_like(h)
        elif self.kind == "randperm":
            h = h[:, torch.randperm(32)]
        return self.b(h)


def rng_states():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def assert_same_rng(before, after):
    assert torch.equal(before[0], after[0])
    for a, b in zip(before[1], after[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert before[2] == after[2]


def noisy_test(model, data, **kwargs):
    return parallel_range_test(
        model, nn.functional.cross_entropy, data, init="copy", min_lr=1e-4, max_lr=0.1, num_steps=20,
        progress=False, **kwargs,
    )  # fmt: skip


def test_dropout_runs_differ_with_one_run_per_chunk():
    """The issue's case: every chunk restores the RNG, so one-run chunks all drew the same masks."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.Dropout(0.5), nn.Linear(32, 10))
    par = noisy_test(model, digits(), num_runs=4, chunk_size=1)
    curves = [run.losses for run in par.runs]
    assert all(not np.allclose(a, b) for i, a in enumerate(curves) for b in curves[i + 1 :])


@pytest.mark.parametrize("kind", ["dropout", "native_dropout", "noise"])
def test_random_ops_follow_the_runs_seed_whatever_the_chunks(kind):
    """A run's masks come from its seed only: the same whatever num_runs and chunk_size (only the
    batched matmuls may differ in their last bits between chunk sizes)."""
    data = digits()
    before = rng_states()
    sweeps = [noisy_test(Noisy(kind), data, num_runs=4, chunk_size=c) for c in (1, 2, 4)]
    sweeps.append(noisy_test(Noisy(kind), data, num_runs=2, seeds=[2, 3]))
    assert_same_rng(before, rng_states())
    by_seed = {seed: [] for seed in range(4)}
    for sweep in sweeps:
        for seed, run in zip(sweep.seeds, sweep.runs, strict=True):
            by_seed[seed].append(run.losses)
    for curves in by_seed.values():
        assert all(len(c) == 20 for c in curves)
        for c in curves[1:]:
            np.testing.assert_allclose(c, curves[0], rtol=1e-5)
    for a, b in [(0, 1), (1, 2), (2, 3)]:
        assert np.max(np.abs(by_seed[a][0] - by_seed[b][0])) > 1e-3, "other seeds, other masks"


def test_rng_comes_back_after_an_error_mid_sweep():
    calls = []

    def failing_loss(outputs, targets):
        calls.append(None)
        if len(calls) == 5:
            raise RuntimeError("at step 5")
        return nn.functional.cross_entropy(outputs, targets)

    before = rng_states()
    with pytest.raises(RuntimeError, match="at step 5"):
        parallel_range_test(Noisy("dropout"), failing_loss, digits(), num_runs=2, num_steps=20, progress=False)
    assert_same_rng(before, rng_states())


def test_random_op_it_cannot_split_gets_a_clear_error():
    before = rng_states()
    with pytest.raises(RuntimeError, match=r"cannot give each run its own random numbers for aten\.randperm"):
        noisy_test(Noisy("randperm"), digits(), num_runs=2)
    assert_same_rng(before, rng_states())


def test_eval_mode_dropout_draws_nothing():
    """No random op, no change: a model in eval mode gives the curves of the same model without
    dropout, bit for bit, and every copied run the same one."""
    evaluated, plain = (noisy_test(m, digits(), num_runs=3) for m in (Noisy("dropout").eval(), Noisy("none")))
    for a, b in zip(evaluated.runs, plain.runs, strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)
        np.testing.assert_array_equal(a.losses, plain.runs[0].losses)


def test_batchnorm_gets_a_clear_error():
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
    with pytest.raises(ValueError, match="replace_all_batch_norm_modules_"):
        parallel_range_test(model, nn.functional.cross_entropy, digits(), num_runs=2, num_steps=10, progress=False)
    torch.func.replace_all_batch_norm_modules_(model)
    par = parallel_range_test(model, nn.functional.cross_entropy, digits(), num_runs=2, num_steps=10, progress=False)
    assert len(par.runs) == 2


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(num_runs=0), ValueError, "num_runs must be an int >= 1, got 0"),
        (dict(init="zeros"), ValueError, 'init must be "reinit" or "copy", got \'zeros\''),
        (dict(data_order="random"), ValueError, "data_order must be"),
        (dict(seeds=[1, 2, 3]), ValueError, "seeds must hold num_runs=2 values, got 3"),
        (dict(seeds=[1.5, 2.7]), ValueError, r"seeds must be whole numbers in \[0, 2\*\*64\), got 1.5"),
        (dict(seeds=["a", "b"]), ValueError, "seeds must be whole numbers .*got 'a'"),
        (dict(seeds=[2**70, 1]), ValueError, "seeds must be whole numbers .*got 1180591620717411303424"),
        (dict(seeds=5), TypeError, "seeds must be a sequence of num_runs=2 ints, got 5"),
        (dict(min_lr="1e-5"), TypeError, "min_lr must be a number or num_runs=2 numbers, got '1e-5'"),
        (dict(max_lr=[1.0, "x"]), TypeError, "max_lr must be a number, got 'x'"),
        (dict(optimizer="lion"), ValueError, "lion"),
        (dict(optimizer_kwargs={"lr": 1.0}), ValueError, "optimizer_kwargs must not hold 'lr'"),
        (dict(min_lr=[1e-5, 1e-4, 1e-3]), ValueError, "min_lr must be one value or num_runs=2 values, got 3"),
        (dict(chunk_size=0), ValueError, "chunk_size must be an int >= 1, got 0"),
        (dict(distributed=True), ValueError, "distributed=True needs torch.distributed initialised"),
        (dict(distributed="no"), ValueError, "distributed must be None .*got 'no'"),
        (dict(dist_timeout=0), ValueError, "dist_timeout must be a finite number of seconds > 0, got 0"),
    ],
)
def test_bad_input(kwargs, error, message):
    with pytest.raises(error, match=message):
        parallel_range_test(mlp(), nn.functional.cross_entropy, digits(), **{"num_runs": 2, **kwargs})


def test_consensus_spread_agreement_and_files(tmp_path):
    par = parallel_range_test(mlp(), nn.functional.cross_entropy, digits(), num_runs=6, num_steps=60, progress=False)
    lrs = np.array([r.suggested_lr for r in par.runs if r.suggested_lr is not None])
    assert par.suggested_lr == pytest.approx(np.exp(np.median(np.log(lrs))), rel=1e-12)
    q25, q75 = np.percentile(np.log(lrs), [25, 75])
    assert par.spread == pytest.approx(np.exp(q75 - q25), rel=1e-12)
    assert par.agreeing == int(np.sum(np.abs(np.log(lrs / par.suggested_lr)) <= np.log(2)))
    assert "Consensus LR" in par.summary() and "of 6 runs" in par.diagnosis
    # auto is the default main method: the consensus confidence is the runs' median confidence
    # times the share of suggestions near the consensus.
    confidences = [r.suggestions["auto"].confidence for r in par.runs if r.suggested_lr is not None]
    want = np.median(confidences) * par.agreeing / len(lrs)
    assert par.confidence == pytest.approx(want, rel=1e-12) and f"confidence {want:.2f}" in par.summary()
    steepest = lrfind.ParallelResult(
        runs=[lrfind.RangeTestResult.from_sweep(r.lrs, r.losses, methods="steepest") for r in par.runs], seeds=par.seeds
    )
    assert steepest.confidence is None and "confidence" not in steepest.summary().splitlines()[0]
    par.save(tmp_path / "par.json")
    back = lrfind.ParallelResult.load(tmp_path / "par.json")
    assert back.suggested_lr == par.suggested_lr and back.seeds == par.seeds
    for a, b in zip(par.runs, back.runs, strict=True):
        np.testing.assert_array_equal(a.losses, b.losses)
    ax = par.plot(path=tmp_path / "par.png")
    assert (tmp_path / "par.png").read_bytes()[:4] == b"\x89PNG" and len(ax.lines) >= 7


def good_and_flat_runs():
    lrs = lrfind.sweep_lrs(1e-6, 1.0, 80)
    x = np.log10(lrs)
    good = lrfind.RangeTestResult.from_sweep(lrs, 2.3 - np.tanh(x + 3) + np.exp(4 * (x + 1.5)))
    flat = lrfind.RangeTestResult.from_sweep(lrs, 2.3 + 0.001 * np.sin(np.arange(80)))
    return good, flat


def test_a_run_without_an_lr_to_train_at_shows_none_in_the_summary():
    good, flat = good_and_flat_runs()
    assert flat.suggested_lr is not None and not flat.diagnosis.gives_lr
    lines = lrfind.ParallelResult(runs=[good, flat], seeds=[0, 1]).summary().splitlines()
    assert "suggested     none" in lines[-1] and f"suggested {good.suggested_lr:.2e}" in lines[-2]


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda d: d.update(seeds=[None, 1]), "key 'seeds' holds None, not a seed"),
        (lambda d: d.update(seeds=[1.5, 2]), "key 'seeds' holds 1.5"),
        (lambda d: d["runs"].__setitem__(0, 5), "run 0: expected a saved RangeTestResult"),
        (lambda d: d.update(version=1.0), "key 'version' is 1.0, expected 1"),
        (lambda d: d.update(version=True), "key 'version' is True"),
        (lambda d: d.update(refined={"lrs": [-1.0], "scores": [1.0], "steps": 5, "curve_lr": 1e-3}), "finite LRs > 0"),
        (lambda d: d.update(refined={"lrs": [1e-3], "scores": ["NaN"], "steps": 5, "curve_lr": 1e-3}), "not NaN"),
        (lambda d: d.update(refined={"lrs": [1e-3], "scores": [1.0], "steps": 5, "curve_lr": 10**400}), "curve_lr"),
        (lambda d: d.update(refined={"scores": [1.0], "steps": 5, "curve_lr": 1e-3}), r"\(in 'refined'\).*'lrs'"),
    ],
)
def test_a_corrupt_parallel_file_names_the_file_and_key(tmp_path, edit, words):
    good, flat = good_and_flat_runs()
    lrfind.ParallelResult(runs=[good, flat], seeds=[0, 1]).save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    edit(doc)
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"{tmp_path / 'p.json'}.*{words}"):
        lrfind.ParallelResult.load(tmp_path / "p.json")


def test_runs_and_seeds_pair_up():
    good, _ = good_and_flat_runs()
    with pytest.raises(ValueError, match="runs and seeds must pair up, got 2 runs and 1 seeds"):
        lrfind.ParallelResult(runs=[good, good], seeds=[0])


def test_the_parallel_picture_shows_a_narrow_band_and_the_consensus_skips_runs_without_an_lr(tmp_path):
    """The middle half of the runs' suggestions is drawn as a bar with end caps along the top,
    visible however narrow; a flat run (no LR to train at) takes no part in the consensus."""
    lrs = lrfind.sweep_lrs(1e-6, 1.0, 80)
    x = np.log10(lrs)
    runs = [
        lrfind.RangeTestResult.from_sweep(lrs, 2.3 - np.tanh(x + 3 + shift) + np.exp(4 * (x + 1.5)))
        for shift in (0.0, 0.01, 0.02, 0.03)
    ]
    runs.append(lrfind.RangeTestResult.from_sweep(lrs, 2.3 + 0.001 * np.sin(np.arange(80))))
    par = lrfind.ParallelResult(runs=runs, seeds=list(range(5)))
    assert not runs[-1].diagnosis.gives_lr and runs[-1].suggested_lr is not None
    assert np.isnan(par.suggestions[-1]) and par.suggested_lr == pytest.approx(
        np.exp(np.median(np.log([r.suggested_lr for r in runs[:-1]]))), rel=1e-12
    )
    ax = par.plot(path=tmp_path / "par.png")
    lo, hi = np.exp(np.percentile(np.log(par.suggestions[:-1]), [25, 75]))
    assert hi / lo < 1.1  # a narrow band, which a shaded span alone would hide under the consensus line
    (bar,) = ax.containers
    caps = sorted(float(np.ravel(cap.get_xdata())[0]) for cap in bar.lines[1])
    np.testing.assert_allclose(caps, [lo, hi], rtol=1e-12)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"consensus LR: {par.suggested_lr:.2e}" in labels
    assert f"middle half of the runs' suggestions: {lo:.2e} to {hi:.2e}" in labels
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), runs[0].trend)  # the runs' lag-free curves


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        x, y = next(iter(digits()))
        return iter(zip(x, y, strict=True))


def test_data_it_cannot_use_is_named():
    x, y = next(iter(digits()))
    kinds = [
        (DataLoader(TensorDataset(x, y), batch_sampler=[[0, 1], [2, 3]]), ValueError, "batch_sampler"),
        (DataLoader(Stream(), batch_size=8), ValueError, "IterableDataset"),
    ]
    for data, error, message in kinds:
        with pytest.raises(error, match=message):
            parallel_range_test(mlp(), nn.functional.cross_entropy, data, num_runs=2, data_order="shuffled")
    for data, shape in [([{"x": x, "y": y}], "dict"), ([(x, y, y)], "tuple of 3 items")]:
        with pytest.raises(TypeError, match=f"needs \\(inputs, targets\\) batches in data, got a {shape}"):
            parallel_range_test(mlp(), nn.functional.cross_entropy, data, num_runs=2, progress=False)


class TiedLM(nn.Module):
    """A language model whose output layer shares the embedding's weight, as most do."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.out = nn.Linear(8, 16, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, x):
        return self.out(torch.tanh(self.emb(x)))


def test_tied_weights_train_as_torch_optim_trains_them():
    """The runs of a model with tied weights equal torch.optim on one copy (the vmapped copy kept
    the output layer at a meta placeholder when the tie was lost)."""
    torch.manual_seed(0)
    x = torch.randint(0, 16, (64,))
    batch = (x, (x * 3 + 1) % 16)
    model = TiedLM()
    par = parallel_range_test(
        model, nn.functional.cross_entropy, batch, num_runs=2, init="copy", min_lr=1e-4, max_lr=1.0,
        num_steps=STEPS, progress=False,
    )  # fmt: skip
    ref = single(model, 1e-4, 1.0, batch)
    for run in par.runs:
        np.testing.assert_allclose(run.losses, ref.losses, rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(run.grad_norms, ref.grad_norms, rtol=2e-3, atol=1e-5)


def test_a_runs_data_does_not_depend_on_the_chunk_with_a_loader_on_the_global_rng():
    """A shuffling DataLoader without its own generator draws its order from the global RNG: the
    reinitialisation of a chunk's runs must not move it (it used to follow the chunk's last seed)."""
    x, y = load_digits(return_X_y=True)
    data = DataLoader(
        TensorDataset(torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)), batch_size=64, shuffle=True
    )
    kw = dict(num_runs=4, min_lr=1e-5, max_lr=1.0, num_steps=STEPS, progress=False)
    model = mlp()
    torch.manual_seed(11)
    whole = parallel_range_test(model, nn.functional.cross_entropy, data, **kw)
    torch.manual_seed(11)
    one_by_one = parallel_range_test(model, nn.functional.cross_entropy, data, chunk_size=1, **kw)
    for a, b in zip(whole.runs, one_by_one.runs, strict=True):
        np.testing.assert_allclose(a.losses, b.losses, rtol=1e-5)
    # The reference: run 2 alone, its weights reset under its seed, on the loader's first batches
    # as the global RNG shuffles them from the same state.
    ref_model = copy.deepcopy(model)
    torch.manual_seed(2)
    for m in ref_model.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    torch.manual_seed(11)
    ref = single(ref_model, 1e-5, 1.0, data)
    np.testing.assert_allclose(whole.runs[2].losses, ref.losses, rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize("wrap", ["weight_norm", "orthogonal"])  # vmap cannot run spectral_norm
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # torch's weight_norm under vmap
def test_reinit_reaches_weights_behind_a_parametrization(wrap):
    """reset_parameters() wrote into a parametrized layer's computed weight, which is thrown away:
    every run started from the same weights. Each run's weights are now those of the plain layer
    reset under its seed, assigned through the parametrization."""
    parametrization = getattr(nn.utils.parametrizations, wrap)

    def model(parametrized):
        torch.manual_seed(0)
        first = nn.Linear(64, 32)
        return nn.Sequential(parametrization(first) if parametrized else first, nn.ReLU(), nn.Linear(32, 10))

    batch = tuple(next(iter(digits())))
    kw = dict(num_runs=3, min_lr=1e-5, max_lr=1e-4, num_steps=3, progress=False)
    par = parallel_range_test(model(True), nn.functional.cross_entropy, batch, **kw)
    firsts = [run.losses[0] for run in par.runs]
    assert len(set(firsts)) == 3, f"each run its own weights: {firsts}"
    for seed, run in enumerate(par.runs):
        # The reference: the plain layers reset under the run's seed in the model's order, the
        # first one parametrized from its new weight (orthogonal draws to complete its basis).
        plain = model(False)
        torch.manual_seed(seed)
        plain[0].reset_parameters()
        parametrization(plain[0])
        plain[2].reset_parameters()
        with torch.no_grad():
            want = nn.functional.cross_entropy(plain(batch[0]), batch[1]).item()
        assert run.losses[0] == pytest.approx(want, rel=1e-5)


def test_reinit_reaches_a_parametrization_without_right_inverse():
    """torch's tutorial Symmetric parametrization has no right_inverse: the new weight goes into
    its original, as register_parametrization takes it (the assignment raised)."""

    class Symmetric(nn.Module):
        def forward(self, x):
            return x.triu() + x.triu(1).transpose(-1, -2)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    nn.utils.parametrize.register_parametrization(model[0], "weight", Symmetric())
    batch = tuple(next(iter(digits())))
    par = parallel_range_test(model, nn.functional.cross_entropy, batch, num_runs=3, num_steps=3, progress=False)
    assert len({run.losses[0] for run in par.runs}) == 3, "each run its own weights"


def test_reinit_of_chained_parametrizations_is_a_fresh_build():
    """Two parametrizations on one weight, the first with a right_inverse (2X and W/2), the
    second without: a reinitialised run starts where a model built under its seed starts."""
    from lrfind.torch._parallel import _copy

    class Double(nn.Module):
        def forward(self, x):
            return 2 * x

        def right_inverse(self, w):
            return w / 2

    class Same(nn.Module):
        def forward(self, x):
            return x + 0

    def build(seed):
        torch.manual_seed(seed)
        layer = nn.Linear(64, 64)
        nn.utils.parametrize.register_parametrization(layer, "weight", Double())
        nn.utils.parametrize.register_parametrization(layer, "weight", Same())
        return layer

    copy_7 = _copy(build(123), 7, "reinit")
    torch.testing.assert_close(copy_7.weight, build(7).weight, rtol=0, atol=0)

    def square(seed):  # orthogonal without trivialization: its right_inverse refuses, read as the identity
        torch.manual_seed(seed)
        return nn.utils.parametrizations.orthogonal(nn.Linear(8, 8), use_trivialization=False)

    torch.testing.assert_close(_copy(square(123), 7, "reinit").weight, square(7).weight, rtol=0, atol=0)


def test_refine_restores_the_val_loaders_generator():
    val = digits(seed=5)
    state = val.generator.get_state()
    parallel_range_test(
        mlp(), nn.functional.cross_entropy, tuple(next(iter(digits()))), num_runs=2, num_steps=20, refine=2,
        val_data=val, progress=False,
    )  # fmt: skip
    assert torch.equal(state, val.generator.get_state())


def test_what_parallel_range_test_cannot_run_is_named_before_the_sweep():
    calls = []

    def counted(outputs, targets):
        calls.append(1)
        return nn.functional.cross_entropy(outputs, targets)

    x, y = next(iter(digits()))
    meta = nn.Linear(64, 10, device="meta")
    cases = [
        (dict(model="mlp"), TypeError, "model must be a torch.nn.Module, got str"),
        (dict(model=meta), ValueError, "model's weight is on the meta device"),
        (dict(loss_fn=None), TypeError, "loss_fn must be a function of .*got None"),
        (dict(loss_fn=nn.CrossEntropyLoss), TypeError, "got the class CrossEntropyLoss: pass CrossEntropyLoss()"),
        (dict(optimizer="rmsprop"), ValueError, r"optimizer must be one of \('sgd', 'adam', 'adamw'\), got 'rmsprop'"),
        (dict(optimizer=["adam"]), ValueError, r"optimizer must be one of .*got \['adam'\]"),
        (dict(optimizer="sgd", optimizer_kwargs={"betas": (0.9, 0.9)}), TypeError,
         "optimizer_kwargs has 'betas', which optimizer='sgd' does not take"),
        (dict(refine=2, val_data={"x": x, "y": y}), TypeError, "batches in val_data, got a dict"),
        (dict(data=iter([(x, y)] * 40), chunk_size=1), ValueError, "data is a one-shot iterator"),
    ]  # fmt: skip
    for case, error, message in cases:
        run = {**dict(model=mlp(), loss_fn=counted, data=(x, y), num_runs=2, num_steps=20, progress=False), **case}
        with pytest.raises(error, match=message):
            parallel_range_test(run.pop("model"), run.pop("loss_fn"), run.pop("data"), **run)
    assert calls == []
    # A loss returned as a float, or detached, is named at its first call.
    for loss, message in [
        (lambda out, y: 1.0, "loss_fn must return the loss as a tensor, got float 1.0"),
        (lambda out, y: nn.functional.cross_entropy(out, y).detach(), "loss_fn returned a loss that does not require"),
    ]:
        with pytest.raises((TypeError, ValueError), match=message):
            parallel_range_test(mlp(), loss, (x, y), num_runs=2, num_steps=5, progress=False)
    # Numpy integers are integers.
    par = parallel_range_test(mlp(), counted, (x, y), num_runs=np.int64(2), chunk_size=np.int64(1), num_steps=5,
                              check_every=np.int64(2), progress=False)  # fmt: skip
    assert len(par.runs) == 2
