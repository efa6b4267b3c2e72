"""What the spawned ranks run (and what the single process runs as the reference).

:func:`run_step` is one real training step of :class:`~lit_metric.MetricLearningModule`
(``training_step``: embed → gather → mine → loss under ``global_reduction``) on a small float64
model, wrapped in ``torch.nn.parallel.DistributedDataParallel`` when a process group runs — so the
gradients are DDP's averaged ones, as in Lightning's ``ddp`` strategy.  Without a process group it
is the single-process reference on the concatenated batch.

:func:`run_all` is the one function spawned: it runs every job in one pair of processes (process
start-up dominates the cost).
"""

from __future__ import annotations

import warnings
import zlib
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lit_metric import MetricLearningModule, distributed
from tests.distributed._cases import (
    BATCH,
    CASES,
    EMB_DIM,
    FEATURES,
    HIDDEN,
    SSL_CASES,
    SSL_STEPS,
    WORLD,
    Case,
    make_batch,
    make_ssl_batch,
)

__all__ = ["case_seed", "global_tuples", "run_all", "run_ssl", "run_step"]


class _Recorder(MetricLearningModule):
    """Keeps the step's embeddings (with their gradient) and the mined tuples."""

    last_z: Tensor
    last_tuples: tuple[Tensor, ...] | None = None

    def embed(self, x: Tensor) -> Tensor:
        z = super().embed(x)
        z.retain_grad()
        self.last_z = z
        return z

    def mine(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...] | None:
        self.last_tuples = super().mine(*args, **kwargs)
        return self.last_tuples


class _Step(nn.Module):
    """What Lightning's DDP wrapper does: ``forward`` runs ``training_step``."""

    def __init__(self, module: MetricLearningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.module.training_step((x, y), 0)


def case_seed(name: str) -> int:
    return zlib.crc32(name.encode())


def build_module(case: Case, seed: int) -> _Recorder:
    torch.manual_seed(seed)
    module = _Recorder(
        backbone=nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh()),
        backbone_features=HIDDEN,
        embedding_dim=EMB_DIM,
        loss=case.loss.build(),
        miner=case.miner.build() if case.miner is not None else None,
        normalize_embeddings=False,  # random, non-normalised embeddings
    )
    return module.double()


def global_tuples(tuples: tuple[Tensor, ...] | None, offset: int) -> list[list[tuple[int, ...]]] | None:
    """Mined tuples with anchors mapped to global batch positions: triplets, or (positive, negative) pairs."""
    if tuples is None:
        return None
    if type(tuples).__name__ == "Quadruplets":  # (a, p, n1, n2): only `a` indexes the anchors
        a, p, n1, n2 = tuples
        return [sorted(zip((a + offset).tolist(), p.tolist(), n1.tolist(), n2.tolist()))]
    if len(tuples) == 3:
        a, p, n = tuples
        return [sorted(zip((a + offset).tolist(), p.tolist(), n.tolist()))]
    a1, p, a2, n = tuples
    return [sorted(zip((a1 + offset).tolist(), p.tolist())), sorted(zip((a2 + offset).tolist(), n.tolist()))]


def run_step(name: str, rank: int = 0, world: int = 1) -> dict[str, Any]:
    """One training step of case ``name``: this rank's slice under DDP, the whole batch without."""
    case = CASES[name]
    seed = case_seed(name)
    x, y = make_batch(case.kind, seed, WORLD, BATCH)
    offset = 0
    if world > 1:
        offset = rank * BATCH
        x, y = x[offset : offset + BATCH], y[offset : offset + BATCH]
    module = build_module(case, seed)
    step: nn.Module = _Step(module)
    if world > 1:
        step = nn.parallel.DistributedDataParallel(step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        loss = step(x, y)
    loss.backward()
    return {
        "loss": loss.detach().clone(),
        "grads": {n: (p.grad.clone() if p.grad is not None else None) for n, p in module.named_parameters()},
        "z_grad": module.last_z.grad.clone() if module.last_z.grad is not None else None,
        "tuples": global_tuples(module.last_tuples, offset),
    }


class _SSLStep(nn.Module):
    """A two-layer model and a self-supervised loss; ``forward`` is one loss evaluation."""

    def __init__(self, loss: nn.Module, kind: str) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, EMB_DIM))
        self.loss = loss
        self.kind = kind

    def forward(self, v1: Tensor, v2: Tensor, labels: Tensor, indices: Tensor) -> Tensor:
        if self.kind == "bank":
            return self.loss(self.net(v1), indices)
        if self.kind == "one_view_labels":
            return self.loss(self.net(v1), None, labels)
        return self.loss(self.net(v1), self.net(v2), labels if self.kind == "views_labels" else None)


