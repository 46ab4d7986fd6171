"""RangeTestResult's plot, save/load and scheduler, on real range tests (numpy and PyTorch)."""

import dataclasses
import json
import math
import re
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import lrfind  # noqa: E402
import lrfind.torch  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def least_squares_train_fn(blow_up=None):
    """One full-batch gradient step per call on a fixed 64x8 least-squares problem; the loss
    explodes past LR ~ 1. ``blow_up`` (a float) is returned instead once the LR exceeds 0.5."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=64)
    w = np.zeros(8)

    def train_fn(lr):
        nonlocal w
        w = w - lr * 2 * x.T @ (x @ w - y) / len(y)
        return blow_up if blow_up is not None and lr > 0.5 else float(np.mean((x @ w - y) ** 2))

    return train_fn


@pytest.fixture(scope="module")
def numpy_result():
    return lrfind.LearningRateFinder(min_lr=1e-5, max_lr=10.0, num_steps=80).range_test(least_squares_train_fn())


@pytest.fixture(scope="module")
def torch_result():
    """A real PyTorch range test: an MLP on scikit-learn's digits, validated every 5 steps."""
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor((x - x.mean(0)) / (x.std(0) + 1e-6), dtype=torch.float32)
    y = torch.tensor(y)
    batches = [(x[i : i + 64], y[i : i + 64]) for i in range(0, 1536, 64)]
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return lrfind.torch.range_test(
        model,
        optimizer,
        torch.nn.functional.cross_entropy,
        batches,
        min_lr=1e-4,
        max_lr=100.0,
        num_steps=60,
        val_data=(x[1536:], y[1536:]),
        val_every=5,
        progress=False,
    )


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def suggestion_fields(result):
    return {k: (s.method, s.lr, s.index, s.reason) for k, s in result.suggestions.items()}


def with_lr(result):
    return [s for s in result.suggestions.values() if s.lr is not None]


# --- plot -------------------------------------------------------------------------------------


def main_curve(ax):
    """The thick line: the curve a reader reads the picture by."""
    return max(ax.lines, key=lambda line: line.get_linewidth())


def span_extent(patch):
    """(low, high) in data x of an axvspan: a Rectangle in recent matplotlib, a Polygon before."""
    if hasattr(patch, "get_width"):
        return float(patch.get_x()), float(patch.get_x() + patch.get_width())
    xs = patch.get_xy()[:, 0]
    return float(np.min(xs)), float(np.max(xs))


def legend_clear_of_the_axes(ax):
    """The legend's box and the axes' box do not overlap: the legend covers no data."""
    ax.figure.canvas.draw()
    legend, area = ax.get_legend().get_window_extent(), ax.get_window_extent()
    return legend.y1 <= area.y0 or legend.y0 >= area.y1 or legend.x1 <= area.x0 or legend.x0 >= area.x1


def test_plot_draws_the_lag_free_curve_the_main_suggestion_its_range_and_the_stop(numpy_result):
    r = numpy_result
    ax = r.plot()
    assert r.diagnosis.gives_lr and r.explosion_lr is not None and r.suggested_range is not None
    # The thick line is the lag-free curve the suggestion reads, not the lagging EMA.
    np.testing.assert_array_equal(main_curve(ax).get_ydata(), r.trend)
    labels = [line.get_label() for line in ax.lines]
    assert labels == [
        "loss (raw)",
        "loss, lag-free (what the suggestion reads)",
        f"auto: {r.suggested_lr:.2e}",
        f"stop (threshold): {r.explosion_lr:.2e}, loss {r.explosion_loss:.3g}",
    ]
    # One shaded span: the suggested range, holding the suggestion, under the name it has everywhere.
    (patch,) = ax.patches
    np.testing.assert_allclose(span_extent(patch), r.suggested_range, rtol=1e-12)
    low, high = r.suggested_range
    assert patch.get_label() == f"suggested range: {low:.2e} to {high:.2e}"
    assert ax.get_xscale() == "log" and ax.get_title() == f"LR range test: {r.diagnosis.kind}"
    assert legend_clear_of_the_axes(ax)


