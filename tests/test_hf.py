"""``lrfind.hf`` with the real transformers and accelerate, on the CPU: a tiny
``BertForSequenceClassification`` (built from a ``BertConfig``, nothing downloaded) learns to tell
the kinds of lines in Python's own ``difflib.py`` (comment, definition, control flow, other) from
their characters, in dict batches (``input_ids``, ``attention_mask``, ``labels``).

What ``lrfind.hf`` records is checked against ``lrfind.torch.range_test`` run by hand on the same
model, batches, optimizer, accumulation and clipping; what it applies, against the LR the
optimizer really steps with in the training that follows; what it leaves behind, against a
bitwise record of the model, the optimizer, every RNG and the Trainer's and accelerator's state,
and against a training run that never saw a range test.
"""

import copy
import difflib
import inspect
import os
import random
import subprocess
import sys

import numpy as np
import pytest

# Everything is built from configs; nothing may reach for the Hugging Face Hub (read at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
)

import lrfind  # noqa: E402
import lrfind.hf  # noqa: E402
from lrfind.torch import range_test as torch_range_test  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Characters per line (the sequence length) and the sweep every test runs: 40 optimizer steps of
#: 2 micro-batches, which on this task fall from ln(4) and explode before 1.0.
LENGTH = 24
SWEEP = dict(min_lr=1e-5, max_lr=1.0, num_steps=40, progress=False)
ACCUMULATION = 2


# --- real data and a real model ------------------------------------------------------------------


def _kind(line):
    if line.startswith("#"):
        return 0
    if line.startswith(("def ", "class ")):
        return 1
    if line.startswith(("return", "if ", "elif ", "else", "for ", "while ")):
        return 2
    return 3


def _encode():
    lines = [line.strip() for line in inspect.getsource(difflib).splitlines() if line.strip()]
    ids = torch.zeros(len(lines), LENGTH, dtype=torch.int64)
    for i, line in enumerate(lines):
        ids[i, : min(len(line), LENGTH)] = torch.tensor([min(ord(c), 127) for c in line[:LENGTH]])
    return ids, (ids != 0).long(), torch.tensor([_kind(line) for line in lines])


IDS, MASK, LABELS = _encode()


class Lines(Dataset):
    """The non-blank lines of difflib.py as character ids, labelled by kind; never modified."""

    def __len__(self):
        return len(LABELS)

    def __getitem__(self, i):
        return {"input_ids": IDS[i], "attention_mask": MASK[i], "labels": LABELS[i]}


def tiny_bert(seed=0):
    """A 2-layer, 32-wide BERT classifier (with its dropout), its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=LENGTH,
        num_labels=4,
    )
    return BertForSequenceClassification(config)


def make_trainer(tmp_path, cls=Trainer, callbacks=None, optimizers=(None, None), **overrides):
    """A Trainer with non-default optimizer settings (weight decay, beta2), accumulation and clipping."""
    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=ACCUMULATION,
        max_grad_norm=1.0,
        weight_decay=0.1,
        adam_beta2=0.99,
        max_steps=3,
        data_seed=11,  # the sampler's order, whatever the global seed
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    args = TrainingArguments(**{**settings, **overrides})
    return cls(model=tiny_bert(), args=args, train_dataset=Lines(), callbacks=callbacks, optimizers=optimizers)


class Counting(Trainer):
    """Records the LR of the first parameter group at every ``compute_loss`` call; raises at call
    ``raise_at`` (1-based) when it is set."""

    raise_at = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen_lrs = []

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.seen_lrs.append(None if self.optimizer is None else self.optimizer.param_groups[0]["lr"])
        if self.raise_at is not None and len(self.seen_lrs) == self.raise_at:
            raise RuntimeError("compute_loss failed mid-sweep")
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class StepLRs(TrainerCallback):
    """The LRs of every parameter group at each optimizer step of a training run."""

    def __init__(self):
        self.lrs = []

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.lrs.append([g["lr"] for g in optimizer.param_groups])


def trainers_optimizer(model, args):
    """The optimizer the Trainer builds, written out by hand: AdamW (fused, as TrainingArguments
    picks it on this torch) with the arguments' betas and eps, weight decay on every weight that is
    not a bias or a LayerNorm's."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            (no_decay if isinstance(module, nn.LayerNorm) or name == "bias" else decay).append(p)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    assert cls is torch.optim.AdamW
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return cls(groups, **kwargs)


