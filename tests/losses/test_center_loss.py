from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_metric.losses import CenterLoss, SoftmaxLoss, WeightedSum
from lit_metric.miners import TripletMiner
from tests._helpers.softmax_oracles import center_loss

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "digits_center.yaml"


def _batch(n: int = 10, d: int = 5, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_loop_oracle_and_gradients(reduction: str) -> None:
    emb, labels = _batch()
    loss = CenterLoss(3, 5, reduction=reduction).double()
    a = emb.clone().requires_grad_()
    out = loss(a, labels)
    out.backward()
    c = loss.centers.detach().clone().requires_grad_()
    e = emb.clone().requires_grad_()
    ref = center_loss(e, labels.tolist(), c, reduction)
    ref.backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.grad, e.grad)
    torch.testing.assert_close(loss.centers.grad, c.grad)


def test_closed_form_and_center_gradient() -> None:
    # d/dc_j of ½ mean ‖x − c_y‖² = Σ_{i: y_i = j} (c_j − x_i) / B
    loss = CenterLoss(2, 2).double()
    with torch.no_grad():
        loss.centers.zero_()
    emb = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    out = loss(emb, torch.tensor([0, 0, 1]))
    out.backward()
    assert out.item() == pytest.approx((12.5 + 0.5 + 2.0) / 3)
    torch.testing.assert_close(loss.centers.grad, -torch.tensor([[4.0, 4.0], [0.0, 2.0]], dtype=torch.float64) / 3)


def test_embeddings_on_their_centers_give_zero() -> None:
    loss = CenterLoss(3, 4)
    emb = loss.centers.detach()[[0, 2, 1]].clone().requires_grad_()
    out = loss(emb, torch.tensor([0, 2, 1]))
    out.backward()
    assert out.item() == 0.0 and torch.all(emb.grad == 0)


def test_gradcheck() -> None:
    emb, labels = _batch(4, 3, 2)
    loss = CenterLoss(2, 3).double()

    def fn(e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"centers": c}, (e, labels))

    assert torch.autograd.gradcheck(fn, (emb.requires_grad_(), loss.centers.detach().clone().requires_grad_()))


def test_miner_selects_anchors() -> None:
    emb, labels = _batch(12)
    loss = CenterLoss(3, 5).double()
    a, p, n = TripletMiner("all")(emb, labels)
    chosen = sorted(set(a.tolist()))[1:3]
    keep = (a == chosen[0]) | (a == chosen[1])
    expected = center_loss(emb[chosen], labels[chosen].tolist(), loss.centers.detach())
    torch.testing.assert_close(loss(emb, labels, (a[keep], p[keep], n[keep])), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    loss = CenterLoss(4, 8)
    emb = (torch.randn(8, 8) * 100).to(dtype).requires_grad_()
    out = loss(emb, torch.arange(8) % 4)
    out.backward()
    assert out.dtype == dtype and torch.isfinite(out.float()) and torch.isfinite(emb.grad.float()).all()


def test_param_groups_in_module_optimizer() -> None:
    from lit_metric import MetricLearningModule
    from lit_metric.backbones import MLP

    def groups(loss: torch.nn.Module, loss_lr: float | None) -> dict[str, float]:
        module = MetricLearningModule(MLP(4, (8,)), embedding_dim=5, loss=loss, loss_lr=loss_lr)
        module.optimizer_factory = lambda params: torch.optim.SGD(params, lr=0.1)
        opt = module.configure_optimizers()
        names = [g["name"] for g in opt.param_groups]
        assert len(names) == len(set(names)) or names.count("loss") <= 1
        n_params = sum(len(g["params"]) for g in opt.param_groups)
        assert n_params == len(list(module.parameters()))  # every parameter exactly once
        return {g["name"]: g["lr"] for g in opt.param_groups}

    # center_lr > loss_lr > the optimizer's lr
    assert groups(CenterLoss(3, 5, center_lr=0.5), 0.01) == {"model": 0.1, "centers": 0.5}
    assert groups(CenterLoss(3, 5), 0.01) == {"model": 0.1, "centers": 0.01}
    assert groups(CenterLoss(3, 5), None) == {"model": 0.1, "centers": 0.1}
    both = WeightedSum([SoftmaxLoss(3, 5), CenterLoss(3, 5, center_lr=0.5)], [1.0, 0.1])
    assert groups(both, 0.01) == {"model": 0.1, "loss": 0.01, "centers": 0.5}


def test_config_fast_dev_run() -> None:
    from lit_metric.cli import main

    cli = main(
        ["fit", "--config", str(CONFIG), "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--trainer.callbacks=[]"]
    )
    lrs = {g["name"]: g["lr"] for g in cli.trainer.optimizers[0].param_groups}
    assert lrs == {"model": 0.003, "loss": 0.01, "centers": 0.05}
    assert isinstance(cli.model.loss, WeightedSum) and cli.model.loss.weights == [1.0, 0.1]


def test_errors() -> None:
    with pytest.raises(ValueError, match="`center_lr` to be > 0"):
        CenterLoss(3, 4, center_lr=0.0)
    with pytest.raises(TypeError, match="`center_lr` to be a finite number"):
        CenterLoss(3, 4, center_lr="fast")  # type: ignore[arg-type]
    loss = CenterLoss(3, 4)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\) \(`num_classes`=3\), but got values in \[-2, 1\]"):
        loss(torch.randn(2, 4), torch.tensor([-2, 1]))
    with pytest.raises(ValueError, match="to have 4 columns"):
        loss(torch.randn(2, 6), torch.tensor([0, 1]))