def test_plot_marks_the_named_methods_each_in_its_own_colour(numpy_result):
    ax = numpy_result.plot(methods=["steepest"])
    assert [line.get_label().split(":")[0] for line in ax.lines[2:]] == ["steepest", "stop (threshold)"]
    assert len(ax.patches) == 0  # the main suggestion (auto) is not shown, nor its range
    every = numpy_result.plot(methods=list(numpy_result.suggestions))
    markers = [line for line in every.lines if line.get_marker() == "o"]
    assert len(markers) == len(with_lr(numpy_result))
    colours = {m.get_label().split(":")[0]: m.get_color() for m in markers}
    assert len(set(colours.values())) == len(colours), colours
    with pytest.raises(ValueError, match="no suggestion 'best'"):
        numpy_result.plot(methods="best")


def test_plot_shows_the_ema_and_the_descent_on_request(numpy_result):
    ax = numpy_result.plot(show_ema=True, show_descent=True)
    labels = [line.get_label() for line in ax.lines]
    assert "EMA of the loss (lags)" in labels
    low, high = numpy_result.diagnosis.descent
    descent = next(line for line in ax.lines if line.get_label().startswith("loss falls (diagnosis)"))
    np.testing.assert_allclose(descent.get_xdata(), [low, high])
    assert len(ax.patches) == 1  # the descent is a bar along the bottom, not a second shaded span


def test_a_flat_sweep_gets_the_advice_and_no_marker():
    lrs = lrfind.sweep_lrs(1e-6, 1.0, 60)
    flat = 2.3 + 0.002 * np.sin(np.arange(60) * 1.7)
    r = lrfind.RangeTestResult.from_sweep(lrs, flat)
    assert r.diagnosis.kind == "flat" and not r.diagnosis.gives_lr
    assert r.suggested_lr is not None  # present, but flagged: no LR to train at
    ax = r.plot()
    assert [line.get_marker() for line in ax.lines].count("o") == 0 and len(ax.patches) == 0
    assert "no LR to train at" in ax.get_title() and r.diagnosis.message[:40] in ax.get_title().replace("\n", " ")
    bottom, top = ax.get_ylim()
    assert top - bottom >= 0.1 * 2.3 * 0.999  # a tenth of the loss's level: the noise stays flat
    assert "No LR to train at (flat)" in r.summary() and "Suggested LR" not in r.summary()
    with pytest.raises(ValueError, match="gives no LR to train at"):
        r.scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), total_steps=10)


FIXTURE_CURVES = sorted((Path(__file__).parent / "fixtures" / "fastai").glob("*.json"))


@pytest.mark.parametrize("fixture", FIXTURE_CURVES, ids=lambda p: p.stem)
def test_the_picture_agrees_with_the_numbers_on_recorded_curves(fixture):
    """On real recorded range tests: the main drawn curve is lowest within 0.1 decade of the
    lag-free curve's minimum, and the suggestion lies inside every shaded span."""
    doc = json.loads(fixture.read_text())
    r = lrfind.RangeTestResult.from_sweep(doc["lrs"], doc["raw_losses"])
    ax = r.plot()
    drawn = main_curve(ax)
    xs, ys = np.asarray(drawn.get_xdata()), np.asarray(drawn.get_ydata())
    lowest_drawn = np.log10(xs[np.argmin(ys)])
    assert abs(lowest_drawn - np.log10(r.lrs[np.argmin(r.trend)])) <= 0.1
    if r.suggested_lr is not None and r.diagnosis.gives_lr:
        for patch in ax.patches:
            low, high = span_extent(patch)
            assert low <= r.suggested_lr <= high
    assert legend_clear_of_the_axes(ax)


def test_plot_clips_the_top_at_three_times_the_starting_loss():
    # A high threshold lets the loss climb to ~100x its start before the sweep stops.
    result = lrfind.LearningRateFinder(min_lr=1e-5, max_lr=10.0, num_steps=80, diverge_threshold=1e12).range_test(
        least_squares_train_fn()
    )
    assert result.losses.max() > 10 * result.losses[0]
    bottom, top = result.plot().get_ylim()
    assert bottom < result.losses.min() and 3 * result.losses[0] < top < 3.5 * result.losses[0]