def hand_run(tmp_path, seed, **settings):
    """``lrfind.torch.range_test`` by hand on a fresh copy of the model, the Trainer's optimizer and
    its train DataLoader (the same batches, drawn the same way), the model computing its loss."""
    trainer = make_trainer(tmp_path)
    model = tiny_bert()
    optimizer = trainers_optimizer(model, trainer.args)
    data = trainer.get_train_dataloader()
    torch.manual_seed(seed)
    return torch_range_test(model, optimizer, None, data, **{**SWEEP, **settings})


# --- what must come back as it was ----------------------------------------------------------------


def observe(trainer):
    """A bitwise record of everything a range test on ``trainer`` could change."""
    accelerator = trainer.accelerator
    optimizer = trainer.optimizer
    return {
        "model": {k: v.clone() for k, v in trainer.model.state_dict().items()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in trainer.model.named_parameters()},
        "training": [m.training for m in trainer.model.modules()],
        "optimizer": None if optimizer is None else copy.deepcopy(optimizer.state_dict()),
        "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
        "attrs": dict(vars(trainer)),
        "state": copy.deepcopy(vars(trainer.state)),
        "control": copy.deepcopy(vars(trainer.control)),
        "prepared": [list(getattr(accelerator, n)) for n in ("_models", "_optimizers", "_schedulers", "_dataloaders")],
        "gradient_state": dict(vars(accelerator.gradient_state)),
        "accumulation": accelerator.gradient_accumulation_steps,
        "args": copy.deepcopy(trainer.args.to_dict()),
    }


def assert_same(before, after):
    """Equal bitwise; the Trainer's attributes and the accelerator's registries by identity."""
    assert before.keys() == after.keys()
    for key in before:
        if key == "attrs":
            assert before[key].keys() == after[key].keys()
            changed = [k for k in before[key] if before[key][k] is not after[key][k]]
            assert not changed, f"Trainer attributes rebound: {changed}"
        elif key in ("prepared", "gradient_state"):
            assert_identical(before[key], after[key], key)
        else:
            assert_equal(before[key], after[key], key)


def assert_identical(a, b, where):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a is b or a == b, where


def assert_equal(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def final_weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


# --- the Trainer's settings are the sweep's ---------------------------------------------------------


def test_the_curve_is_a_hand_run_with_the_trainers_settings(tmp_path):
    trainer = make_trainer(tmp_path, cls=Counting)
    torch.manual_seed(7)
    result = lrfind.hf.range_test(trainer, **SWEEP)
    assert result.diagnosis.kind == "good" and result.suggested_lr is not None

    reference = hand_run(tmp_path, seed=7, accumulation_steps=ACCUMULATION, max_grad_norm=1.0)
    np.testing.assert_allclose(result.lrs, reference.lrs, rtol=0, atol=0)
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6)
    np.testing.assert_allclose(result.grad_norms, reference.grad_norms, rtol=1e-6)
    assert result.suggested_lr == pytest.approx(reference.suggested_lr, rel=1e-6)

    # Not a vacuous match: without the Trainer's accumulation, or its clipping, the curve differs.
    for other in (dict(max_grad_norm=1.0), dict(accumulation_steps=ACCUMULATION)):
        assert not np.allclose(hand_run(tmp_path, seed=7, **other).losses[:10], result.losses[:10], rtol=1e-6)

    # One LR per optimizer step, held over its micro-batches, recorded as the step's LR.
    steps = len(trainer.seen_lrs) // ACCUMULATION
    assert len(trainer.seen_lrs) == steps * ACCUMULATION and steps >= len(result.lrs)
    per_step = np.array(trainer.seen_lrs).reshape(steps, ACCUMULATION)
    assert (per_step == per_step[:, :1]).all()
    np.testing.assert_array_equal(per_step[: len(result.lrs), 0], result.lrs)
    np.testing.assert_array_equal(result.lrs, lrfind.sweep_lrs(1e-5, 1.0, 40)[: len(result.lrs)])


