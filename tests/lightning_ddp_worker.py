"""The LightningModule and data of ``test_lightning.py``, and the rank side of its DDP and FSDP2
tests: ``main`` runs in a fresh (spawned) process per rank, over gloo.

They live here so that the single-process references in ``test_lightning.py`` build exactly what
every rank builds.
"""

import os
import traceback
import warnings

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from lrfind.lightning import LRFinder

#: The sweep of the tests: on the digits MLP it diverges well before its last step.
SETTINGS = dict(min_lr=1e-4, max_lr=10.0, num_steps=60)
#: The global batch: 1797 digits make 28 of them (the last, partial one is dropped).
BATCH = 64
#: Warnings from Lightning about the test setup, not from lrfind (pytest's filters; ``main`` sets the
#: same): a deprecation inside Lightning on torch 2.15 (as in test_peers.py), and the DataLoader
#: worker advice on machines with many cores.
LIGHTNING_WARNINGS = (
    r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning",
    r"ignore:The '.*' does not have many workers",
)


def digits():
    """The digits, scaled to [0, 1], in their file order."""
    x, y = load_digits(return_X_y=True)
    return torch.utils.data.TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32), torch.tensor(y))


def loader(batch_size=BATCH, **kwargs):
    return torch.utils.data.DataLoader(digits(), batch_size=batch_size, drop_last=True, **kwargs)


def mlp(dropout=0.0):
    """64-32-10, the same weights every time."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(dropout), nn.Linear(32, 10))


def share(rank, world):
    """Rank ``rank``'s even share of every global batch of ``loader()``: rows ``rank::world``."""
    rows = torch.utils.data.Subset(digits(), range(rank, len(digits()), world))
    return torch.utils.data.DataLoader(rows, batch_size=BATCH // world, drop_last=True)


class Net(pl.LightningModule):
    """The digits MLP as users write it: the LR in ``hparams.lr``, ``self.log`` in ``training_step``.

    ``optimizer``: ``"sgd"`` (momentum 0.9) or ``"adam"``; ``scheduler``: None, ``"warmup"`` (a
    ``LambdaLR`` from a tenth of the LR, in a dict with ``"lr_scheduler"``) or ``"one_cycle"``
    (``OneCycleLR`` peaking at the LR, momentum fixed); ``raise_at``: the ``training_step`` call that raises.
    Every call records the LR it trains at in ``lrs_seen``.
    """

    def __init__(self, lr=1e-3, optimizer="sgd", scheduler=None, raise_at=None, dropout=0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = mlp(dropout)
        self.lrs_seen = []

    def training_step(self, batch, batch_idx):
        if len(self.lrs_seen) + 1 == self.hparams.raise_at:
            raise ValueError(f"bad batch at call {self.hparams.raise_at}")
        self.lrs_seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        loss = F.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def make_optimizer(self):
        if self.hparams.optimizer == "adam":
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    def configure_optimizers(self):
        optimizer = self.make_optimizer()
        if self.hparams.scheduler == "warmup":
            warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}
        if self.hparams.scheduler == "one_cycle":
            cycle = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=self.hparams.lr, total_steps=100, cycle_momentum=False
            )
            return [optimizer], [{"scheduler": cycle, "interval": "step"}]
        return optimizer


class Sharded(Net):
    """``Net`` sharded with FSDP2 over the data-parallel mesh of Lightning's ``ModelParallelStrategy``:
    each Linear, then the whole net (``configure_model``, as Lightning documents it)."""

    def configure_model(self):
        from torch.distributed.fsdp import fully_shard

        mesh = self.device_mesh["data_parallel"]
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(self.net, mesh=mesh)


class Shards(pl.Callback):
    """Copies of this rank's own shards (parameters, and the optimizer state) when the fit starts;
    placed before the ``LRFinder``, it sees them as the sweep will find them."""

    def on_fit_start(self, trainer, pl_module):
        self.before = local_state(pl_module, trainer.optimizers[0])


def local_state(module, optimizer):
    """This rank's local tensors of ``module``'s parameters and ``optimizer``'s state, copied."""

    def local(t):
        return (t.to_local() if hasattr(t, "to_local") else t).detach().clone()

    params = {name: local(p) for name, p in module.named_parameters()}
    state = {i: {k: local(v) for k, v in s.items()} for i, s in enumerate(optimizer.state.values())}
    return params, state


def trainer(**kwargs):
    """A quiet CPU Trainer; ``kwargs`` override the defaults."""
    settings = dict(
        accelerator="cpu",
        devices=1,
        max_steps=0,
        enable_progress_bar=False,
        logger=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return pl.Trainer(**{**settings, **kwargs})


#: What a rank reports of its result (numpy arrays and plain values pickle across processes).
RESULT_FIELDS = ("lrs", "losses", "grad_norms", "stop_index", "stop_reason", "suggested_lr")


def main(rank, world, port, strategy, queue):
    """Rank ``rank`` of a fit with an ``LRFinder``; puts ``(rank, report)`` on ``queue``.

    ``strategy``: ``"ddp"`` or ``"fsdp2"`` (``Sharded`` under Lightning's ``ModelParallelStrategy``;
    the report then holds whether every local shard came back bitwise).

    The environment says that the processes exist already (``LOCAL_RANK``), so Lightning starts none.
    Every rank trains on its even share of each global batch (``share``; Lightning's own
    DistributedSampler would shuffle). Any warning is an error, as under pytest.
    """
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), NODE_RANK="0", LOCAL_RANK=str(rank)
    )
    warnings.simplefilter("error")
    warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning)
    warnings.filterwarnings("ignore", r"The '.*' does not have many workers")
    torch.set_num_threads(1)  # two ranks on a small machine: intra-op threads only spin
    report = {}
    try:
        shards = Shards()
        finder = LRFinder(**SETTINGS, progress=False)
        if strategy == "fsdp2":
            from lightning.pytorch.strategies import ModelParallelStrategy

            model = Sharded(optimizer="adam")
            strategy = ModelParallelStrategy(data_parallel_size=world, tensor_parallel_size=1)
        else:
            model = Net()
        fit = trainer(strategy=strategy, devices=world, callbacks=[shards, finder], use_distributed_sampler=False)
        fit.fit(model, share(rank, world))
        (params, state), (params_after, state_after) = shards.before, local_state(model, fit.optimizers[0])
        report["restored"] = params.keys() == params_after.keys() and all(
            torch.equal(params[k], params_after[k]) for k in params
        )
        report["restored"] &= state.keys() == state_after.keys() and all(
            s.keys() == state_after[i].keys() and all(torch.equal(v, state_after[i][k]) for k, v in s.items())
            for i, s in state.items()
        )
        report["sharded"] = any(hasattr(p, "to_local") for p in model.parameters())
        report["result"] = {field: getattr(finder.result, field) for field in RESULT_FIELDS}
        report["lrs"] = {
            "applied": finder.applied_lr,
            "module": model.hparams.lr,
            "optimizer": fit.optimizers[0].param_groups[0]["lr"],
        }
        report["global_rank"] = fit.global_rank
        report["calls"] = len(model.lrs_seen)
    except Exception:
        report["error"] = traceback.format_exc()
    queue.put((rank, report))
    if "error" not in report:
        torch.distributed.destroy_process_group()  # a quick exit; after a failure it could wait on the peer
