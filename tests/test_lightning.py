"""``lrfind.lightning``: the ``LRFinder`` callback and ``lr_find`` with the real Lightning, on CPU.

The module under test is a digits MLP as users write it (``lightning_ddp_worker.Net``: the LR in
``hparams``, ``self.log`` in ``training_step``); the reference is ``lrfind.torch.range_test`` run by
hand on the same weights, batches and optimizer. Every test runs with warnings as errors.
"""

import copy
import random
import socket
import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger, Logger
from lightning.pytorch.plugins.precision import MixedPrecision
from matplotlib.figure import Figure

from lrfind.lightning import LRFinder, lr_find
from lrfind.torch import range_test

from lightning_ddp_worker import BATCH, LIGHTNING_WARNINGS, RESULT_FIELDS, SETTINGS, Net, loader, main, trainer
from ranks import spawn_ranks

pytestmark = [pytest.mark.filterwarnings(w) for w in LIGHTNING_WARNINGS] + [pytest.mark.usefixtures("one_torch_thread")]


def by_hand(model, data=None, **kwargs):
    """``lrfind.torch.range_test`` on ``model``'s MLP with its own optimizer, as the callback sweeps it."""
    return range_test(
        model.net, model.make_optimizer(), F.cross_entropy, data or loader(), progress=False, **SETTINGS, **kwargs
    )


def sweep(model=None, **trainer_kwargs):
    """Fit ``model`` (a fresh ``Net`` by default) with an ``LRFinder(**SETTINGS)``: (finder, model, trainer)."""
    model = Net() if model is None else model
    finder = LRFinder(**SETTINGS, progress=False)
    fit = trainer(callbacks=[finder], **trainer_kwargs)
    fit.fit(model, loader())
    return finder, model, fit


def test_the_callback_trains_at_the_suggestion_of_the_same_curve_as_range_test():
    finder, model, fit = sweep()
    result = finder.result
    reference = by_hand(Net())
    assert 10 < result.stop_index < SETTINGS["num_steps"] - 1  # it diverged: the detector stopped it
    assert (result.stop_index, result.stop_reason) == (reference.stop_index, reference.stop_reason)
    np.testing.assert_array_equal(result.lrs, reference.lrs)
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6)
    np.testing.assert_allclose(result.grad_norms, reference.grad_norms, rtol=1e-5)
    assert result.diagnosis.gives_lr and result.suggested_lr == pytest.approx(reference.suggested_lr, rel=1e-6)
    lr = result.suggested_lr
    assert finder.applied_lr == model.hparams.lr == fit.optimizers[0].param_groups[0]["lr"] == lr
    # Each step trained at its LR of the ladder (training_step reads it off the optimizer).
    np.testing.assert_array_equal(model.lrs_seen[: len(result.lrs)], result.lrs)


def test_accumulated_batches_give_one_loss_per_optimizer_step_and_one_lr():
    finder, model, _ = sweep(accumulate_grad_batches=2)
    result = finder.result
    reference = by_hand(Net(), accumulation_steps=2)
    assert result.stop_index == reference.stop_index > 10
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6)  # the mean of the two micro-batches
    seen = np.array(model.lrs_seen[: 2 * len(result.lrs)])
    np.testing.assert_array_equal(seen[0::2], result.lrs)  # the LR moves once per optimizer step
    np.testing.assert_array_equal(seen[1::2], result.lrs)


@pytest.mark.parametrize("scheduler", ["warmup", "one_cycle"])
def test_schedulers_start_from_the_suggestion(scheduler):
    finder, model, fit = sweep(Net(scheduler=scheduler), max_steps=1)
    result = finder.result
    np.testing.assert_allclose(result.losses, by_hand(Net()).losses, rtol=1e-6)  # no scheduler moved the sweep
    lr = result.suggested_lr
    assert finder.applied_lr == model.hparams.lr == lr
    optimizer, config = fit.optimizers[0], fit.lr_scheduler_configs[0]
    group = optimizer.param_groups[0]
    if scheduler == "warmup":  # LambdaLR: its base LR is the suggestion, and it has made one step of its warm-up
        assert config.scheduler.base_lrs == [lr] and group["initial_lr"] == lr
        assert group["lr"] == pytest.approx(lr * 2 / 10, rel=1e-12)
    else:  # OneCycleLR peaks at the suggestion, and starts at a 25th of it
        assert group["max_lr"] == lr
        assert group["initial_lr"] == pytest.approx(lr / 25, rel=1e-12) == config.scheduler.base_lrs[0]
    assert config.scheduler.get_last_lr() == [group["lr"]]