def test_one_outlier_first_loss_does_not_flatten_the_picture(numpy_result):
    """The cap is measured from the lag-free curve's start, which a single spike does not move."""
    spiked = np.r_[1e6, numpy_result.losses[1:]]
    result = lrfind.RangeTestResult.from_sweep(numpy_result.lrs, spiked)
    bottom, top = result.plot().get_ylim()
    assert bottom < result.trend.min() and top < 10 * result.trend[0] and result.trend.max() <= top


@pytest.mark.parametrize(
    "lrs, losses",
    [
        ([1e-3], [1e308]),
        ([1e-3, 1e-2], [-1e308, 1e308]),
        ([1e-3, 1e-2, 1e-1], [1e308, 1e308, 0.0]),
        ([1e-3, 1e-2, 1e-1], [1.7e308, 1.0, 2.0]),
    ],  # fmt: skip
)
def test_losses_near_the_float_maximum_still_plot(lrs, losses, tmp_path):
    result = lrfind.RangeTestResult.from_sweep(np.array(lrs), np.array(losses))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow in what the curve shows
        result.plot(path=tmp_path / "r.png")
        lrfind.ParallelResult([result, result], [0, 1]).plot(path=tmp_path / "p.png")
    assert (tmp_path / "r.png").stat().st_size and (tmp_path / "p.png").stat().st_size


def test_plot_saves_a_png_without_touching_pyplot(numpy_result, tmp_path):
    path = tmp_path / "curve.png"
    ax = numpy_result.plot(path=path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1024
    assert plt.get_fignums() == [] and ax.figure is not None


def test_plot_draws_val_losses_and_grad_norms_of_a_torch_run(torch_result, tmp_path):
    assert np.isnan(torch_result.val_losses).any() and (~np.isnan(torch_result.val_losses)).any()
    fig, ax = plt.subplots()
    assert torch_result.plot(ax=ax, show_grad_norm=True, path=tmp_path / "torch.png") is ax
    assert "validation loss" in [line.get_label() for line in ax.lines]
    twin = next(a for a in fig.axes if a is not ax)
    assert twin.get_yscale() == "log" and [line.get_label() for line in twin.lines] == ["gradient norm"]
    assert (tmp_path / "torch.png").read_bytes().startswith(PNG_MAGIC)


def test_plot_grad_norm_needs_them(numpy_result):
    with pytest.raises(ValueError, match="grad_norms"):
        numpy_result.plot(show_grad_norm=True)


def test_plot_names_the_extra_without_matplotlib(numpy_result, monkeypatch):
    monkeypatch.delitem(sys.modules, "lrfind.plot", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'lrfind[plot]'")):
        numpy_result.plot()


# --- save / load ------------------------------------------------------------------------------


def assert_same_result(a, b):
    for name in ("lrs", "losses", "smoothed_losses"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    for name in ("grad_norms", "val_losses"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y, equal_nan=True), name
    for name in ("explosion_lr", "explosion_loss"):
        x, y = getattr(a, name), getattr(b, name)
        assert x == y or (math.isnan(x) and math.isnan(y)), name
    for name in ("stop_index", "stop_reason", "suggested_lr", "skipped_steps", "options"):
        assert getattr(a, name) == getattr(b, name), name
    assert suggestion_fields(a) == suggestion_fields(b)
    assert (a.diagnosis.kind, a.diagnosis.message, a.diagnosis.descent, a.diagnosis.gives_lr) == (
        b.diagnosis.kind,
        b.diagnosis.message,
        b.diagnosis.descent,
        b.diagnosis.gives_lr,
    )
    assert np.array_equal(a.trend, b.trend) and a.suggested_range == b.suggested_range
    assert np.array_equal(a.analysis.gradient, b.analysis.gradient, equal_nan=True)


def test_save_load_round_trip(numpy_result, tmp_path):
    path = tmp_path / "result.json"
    numpy_result.save(path)
    loaded = lrfind.RangeTestResult.load(path)
    assert_same_result(numpy_result, loaded)
    assert loaded["suggested_lr"] == numpy_result["suggested_lr"] is not None
    doc = json.loads(path.read_text())
    assert doc["format"] == "lrfind.RangeTestResult" and doc["version"] == 1
    assert doc["lrs"][-1] == numpy_result.explosion_lr and len(doc["lrs"]) == len(numpy_result.lrs) + 1


def test_save_load_round_trip_of_a_torch_run(torch_result, tmp_path):
    torch_result.save(tmp_path / "torch.json")
    assert_same_result(torch_result, lrfind.RangeTestResult.load(tmp_path / "torch.json"))


@pytest.mark.parametrize(("blow_up", "reason"), [(math.nan, "nan"), (math.inf, "inf"), (-math.inf, "inf")])
def test_save_load_keeps_nan_and_inf(blow_up, reason, tmp_path):
    result = lrfind.LearningRateFinder(min_lr=1e-5, max_lr=10.0, num_steps=80, methods=["valley", "steepest"])
    result = result.range_test(least_squares_train_fn(blow_up))
    assert result.stop_reason == reason
    n = len(result.lrs)
    odd = np.array([math.nan, math.inf, -math.inf, 5e-324, 1.0 / 3.0])
    result = dataclasses.replace(
        result, grad_norms=np.resize(odd, n), val_losses=np.resize(odd[::-1], n), skipped_steps=3
    )
    path = tmp_path / "odd.json"
    result.save(path)
    json.loads(path.read_text(), parse_constant=pytest.fail)  # strict JSON: non-finite floats are strings
    assert_same_result(result, lrfind.RangeTestResult.load(path))
    labels = [t.get_text() for t in result.plot().get_legend().get_texts()]
    assert f"stop ({reason}): {result.explosion_lr:.2e}, loss {blow_up:.3g}" in labels


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda doc: doc.pop("losses"), "losses"),
        (lambda doc: doc.pop("options"), "options"),
        (lambda doc: doc.update(format="something.else"), "format"),
        (lambda doc: doc.update(version=2), "version"),
        (lambda doc: doc["losses"].__setitem__(0, "oops"), "losses"),
        (lambda doc: doc["lrs"].__setitem__(0, [1.0]), "lrs"),
        (lambda doc: doc.update(grad_norms=[1.0]), "grad_norms"),
        (lambda doc: doc.update(skipped_steps="3"), "skipped_steps"),
        (lambda doc: doc.update(skipped_steps=-5), "skipped_steps"),
        (lambda doc: doc["lrs"].__setitem__(0, 10**400), "lrs"),
        (lambda doc: doc["losses"].__setitem__(0, [[[[1.0]]]]), "losses"),
    ],
)
def test_load_of_a_corrupt_file_names_the_file_and_key(numpy_result, tmp_path, edit, key):
    path = tmp_path / "bad.json"
    numpy_result.save(path)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=re.escape(str(path)) + f".*'{key}'"):
        lrfind.RangeTestResult.load(path)


