"""``refine=K``: the candidates' scores against plain ``torch.optim`` training of each candidate
LR from the same weights on the same batches, the side-by-side (vmapped) path against the
one-at-a-time loop, the candidates' placement, restore after success and failure, saving, the
parallel test's refine, and bad input."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from sklearn.datasets import load_digits  # noqa: E402

import lrfind  # noqa: E402
from lrfind.parallel import ParallelResult  # noqa: E402
from lrfind.result import RangeTestResult, Refinement  # noqa: E402
from lrfind.torch import parallel_range_test, range_test  # noqa: E402

from bitwise import assert_identical, observe  # noqa: E402

ce = torch.nn.functional.cross_entropy
STEPS = 40


@pytest.fixture(scope="module")
def digits():
    """Training batches of 32 and one held-out batch of scikit-learn's digits."""
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
    return list(zip(x[:1280].split(32), y[:1280].split(32), strict=True)), [(x[1280:], y[1280:])]


def mlp(seed=0, batchnorm=False):
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(64, 32)]
    layers += [torch.nn.BatchNorm1d(32)] if batchnorm else []
    return torch.nn.Sequential(*layers, torch.nn.ReLU(), torch.nn.Linear(32, 10))


def reference_scores(model, make_optimizer, lrs, batches, val, steps):
    """Each LR trained by torch.optim from a copy of ``model`` on the first ``steps`` batches
    (cycled), then the mean loss over ``val`` in eval mode: what refine must report."""
    out = []
    for lr in lrs:
        m = copy.deepcopy(model)
        opt = make_optimizer(m.parameters(), lr)
        for i in range(steps):
            x, y = batches[i % len(batches)]
            opt.zero_grad()
            ce(m(x), y).backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            out.append(float(np.mean([float(ce(m(x), y)) for x, y in val])))
    return np.array(out)


@pytest.mark.parametrize("path", ["vmapped", "loop"])
def test_scores_equal_plain_torch_optim_training(digits, path):
    train, val = digits
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = copy.deepcopy(model)
    # A step_fn computes the same loss but needs the one-at-a-time loop.
    how = dict(loss_fn=ce) if path == "vmapped" else dict(loss_fn=None, step_fn=lambda m, b: ce(m(b[0]), b[1]))
    r = range_test(model, opt, data=train, val_data=val, refine=4, refine_steps=STEPS, progress=False, **how)
    assert r.refined is not None and r.refined.steps == STEPS
    want = reference_scores(start, lambda p, lr: torch.optim.Adam(p, lr=lr), r.refined.lrs, train, val, STEPS)
    np.testing.assert_allclose(r.refined.scores, want, rtol=2e-5)
    assert r.suggested_lr == r.refined.lrs[np.argmin(want)]
    assert r.refined.curve_lr == r.suggestions["auto"].lr


def test_candidates_span_the_suggested_range(digits):
    train, val = digits
    model = mlp()
    r = range_test(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), ce, train,
                   val_data=val, refine=np.int64(5), refine_steps=np.int32(5), progress=False)  # fmt: skip
    assert r.refined.steps == 5 and type(r.refined.steps) is int
    unrefined = lrfind.analyze(*r.recorded, **r.options)
    low, high = unrefined.suggestions["auto"].range
    lrs = r.refined.lrs
    np.testing.assert_allclose([lrs[0], lrs[-1]], [low, high], rtol=1e-12)
    np.testing.assert_allclose(np.diff(np.log(lrs)), np.log(high / low) / 4, rtol=1e-9)
    # The curve's own reading is untouched: only suggested_lr moves to the best candidate.
    assert r.suggestions["auto"].lr == unrefined.suggested_lr
    assert r.suggested_lr in lrs


def test_batchnorm_sgd_nesterov_takes_the_loop_and_matches_torch_optim(digits):
    """BatchNorm running statistics cannot be vmapped: the loop trains the candidates, with
    the user's optimizer, and the scores still equal plain training."""
    train, val = digits
    model = mlp(batchnorm=True)
    make = lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True)  # noqa: E731
    start = copy.deepcopy(model)
    r = range_test(model, make(model.parameters(), 0.1), ce, train, val_data=val, refine=3, refine_steps=STEPS,
                   progress=False)  # fmt: skip
    want = reference_scores(start, make, r.refined.lrs, train, val, STEPS)
    np.testing.assert_allclose(r.refined.scores, want, rtol=2e-5)


