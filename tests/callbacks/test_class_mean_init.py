from __future__ import annotations

import copy

import lightning as L
import pytest
import torch

from lit_metric import MetricLearningModule
from lit_metric.backbones import ConvNet
from lit_metric.callbacks import ClassMeanInit
from lit_metric.data import DigitsDataModule
from lit_metric.functional import class_means
from lit_metric.losses import CenterLoss, CosFaceLoss, TripletMarginLoss


def _fit(model: MetricLearningModule, dm: DigitsDataModule, callback: ClassMeanInit, steps: int = 1) -> None:
    L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[callback],
    ).fit(model, dm)  # fmt: skip


def _oracle_means(model: MetricLearningModule, dm: DigitsDataModule, num_classes: int) -> torch.Tensor:
    """Class means from the definition: a loop over the same training batches, model in eval mode."""
    model.eval()
    sums = [torch.zeros(model.head.embedding_dim, dtype=torch.float64) for _ in range(num_classes)]
    counts = [0] * num_classes
    with torch.no_grad():
        for x, y, *_ in dm.train_dataloader():
            for z, label in zip(model(x), y.tolist(), strict=True):
                sums[label] += z.double()
                counts[label] += 1
    return torch.stack([s / c for s, c in zip(sums, counts, strict=True)]).float()


@pytest.mark.parametrize("kind", ["cosface", "center"])
def test_class_vectors_start_at_the_class_means(kind: str) -> None:
    torch.manual_seed(0)
    loss = CosFaceLoss(num_classes=5, embedding_dim=8) if kind == "cosface" else CenterLoss(num_classes=5, embedding_dim=8)
    model = MetricLearningModule(ConvNet(1, (8, 16)), embedding_dim=8, loss=loss, optimizer=lambda p: torch.optim.SGD(p, lr=0.0))
    dm = DigitsDataModule(p=5, k=4, batches_per_epoch=6)
    dm.setup("fit")
    expected = _oracle_means(copy.deepcopy(model), dm, 5)  # the model as on_train_start sees it (one step's BN update follows)
    _fit(model, dm, ClassMeanInit())
    param = model.loss.weight if kind == "cosface" else model.loss.centers
    torch.testing.assert_close(param.detach(), expected, rtol=1e-5, atol=1e-6)


def test_rng_restored_so_training_is_unchanged_apart_from_the_init() -> None:
    from lit_metric.checkpoint import get_rng_states

    seen: list[object] = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object, i: int) -> None:
            seen.append(get_rng_states()["torch"])

    for cb in ([ClassMeanInit(), Probe()], [Probe()]):
        torch.manual_seed(0)
        model = MetricLearningModule(ConvNet(1, (8,)), embedding_dim=8, loss=CosFaceLoss(num_classes=5, embedding_dim=8))
        L.Trainer(
            accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=cb,
        ).fit(model, DigitsDataModule(p=5, k=4, batches_per_epoch=2, augment=True))  # fmt: skip
    assert torch.equal(seen[0], seen[1])  # type: ignore[arg-type]


def test_class_means_function_and_label_check() -> None:
    z = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]])
    means, counts = class_means(z, torch.tensor([0, 0, 2]), 4)
    torch.testing.assert_close(means.float(), torch.tensor([[2.0, 1.0], [0.0, 0.0], [0.0, 5.0], [0.0, 0.0]]))
    assert counts.tolist() == [2, 0, 1, 0]
    with pytest.raises(ValueError, match=r"labels in \[0, 4\).*got labels in \[0, 7\]"):
        class_means(z, torch.tensor([0, 7, 1]), 4)


def test_loss_without_class_vectors_is_a_clear_error() -> None:
    model = MetricLearningModule(ConvNet(1, (8,)), embedding_dim=8, loss=TripletMarginLoss())
    with pytest.raises(ValueError, match="parameter named weight or centers for ClassMeanInit"):
        _fit(model, DigitsDataModule(p=5, k=4, batches_per_epoch=2), ClassMeanInit())
    with pytest.raises(ValueError, match="`max_batches`"):
        ClassMeanInit(max_batches=0)
