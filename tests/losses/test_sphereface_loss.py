from __future__ import annotations

import math

import pytest
import torch

from lit_metric.losses import SphereFaceLoss
from tests._helpers.softmax_oracles import margin_softmax_loss, sphereface_target


def _batch(n: int = 12, d: int = 4, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5  # not normalised
    return emb, torch.randint(0, c, (n,), generator=g)


def _loss(c: int = 4, d: int = 4, **kwargs: object) -> SphereFaceLoss:
    loss = SphereFaceLoss(c, d, **kwargs).double()
    with torch.no_grad():
        loss.weight.mul_(2.5)
    return loss


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", [None, 10.0])
def test_matches_loop_oracle(margin: int, scale: float | None) -> None:
    emb, labels = _batch()
    loss = _loss(margin=margin, scale=scale)
    ref = margin_softmax_loss(emb, labels.tolist(), loss.weight.detach(), lambda c: sphereface_target(c, margin), scale)
    torch.testing.assert_close(loss(emb, labels), ref, rtol=1e-10, atol=1e-10)


def test_psi_is_continuous_decreasing_and_matches_formula() -> None:
    from lit_metric.losses._margin_softmax import margin_target_cosine

    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    for m in (1, 2, 3, 4, 5):
        psi = margin_target_cosine(torch.cos(theta), m1=float(m))
        k = torch.floor(m * theta / math.pi)
        torch.testing.assert_close(psi, (-1) ** k * torch.cos(m * theta) - 2 * k, rtol=0, atol=1e-9)
        assert (psi[1:] - psi[:-1] <= 1e-12).all()  # monotone (no jump)
        assert (psi[1:] - psi[:-1]).abs().max() < 0.05
        assert psi[-1].item() == pytest.approx(1 - 2 * m)


def test_closed_form_feature_norm_scale() -> None:
    # W = I, x = 2·(0.6, 0.8), m = 2: target ‖x‖ψ = 2·(2·0.36 − 1) = −0.56, other logit 2·0.8 = 1.6
    loss = SphereFaceLoss(2, 2, margin=2).double()
    with torch.no_grad():
        loss.weight.copy_(torch.eye(2))
    emb = torch.tensor([[1.2, 1.6]], dtype=torch.float64)
    assert loss(emb, torch.tensor([0])).item() == pytest.approx(math.log(1 + math.exp(1.6 + 0.56)), rel=1e-12)
    torch.testing.assert_close(loss.get_logits(emb), emb)  # ‖x‖·cos θ_c = x·W_c for unit W


def test_lambda_annealing_schedule_and_blend() -> None:
    emb, labels = _batch()
    loss = _loss(margin=4, lambda_annealing=True, lambda_base=100.0, lambda_gamma=0.5, lambda_power=1.0, lambda_min=5.0)
    w = loss.weight.detach()
    for t in range(4):
        lam = max(5.0, 100.0 * (1 + 0.5 * t) ** -1.0)
        assert loss.current_lambda() == pytest.approx(lam)

        def target(c: torch.Tensor, lam: float = lam) -> torch.Tensor:
            return (lam * c + sphereface_target(c, 4)) / (1 + lam)

        torch.testing.assert_close(loss(emb, labels), margin_softmax_loss(emb, labels.tolist(), w, target, None))
        assert int(loss.iteration) == t + 1
    loss.iteration.fill_(10**6)
    assert loss.current_lambda() == 5.0
    # evaluation mode and no_grad do not advance the schedule; the counter is in the state dict
    loss.eval()
    loss(emb, labels)
    with torch.no_grad():
        loss.train()(emb, labels)
    assert int(loss.iteration) == 10**6 and "iteration" in loss.state_dict()
    assert SphereFaceLoss(2, 2).current_lambda() == 0.0


def test_gradients_match_oracle_and_gradcheck() -> None:
    emb, labels = _batch(6, 3, 3)
    loss = _loss(3, 3, margin=3)
    a = emb.clone().requires_grad_()
    w = loss.weight.detach().clone().requires_grad_()
    loss(a, labels).backward()
    b = emb.clone().requires_grad_()
    margin_softmax_loss(b, labels.tolist(), w, lambda c: sphereface_target(c, 3), None).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(loss.weight.grad, w.grad, rtol=1e-9, atol=1e-11)

    def fn(e: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"weight": weight}, (e, labels))

    assert torch.autograd.gradcheck(fn, (emb.clone().requires_grad_(), w.detach().clone().requires_grad_()))


def test_matches_pml() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    emb, labels = _batch(16, 8, 5)
    unit = torch.nn.functional.normalize(emb, dim=1)
    # PML multiplies the (margin) cosines by ‖x‖·scale: our scale=None is PML's scale=1; our fixed scale s
    # equals PML's scale=s on unit-norm embeddings.  W_pml = weight.T; same integer margin.
    for margin, ours_scale, pml_scale, x in ((4, None, 1.0, emb), (3, None, 1.0, emb), (4, 16.0, 16.0, unit)):
        ours = _loss(5, 8, margin=margin, scale=ours_scale)
        theirs = pml_losses.SphereFaceLoss(num_classes=5, embedding_size=8, margin=margin, scale=pml_scale)
        theirs.W.data = ours.weight.detach().T.clone()
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        lo, lt = ours(a, labels), theirs(b, labels)
        torch.testing.assert_close(lo, lt, rtol=1e-9, atol=1e-10)
        lo.backward()
        lt.backward()
        ga, gb = a.grad, b.grad
        if ours_scale is not None:
            # PML's ‖x‖ factor (= 1 here) still has a radial gradient; ours is scale-invariant in x:
            # compare the tangential parts
            ga = ga - (ga * x).sum(1, keepdim=True) * x
            gb = gb - (gb * x).sum(1, keepdim=True) * x
        torch.testing.assert_close(ga, gb, rtol=1e-7, atol=1e-10)
        torch.testing.assert_close(ours.weight.grad, theirs.W.grad.T, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_and_low_precision_are_finite(dtype: torch.dtype) -> None:
    loss = SphereFaceLoss(50, 16, margin=4, scale=64.0)
    emb = torch.randn(32, 16, requires_grad=True)
    labels = torch.randint(0, 50, (32,))
    with torch.autocast("cpu", dtype=dtype):
        out = loss(emb, labels)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()
    w = torch.nn.functional.normalize(loss.weight.detach(), dim=1)[:4]
    for x in (torch.ones(8, 16), torch.cat([w, -w])):  # all-equal; cos θ = ±1 exactly
        low = x.to(dtype).requires_grad_()
        out = loss(low, torch.arange(8) % 4)
        out.backward()
        assert out.dtype == dtype and torch.isfinite(out.float()) and torch.isfinite(low.grad.float()).all()


def test_errors() -> None:
    with pytest.raises(TypeError, match="`margin` to be an int"):
        SphereFaceLoss(3, 4, margin=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`margin` to be >= 1"):
        SphereFaceLoss(3, 4, margin=0)
    with pytest.raises(ValueError, match="`scale` to be > 0"):
        SphereFaceLoss(3, 4, scale=0.0)
    with pytest.raises(ValueError, match="`lambda_base`, `lambda_gamma` and `lambda_min` to be >= 0"):
        SphereFaceLoss(3, 4, lambda_min=-1.0)
    loss = SphereFaceLoss(3, 4)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*\[0, 5\]. Set `num_classes` to at least 6"):
        loss(torch.randn(2, 4), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="to have 4 columns"):
        loss(torch.randn(2, 3), torch.tensor([0, 1]))

