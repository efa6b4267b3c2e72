from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import Tensor, nn

from lit_metric import MetricLearningModule
from lit_metric.backbones import MLP, ConvNet, EmbeddingHead
from lit_metric.data import DigitsDataModule
from lit_metric.losses import TripletMarginLoss
from lit_metric.miners import TripletMiner


def _trainer(**kwargs: object) -> L.Trainer:
    defaults: dict[str, object] = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    defaults.update(kwargs)
    return L.Trainer(**defaults)  # type: ignore[arg-type]


def _module(**kwargs: object) -> MetricLearningModule:
    return MetricLearningModule(backbone=ConvNet(1, (8, 16)), embedding_dim=8, **kwargs)  # type: ignore[arg-type]


def test_fast_dev_run_fit_validate_predict() -> None:
    model = _module(miner=TripletMiner("semihard"))
    dm = DigitsDataModule(p=5, k=4, batches_per_epoch=2)
    _trainer(fast_dev_run=True).fit(model, dm)
    preds = _trainer().predict(model, dm)
    assert preds is not None
    z = torch.cat(preds)  # type: ignore[arg-type]
    assert z.shape == (896, 8)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(896))


def test_training_improves_recall_over_a_few_epochs() -> None:
    torch.manual_seed(0)
    model = _module(miner=TripletMiner("semihard"), optimizer=lambda p: torch.optim.Adam(p, lr=3e-3))
    dm = DigitsDataModule(p=5, k=8, batches_per_epoch=10)
    trainer = _trainer(max_epochs=4, num_sanity_val_steps=0)
    trainer.validate(model, dm)
    before = trainer.callback_metrics["val/recall@1"].item()
    trainer.fit(model, dm)
    after = trainer.callback_metrics["val/recall@1"].item()
    assert after > before + 0.05