SAVED = '{"format": "lrfind.RangeTestResult", "version": 1, "lrs": [1e-3], "losses": [1.0], "skipped_steps": 0, '


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        (SAVED + '"options": {"methods": ' + "[" * 500 + "]" * 500 + "}}", "options do not analyse"),
        (SAVED + '"options": {"threshold": 1' + "0" * 400 + "}}", "options do not analyse"),
    ],
)
def test_load_of_hostile_json_is_a_value_error(tmp_path, text, words):
    path = tmp_path / "hostile.json"
    path.write_text(text.replace("}}", '}, "grad_norms": null, "val_losses": null}'))
    with pytest.raises(ValueError, match=re.escape(str(path)) + f".*{words}"):
        lrfind.RangeTestResult.load(path)


def test_numpy_option_values_save_and_load(tmp_path):
    lrs = lrfind.sweep_lrs(1e-5, 10.0, 60)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3) + np.exp(np.log10(lrs) - 0.5)
    options = dict(
        threshold=np.float32(5),
        patience=np.int64(2),
        alpha=np.float64(0.9),
        methods=(np.str_("valley"), "steepest"),
        suggest_on=np.array("smoothed")[()],
    )
    result = lrfind.RangeTestResult.from_sweep(lrs, losses, **options)
    assert result.options == {
        "threshold": 5.0,
        "patience": 2,
        "alpha": 0.9,
        "methods": ["valley", "steepest"],
        "suggest_on": "smoothed",
    }
    assert [type(v) for v in result.options.values()] == [float, int, float, list, str]
    result.save(tmp_path / "numpy.json")
    assert_same_result(result, lrfind.RangeTestResult.load(tmp_path / "numpy.json"))