class _SSLModuleStep(nn.Module):
    """``SelfSupervisedModule.training_step`` on the batch layout its data modules yield."""

    def __init__(self, loss: nn.Module, kind: str) -> None:
        super().__init__()
        from lit_metric.ssl import SelfSupervisedModule

        self.module = SelfSupervisedModule(
            backbone=nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.Tanh()),
            backbone_features=HIDDEN,
            projection_head=nn.Linear(HIDDEN, EMB_DIM),  # no BatchNorm: per-rank statistics would differ
            embedding_dim=EMB_DIM,
            loss=loss,
            use_labels=kind in ("views_labels", "one_view_labels"),
        )
        self.kind = kind

    def forward(self, v1: Tensor, v2: Tensor, labels: Tensor, indices: Tensor) -> Tensor:
        batch: tuple[Any, ...]
        if self.kind == "bank":
            batch = (v1, indices)
        elif self.kind == "one_view_labels":
            batch = (v1, labels, indices)
        elif self.kind == "views_labels":
            batch = ((v1, v2), labels, indices)
        else:
            batch = ((v1, v2), indices)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # self.log without a Trainer
            return self.module.training_step(batch, 0)


def run_ssl(name: str, rank: int = 0, world: int = 1) -> dict[str, Any]:
    """``SSL_STEPS`` SGD steps of an SSL case (DDP without buffer broadcast, so banks evolve independently)."""
    case = SSL_CASES[name]
    seed = case_seed(name)
    torch.manual_seed(seed)
    wrapper = _SSLModuleStep if case.via_module else _SSLStep
    model = wrapper(case.loss.build(), case.kind).double()
    step: nn.Module = model
    if world > 1:
        step = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for i in range(SSL_STEPS):
        data = make_ssl_batch(i, seed)
        if world > 1:
            data = {k: v[rank * BATCH : (rank + 1) * BATCH] for k, v in data.items()}
        opt.zero_grad()
        loss = step(**data)
        loss.backward()
        opt.step()
        losses.append(loss.detach().clone())
    return {
        "losses": torch.stack(losses),
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
    }