def test_refine_checks_candidates_with_the_trainers_step_and_applies_the_best(tmp_path):
    """refine=3 through the Trainer: the candidates train with its loss, accumulation and
    clipping (the one-at-a-time loop), score on held-out batches, and the best is applied;
    the scores equal a hand run's, and nothing else is left behind."""
    trainer = make_trainer(tmp_path)
    held_out = trainer.get_eval_dataloader(Lines())
    torch.manual_seed(7)
    before = observe(trainer)
    refine = dict(refine=3, refine_steps=4, val_data=held_out, val_batches=2)
    result = lrfind.hf.range_test(trainer, apply=True, **SWEEP, **refine)
    after = observe(trainer)
    assert result.refined is not None and len(result.refined.lrs) == 3 and np.isfinite(result.refined.scores).all()
    assert result.suggested_lr == result.refined.lr == trainer.args.learning_rate
    reference = hand_run(tmp_path, seed=7, accumulation_steps=ACCUMULATION, max_grad_norm=1.0, **refine)
    np.testing.assert_allclose(result.refined.lrs, reference.refined.lrs, rtol=1e-6)
    np.testing.assert_allclose(result.refined.scores, reference.refined.scores, rtol=1e-5)
    after["args"].pop("learning_rate"), before["args"].pop("learning_rate")  # apply=True set it
    assert_same(before, after)


def test_bf16_as_the_training_arguments_set_it(tmp_path):
    trainer = make_trainer(tmp_path, bf16=True)
    torch.manual_seed(7)
    result = lrfind.hf.range_test(trainer, **{**SWEEP, "num_steps": 12})
    settings = dict(accumulation_steps=ACCUMULATION, max_grad_norm=1.0, num_steps=12)
    bf16 = hand_run(tmp_path, seed=7, amp="bf16", **settings)
    np.testing.assert_allclose(result.losses, bf16.losses, rtol=1e-6)
    assert not np.allclose(result.losses, hand_run(tmp_path, seed=7, **settings).losses, rtol=1e-6)


def test_settings_override_the_trainers_and_its_own_are_refused(tmp_path):
    trainer = make_trainer(tmp_path, cls=Counting)
    lrfind.hf.range_test(trainer, **{**SWEEP, "num_steps": 5}, accumulation_steps=1, max_grad_norm=None)
    assert len(trainer.seen_lrs) == 5  # one micro-batch per step
    for owned in ("loss_fn", "step_fn", "backward_fn", "amp", "grad_scaler"):
        with pytest.raises(TypeError, match=owned):
            lrfind.hf.range_test(trainer, **{owned: None})
        with pytest.raises(TypeError, match=owned):
            lrfind.hf.LRFinderCallback(**{owned: None})
    with pytest.raises(TypeError, match="transformers.Trainer"):
        lrfind.hf.range_test(object())
    with pytest.raises(TypeError, match="unexpected keyword argument.*end_lr.*max_lr"):
        lrfind.hf.LRFinderCallback(end_lr=1.0)  # a typo fails here, not when training starts
    bad = [
        (dict(min_lr=-1), ValueError, "min_lr"),
        (dict(num_steps="5"), TypeError, "num_steps"),
        (dict(state_cache="gpu"), ValueError, "state_cache"),
        (dict(accumulation_steps=0), ValueError, "accumulation_steps"),
        (dict(group_lrs="x"), ValueError, "group_lrs"),
        (dict(methods="bogus"), ValueError, "method must be one of"),
        (dict(refine=3), ValueError, "val_data"),
    ]
    for settings, error, name in bad:  # so does a bad value
        with pytest.raises(error, match=name):
            lrfind.hf.LRFinderCallback(**settings)


