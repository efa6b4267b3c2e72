from __future__ import annotations

import pytest
import torch

from lit_metric.losses import CosFaceLoss
from tests._helpers.softmax_oracles import cosface_target, cross_entropy, margin_softmax_loss


def _batch(n: int = 10, d: int = 6, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 3.0  # not normalised
    return emb, torch.randint(0, c, (n,), generator=g)


def _loss(c: int = 4, d: int = 6, **kwargs: object) -> CosFaceLoss:
    loss = CosFaceLoss(c, d, **kwargs).double()
    with torch.no_grad():
        loss.weight.mul_(2.5)
    return loss


@pytest.mark.parametrize("margin", [0.0, 0.35, -0.2, 1.0])
@pytest.mark.parametrize("scale", [1.0, 30.0, 64.0])
def test_matches_loop_oracle(margin: float, scale: float) -> None:
    emb, labels = _batch()
    loss = _loss(margin=margin, scale=scale)
    ref = margin_softmax_loss(emb, labels.tolist(), loss.weight.detach(), lambda c: cosface_target(c, margin), scale)
    torch.testing.assert_close(loss(emb, labels), ref, rtol=1e-10, atol=1e-10)


def test_zero_margin_is_normalised_softmax_cross_entropy() -> None:
    emb, labels = _batch()
    loss = _loss(margin=0.0, scale=16.0)
    x = torch.nn.functional.normalize(emb, dim=1)
    w = torch.nn.functional.normalize(loss.weight.detach(), dim=1)
    expected = torch.nn.functional.cross_entropy(16.0 * x @ w.T, labels)
    torch.testing.assert_close(loss(emb, labels), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss.get_logits(emb), 16.0 * x @ w.T)


def test_closed_form() -> None:
    # orthogonal class weights, embedding on class 0's weight: logits s(1 − m) and s·0 (twice)
    loss = CosFaceLoss(3, 3, margin=0.35, scale=4.0).double()
    with torch.no_grad():
        loss.weight.copy_(torch.eye(3) * 7.0)
    emb = torch.tensor([[2.0, 0.0, 0.0]], dtype=torch.float64)
    expected = -torch.log_softmax(torch.tensor([4.0 * 0.65, 0.0, 0.0], dtype=torch.float64), 0)[0]
    torch.testing.assert_close(loss(emb, torch.tensor([0])), expected)
    torch.testing.assert_close(
        cross_entropy([torch.tensor(2.6, dtype=torch.float64), torch.tensor(0.0), torch.tensor(0.0)], 0), expected
    )


def test_gradients_match_oracle_and_gradcheck() -> None:
    emb, labels = _batch(6, 4, 3)
    loss = _loss(3, 4, margin=0.3, scale=5.0)
    a = emb.clone().requires_grad_()
    w = loss.weight.detach().clone().requires_grad_()
    loss(a, labels).backward()
    b = emb.clone().requires_grad_()
    margin_softmax_loss(b, labels.tolist(), w, lambda c: cosface_target(c, 0.3), 5.0).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(loss.weight.grad, w.grad, rtol=1e-9, atol=1e-11)

    def fn(e: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"weight": weight}, (e, labels))

    assert torch.autograd.gradcheck(fn, (emb.clone().requires_grad_(), w.detach().clone().requires_grad_()))


def test_matches_pml() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    emb, labels = _batch(16, 8, 5)
    for margin, scale in ((0.35, 64.0), (0.1, 2.0)):
        ours = _loss(5, 8, margin=margin, scale=scale)
        # PML: same margin (cosine units) and scale; W is (D, C) = our weight transposed
        theirs = pml_losses.CosFaceLoss(num_classes=5, embedding_size=8, margin=margin, scale=scale)
        theirs.W.data = ours.weight.detach().T.clone()
        a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        lo, lt = ours(a, labels), theirs(b, labels)
        torch.testing.assert_close(lo, lt, rtol=1e-9, atol=1e-10)
        lo.backward()
        lt.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-10)
        torch.testing.assert_close(ours.weight.grad, theirs.W.grad.T, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_and_low_precision_are_finite(dtype: torch.dtype) -> None:
    loss = CosFaceLoss(50, 16, scale=64.0)
    emb = torch.randn(32, 16, requires_grad=True)
    labels = torch.randint(0, 50, (32,))
    with torch.autocast("cpu", dtype=dtype):
        out = loss(emb, labels)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()
    low = torch.ones(8, 16, dtype=dtype, requires_grad=True)  # all-equal embeddings
    out = loss(low, torch.arange(8))
    out.backward()
    assert out.dtype == dtype and torch.isfinite(out.float()) and torch.isfinite(low.grad.float()).all()


def test_errors() -> None:
    loss = CosFaceLoss(3, 4)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\) \(`num_classes`=3\), but got values in \[0, 3\]"):
        loss(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(TypeError, match="integer class ids"):
        loss(torch.randn(2, 4), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="to have 4 columns"):
        loss(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="`labels` for CosFaceLoss"):
        loss(torch.randn(2, 4))
    with pytest.raises(TypeError, match="`margin` to be a finite number"):
        CosFaceLoss(3, 4, margin=float("nan"))
    with pytest.raises(ValueError, match="`scale` to be > 0"):
        CosFaceLoss(3, 4, scale=-1.0)

