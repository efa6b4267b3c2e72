"""A non-finite loss or gradient never reaches the weights (issue: reliability)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lit_metric import MetricLearningModule
from lit_metric.backbones import ConvNet
from lit_metric.data import DigitsDataModule, PKSampler, TensorImageDataset


class PoisonedDigits(DigitsDataModule):
    """Digits whose training batch number `poison_batch` contains a NaN pixel."""

    def __init__(self, poison_batch: int = 1, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.poison_batch = poison_batch

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        sampler = PKSampler(self.train_set.labels, self.p, self.k, self.batches_per_epoch, seed=self.seed)
        batches = list(sampler)
        images = self.train_set.images.clone()
        images[batches[self.poison_batch][0], 0, 3, 3] = float("nan")
        poisoned = TensorImageDataset(images, self.train_set.labels)
        return DataLoader(poisoned, batch_sampler=batches)


def _trainer(steps: int) -> L.Trainer:
    return L.Trainer(
        max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_nan_batch_stops_with_a_clear_error_and_weights_untouched() -> None:
    model = MetricLearningModule(backbone=ConvNet(1, (4,)), embedding_dim=4)
    dm = PoisonedDigits(poison_batch=1, p=3, k=4, batches_per_epoch=3)
    snapshots: list[list[torch.Tensor]] = []

    class Snap(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, idx: int) -> None:
            snapshots.append(_params(pl_module))

    trainer = _trainer(3)
    trainer.callbacks.append(Snap())  # type: ignore[union-attr]
    with pytest.raises(FloatingPointError, match=r"Step 1 \(epoch 0\).*non-finite.*loss = nan.*learning rate"):
        trainer.fit(model, dm)
    after = _params(model)
    assert all(torch.equal(a, b) for a, b in zip(after, snapshots[1]))  # the poisoned step changed nothing
    assert all(torch.isfinite(p).all() for p in after)


def test_skip_mode_counts_and_continues() -> None:
    model = MetricLearningModule(backbone=ConvNet(1, (4,)), embedding_dim=4, nonfinite="skip")
    dm = PoisonedDigits(poison_batch=1, p=3, k=4, batches_per_epoch=3)
    _trainer(3).fit(model, dm)
    assert model.skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_extreme_learning_rate_is_caught() -> None:
    model = MetricLearningModule(
        backbone=ConvNet(1, (4,)), embedding_dim=4, normalize_embeddings=False,
        optimizer=lambda p: torch.optim.SGD(p, lr=1e30),
    )
    with pytest.raises(FloatingPointError, match="non-finite"):
        _trainer(20).fit(model, DigitsDataModule(p=3, k=4, batches_per_epoch=20))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_option() -> None:
    with pytest.raises(ValueError, match=r"`nonfinite` to be one of \['error', 'skip'\]"):
        MetricLearningModule(backbone=ConvNet(1, (4,)), nonfinite="ignore")  # type: ignore[arg-type]
