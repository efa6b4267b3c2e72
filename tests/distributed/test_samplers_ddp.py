"""P×K sampling under DDP and its Lightning wiring (no Trainer flag needed).

* W ranks with ``p`` classes draw exactly the global batches of one process with ``W·p`` classes,
  with disjoint classes across ranks, for every epoch;
* Lightning's per-epoch ``set_epoch`` reaches the batch sampler (through ``batch_sampler.sampler``);
* the DataModule switches off Lightning's sampler injection and shards its evaluation loaders itself.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lit_metric.data import DigitsDataModule, PKSampler
from lit_metric.data.samplers import disable_sampler_injection, distributed_eval_sampler
from tests.distributed._spawn import rank_results


def _labels() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 12, (300,), generator=g)


@pytest.mark.parametrize("world", [2, 3])
def test_rank_batches_concatenate_to_the_single_process_batches(world: int) -> None:
    labels, p, k = _labels(), 2, 4
    single = PKSampler(labels, p * world, k, num_batches=6, seed=3, rank=0, world_size=1)
    ranks = [PKSampler(labels, p, k, num_batches=6, seed=3, rank=r, world_size=world) for r in range(world)]
    for epoch in range(3):
        for s in [single, *ranks]:
            s.set_epoch(epoch)
        for step, (expected, *per_rank) in enumerate(zip(single, *ranks)):
            assert sum(per_rank, []) == expected, (epoch, step)
            classes = [set(labels[b].tolist()) for b in per_rank]
            assert all(len(c) == p for c in classes)
            assert len(set().union(*classes)) == p * world  # disjoint across ranks
    assert len(ranks[0]) == len(single) == 6


def test_default_length_is_the_same_on_every_rank_and_the_single_process() -> None:
    labels = _labels()
    assert len(PKSampler(labels, 4, 4, world_size=1, rank=0)) == len(
        PKSampler(labels, 2, 4, world_size=2, rank=1)
    )


def test_too_few_classes_for_the_ranks() -> None:
    with pytest.raises(ValueError, match=r"p × world_size = 14 classes"):
        PKSampler(_labels(), 7, 2, rank=0, world_size=2)


def test_lightning_set_epoch_reaches_the_batch_sampler() -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    sampler = PKSampler(_labels(), 2, 2, num_batches=2)
    loader = DataLoader(list(range(300)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 5)
    assert sampler.epoch == 5 and sampler.sampler is sampler


class _RecordBatches(L.Callback):
    def __init__(self) -> None:
        self.indices: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.indices.setdefault(trainer.current_epoch, []).append(batch[2].tolist())


def test_fit_draws_new_batches_every_epoch() -> None:
    from lit_metric import MetricLearningModule
    from lit_metric.backbones import ConvNet

    dm = DigitsDataModule(p=2, k=2, batches_per_epoch=2)
    record = _RecordBatches()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[record],
    )
    trainer.fit(MetricLearningModule(backbone=ConvNet(1, (4,)), embedding_dim=4), dm)
    assert record.indices[0] != record.indices[1]
    expected = PKSampler(dm.train_set.labels, 2, 2, 2, seed=0)  # type: ignore[union-attr]
    for epoch in (0, 1):
        expected.set_epoch(epoch)
        assert record.indices[epoch] == list(expected)


def test_disable_sampler_injection() -> None:
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False)
    assert trainer._accelerator_connector.use_distributed_sampler
    disable_sampler_injection(trainer)
    assert not trainer._accelerator_connector.use_distributed_sampler
    disable_sampler_injection(None)  # a DataModule used without a Trainer


def test_disable_sampler_injection_without_the_switch() -> None:
    class FutureTrainer:
        world_size = 2

    with pytest.raises(RuntimeError, match=r"use_distributed_sampler=False"):
        disable_sampler_injection(FutureTrainer())
    FutureTrainer.world_size = 1
    disable_sampler_injection(FutureTrainer())  # nothing to shard on one process


def test_eval_sampler_is_sequential_on_one_process() -> None:
    assert distributed_eval_sampler(list(range(5))) is None
    dm = DigitsDataModule()
    dm.setup()
    assert isinstance(dm.val_dataloader().sampler, torch.utils.data.SequentialSampler)


def test_datamodule_under_two_ranks(ddp_results: dict[str, Any]) -> None:
    r0, r1 = rank_results(ddp_results, "datamodule")
    assert (r0["train_rank"], r1["train_rank"], r0["train_world"]) == (0, 1, 2)
    dm = DigitsDataModule(p=4, k=4, batches_per_epoch=3)  # one process, W·p classes
    dm.setup()
    single = dm.train_dataloader().batch_sampler
    for epoch in (0, 1):
        single.set_epoch(epoch)  # type: ignore[union-attr]
        assert [a + b for a, b in zip(r0["batches"][epoch], r1["batches"][epoch])] == list(single)  # type: ignore[arg-type]
    assert r0["batches"][0] != r0["batches"][1]
    assert (
        r0["val_sampler"] == "DistributedSampler" and r0["predict_sampler"] == "UnrepeatedDistributedSampler"
    )
    n = len(dm.eval_set)  # type: ignore[arg-type]
    assert sorted(set(r0["val_indices"]) | set(r1["val_indices"])) == list(range(n))
    assert len(r0["val_indices"]) == len(r1["val_indices"])  # padded: same number of batches on every rank
    assert sorted(r0["predict_indices"] + r1["predict_indices"]) == list(range(n))  # predict: no duplicates