def test_an_immediate_explosion_plots_saves_and_loads(tmp_path):
    result = lrfind.LearningRateFinder(num_steps=30).range_test(lambda lr: math.nan)
    assert len(result.lrs) == 0 and result.suggested_lr is None
    ax = result.plot(path=tmp_path / "empty.png")
    assert ax.get_xlim() == pytest.approx((result.explosion_lr / 10, result.explosion_lr * 10))
    result.save(tmp_path / "empty.json")
    assert_same_result(result, lrfind.RangeTestResult.load(tmp_path / "empty.json"))


def test_load_of_a_non_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{ not json")
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*not JSON"):
        lrfind.RangeTestResult.load(path)


# --- scheduler --------------------------------------------------------------------------------


def scheduled_lrs(result, total_steps, policy="one_cycle", **kwargs):
    """Each group's LR at every step of a real training loop driven by result.scheduler."""
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    optimizer = torch.optim.SGD([{"params": params[:1], "lr": 0.5}, {"params": params[1:], "lr": 0.01}])
    scheduler = result.scheduler(optimizer, policy, total_steps=total_steps, **kwargs)
    seen = []
    for _ in range(total_steps):
        seen.append([group["lr"] for group in optimizer.param_groups])
        sum((p**2).sum() for p in params).backward()
        optimizer.step()
        scheduler.step()
    return np.array(seen).T


def test_one_cycle_scheduler_follows_the_rust_schedule(numpy_result):
    low, high = numpy_result.suggested_range  # one-cycle starts at the low end of the suggested range
    lr = numpy_result.suggested_lr
    base = low if low < lr else lr / 10
    want = lrfind.one_cycle(50, base, lr)
    for got in scheduled_lrs(numpy_result, 50):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    got = scheduled_lrs(numpy_result, 40, max_lr=0.05, base_lr=1e-3, pct_start=0.25)
    np.testing.assert_allclose(got[0], lrfind.one_cycle(40, 1e-3, 0.05, 0.25), rtol=1e-12, atol=0)


def test_warmup_cosine_scheduler_follows_the_rust_schedule(numpy_result):
    lr = numpy_result.suggested_lr
    got = scheduled_lrs(numpy_result, 60, "warmup_cosine")
    np.testing.assert_allclose(got[1], lrfind.warmup_cosine(60, 3, lr), rtol=1e-12, atol=0)
    got = scheduled_lrs(numpy_result, 60, "warmup_cosine", base_lr=0.02, warmup_steps=10, min_lr=1e-4)
    np.testing.assert_allclose(got[0], lrfind.warmup_cosine(60, 10, 0.02, 1e-4), rtol=1e-12, atol=0)


def test_scheduler_state_dict_loads_with_weights_only(numpy_result, tmp_path):
    def make():
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
        return optimizer, numpy_result.scheduler(optimizer, "warmup_cosine", total_steps=20)

    (opt_a, sched_a), (opt_b, sched_b) = make(), make()
    for _ in range(7):
        opt_a.step()
        sched_a.step()
    torch.save(sched_a.state_dict(), tmp_path / "sched.pt")
    sched_b.load_state_dict(torch.load(tmp_path / "sched.pt", weights_only=True))
    for _ in range(15):  # past total_steps the LR stays at min_lr
        for optimizer, scheduler in ((opt_a, sched_a), (opt_b, sched_b)):
            optimizer.step()
            scheduler.step()
        assert opt_a.param_groups[0]["lr"] == opt_b.param_groups[0]["lr"]
    assert opt_b.param_groups[0]["lr"] == 0.0


def test_scheduler_rejects_bad_requests_before_touching_the_optimizer(numpy_result):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    with pytest.raises(ValueError, match="unknown policy 'cosine'"):
        numpy_result.scheduler(optimizer, "cosine", total_steps=10)
    with pytest.raises(ValueError, match="max_lr must be finite and >= base_lr"):
        numpy_result.scheduler(optimizer, total_steps=10, base_lr=1.0, max_lr=0.1)
    for bad in (-1, 0, math.inf, True, "0.1"):
        with pytest.raises(ValueError, match=f"max_lr must be a finite number > 0, got {bad!r}"):
            numpy_result.scheduler(optimizer, total_steps=10, max_lr=bad)
    with pytest.raises(TypeError, match="warmup_steps"):
        numpy_result.scheduler(optimizer, total_steps=10, warmup_steps=2)
    assert optimizer.param_groups[0]["lr"] == 0.5 and "initial_lr" not in optimizer.param_groups[0]


def test_scheduler_of_numpy_numbers_saves_plain_values(numpy_result, tmp_path):
    """Settings from numpy (an argmax, a config array) must not reach the state_dict, which
    torch.load(..., weights_only=True), torch's default, could then not read."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = numpy_result.scheduler(
        optimizer, total_steps=np.int64(50), max_lr=np.float64(1e-3), pct_start=np.float64(0.25)
    )
    torch.save(scheduler.state_dict(), tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["lr_lambdas"][0]["params"]["total_steps"] == 50
    assert type(optimizer.param_groups[0]["lr"]) is float
    with pytest.raises(TypeError, match="total_steps must be a whole number of steps, got True"):
        numpy_result.scheduler(optimizer, total_steps=True)
    with pytest.raises(
        TypeError, match="scheduler\\(policy='one_cycle'\\): got an unexpected keyword argument 'maxlr'"
    ):
        numpy_result.scheduler(optimizer, total_steps=10, maxlr=1e-3)


def test_scheduler_without_a_suggestion_says_why():
    flat = lrfind.LearningRateFinder(num_steps=30).range_test(lambda lr: 1.0)
    assert flat.suggested_lr is None and not flat.diagnosis.gives_lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    why = f"a flat sweep gives no LR to train at: {flat.diagnosis.message}"
    with pytest.raises(ValueError, match=re.escape(f"no suggested LR to schedule from ({why})")):
        flat.scheduler(optimizer, total_steps=10)
    # A sweep too short to read gives an LR in principle, but auto has none: its reason is said.
    short = lrfind.RangeTestResult.from_sweep([1e-3, 1e-2, 1e-1], [2.0, 1.0, 0.5])
    assert short.diagnosis.gives_lr and short.suggested_lr is None
    with pytest.raises(ValueError, match=re.escape(f"({short.suggestions['auto'].reason})")):
        short.scheduler(optimizer, total_steps=10)
    with pytest.raises(ValueError, match="pass base_lr="):
        flat.scheduler(optimizer, "warmup_cosine", total_steps=10)
    flat.scheduler(optimizer, total_steps=10, max_lr=0.1)  # an explicit peak needs no suggestion
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_scheduler_names_the_extra_without_torch(numpy_result, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.optim.lr_scheduler", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'lrfind[torch]'")):
        numpy_result.scheduler(None, total_steps=10)


def test_summary_marks_the_seed_good_table():
    """The seed's "Good Result" table, read off the lag-free curve: learning starts around
    1e-4..1e-3, the lowest loss (best zone) near 1e-2, too fast beyond, then the explosion; a
    row marked later never shows a lower loss than the best zone, and no two rows print the
    same LR."""
    from seed import seed_good_curve

    result = lrfind.LearningRateFinder().range_test(lambda lr: float(seed_good_curve(np.array([lr]))[0]))
    lines = result.summary().splitlines()
    rows = [line.split() for line in lines[1:] if line.strip()[:1].isdigit()]
    lrs = [row[0] for row in rows]
    assert len(set(lrs)) == len(lrs)  # 3 significant digits tell rows apart
    marked = {line.split("<- ")[1]: float(line.split()[0]) for line in lines if "<- " in line}
    assert 1e-5 <= marked["starting to learn"] <= 1e-3
    assert 3e-3 <= marked["lowest (best zone)"] <= 3e-2
    best = next(float(row[1]) for row in rows if "zone)" in row)
    too_fast = [float(row[1]) for row in rows if row[-1] == "fast"]
    assert too_fast and min(too_fast) >= best
    lowest = int(np.argmin(result.trend))
    assert marked["lowest (best zone)"] == float(f"{result.lrs[lowest]:.2e}")
    assert "stop (threshold)" in result.summary()
    low, high = result.suggested_range
    assert f"Suggested range: {low:.2e} to {high:.2e}" in result.summary()


def test_a_loss_past_floats_range_is_an_explosion_not_an_overflow_error():
    losses = iter([2.0, 1.5, 1.0, 10**400])
    result = lrfind.LearningRateFinder(num_steps=10).range_test(lambda lr: next(losses))
    assert result.stop_index == 3 and result.stop_reason == "inf"


def test_results_pickle_and_copy_as_they_save(numpy_result, torch_result):
    """The core's objects do not pickle; a result does, through the same dict as save()."""
    import copy
    import pickle

    for result in (numpy_result, torch_result):
        for again in (pickle.loads(pickle.dumps(result)), copy.deepcopy(result)):
            assert_same_result(result, again)
            assert again.to_dict() == result.to_dict()
    finder = lrfind.torch.LRFinder(torch.nn.Linear(2, 2), torch.optim.SGD(torch.nn.Linear(2, 2).parameters()))
    finder.result = numpy_result
    assert copy.deepcopy(finder).result.to_dict() == numpy_result.to_dict()
    assert numpy_result["suggested_range"] == numpy_result.suggested_range
    assert "suggested_range" in numpy_result.keys()


def test_scheduler_names_a_setting_that_is_no_number_and_ignores_a_flat_sweeps_range(numpy_result):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    for policy, setting, message in [
        ("one_cycle", {"pct_start": None}, r"scheduler\(policy='one_cycle'\): pct_start must be a number, got None"),
        ("warmup_cosine", {"min_lr": [0.1]}, r"min_lr must be a number, got \[0.1\]"),
        ("warmup_cosine", {"base_lr": True}, "base_lr must be a number, got True"),  # it trained at LR 1.0
    ]:
        with pytest.raises(TypeError, match=message):
            numpy_result.scheduler(optimizer, policy, total_steps=10, **setting)
    assert optimizer.param_groups[0]["lr"] == 0.5
    # A flat sweep gives no LR to train at, nor a range to start the cycle from: max_lr / 10.
    lrs = lrfind.sweep_lrs(1e-6, 1.0, 60)
    flat = lrfind.RangeTestResult.from_sweep(lrs, 2.3 + 0.002 * np.sin(np.arange(60) * 1.7))
    assert not flat.diagnosis.gives_lr and flat.suggested_range is not None
    flat.scheduler(optimizer, total_steps=10, max_lr=1e-2)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3, rel=1e-12)  # step 0: base_lr