def test_loss_parameters_in_optimizer_with_own_lr() -> None:
    class WithWeights(TripletMarginLoss):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

    model = _module(loss=WithWeights(), loss_lr=0.5, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    opt = model.configure_optimizers()
    groups = {g["name"]: g for g in opt.param_groups}  # type: ignore[union-attr]
    assert groups["loss"]["lr"] == 0.5 and groups["model"]["lr"] == 0.1
    assert any(p is model.loss.scale for p in groups["loss"]["params"])
    assert not any(p is model.loss.scale for p in groups["model"]["params"])


def test_freeze_keeps_named_submodules_fixed() -> None:
    torch.manual_seed(0)
    # ConvNet(1, (8, 16)).features: [conv, bn, relu, pool, conv, bn, relu, pool]; freeze the first block
    model = _module(freeze=["backbone.features.0", "backbone.features.1"], optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    frozen_conv, frozen_bn, live_bn = model.backbone.features[0], model.backbone.features[1], model.backbone.features[5]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = model.configure_optimizers().param_groups  # type: ignore[union-attr]
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    assert id(frozen_conv.weight) not in in_optimizer and id(live_bn.weight) in in_optimizer
    model.train()
    assert not frozen_bn.training and live_bn.training and model.training
    _trainer(max_steps=3, limit_val_batches=0, num_sanity_val_steps=0).fit(model, DigitsDataModule(p=4, k=4))
    after = model.state_dict()
    for name in ("backbone.features.0.weight", "backbone.features.1.weight", "backbone.features.1.running_mean",
                 "backbone.features.1.running_var"):  # fmt: skip
        assert torch.equal(before[name], after[name]), name
    assert int(after["backbone.features.1.num_batches_tracked"]) == 0
    for name in ("backbone.features.4.weight", "backbone.features.5.running_mean", "head.linear.weight"):
        assert not torch.equal(before[name], after[name]), name
    with pytest.raises(ValueError, match=r"`freeze` to name submodules.*\['backbone.nope'\]"):
        _module(freeze=["backbone.nope"])


def test_subclass_overrides_one_hook() -> None:
    calls: list[str] = []

    class Custom(MetricLearningModule):
        def compute_loss(self, embeddings: Tensor, labels: Tensor, *args: object) -> Tensor:  # type: ignore[override]
            calls.append("loss")
            return embeddings.pow(2).sum() * 0 + 1.0

        def embed(self, x: Tensor) -> Tensor:
            calls.append("embed")
            return super().embed(x)

    model = Custom(backbone=ConvNet(1, (4,)), embedding_dim=4)
    _trainer(fast_dev_run=True).fit(model, DigitsDataModule(p=2, k=2, batches_per_epoch=1))
    assert calls[:2] == ["embed", "loss"]


def test_timm_backbone_by_name() -> None:
    model = MetricLearningModule(backbone="resnet18", embedding_dim=16, in_chans=1)
    z = model(torch.randn(2, 1, 32, 32))
    assert z.shape == (2, 16)


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="timm model name"):
        MetricLearningModule(backbone="not_a_model_xyz")
    with pytest.raises(TypeError, match="`backbone`"):
        MetricLearningModule(backbone=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_features"):
        MetricLearningModule(backbone=nn.Sequential(nn.Flatten()))
    model = MetricLearningModule(backbone=nn.Sequential(nn.Flatten()), backbone_features=32)
    with pytest.raises(ValueError, match=r"\(B, 32\)"):
        model(torch.randn(2, 1, 8, 8))


def test_backbones_and_head() -> None:
    assert ConvNet(3, (4, 5)).num_features == 5
    flat = ConvNet(1, (4, 5), input_size=9)  # 9 → 5 → 3: a 3×3 map of 5 channels, flattened
    assert flat.num_features == 45 and flat(torch.zeros(2, 1, 9, 9)).shape == (2, 45)
    with pytest.raises(ValueError, match=r"Expected 9×9 images for ConvNet\(input_size=9\)"):
        flat(torch.zeros(2, 1, 8, 8))
    assert MLP(64, (32,))(torch.randn(3, 1, 8, 8)).shape == (3, 32)
    head = EmbeddingHead(10, 3, normalize=False, batch_norm=True)
    assert head(torch.randn(4, 10)).shape == (4, 3)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ConvNet()(torch.randn(2, 8))


def test_retrieval_report_prints_three_rows(capsys: pytest.CaptureFixture[str]) -> None:
    from lit_metric.callbacks import RetrievalReport

    report = RetrievalReport(k=(1, 2))
    model = _module()
    _trainer(max_steps=2, callbacks=[report], num_sanity_val_steps=0, limit_val_batches=1).fit(
        model, DigitsDataModule(p=5, k=4, batches_per_epoch=2)
    )
    assert list(report.results) == ["raw inputs", "untrained network", "trained embeddings"]
    assert all(0 <= v <= 1 for row in report.results.values() for v in row.values())
    out = capsys.readouterr().out
    assert "R@1" in out and "raw inputs" in out and "trained embeddings" in out


def test_digits_augmentation_shifts_by_at_most_one_pixel() -> None:
    from lit_metric.data.digits import random_shift

    x = torch.zeros(1, 8, 8)
    x[0, 4, 4] = 1.0
    seen = set()
    for _ in range(200):
        y = random_shift(x)
        (r, c) = (y[0] == 1).nonzero()[0].tolist()
        seen.add((r - 4, c - 4))
    assert seen == {(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)}


def test_freeze_batch_norm_fixes_every_backbone_norm() -> None:
    torch.manual_seed(0)
    model = _module(freeze_batch_norm=True, optimizer=lambda p: torch.optim.SGD(p, lr=0.5))
    norms = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 2
    groups = model.configure_optimizers().param_groups  # type: ignore[union-attr]
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    assert all(id(m.weight) not in in_optimizer for m in norms)
    model.train()
    assert model.training and not any(m.training for m in norms)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _trainer(max_steps=3, limit_val_batches=0, num_sanity_val_steps=0).fit(model, DigitsDataModule(p=4, k=4))
    after = model.state_dict()
    for name in ("backbone.features.1.weight", "backbone.features.1.running_mean", "backbone.features.5.running_var"):
        assert torch.equal(before[name], after[name]), name
    for name in ("backbone.features.0.weight", "backbone.features.4.weight", "head.linear.weight"):
        assert not torch.equal(before[name], after[name]), name


def test_embedding_dim_none_uses_backbone_features() -> None:
    from lit_metric.losses import CosFaceLoss

    torch.manual_seed(0)
    backbone = ConvNet(1, (8, 16))
    model = MetricLearningModule(backbone=backbone, embedding_dim=None, loss=CosFaceLoss(num_classes=5, embedding_dim=16))
    x = torch.randn(3, 1, 8, 8)
    model.eval()
    torch.testing.assert_close(model(x), torch.nn.functional.normalize(backbone(x), dim=1))
    assert model.head.embedding_dim == 16 and not any(True for _ in model.head.parameters())
    with pytest.raises(ValueError, match=r"embedding_dim=16 \(embedding_dim=None: the backbone's 16 features\)"):
        MetricLearningModule(backbone=ConvNet(1, (8, 16)), embedding_dim=None, loss=CosFaceLoss(num_classes=5, embedding_dim=8))