# --- applying the suggestion ------------------------------------------------------------------------


@pytest.mark.parametrize("cached", ["nothing", "create_optimizer", "a previous training"])
def test_apply_makes_train_step_at_the_suggestion(tmp_path, cached):
    steps = StepLRs()
    trainer = make_trainer(tmp_path, callbacks=[steps])
    if cached == "create_optimizer":
        trainer.create_optimizer()  # today's trap: the cached optimizer keeps the old LR
    elif cached == "a previous training":
        trainer.train()  # a cached optimizer whose LR decayed to 0, with its initial_lr
        steps.lrs.clear()
    result = lrfind.hf.range_test(trainer, apply=True, **SWEEP)
    lr = result.suggested_lr
    assert result.diagnosis.gives_lr and lr != 5e-5
    assert trainer.args.learning_rate == lr
    trainer.train()
    # The linear schedule (no warmup) steps first at its base LR: the suggestion, in both groups.
    assert steps.lrs[0] == [lr, lr]
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == [lr, lr]
    assert trainer.lr_scheduler.base_lrs == [lr, lr]


def test_without_apply_training_is_as_if_no_range_test_ran(tmp_path):
    steps = StepLRs()
    tested = make_trainer(tmp_path, callbacks=[steps])
    lrfind.hf.range_test(tested, **SWEEP)
    assert tested.args.learning_rate == 5e-5 and tested.optimizer is None
    tested.train()
    untouched = make_trainer(tmp_path)
    untouched.train()
    assert steps.lrs[0] == [5e-5, 5e-5]
    assert_equal(final_weights(tested), final_weights(untouched), "weights")


def test_apply_with_optimizer_cls_and_kwargs_uses_the_suggestion(tmp_path):
    steps = StepLRs()
    kwargs = {"lr": 1e-3, "momentum": 0.9}
    model = tiny_bert()
    args = TrainingArguments(
        output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Lines(),
        callbacks=[steps],
        optimizer_cls_and_kwargs=(torch.optim.SGD, kwargs),
    )
    result = lrfind.hf.range_test(trainer, apply=True, **SWEEP)
    assert result.diagnosis.gives_lr
    trainer.train()
    assert isinstance(trainer.optimizer.optimizer, torch.optim.SGD)
    assert steps.lrs[0] == [result.suggested_lr] * 2
    assert kwargs == {"lr": 1e-3, "momentum": 0.9}  # the caller's dict is left alone