@pytest.mark.parametrize(
    ("trainer_kwargs", "range_test_kwargs"),
    [
        (dict(gradient_clip_val=0.1), dict(max_grad_norm=0.1)),
        (dict(precision="bf16-mixed"), dict(amp="bf16")),
        # Lightning turns precision="16-mixed" into bf16 on a CPU: its plugin, named, keeps fp16.
        (dict(plugins=[MixedPrecision("16-mixed", "cpu")]), dict(amp="fp16")),
    ],
    ids=["clipping", "bf16", "fp16"],
)
def test_clipping_and_precision_are_the_trainers(trainer_kwargs, range_test_kwargs):
    finder, _, fit = sweep(**trainer_kwargs)
    result = finder.result
    reference = by_hand(Net(), **range_test_kwargs)
    assert (result.stop_index, result.stop_reason) == (reference.stop_index, reference.stop_reason)
    assert len(result.losses) > 10
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6)
    np.testing.assert_allclose(result.grad_norms, reference.grad_norms, rtol=1e-5)  # before clipping
    # fp16: the scaler's first step overflows; it does not advance the sweep, and the scaler comes back.
    fp16 = range_test_kwargs.get("amp") == "fp16"
    assert result.skipped_steps == reference.skipped_steps == (1 if fp16 else 0)
    if fp16:
        assert fit.precision_plugin.scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale()
    if "max_grad_norm" in range_test_kwargs:
        plain = by_hand(Net())
        n = min(len(plain.losses), len(result.losses))
        assert not np.allclose(result.losses[:n], plain.losses[:n], rtol=1e-3)  # the clipping bites


class ManualNet(Net):
    """Manual optimization: training_step steps the optimizer itself."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        optimizer.zero_grad()
        loss = super().training_step(batch, batch_idx)
        self.manual_backward(loss)
        optimizer.step()
        return loss


def test_manual_optimization_is_swept_too():
    finder, model, fit = sweep(ManualNet())
    result = finder.result
    reference = by_hand(Net())
    assert result.stop_index == reference.stop_index > 10
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6)
    assert model.hparams.lr == fit.optimizers[0].param_groups[0]["lr"] == result.suggested_lr


def test_method_picks_the_suggestion():
    finder = LRFinder(**SETTINGS, method="minimum", progress=False)
    model = Net()
    trainer(callbacks=[finder]).fit(model, loader())
    result = finder.result
    assert next(iter(result.suggestions)) == "minimum" and "auto" in result.suggestions
    assert model.hparams.lr == result.suggested_lr == result.suggestions["minimum"].lr
    assert result.suggested_lr != result.suggestions["auto"].lr


class Probe(pl.Callback):
    """Copies of the state of the model, the optimizer, the trainer and every RNG at a hook."""

    def __init__(self, hook="on_fit_start"):
        self.hook, self.states, self.batches = hook, [], 0
        setattr(self, hook, self.capture)

    def capture(self, trainer, pl_module, *args):
        if self.hook == "on_train_epoch_start" and trainer.current_epoch != 1:
            return
        self.states.append(
            {
                "weights": {k: v.clone() for k, v in pl_module.state_dict().items()},
                "grads": [None if p.grad is None else p.grad.clone() for p in pl_module.parameters()],
                "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict()),
                "rng": (torch.get_rng_state(), np.random.get_state(), random.getstate()),
                "loop": copy.deepcopy(trainer.fit_loop.state_dict()),
                "step": (trainer.global_step, trainer.current_epoch, trainer.fit_loop.epoch_loop._batches_that_stepped),
                "metrics": {k: v.clone() for k, v in trainer.callback_metrics.items()},
                "batches": self.batches,
                "lr": pl_module.hparams.lr,
            }
        )

    def on_train_batch_end(self, *args):
        self.batches += 1

    def on_exception(self, trainer, pl_module, exception):
        self.capture(trainer, pl_module)


def assert_same(a, b, path="state"):
    """Bit for bit, recursively."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