def test_everything_is_restored_after_refine_and_after_a_failure_in_it(digits):
    train, val = digits
    model = mlp(batchnorm=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    # A trained optimizer: its state must come back too, and the candidates start from it.
    for x, y in train[:3]:
        opt.zero_grad()
        ce(model(x), y).backward()
        opt.step()
    before = observe(model, opt)
    range_test(model, opt, ce, train, val_data=val, refine=3, refine_steps=5, progress=False)
    assert_identical(before, observe(model, opt))

    calls = 0

    def failing(m, batch):
        nonlocal calls
        calls += 1
        if calls > 100 + 7:  # past the sweep, inside the second candidate
            raise RuntimeError("boom")
        return ce(m(batch[0]), batch[1])

    with pytest.raises(RuntimeError, match="boom"):
        range_test(model, opt, None, train, step_fn=failing, val_data=val, refine=3, refine_steps=5,
                   diverge_threshold=1e300, progress=False)  # fmt: skip
    assert calls > 100
    assert_identical(before, observe(model, opt))


def test_a_diverging_candidate_scores_inf_and_is_never_chosen():
    r = Refinement(np.array([1e-3, 1e-2, 1e-1]), np.array([0.5, 0.3, np.inf]), 10, 1e-2)
    assert r.lr == 1e-2
    every = Refinement(np.array([1e-3, 1e-2]), np.array([np.inf, np.inf]), 10, 1e-2)
    assert every.lr is None
    lrs, losses = lrfind.sweep_lrs(1e-5, 1, 60), np.r_[np.linspace(2, 0.5, 50), np.linspace(0.6, 9, 10)]
    result = RangeTestResult.from_sweep(lrs, losses)
    assert result.with_refinement(every).suggested_lr == result.suggested_lr  # the curve's, then
    assert "every candidate diverged" in result.with_refinement(every).summary()


def test_refined_results_save_and_load(tmp_path, digits):
    train, val = digits
    model = mlp()
    r = range_test(model, torch.optim.Adam(model.parameters()), ce, train, val_data=val, refine=3, refine_steps=5,
                   progress=False)  # fmt: skip
    r.save(tmp_path / "r.json")
    back = RangeTestResult.load(tmp_path / "r.json")
    np.testing.assert_array_equal(back.refined.lrs, r.refined.lrs)
    np.testing.assert_array_equal(back.refined.scores, r.refined.scores)
    assert back.suggested_lr == r.suggested_lr and back.refined.curve_lr == r.refined.curve_lr
    assert "Refined LR" in back.summary()


def test_parallel_refine_scores_equal_torch_optim(tmp_path, digits):
    train, val = digits
    model = mlp()
    before = observe(model, torch.optim.SGD(model.parameters(), lr=0.1))
    start = copy.deepcopy(model)
    pr = parallel_range_test(model, ce, train, num_runs=3, optimizer="adam", val_data=val, refine=3,
                             refine_steps=STEPS, progress=False)  # fmt: skip
    assert_identical(before["params"], observe(model, torch.optim.SGD(model.parameters(), lr=0.1))["params"])
    low, high = pr.suggested_range
    np.testing.assert_allclose([pr.refined.lrs[0], pr.refined.lrs[-1]], [low, high], rtol=1e-12)
    want = reference_scores(start, lambda p, lr: torch.optim.Adam(p, lr=lr), pr.refined.lrs, train, val, STEPS)
    np.testing.assert_allclose(pr.refined.scores, want, rtol=2e-5)
    assert pr.suggested_lr == pr.refined.lrs[np.argmin(want)] and pr.refined.curve_lr == pr.consensus_lr
    pr.save(tmp_path / "p.json")
    back = ParallelResult.load(tmp_path / "p.json")
    assert back.suggested_lr == pr.suggested_lr and back.consensus_lr == pr.consensus_lr
    assert "Refined LR" in back.summary()


def test_the_plot_marks_the_refined_lr(digits):
    pytest.importorskip("matplotlib")
    train, val = digits
    model = mlp()
    r = range_test(model, torch.optim.Adam(model.parameters()), ce, train, val_data=val, refine=3, refine_steps=5,
                   progress=False)  # fmt: skip
    ax = r.plot()
    labels = ax.get_legend_handles_labels()[1]
    assert f"refined LR (best held-out loss): {r.refined.lr:.2e}" in labels
    assert any(label.startswith("refine: 3 candidates, 5 steps each") for label in labels)
    import matplotlib.pyplot as plt

    plt.close("all")


def test_a_sweep_without_an_lr_is_not_refined(digits):
    _, val = digits
    model = mlp()
    # Targets no model can learn from constant inputs: a flat sweep, no LR to train at.
    x = torch.zeros(32, 64)
    y = torch.arange(32) % 10
    r = range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), ce, (x, y), max_lr=1e-4, val_data=val,
                   refine=3, progress=False)  # fmt: skip
    assert not r.diagnosis.gives_lr and r.refined is None