class Flat(Trainer):
    """A loss that does not depend on the weights' updates: a flat sweep, which gives no LR."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, inputs) * 0.0 + 1.0


def test_no_lr_to_train_at_warns_and_applies_nothing(tmp_path):
    trainer = make_trainer(tmp_path, cls=Flat)
    trainer.create_optimizer()
    before = observe(trainer)
    with pytest.warns(UserWarning, match="gives no LR to train at") as caught:
        result = lrfind.hf.range_test(trainer, apply=True, **SWEEP)
    assert not result.diagnosis.gives_lr
    assert result.diagnosis.message in str(caught[0].message)
    assert_same(before, observe(trainer))

    callback = lrfind.hf.LRFinderCallback(**SWEEP)
    steps = StepLRs()
    trainer = make_trainer(tmp_path, cls=Flat, callbacks=[callback, steps])
    with pytest.warns(UserWarning, match="gives no LR to train at"):
        trainer.train()
    assert not callback.result.diagnosis.gives_lr
    assert steps.lrs[0] == [5e-5, 5e-5] and trainer.args.learning_rate == 5e-5


def test_apply_refuses_a_scheduler_it_cannot_rebuild(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = Counting(model=model, args=args, train_dataset=Lines(), optimizers=(optimizer, scheduler))
    with pytest.raises(ValueError, match="cannot set the LR of the scheduler"):
        lrfind.hf.range_test(trainer, apply=True, **SWEEP)
    assert trainer.seen_lrs == []  # refused before the sweep
    trainer.add_callback(lrfind.hf.LRFinderCallback(**SWEEP))
    with pytest.raises(ValueError, match="cannot set the LR of the scheduler"):
        trainer.train()
    assert trainer.seen_lrs == []
    # Without apply, the user's optimizer is swept (its own LR as the base) and left as it was.
    before = optimizer.state_dict()
    lrfind.hf.range_test(trainer, **SWEEP)
    assert_equal(optimizer.state_dict(), before, "optimizer")


# --- the callback ------------------------------------------------------------------------------------


def test_callback_gives_the_same_result_and_trains_at_it(tmp_path):
    callback, steps = lrfind.hf.LRFinderCallback(**SWEEP), StepLRs()
    trainer = make_trainer(tmp_path, callbacks=[callback, steps], warmup_steps=1, max_steps=4)
    trainer.train()
    # Run as lrfind.hf.range_test on a fresh Trainer (before its training, the same RNG state).
    reference = lrfind.hf.range_test(make_trainer(tmp_path, warmup_steps=1, max_steps=4), **SWEEP)
    result = callback.result
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-6)
    assert result.suggested_lr == reference.suggested_lr
    lr = result.suggested_lr
    assert result.diagnosis.gives_lr and trainer.args.learning_rate == lr
    # The optimizer existed before the sweep; its scheduler is rebuilt over the suggestion: one
    # warmup step from 0, then linear decay from the suggestion over the remaining 3 steps.
    assert [s[0] for s in steps.lrs] == pytest.approx([0.0, lr, lr * 2 / 3, lr / 3], rel=1e-12)
    assert trainer.lr_scheduler.base_lrs == [lr, lr]
    assert trainer.callback_handler.lr_scheduler is trainer.lr_scheduler


def test_callback_without_apply_leaves_training_bitwise_unchanged(tmp_path):
    callback = lrfind.hf.LRFinderCallback(apply=False, **SWEEP)
    tested = make_trainer(tmp_path, callbacks=[callback])
    tested.train()
    assert callback.result is not None and callback.result.diagnosis.gives_lr
    untouched = make_trainer(tmp_path)
    untouched.train()
    assert_equal(final_weights(tested), final_weights(untouched), "weights")
    assert_equal(tested.optimizer.state_dict(), untouched.optimizer.state_dict(), "optimizer")
    assert tested.state.global_step == untouched.state.global_step == 3


def test_callback_runs_once_and_can_be_given_its_trainer(tmp_path):
    callback = lrfind.hf.LRFinderCallback(apply=False, **{**SWEEP, "num_steps": 5})
    trainer = make_trainer(tmp_path, cls=Counting)
    trainer.add_callback(callback)
    callback.set_trainer(trainer)
    trainer.train()
    first = callback.result
    sweep_calls = 5 * ACCUMULATION
    assert first is not None and len(trainer.seen_lrs) == sweep_calls + 3 * ACCUMULATION
    trainer.train()  # a second training: no second sweep
    assert callback.result is first and len(trainer.seen_lrs) == sweep_calls + 6 * ACCUMULATION


def test_callback_needs_a_trainer_unless_training_resumes():
    callback = lrfind.hf.LRFinderCallback()
    with pytest.raises(RuntimeError, match="set_trainer"):
        callback.on_train_begin(None, TrainerState(global_step=0), None)
    # A resumed training (a step already done) keeps its schedule: no sweep, nothing looked for.
    assert callback.on_train_begin(None, TrainerState(global_step=5), None) is None
    assert callback.result is None


# --- nothing left behind ----------------------------------------------------------------------------


@pytest.mark.parametrize("cached", [False, True], ids=["no optimizer", "cached optimizer"])
@pytest.mark.parametrize("ending", ["success", "exception"])
def test_range_test_leaves_no_trace(tmp_path, cached, ending):
    trainer = make_trainer(tmp_path, cls=Counting)
    if cached:
        trainer.train()  # an optimizer with Adam state, a scheduler, a used DataLoader
    trainer.seen_lrs.clear()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    if ending == "exception":
        trainer.raise_at = 2 * 17 + 1  # the first micro-batch of step 18, mid-sweep
    before = observe(trainer)
    if ending == "exception":
        with pytest.raises(RuntimeError, match="compute_loss failed mid-sweep"):
            lrfind.hf.range_test(trainer, **SWEEP)
        assert len(trainer.seen_lrs) == trainer.raise_at
    else:
        lrfind.hf.range_test(trainer, **SWEEP)
    assert_same(before, observe(trainer))
    assert (trainer.optimizer is None) is (not cached)


def test_callback_sweep_that_raises_leaves_the_model_as_it_was(tmp_path):
    trainer = make_trainer(tmp_path, cls=Counting, callbacks=[lrfind.hf.LRFinderCallback(**SWEEP)])
    weights = final_weights(trainer)
    trainer.raise_at = 5
    with pytest.raises(RuntimeError, match="compute_loss failed mid-sweep"):
        trainer.train()
    assert_equal(final_weights(trainer), weights, "weights")
    assert all(len(state) == 0 for state in trainer.optimizer.state.values())
    assert trainer.args.learning_rate == 5e-5


# --- plain accelerate ----------------------------------------------------------------------------------


def _prepared(accelerator, seed=0):
    """A fresh model, AdamW and DataLoader, as accelerator.prepare returns them, and raw twins."""
    loader = DataLoader(Lines(), batch_size=8)
    model, twin = tiny_bert(seed), tiny_bert(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return accelerator.prepare(model, optimizer, loader), (twin, torch.optim.AdamW(twin.parameters(), lr=1e-3), loader)


def test_range_test_on_prepared_objects_with_accelerator_backward():
    accelerator = Accelerator(cpu=True)
    (model, optimizer, data), (twin, twin_optimizer, loader) = _prepared(accelerator)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    result = torch_range_test(model, optimizer, None, data, backward_fn=accelerator.backward, **SWEEP)
    torch.manual_seed(5)
    plain = torch_range_test(twin, twin_optimizer, None, loader, **SWEEP)
    np.testing.assert_allclose(result.losses, plain.losses, rtol=1e-6)
    assert result.diagnosis.gives_lr and result.suggested_lr == pytest.approx(plain.suggested_lr, rel=1e-6)
    assert_equal({k: v.clone() for k, v in model.state_dict().items()}, weights, "weights")


def test_accelerate_range_test_accumulates_through_the_accelerator():
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=ACCUMULATION)
    (model, optimizer, data), (twin, twin_optimizer, loader) = _prepared(accelerator)
    settings = dict(SWEEP, max_grad_norm=1.0)
    torch.manual_seed(5)
    result = lrfind.hf.accelerate_range_test(accelerator, model, optimizer, None, data, **settings)
    torch.manual_seed(5)
    plain = torch_range_test(twin, twin_optimizer, None, loader, accumulation_steps=ACCUMULATION, **settings)
    np.testing.assert_allclose(result.losses, plain.losses, rtol=1e-6)
    np.testing.assert_allclose(result.grad_norms, plain.grad_norms, rtol=1e-6)
    assert accelerator.gradient_accumulation_steps == ACCUMULATION
    assert not accelerator.gradient_state.in_dataloader and data.iteration == 0
    # The trap it avoids: accelerator.backward divides by its accumulation again, halving every gradient.
    torch.manual_seed(5)
    naive = torch_range_test(
        model, optimizer, None, data, backward_fn=accelerator.backward, accumulation_steps=ACCUMULATION, **settings
    )
    np.testing.assert_allclose(naive.grad_norms[:5], plain.grad_norms[:5] / ACCUMULATION, rtol=1e-5)


def test_accelerate_range_test_drives_the_accelerators_grad_scaler():
    # fp16 needs a GPU; the accelerator's GradScaler is given by hand here, on the CPU, to check that
    # the sweep scales, unscales before clipping and steps through it (a power-of-two scale
    # leaves every gradient exact), and that the scaler comes back as it was.
    accelerator = Accelerator(cpu=True)
    accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=3)
    scaler_state = accelerator.scaler.state_dict()
    (model, optimizer, data), (twin, twin_optimizer, loader) = _prepared(accelerator)
    settings = dict(SWEEP, max_grad_norm=1.0, num_steps=12)
    torch.manual_seed(5)
    result = lrfind.hf.accelerate_range_test(accelerator, model, optimizer, None, data, **settings)
    torch.manual_seed(5)
    plain = torch_range_test(twin, twin_optimizer, None, loader, **settings)
    np.testing.assert_allclose(result.losses, plain.losses, rtol=1e-6)
    np.testing.assert_allclose(result.grad_norms, plain.grad_norms, rtol=1e-6)
    assert result.skipped_steps == 0
    assert accelerator.scaler.state_dict() == scaler_state
    with pytest.raises(TypeError, match="backward_fn"):
        lrfind.hf.accelerate_range_test(accelerator, model, optimizer, None, data, backward_fn=None)
    # The plain range test refuses the wrapper that steps the scaler itself, and says what to do.
    assert optimizer.scaler is accelerator.scaler
    with pytest.raises(ValueError, match="steps its own GradScaler .*accelerate_range_test"):
        torch_range_test(model, optimizer, None, data, backward_fn=accelerator.backward, **settings)


# --- packaging -----------------------------------------------------------------------------------------


def test_imports_stay_lazy_and_a_missing_extra_is_named():
    code = (
        "import sys, lrfind\n"
        "assert not {'transformers', 'accelerate'} & set(sys.modules), sorted(sys.modules)\n"
        "sys.modules['accelerate'] = sys.modules['transformers'] = None  # neither is installed\n"
        "try:\n"
        "    import lrfind.hf\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert "pip install 'lrfind[hf]'" in out.stdout


def test_the_applied_lr_is_the_suggestion_exactly_for_every_scheduler(tmp_path):
    """transformers builds cosine_with_min_lr (and polynomial) from optimizer.defaults["lr"], which
    kept the old LR: the callback's schedule rose instead of decaying. The training after the
    callback now steps at the LRs of a Trainer given the suggestion by hand."""
    schedule = dict(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr": 1e-6}, max_steps=4)
    callback, steps = lrfind.hf.LRFinderCallback(**SWEEP), StepLRs()
    make_trainer(tmp_path, callbacks=[callback, steps], **schedule).train()
    lr = callback.result.suggested_lr
    assert callback.result.diagnosis.gives_lr
    by_hand = StepLRs()
    make_trainer(tmp_path, callbacks=[by_hand], learning_rate=lr, **schedule).train()
    assert steps.lrs == by_hand.lrs
    assert steps.lrs[-1][0] < steps.lrs[0][0], "the cosine decays"


def test_apply_puts_the_first_group_at_the_suggestion_to_the_bit(tmp_path):
    """Groups keep their ratios, but the first one (and any at its LR) gets the suggestion itself:
    lr * base / base is an ulp off for about one LR in eight."""
    result = lrfind.hf.range_test(make_trainer(tmp_path), **SWEEP)
    lr = result.suggested_lr
    base = next(b for b in 5e-5 * (1 + np.arange(1, 1000) * 1e-4) if lr * b / b != lr)
    trainer = make_trainer(tmp_path, learning_rate=float(base))
    trainer.create_optimizer()
    lrfind.hf._apply(trainer, result, "ratio", training=False)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [lr, lr]
    assert trainer.optimizer.defaults["lr"] == lr


def test_flags_must_be_bools(tmp_path):
    trainer = make_trainer(tmp_path)
    for flag in ("apply", "progress", "restore"):
        with pytest.raises(TypeError, match=f"{flag} must be True or False, got str 'no'"):
            lrfind.hf.range_test(trainer, **{flag: "no"})
        with pytest.raises(TypeError, match=f"{flag} must be True or False, got str 'no'"):
            lrfind.hf.LRFinderCallback(**{flag: "no"})
    with pytest.raises(ValueError, match="num_steps must be an int >= 2, got True"):
        lrfind.hf.LRFinderCallback(num_steps=True)
