from __future__ import annotations

import math

import pytest
import torch

from lit_metric.losses import ArcFaceLoss, CombinedMarginLoss, CosFaceLoss, SphereFaceLoss
from tests._helpers.softmax_oracles import combined_target, margin_softmax_loss


def _batch(n: int = 16, d: int = 4, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0  # not normalised
    return emb, torch.randint(0, c, (n,), generator=g)


def _copy_weight(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)


@pytest.mark.parametrize(
    "m1,m2,m3", [(1.0, 0.0, 0.0), (1.0, 0.3, 0.2), (1.0, 1.4, 0.1), (2.0, 0.0, 0.0), (1.5, 0.2, 0.0), (3.0, 0.4, 0.3)]
)
def test_matches_loop_oracle(m1: float, m2: float, m3: float) -> None:
    emb, labels = _batch()
    loss = CombinedMarginLoss(4, 4, m1=m1, m2=m2, m3=m3, scale=6.0).double()
    ref = margin_softmax_loss(emb, labels.tolist(), loss.weight.detach(), lambda c: combined_target(c, m1, m2, m3), 6.0)
    torch.testing.assert_close(loss(emb, labels), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("margin", [0.2, 0.5, 1.3])
def test_reduces_to_arcface(margin: float) -> None:
    emb, labels = _batch(seed=1)
    arc = ArcFaceLoss(4, 4, margin=margin, scale=30.0).double()
    comb = CombinedMarginLoss(4, 4, m2=margin, scale=30.0).double()
    _copy_weight(comb, arc)
    torch.testing.assert_close(comb(emb, labels), arc(emb, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margin", [0.0, 0.35, -0.1])
def test_reduces_to_cosface(margin: float) -> None:
    emb, labels = _batch(seed=2)
    cos = CosFaceLoss(4, 4, margin=margin, scale=64.0).double()
    comb = CombinedMarginLoss(4, 4, m3=margin, scale=64.0).double()
    _copy_weight(comb, cos)
    torch.testing.assert_close(comb(emb, labels), cos(emb, labels), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("margin", [1, 2, 4])
def test_reduces_to_sphereface(margin: int) -> None:
    emb, labels = _batch(seed=3)
    sph = SphereFaceLoss(4, 4, margin=margin, scale=10.0).double()
    comb = CombinedMarginLoss(4, 4, m1=float(margin), scale=10.0).double()
    _copy_weight(comb, sph)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    lc, ls = comb(a, labels), sph(b, labels)
    torch.testing.assert_close(lc, ls, rtol=1e-12, atol=1e-12)
    lc.backward()
    ls.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_target_is_continuous_and_decreasing() -> None:
    from lit_metric.losses._margin_softmax import margin_target_cosine

    theta = torch.linspace(0, math.pi, 4001, dtype=torch.float64)
    for m1, m2 in ((1.5, 0.3), (2.5, 0.0), (4.0, 0.5), (3.0, 2.0)):
        t = margin_target_cosine(torch.cos(theta), m1=m1, m2=m2)
        steps = t[1:] - t[:-1]
        assert (steps <= 1e-12).all() and steps.abs().max() < 0.05, (m1, m2)


def test_closed_form() -> None:
    loss = CombinedMarginLoss(2, 2, m1=1.0, m2=0.5, m3=0.1, scale=2.0).double()
    with torch.no_grad():
        loss.weight.copy_(torch.eye(2))
    emb = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    target = math.cos(math.acos(0.6) + 0.5) - 0.1
    assert loss(emb, torch.tensor([0])).item() == pytest.approx(math.log(1 + math.exp(2.0 * (0.8 - target))), rel=1e-12)


def test_gradcheck() -> None:
    emb, labels = _batch(5, 3, 3)
    loss = CombinedMarginLoss(3, 3, m1=1.5, m2=0.2, m3=0.1, scale=3.0).double()
    w = loss.weight.detach().clone().requires_grad_()

    def fn(e: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"weight": weight}, (e, labels))

    assert torch.autograd.gradcheck(fn, (emb.clone().requires_grad_(), w))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_scale_64_is_finite(dtype: torch.dtype) -> None:
    loss = CombinedMarginLoss(20, 8, m1=1.2, m2=0.3, m3=0.1, scale=64.0)
    for emb in (torch.randn(16, 8), torch.ones(16, 8)):
        emb = emb.requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            out = loss(emb, torch.arange(16))
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()
        loss.weight.grad = None


def test_errors() -> None:
    with pytest.raises(ValueError, match="`m1` to be >= 1"):
        CombinedMarginLoss(3, 4, m1=0.5)
    with pytest.raises(ValueError, match=r"`m2` to be an angle in radians in \[0, π\)"):
        CombinedMarginLoss(3, 4, m2=30.0)
    with pytest.raises(TypeError, match="`m3` to be a finite number"):
        CombinedMarginLoss(3, 4, m3="0.2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`scale` to be > 0"):
        CombinedMarginLoss(3, 4, scale=0)
    loss = CombinedMarginLoss(3, 4)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*\[0, 9\]"):
        loss(torch.randn(2, 4), torch.tensor([9, 0]))
    with pytest.raises(ValueError, match="to have 4 columns"):
        loss(torch.randn(2, 8), torch.tensor([1, 0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m1,m2,m3", [(1.5, 0.2, 0.1), (4.0, 0.0, 0.0), (1.0, 0.5, 0.0), (2.0, 0.3, 0.0)])
def test_cos_at_plus_minus_one_has_finite_grads(dtype: torch.dtype, m1: float, m2: float, m3: float) -> None:
    loss = CombinedMarginLoss(3, 4, m1=m1, m2=m2, m3=m3, scale=64.0).to(dtype)
    w = torch.nn.functional.normalize(loss.weight.detach(), dim=1)
    emb = torch.cat([w, -w, torch.zeros(1, 4, dtype=dtype)]).requires_grad_()
    out = loss(emb, torch.tensor([0, 1, 2, 0, 1, 2, 0]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()