BAD = [
    (dict(refine=1), "refine must be 0 .* got 1"),
    (dict(refine=-2), "refine must be 0 .* got -2"),
    (dict(refine=True), "refine must be 0 .* got True"),
    (dict(refine=2.5), "refine must be 0 .* got 2.5"),
    (dict(refine="3"), "refine must be 0 .* got '3'"),
    (dict(refine=3, refine_steps=0), "refine_steps must be a positive int .* got 0"),
    (dict(refine=3, val_data=None), "refine=3 needs val_data"),
    (dict(refine=3, val_data=[]), "refine=3 needs val_data with a batch in it, got an empty list"),
]


@pytest.mark.parametrize("kwargs, match", [*BAD, (dict(refine=3, restore=False), "refine=3 needs restore=True")])
def test_bad_refine_arguments_name_themselves(digits, kwargs, match):
    train, val = digits
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = observe(model, opt)
    with pytest.raises(ValueError, match=match):
        range_test(model, opt, ce, train, **(dict(val_data=val, progress=False) | kwargs))
    assert_identical(before, observe(model, opt))


@pytest.mark.parametrize("kwargs, match", BAD)
def test_bad_parallel_refine_arguments_name_themselves(digits, kwargs, match):
    train, val = digits
    with pytest.raises(ValueError, match=match):
        parallel_range_test(mlp(), ce, train, num_runs=2, **(dict(val_data=val, progress=False) | kwargs))