@pytest.mark.parametrize("state_cache", ["cpu", "disk"])
def test_everything_comes_back_bitwise_after_the_sweep(state_cache):
    before, after = Probe(), Probe()
    finder = LRFinder(**SETTINGS, update_attr=False, state_cache=state_cache, progress=False)
    trainer(callbacks=[before, finder, after]).fit(Net(optimizer="adam"), loader())
    assert finder.result.stop_index > 10 and finder.applied_lr is None
    assert before.batches == after.batches == 0  # the other callbacks never saw the sweep
    assert_same(before.states[0], after.states[0])


def test_everything_comes_back_bitwise_after_an_exception_mid_sweep():
    before = Probe()
    fit = trainer(callbacks=[before, LRFinder(**SETTINGS, progress=False)])
    with pytest.raises(ValueError, match="bad batch at call 25"):
        fit.fit(Net(optimizer="adam", raise_at=25), loader())
    start, failed = before.states  # at on_fit_start, and at on_exception
    assert_same(start, failed)


class EpochOneFinder(LRFinder):
    """The sweep at the start of the second epoch, mid-training (as Lightning's docs do it)."""

    def on_fit_start(self, trainer, pl_module):
        pass

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.lr_find(trainer, pl_module)


class ValNet(Net):
    """With validation."""

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", F.cross_entropy(self.net(batch[0]), batch[1]))


def test_training_goes_on_as_if_no_sweep_ran_mid_training():
    def fit(*callbacks):
        # Dropout and a shuffling DataLoader with its own generator: RNGs that training draws on.
        model = ValNet(optimizer="adam", dropout=0.2)
        data = loader(shuffle=True, generator=torch.Generator().manual_seed(1))
        fit = trainer(callbacks=list(callbacks), max_epochs=2, max_steps=-1, limit_train_batches=6, limit_val_batches=2)
        fit.fit(model, data, loader())  # validation after each epoch, and the sanity check
        return model, fit.callback_metrics

    before, after = Probe("on_train_epoch_start"), Probe("on_train_epoch_start")
    finder = EpochOneFinder(**SETTINGS, update_attr=False, progress=False)
    swept, swept_metrics = fit(before, finder, after)
    assert finder.result is not None and len(finder.result.lrs) > 10
    assert before.states[0]["step"] == (6, 1, 6) and before.states[0]["optimizer"]["state"]  # mid-training
    assert_same(before.states[0], after.states[0])
    plain, plain_metrics = fit()
    assert_same(swept.state_dict(), plain.state_dict())
    assert_same(swept_metrics, plain_metrics)  # train_loss and val_loss
    assert set(plain_metrics) == {"train_loss", "val_loss"}


class Digits(pl.LightningDataModule):
    def train_dataloader(self):
        return loader()


def test_lr_find_gives_the_callbacks_result_and_a_model_ready_to_train():
    model = Net()
    weights = copy.deepcopy(model.state_dict())
    fit = trainer(max_steps=1)
    result = lr_find(fit, model, datamodule=Digits(), **SETTINGS, progress=False)
    callback = sweep()[0].result
    np.testing.assert_array_equal(result.losses, callback.losses)
    assert result.suggested_lr == callback.suggested_lr == model.hparams.lr
    assert_same(model.state_dict(), weights)
    assert not any(isinstance(c, LRFinder) for c in fit.callbacks)
    fit.fit(model, loader())  # the tuner's way: then train, at the suggestion
    assert fit.optimizers[0].param_groups[0]["lr"] == result.suggested_lr and fit.global_step == 1
    with pytest.raises(ValueError, match="already has an lrfind.lightning.LRFinder"):
        lr_find(trainer(callbacks=[LRFinder()]), Net(), loader())


class SeededDigits(pl.LightningDataModule):
    """A DataModule that shuffles with a generator of its own."""

    def __init__(self):
        super().__init__()
        self.generator = torch.Generator().manual_seed(7)

    def train_dataloader(self):
        return loader(shuffle=True, generator=self.generator)


def test_a_datamodules_own_generator_comes_back():
    """Its DataLoaders exist only once the sweep sets up its data; their generator is the
    DataModule's, and a fit after lr_find must shuffle as without it."""
    data = SeededDigits()
    state = data.generator.get_state()
    lr_find(trainer(max_steps=1), Net(), datamodule=data, **SETTINGS, update_attr=False, progress=False)
    assert torch.equal(data.generator.get_state(), state)