def test_every_suggestion_marker_is_inside_the_axes():
    """The y axis is capped a few times above where the curve starts (one outlier first loss
    must not flatten the picture), but a marker above the cap hid the suggestion."""
    lrs, x = np.geomspace(1e-6, 1, 60), np.linspace(0, 1, 60)
    loss = 1 + 9 * np.exp(-(((x - 0.35) / 0.08) ** 2)) - 0.5 * (x > 0.35) * (x - 0.35)  # a 10x bump first
    loss[-5:] *= np.linspace(1, 30, 5)
    r = lrfind.RangeTestResult.from_sweep(lrs, loss)
    ax = r.plot(methods=list(r.suggestions))
    low, high = ax.get_ylim()
    heights = [line.get_ydata()[0] for line in ax.lines if line.get_marker() == "o"]
    assert len(heights) == sum(s.lr is not None for s in r.suggestions.values())
    assert max(heights) > 3 * r.trend[0], "the case: a marker above the old cap"
    assert all(low <= y <= high for y in heights)
    plt.close("all")


def test_a_good_curve_advises_what_the_main_method_offers():
    """Good curves said 'train at the suggested LR, or anywhere in the suggested range' even when
    the main method gave no LR (too few points for valley) or no range (steepest)."""
    lrs, x = np.geomspace(1e-6, 1, 16), np.linspace(0, 1, 16)
    loss = 2.3 - 1.5 / (1 + np.exp(-(x - 0.5) * 12)) + np.where(x > 0.8, np.exp((x - 0.8) * 30) - 1, 0)
    for methods, advice in [
        ("auto", "train at the suggested LR, or anywhere in the suggested range."),
        ("steepest", "; train at the suggested LR."),
        ("valley", "the main method gives no LR here (its reason says why): read another method's."),
    ]:
        r = lrfind.RangeTestResult.from_sweep(lrs, loss, methods=methods)
        assert r.diagnosis.kind == "good", r.diagnosis.message
        assert r.diagnosis.message.endswith(advice), (methods, r.diagnosis.message)
    assert r.suggested_lr is None and "No suggestion" in r.summary()