class RowGRU(torch.nn.Module):
    """A digit's 8 rows as a sequence: a GRU, then a linear read-out of its last state."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.GRU(8, 16, batch_first=True)
        self.out = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.out(self.rnn(x.view(-1, 8, 8))[0][:, -1])


def spectral_mlp():
    torch.manual_seed(0)
    sn = torch.nn.utils.parametrizations.spectral_norm
    return torch.nn.Sequential(sn(torch.nn.Linear(64, 32)), torch.nn.ReLU(), torch.nn.Linear(32, 10))


def seeded_gru():
    torch.manual_seed(0)
    return RowGRU()


@pytest.mark.parametrize("make", [seeded_gru, spectral_mlp], ids=["gru", "spectral_norm"])
def test_models_vmap_cannot_fully_run_still_score_as_plain_training(digits, make):
    """vmap has no batching rule for a GRU in eval mode under no_grad: the candidates train side
    by side, then are scored one by one. It has none for spectral_norm's power iteration at all:
    they train one after another (the sweep is not lost). Either way the scores equal plain
    training."""
    train, val = digits
    model = make()
    start = copy.deepcopy(model)
    r = range_test(model, torch.optim.Adam(model.parameters()), ce, train, val_data=val, refine=3,
                   refine_steps=STEPS, progress=False)  # fmt: skip
    want = reference_scores(start, lambda p, lr: torch.optim.Adam(p, lr=lr), r.refined.lrs, train, val, STEPS)
    np.testing.assert_allclose(r.refined.scores, want, rtol=1e-4)


def test_a_model_left_in_eval_mode_trains_its_candidates_in_train_mode(digits):
    """Dropout on while training, off while scoring, on both paths, whatever mode the model was
    given in: the vmapped and the loop path agree when the model comes in eval mode."""
    train, val = digits

    def dropout_mlp():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                   torch.nn.Linear(32, 10)).eval()  # fmt: skip

    scores = {}
    for path in ("vmapped", "loop"):
        model = dropout_mlp()
        how = dict(loss_fn=ce) if path == "vmapped" else dict(loss_fn=None, step_fn=lambda m, b: ce(m(b[0]), b[1]))
        r = range_test(model, torch.optim.Adam(model.parameters()), data=train, val_data=val, refine=3,
                       refine_steps=STEPS, progress=False, **how)  # fmt: skip
        assert not model.training  # given back as it came
        scores[path] = r.refined.scores
    plain = reference_scores(dropout_mlp(), lambda p, lr: torch.optim.Adam(p, lr=lr), r.refined.lrs, train, val, STEPS)
    # Dropout draws differ between the paths (per-run generators against the global RNG), so the
    # scores differ a little, and both differ from training without dropout (eval mode) by more.
    np.testing.assert_allclose(scores["vmapped"], scores["loop"], rtol=0.1)
    assert all(np.abs(scores[p] - plain).max() > 1e-3 for p in scores)


def test_an_empty_validation_loader_is_named_val_data(digits):
    train, _ = digits
    model = mlp()
    empty = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(0, 64), torch.zeros(0)))
    with pytest.raises(ValueError, match="refine=3 needs val_data with a batch in it, got an empty DataLoader"):
        range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), ce, train, val_data=empty, refine=3)
    with pytest.raises(ValueError, match="^val_data yielded no batch$"):
        range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), ce, train, val_data=empty, progress=False)


def test_parallel_range_test_names_a_model_vmap_cannot_run(digits):
    train, _ = digits
    with pytest.raises(RuntimeError, match="the model cannot be vmapped .*run lrfind.torch.range_test once per seed"):
        parallel_range_test(spectral_mlp(), ce, train, num_runs=2, num_steps=10, progress=False)


def test_a_diverged_candidate_reads_diverged_in_the_summary():
    line = Refinement(np.array([1e-3, 2e-3]), np.array([np.inf, 0.5]), 10, 1e-3).summary()
    assert "1.00e-03: diverged, 2.00e-03: 0.5" in line and "inf" not in line


@pytest.mark.parametrize("path", ["vmapped", "loop"])
def test_dropout_candidates_draw_the_masks_one_model_would(digits, path):
    """Both paths score a dropout model as torch.optim trains it from the RNG as it was before the
    call (the vmapped path drew per-run masks, up to 0.13 away from the loop's scores)."""
    train, val = digits

    def model():
        torch.manual_seed(0)
        return torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(32, 10)
        )

    m = model()
    how = dict(loss_fn=ce) if path == "vmapped" else dict(loss_fn=None, step_fn=lambda m, b: ce(m(b[0]), b[1]))
    torch.manual_seed(7)
    r = range_test(m, torch.optim.SGD(m.parameters(), lr=0.1), data=train, val_data=val, refine=3,
                   refine_steps=STEPS, progress=False, **how)  # fmt: skip
    start, want = model(), []
    for lr in r.refined.lrs:
        torch.manual_seed(7)
        want.extend(reference_scores(start, lambda p, lr: torch.optim.SGD(p, lr=lr), [lr], train, val, STEPS))
    np.testing.assert_allclose(r.refined.scores, want, rtol=2e-5)


def test_refine_refuses_data_it_cannot_read_again(digits):
    train, val = digits
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = observe(model, opt)
    with pytest.raises(ValueError, match=r"refine=3 .*data is a one-shot iterator \(generator\).*a list of batches"):
        range_test(model, opt, ce, (b for b in train), val_data=val, refine=3, progress=False)
    assert_identical(before, observe(model, opt))
