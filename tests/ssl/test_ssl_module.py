"""SelfSupervisedModule: the step dispatch (InfoNCE, SupCon, memory bank), validation metrics, checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from lit_metric import SelfSupervisedModule
from lit_metric.backbones import ConvNet
from lit_metric.data import DigitsDataModule, TwoViewDataModule
from lit_metric.losses import InfoNCELoss, MemoryBankNCELoss
from lit_metric.ssl import unpack_ssl_batch


def _module(**kwargs: object) -> SelfSupervisedModule:
    backbone = ConvNet(in_chans=1, channels=(8, 16))
    return SelfSupervisedModule(backbone, embedding_dim=8, **kwargs)  # type: ignore[arg-type]


def test_default_head_is_lightlys_and_loss_is_info_nce() -> None:
    module = _module()
    assert type(module.projection_head).__name__ == "SimCLRProjectionHead"
    assert isinstance(module.loss, InfoNCELoss)
    x = torch.rand(4, 1, 8, 8)
    assert module(x).shape == (4, 16) and module.embed(x).shape == (4, 8)  # backbone features vs projection
    assert _module(eval_embedding="projection")(x).shape == (4, 8)


def test_two_view_step_equals_the_loss_on_embedded_views() -> None:
    torch.manual_seed(0)
    module = _module(loss=InfoNCELoss(0.2))
    v1, v2 = torch.rand(6, 1, 8, 8), torch.rand(6, 1, 8, 8)
    loss = module.training_step(((v1, v2), torch.arange(6)), 0)
    z = module.embed(torch.cat([v1, v2]))  # one pass over both views (same BatchNorm batch)
    torch.testing.assert_close(loss, InfoNCELoss(0.2)(z[:6], z[6:]))
    loss.backward()
    assert all(p.grad is not None for p in module.backbone.parameters())


def test_labels_are_ignored_unless_use_labels() -> None:
    torch.manual_seed(0)
    v1, v2, y = torch.rand(6, 1, 8, 8), torch.rand(6, 1, 8, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    plain, supcon = _module(), _module(use_labels=True)
    supcon.load_state_dict(plain.state_dict())
    z = plain.embed(torch.cat([v1, v2]))
    torch.testing.assert_close(plain.training_step(((v1, v2), y, torch.arange(6)), 0), InfoNCELoss()(z[:6], z[6:]))
    torch.testing.assert_close(
        supcon.training_step(((v1, v2), y, torch.arange(6)), 0), InfoNCELoss()(z[:6], z[6:], y)
    )


def test_memory_bank_step_updates_the_bank_and_checkpoints_it() -> None:
    module = _module(loss=MemoryBankNCELoss(num_samples=20, embedding_dim=8, num_negatives=5))
    bank = module.loss.memory.bank.clone()
    loss = module.training_step((torch.rand(4, 1, 8, 8), torch.tensor([1, 2, 3, 19])), 0)
    assert torch.isfinite(loss)
    changed = (module.loss.memory.bank != bank).any(1)
    assert changed.nonzero().flatten().tolist() == [1, 2, 3, 19]
    assert {"loss.memory.bank", "loss.log_z", "loss.z_estimated", "loss.step"} <= set(module.state_dict())
    with pytest.raises(ValueError, match="takes one view per instance.*num_views: 1"):
        module.training_step(((torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)), torch.arange(4)), 0)


def test_other_two_view_losses_are_called_with_both_views() -> None:
    from lightly.loss import NTXentLoss

    torch.manual_seed(0)
    module = _module(loss=NTXentLoss(temperature=0.3))
    v1, v2 = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    z = module.embed(torch.cat([v1, v2]))
    torch.testing.assert_close(module.training_step(((v1, v2), torch.arange(5)), 0), InfoNCELoss(0.3)(z[:5], z[5:]))
    with pytest.raises(ValueError, match="needs two views"):
        module.training_step((v1, torch.arange(5)), 0)


def test_unpack_ssl_batch() -> None:
    v = torch.rand(2, 1, 4, 4)
    assert len(unpack_ssl_batch(([v, v], torch.arange(2)))[0]) == 2
    views, labels, index = unpack_ssl_batch((v, torch.zeros(2, dtype=torch.long), torch.arange(2)))
    assert len(views) == 1 and labels is not None and index is not None
    with pytest.raises(ValueError, match="Expected a self-supervised batch"):
        unpack_ssl_batch(v)


def test_constructor_errors() -> None:
    with pytest.raises(TypeError, match="Expected argument `backbone`"):
        SelfSupervisedModule(backbone=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected argument `projection_head`"):
        SelfSupervisedModule(ConvNet(1, (4,)), projection_head="mlp")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Expected argument `loss`"):
        SelfSupervisedModule(ConvNet(1, (4,)), loss=lambda a, b: a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected argument `eval_embedding` to be one of"):
        SelfSupervisedModule(ConvNet(1, (4,)), eval_embedding="head")  # type: ignore[arg-type]


class _BankAndQueries(L.LightningDataModule):
    """Digits: SSL training views; validation loader 0 = labelled training digits (k-NN bank), 1 = queries."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TwoViewDataModule(DigitsDataModule(train_classes=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)), batch_size=64)

    def setup(self, stage: str | None = None) -> None:
        self.inner.setup(stage)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self.inner.train_dataloader()

    def val_dataloader(self) -> list[torch.utils.data.DataLoader]:
        train = self.inner.datamodule.train_set
        bank = torch.utils.data.Subset(train, range(0, 1200))
        queries = torch.utils.data.Subset(train, range(1200, len(train)))  # type: ignore[arg-type]
        return [torch.utils.data.DataLoader(bank, batch_size=400), torch.utils.data.DataLoader(queries, batch_size=400)]


@pytest.mark.parametrize("bank_loader", [False, True])
def test_fit_logs_recall_and_knn(tmp_path: Path, bank_loader: bool) -> None:
    module = _module(knn_k=10, knn_bank_dataloader_idx=0 if bank_loader else None)
    data = _BankAndQueries() if bank_loader else TwoViewDataModule(DigitsDataModule(), batch_size=64)
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=3, limit_val_batches=3, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu",
    )
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/recall@1", "val/knn_accuracy"} <= set(metrics)
    assert 0.0 < float(metrics["val/knn_accuracy"]) <= 1.0
    loader = data.val_dataloader()
    dataset = (loader[0] if isinstance(loader, list) else loader).dataset
    preds = trainer.predict(module, dataloaders=torch.utils.data.DataLoader(dataset, batch_size=100))
    assert preds is not None and preds[0].shape == (100, 16)  # type: ignore[union-attr]


def test_validation_on_unlabelled_views_logs_val_loss(tmp_path: Path) -> None:
    module = _module()
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)  # type: ignore[method-assign]
    logged: dict[str, torch.Tensor] = {}
    module.eval()
    with torch.no_grad():
        module.validation_step(((torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)), torch.arange(4)), 0)
    assert torch.isfinite(logged["val/loss"])
    with pytest.raises(ValueError, match="Validation batches need labels"):
        module.validation_step(torch.rand(4, 1, 8, 8), 0)


def test_optimizer_sees_backbone_and_head() -> None:
    module = _module(optimizer=lambda params: torch.optim.SGD(params, lr=0.1))
    opt = module.configure_optimizers()
    n_params = sum(p.numel() for group in opt.param_groups for p in group["params"])
    assert n_params == sum(p.numel() for p in module.parameters()) and isinstance(module.backbone, nn.Module)