class EpochNet(Net):
    """Also logs an epoch mean (on_epoch=True), which Lightning sums over the epoch's batches."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("epoch_loss", loss, on_step=False, on_epoch=True)
        return loss


class MidEpochFinder(LRFinder):
    """The sweep at the fourth batch of the second epoch."""

    def on_fit_start(self, trainer, pl_module):
        pass

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == 1 and batch_idx == 3:
            self.lr_find(trainer, pl_module)


def test_a_sweep_mid_epoch_keeps_the_epochs_logged_sums():
    def fit(*callbacks):
        model = EpochNet(optimizer="adam")
        fit = trainer(callbacks=list(callbacks), max_epochs=2, max_steps=-1, limit_train_batches=6)
        fit.fit(model, loader())
        return model, fit.callback_metrics

    finder = MidEpochFinder(**SETTINGS, update_attr=False, progress=False)
    swept, swept_metrics = fit(finder)
    assert finder.result is not None
    plain, plain_metrics = fit()
    assert_same(swept.state_dict(), plain.state_dict())
    assert_same(swept_metrics, plain_metrics)
    assert "epoch_loss" in plain_metrics


class CyclicNet(Net):
    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        cyclic = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=self.hparams.lr, max_lr=10 * self.hparams.lr)
        return [optimizer], [{"scheduler": cyclic, "interval": "step"}]


class CyclicPeakNet(Net):
    """The other way to write it: the optimizer built at the cycle's peak."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        cyclic = torch.optim.lr_scheduler.CyclicLR(optimizer, base_lr=self.hparams.lr / 10, max_lr=self.hparams.lr)
        return [optimizer], [{"scheduler": cyclic, "interval": "step"}]


@pytest.mark.parametrize("net", [CyclicNet, CyclicPeakNet])
def test_a_cyclic_schedule_peaks_at_the_suggestion(net):
    """A CyclicLR's peak is its base, as OneCycleLR's: the cycle keeps its shape below the
    suggestion. CyclicPeakNet, built at its peak, used to cycle up to 10x the suggestion; it now
    trains as with the suggestion set by hand. CyclicNet, built at its low end, peaks at the
    suggestion too (by hand it would peak at 10x)."""
    finder, swept, fit = sweep(net(), max_steps=6)
    lr = finder.applied_lr
    (config,) = fit.lr_scheduler_configs
    assert config.scheduler.base_lrs[0] == pytest.approx(lr / 10, rel=1e-12)
    assert config.scheduler.max_lrs[0] == lr
    if net is CyclicPeakNet:
        by_hand = net(lr=lr)
        trainer(max_steps=6).fit(by_hand, loader())
        np.testing.assert_allclose(swept.lrs_seen[-6:], by_hand.lrs_seen, rtol=1e-12)


class SkippingNet(Net):
    """A training_step that never returns a loss (Lightning skips each batch)."""

    def training_step(self, batch, batch_idx):
        super().training_step(batch, batch_idx)


@pytest.mark.filterwarnings("ignore:`training_step` returned `None`")
def test_a_training_step_that_returns_no_loss_is_named_and_everything_comes_back():
    model = SkippingNet()
    weights = copy.deepcopy(model.state_dict())
    with pytest.raises(RuntimeError, match="training_step returned no loss for 50 steps in a row"):
        lr_find(trainer(max_steps=1), model, loader(), **SETTINGS, progress=False)
    assert_same(model.state_dict(), weights)