# --- jobs ---------------------------------------------------------------------------------------
def _equivalence(rank: int, world: int, names: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        out[name] = run_step(name, rank, world)
        dist.barrier()  # a case that desynchronised the ranks fails here, not in the next case
    return out


def _protocol(rank: int, world: int) -> dict[str, Any]:
    """Reductions issued by some ranks only: the drain protocol must pair them correctly."""
    out: dict[str, Any] = {}
    with distributed.global_reduction():  # rank 0 reduces twice, the others never
        if rank == 0:
            out["a"] = [
                float(distributed.reduce_mean(torch.tensor(6.0), 3)),
                float(distributed.reduce_mean(torch.tensor(4.0), 2)),
            ]
    with distributed.global_reduction():  # rank 0 once, the others twice
        if rank == 0:
            out["b"] = [float(distributed.reduce_mean(torch.tensor(2.0, dtype=torch.float64), 2))]
        else:
            out["b"] = [
                float(distributed.reduce_mean(torch.tensor(3.0), torch.tensor(1))),
                float(distributed.reduce_mean(torch.tensor(5.0), 5)),
            ]
    with distributed.global_reduction():  # nesting shares the outer protocol; enabled=False is local
        with distributed.global_reduction():
            inner = float(distributed.reduce_mean(torch.tensor(float(rank + 1)), 1))
        with distributed.global_reduction(enabled=False):
            local = float(distributed.reduce_mean(torch.tensor(8.0), 4))
        out["nested"] = [inner, local, distributed.global_reduction_active()]
    out["active_after"] = distributed.global_reduction_active()
    check = torch.tensor([float(rank + 1)])
    dist.all_reduce(check)  # the collectives are still aligned
    out["aligned"] = float(check)
    return out


def _uneven(rank: int, world: int) -> dict[str, Any]:
    """Unequal batch sizes: a clear error on every rank, and the group still works afterwards."""
    torch.manual_seed(0)
    module = MetricLearningModule(
        backbone=nn.Linear(FEATURES, HIDDEN), backbone_features=HIDDEN, embedding_dim=EMB_DIM
    )
    b = 4 + rank
    errors: dict[str, str | None] = {}
    try:
        module.gather(torch.randn(b, EMB_DIM), torch.zeros(b, dtype=torch.long))
        errors["module"] = None
    except ValueError as e:
        errors["module"] = str(e)
    try:
        distributed.all_gather_with_grad(torch.randn(b, 3), check_sizes=True)
        errors["gather"] = None
    except ValueError as e:
        errors["gather"] = str(e)
    check = torch.ones(1)
    dist.all_reduce(check)
    return {"errors": errors, "aligned": float(check)}


def recall_data() -> tuple[Tensor, Tensor]:
    """37 items (odd: a 2-rank DistributedSampler pads one duplicate) with labels from 5 classes."""
    g = torch.Generator().manual_seed(7)
    return torch.randn(37, 4, generator=g), torch.randint(0, 5, (37,), generator=g)


def metric_classes() -> dict[str, type]:
    """Every exported metric class whose ``update`` takes dataset ``indices`` (those dedupe DDP padding)."""
    import inspect

    from torchmetrics import Metric

    import lit_metric.metrics as metrics

    out = {}
    for name in getattr(metrics, "__all__", []):
        cls = getattr(metrics, name)
        if (
            inspect.isclass(cls)
            and issubclass(cls, Metric)
            and "indices" in inspect.signature(cls.update).parameters
        ):
            out[name] = cls
    return out


#: constructor arguments fitting the 37-item, 5-class test set (default: none)
METRIC_KWARGS: dict[str, dict[str, Any]] = {
    "FewShotAccuracy": {"n_way": 3, "k_shot": 2, "n_query": 2, "episodes": 20},
}


def make_metric(name: str) -> Any:
    return metric_classes()[name](**METRIC_KWARGS.get(name, {}))


def metric_values(metric: Any) -> dict[str, float]:
    value = metric.compute()
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    return {"value": float(value)}


def _metrics(rank: int, world: int) -> dict[str, Any]:
    from torch.utils.data import DistributedSampler

    emb, labels = recall_data()
    idx = torch.tensor(
        list(DistributedSampler(range(emb.shape[0]), num_replicas=world, rank=rank, shuffle=False))
    )
    out: dict[str, Any] = {"n_local": idx.numel()}
    import traceback

    for name in metric_classes():
        try:
            with_index, without_index = make_metric(name), make_metric(name)
            for chunk in idx.split(5):
                with_index.update(emb[chunk], labels[chunk], chunk)
                without_index.update(emb[chunk], labels[chunk])
            out[name] = {
                "with_index": metric_values(with_index),
                "without_index": metric_values(without_index),
            }
        except Exception:  # noqa: BLE001 - reported per metric class
            out[name] = {"__error__": traceback.format_exc()}
    return out


def memory_bank_updates(world: int = WORLD, steps: int = 3, batch: int = 4) -> list[tuple[Tensor, Tensor]]:
    """Per step the *global* (indices, embeddings) of W ranks × ``batch`` (a duplicate index included)."""
    g = torch.Generator().manual_seed(11)
    out = []
    for _ in range(steps):
        idx = torch.randperm(20, generator=g)[: world * batch]
        idx[-1] = idx[0]  # a padded duplicate: the first occurrence must win on every rank
        out.append((idx, torch.randn(world * batch, 5, generator=g)))
    return out


def _memory_bank(rank: int, world: int) -> dict[str, Any]:
    """Banks updated from gathered (index, embedding) pairs are identical on every rank."""
    from lit_metric import memory_bank

    bank = memory_bank.MemoryBank(num_samples=20, embedding_dim=5, momentum=0.5)
    queue = memory_bank.MemoryQueue(size=7, embedding_dim=5)
    b = len(memory_bank_updates(world)[0][0]) // world
    for idx, emb in memory_bank_updates(world):
        local = slice(rank * b, (rank + 1) * b)
        g_idx = distributed.all_gather_no_grad(idx[local])
        g_emb = distributed.all_gather_no_grad(emb[local])
        bank.update(g_idx, g_emb)
        queue.enqueue(g_emb)
    return {"bank": bank.bank.clone(), "queue": queue.negatives().clone()}


def _datamodule(rank: int, world: int) -> dict[str, Any]:
    """What DigitsDataModule builds under a process group: self-sharding P×K loader, sharded eval loaders."""
    from lit_metric.data import DigitsDataModule

    dm = DigitsDataModule(p=2, k=4, batches_per_epoch=3)
    dm.setup("fit")
    train = dm.train_dataloader()
    batches = {epoch: [] for epoch in (0, 1)}
    for epoch in batches:
        train.batch_sampler.set_epoch(epoch)  # type: ignore[union-attr]
        batches[epoch] = [list(b) for b in train.batch_sampler]  # type: ignore[union-attr]
    return {
        "train_rank": train.batch_sampler.rank,  # type: ignore[union-attr]
        "train_world": train.batch_sampler.world_size,  # type: ignore[union-attr]
        "batches": batches,
        "val_sampler": type(dm.val_dataloader().sampler).__name__,
        "val_indices": list(dm.val_dataloader().sampler),
        "predict_sampler": type(dm.predict_dataloader().sampler).__name__,
        "predict_indices": list(dm.predict_dataloader().sampler),
    }


JOBS = {
    "datamodule": _datamodule,
    "protocol": _protocol,
    "uneven": _uneven,
    "metrics": _metrics,
    "memory_bank": _memory_bank,
}


def run_all(
    rank: int, world: int, jobs: list[str], case_names: list[str], ssl_names: list[str]
) -> dict[str, Any]:
    """Every job, then every equivalence case, in this process; failures are recorded per job."""
    import traceback

    torch.use_deterministic_algorithms(False)
    out: dict[str, Any] = {}
    for job in jobs:
        try:
            out[job] = JOBS[job](rank, world)
        except Exception:  # noqa: BLE001 - one broken job must not hide the others
            out[job] = {"__error__": traceback.format_exc()}
        dist.barrier()
    for name in case_names:
        try:
            out[f"case:{name}"] = _equivalence(rank, world, [name])[name]
        except Exception:  # noqa: BLE001
            out[f"case:{name}"] = {"__error__": traceback.format_exc()}
    for name in ssl_names:
        try:
            out[f"ssl:{name}"] = run_ssl(name, rank, world)
        except Exception:  # noqa: BLE001
            out[f"ssl:{name}"] = {"__error__": traceback.format_exc()}
        dist.barrier()
    return out
