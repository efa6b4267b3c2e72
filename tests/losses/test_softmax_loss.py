from __future__ import annotations

import pytest
import torch

from lit_metric.losses import SoftmaxLoss
from lit_metric.miners import TripletMiner
from tests._helpers.softmax_oracles import softmax_loss


def _batch(n: int = 10, d: int = 5, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0, torch.randint(0, c, (n,), generator=g)


@pytest.mark.parametrize("bias", [True, False])
def test_matches_loop_oracle_and_gradients(bias: bool) -> None:
    emb, labels = _batch()
    loss = SoftmaxLoss(3, 5, bias=bias).double()
    a = emb.clone().requires_grad_()
    out = loss(a, labels)
    out.backward()
    w = loss.weight.detach().clone().requires_grad_()
    b_ = loss.bias.detach().clone().requires_grad_() if bias else None
    e = emb.clone().requires_grad_()
    ref = softmax_loss(e, labels.tolist(), w, b_)
    ref.backward()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.grad, e.grad)
    torch.testing.assert_close(loss.weight.grad, w.grad)
    torch.testing.assert_close(loss.get_logits(emb), torch.nn.functional.linear(emb, loss.weight, loss.bias))


def test_closed_form_uniform_logits() -> None:
    loss = SoftmaxLoss(4, 3).double()
    with torch.no_grad():
        loss.weight.zero_()
        loss.bias.zero_()
    out = loss(torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 3, 0]))
    assert out.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())


def test_gradcheck() -> None:
    emb, labels = _batch(4, 3, 3)
    loss = SoftmaxLoss(3, 3).double()
    params = (loss.weight.detach().clone().requires_grad_(), loss.bias.detach().clone().requires_grad_())

    def fn(e: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"weight": w, "bias": b}, (e, labels))

    assert torch.autograd.gradcheck(fn, (emb.clone().requires_grad_(), *params))


def test_miner_selects_anchors_and_empty_tuple() -> None:
    emb, labels = _batch(12)
    loss = SoftmaxLoss(3, 5).double()
    a, p, n = TripletMiner("all")(emb, labels)
    keep = (a == 1) | (a == 4)
    expected = torch.nn.functional.cross_entropy(loss.get_logits(emb[[1, 4]]), labels[[1, 4]])
    torch.testing.assert_close(loss(emb, labels, (a[keep], p[keep], n[keep])), expected)
    e = emb.clone().requires_grad_()
    out = loss(e, labels, (torch.empty(0, dtype=torch.long),) * 4)
    out.backward()
    assert out.item() == 0.0 and torch.all(e.grad == 0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    loss = SoftmaxLoss(10, 8)
    emb = torch.ones(6, 8, dtype=dtype, requires_grad=True)
    out = loss(emb, torch.arange(6))
    out.backward()
    assert out.dtype == dtype and torch.isfinite(out.float()) and torch.isfinite(emb.grad.float()).all()
    with torch.autocast("cpu", dtype=dtype):
        out = loss(torch.randn(6, 8), torch.arange(6))
    assert torch.isfinite(out)


def test_errors() -> None:
    loss = SoftmaxLoss(3, 5)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*\[0, 3\]"):
        loss(torch.randn(2, 5), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="to have 5 columns"):
        loss(torch.randn(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="to have 5 columns"):
        loss.get_logits(torch.randn(2, 4))
    with pytest.raises(TypeError, match="floating-point"):
        loss.get_logits(torch.ones(2, 5, dtype=torch.int64))