class FigureLogger(Logger):
    """A logger whose experiment takes figures and text as TensorBoard's ``SummaryWriter`` does."""

    def __init__(self):
        super().__init__()
        self.figures, self.texts, self.metrics = [], [], []

    name, version = "figures", 0

    @property
    def experiment(self):
        return self

    def add_figure(self, tag, figure, global_step=None, close=True):
        self.figures.append((tag, figure, global_step))

    def add_text(self, tag, text, global_step=None):
        self.texts.append((tag, text, global_step))

    def log_metrics(self, metrics, step=None):
        self.metrics.append((dict(metrics), step))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_the_result_goes_to_the_loggers_that_take_it_and_the_sweep_to_none(tmp_path):
    figures, csv = FigureLogger(), CSVLogger(tmp_path)
    finder, _, fit = sweep(logger=[figures, csv], log_every_n_steps=1, max_steps=2)
    [(tag, figure, step)] = figures.figures
    assert tag == "lrfind/range_test" and isinstance(figure, Figure) and step == 0
    [(tag, text, step)] = figures.texts
    assert tag == "lrfind/summary" and "Suggested LR" in text and step == 0
    # The loggers got the two training steps, none of the sweep's; the CSV logger no lrfind output.
    assert [step for _, step in figures.metrics] == [0, 1]
    fit.loggers[1].save()
    assert "lrfind" not in (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert finder.result is not None


def test_a_sweep_that_gives_no_lr_keeps_the_lr_and_warns():
    finder = LRFinder(min_lr=1e-12, max_lr=1e-11, num_steps=30, progress=False)
    model = Net()
    with pytest.warns(UserWarning, match=r"gives no LR to train at \(flat\)"):
        trainer(callbacks=[finder]).fit(model, loader())
    assert finder.result.diagnosis.kind == "flat" and finder.applied_lr is None
    assert model.hparams.lr == 1e-3


class PlainNet(Net):
    """The LR as a plain attribute, ``learning_rate``, and no ``hparams.lr``."""

    def __init__(self):
        super().__init__()
        self.learning_rate = 1e-3
        del self.hparams["lr"]

    def make_optimizer(self):
        return torch.optim.SGD(self.parameters(), lr=self.learning_rate, momentum=0.9)


def test_the_lr_attribute_is_found_or_named():
    finder, model, _ = sweep(PlainNet())
    assert model.learning_rate == finder.result.suggested_lr
    with pytest.raises(AttributeError, match="attr_name='rate'"):
        trainer(callbacks=[LRFinder(attr_name="rate")]).fit(Net(), loader())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(mode="log"), "mode"),
        (dict(diverge_threshold=0.5), "diverge_threshold"),
        (dict(method="best"), "method must be one of"),
        (dict(group_lrs="each"), "group_lrs"),
        (dict(check_every=0), "check_every"),
        (dict(state_cache="gpu"), "state_cache"),
        (dict(attr_name=5), "attr_name must be a str or None, got 5"),
        (dict(update_attr="no"), "update_attr must be True or False, got 'no'"),
        (dict(progress="yes"), "progress must be True or False"),
        (dict(log_result=None), "log_result must be True or False"),
    ],
)
def test_bad_settings_fail_when_the_callback_is_made(settings, message):
    with pytest.raises((ValueError, TypeError), match=message):
        LRFinder(**settings)
    with pytest.raises(TypeError, match="trainer must be a lightning Trainer, got NoneType"):
        lr_find(None, Net(), loader())


def test_imports_stay_lazy():
    code = (
        "import sys\n"
        "import lrfind\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]\n"
        "sys.modules['lightning'] = None\n"
        "try:\n"
        "    import lrfind.lightning\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert "pip install 'lrfind[lightning]'" in out.stdout, out.stderr


def test_fsdp1_strategy_gets_an_error_that_names_fsdp2():
    """Lightning's ``FSDPStrategy`` wraps the model in FSDP1, whose flat parameters a sweep cannot
    restore: refused, naming what works (FSDP2 through ``ModelParallelStrategy``)."""
    from lightning.pytorch.strategies import FSDPStrategy

    from lrfind.lightning import _check_strategy

    with pytest.raises(TypeError, match=r"strategy is FSDPStrategy.*ModelParallelStrategy.*fully_shard in configure"):
        _check_strategy(FSDPStrategy())


def test_deepspeed_strategy_is_refused():
    """DeepSpeed's engine owns the backward pass and the optimizer: refused. (The strategy cannot be
    built without deepspeed installed; an instance that skipped ``__init__`` is still one.)"""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    from lrfind.lightning import _check_strategy

    with pytest.raises(TypeError, match="strategy is DeepSpeedStrategy, which lrfind.lightning does not support"):
        _check_strategy(DeepSpeedStrategy.__new__(DeepSpeedStrategy))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Lightning's FSDPStrategy needs a GPU")
def test_fsdp1_strategy_is_refused_before_the_sweep_on_a_gpu():
    model = Net()
    before = [p.detach().clone() for p in model.parameters()]
    fit = pl.Trainer(
        accelerator="cuda",
        devices=1,
        strategy="fsdp",
        max_steps=0,
        logger=False,
        enable_checkpointing=False,
        callbacks=[LRFinder(**SETTINGS, progress=False)],
    )
    with pytest.raises(TypeError, match="ModelParallelStrategy"):
        fit.fit(model, loader())
    assert all(torch.equal(a, b.cpu()) for a, b in zip(before, model.cpu().parameters(), strict=True))


WORLD = 2
#: Seconds the DDP and FSDP2 tests may take, spawning and imports included, before they fail.
DEADLINE = 90


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp2"])
def test_ranks_record_the_global_curve_and_set_the_same_lr(strategy):
    """``strategy="ddp"``, and FSDP2 through Lightning's ``ModelParallelStrategy`` (``Sharded``):
    every rank records the one-process curve on the global batches, sets the same LR, and finds
    its own shards (parameters and optimizer state) as they were."""
    found = spawn_ranks(main, (WORLD, free_port(), strategy), world=WORLD, deadline=DEADLINE, what=strategy)
    for rank, report in found.items():
        assert "error" not in report, f"rank {rank}: {report['error']}"
        assert report["global_rank"] == rank
        assert report["restored"]
        assert report["sharded"] == (strategy == "fsdp2")
    a, b = found[0]["result"], found[1]["result"]
    for field in RESULT_FIELDS:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)
    lrs = [found[rank]["lrs"] for rank in range(WORLD)]
    assert lrs[0] == lrs[1] == dict.fromkeys(("applied", "module", "optimizer"), a["suggested_lr"])
    # Each rank's loss is its half's mean; their mean is a one-process run's on the global batches.
    reference = by_hand(Net(optimizer="adam" if strategy == "fsdp2" else "sgd"), loader(BATCH))
    assert (a["stop_index"], a["stop_reason"]) == (reference.stop_index, reference.stop_reason)
    np.testing.assert_allclose(a["losses"], reference.losses, rtol=1e-5)
    # The global gradient norm (DDP averages the gradients; FSDP2's shards reduce their norms).
    np.testing.assert_allclose(a["grad_norms"], reference.grad_norms, rtol=1e-4)
    assert a["suggested_lr"] == pytest.approx(reference.suggested_lr, rel=1e-3)


class NoLrNet(Net):
    """An LR that lives nowhere lr_find can set it: configure_optimizers hard-codes it."""

    def make_optimizer(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3, momentum=0.9)

    def __init__(self):
        super().__init__()
        del self.hparams["lr"]


def test_lr_find_needs_an_attribute_the_next_fit_reads():
    """The fit after lr_find builds new optimizers: without an LR attribute the suggestion was
    silently lost (it trained at the old LR); now that is an error before the sweep."""
    model = NoLrNet()
    with pytest.raises(AttributeError, match=r"none of \('lr', 'learning_rate'\).*update_attr=False"):
        lr_find(trainer(), model, loader(), **SETTINGS, progress=False)
    assert model.lrs_seen == []
    result = lr_find(trainer(), model, loader(), **SETTINGS, progress=False, update_attr=False)
    assert result.suggested_lr is not None
    # An LR on the datamodule is one the next fit reads (Lightning looks there too).
    data = SplittingData()
    data.lr = 1e-3
    result = lr_find(trainer(), NoLrNet(), datamodule=data, **SETTINGS, progress=False)
    assert data.lr == result.suggested_lr
    result = lr_find(trainer(), NoLrNet(), data, **SETTINGS, progress=False)  # positional, as trainer.fit takes it
    assert data.lr == result.suggested_lr


class SplittingData(pl.LightningDataModule):
    """A DataModule whose setup draws on the global RNG (random_split), as many do."""

    def setup(self, stage):
        dataset = loader().dataset
        self.train, _ = torch.utils.data.random_split(dataset, [0.8, 0.2])

    def train_dataloader(self):
        return torch.utils.data.DataLoader(self.train, batch_size=BATCH, drop_last=True)


def test_the_fit_after_lr_find_draws_what_it_would_have_drawn():
    """lr_find restores the global RNGs it found, so that the fit after it splits, shuffles and
    initialises as a fit without it (setup's random_split ran before the sweep's snapshot)."""

    def fit(lr, find):
        pl.seed_everything(3, verbose=False)
        model = Net(lr=lr)
        if find:
            lr_find(trainer(), model, datamodule=SplittingData(), **SETTINGS, progress=False)
        trainer(max_steps=5).fit(model, datamodule=SplittingData())
        return model

    found = fit(1e-3, find=True)
    by_hand = fit(found.hparams.lr, find=False)
    assert_same(found.state_dict(), by_hand.state_dict())
