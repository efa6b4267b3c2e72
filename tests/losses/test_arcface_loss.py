from __future__ import annotations

import math

import pytest
import torch

from lit_metric.losses import ArcFaceLoss
from lit_metric.miners import TripletMiner
from tests._helpers.softmax_oracles import arcface_target, margin_softmax_loss


def _batch(n: int = 10, d: int = 6, c: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 3.0  # not normalised
    labels = torch.randint(0, c, (n,), generator=g)
    return emb, labels


def _loss(c: int = 4, d: int = 6, **kwargs: object) -> ArcFaceLoss:
    loss = ArcFaceLoss(c, d, **kwargs).double()
    with torch.no_grad():
        loss.weight.mul_(2.5)  # not normalised either
    return loss


@pytest.mark.parametrize("margin", [0.0, 0.5, 1.3])
@pytest.mark.parametrize("scale", [1.0, 64.0])
@pytest.mark.parametrize("easy_margin", [False, True])
def test_matches_loop_oracle(margin: float, scale: float, easy_margin: bool) -> None:
    emb, labels = _batch()
    loss = _loss(margin=margin, scale=scale, easy_margin=easy_margin)
    ref = margin_softmax_loss(
        emb, labels.tolist(), loss.weight.detach(), lambda c: arcface_target(c, margin, easy_margin), scale
    )
    torch.testing.assert_close(loss(emb, labels), ref, rtol=1e-10, atol=1e-10)


def test_fallback_branch_is_exercised_and_matches() -> None:
    # θ + m > π for targets with cos θ < −cos m: those use cos θ − m·sin m
    emb, labels = _batch(40, 3, 3, seed=3)
    loss = _loss(3, 3, margin=1.3, scale=2.0)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(loss.weight.detach(), dim=1).T
    assert (cos[torch.arange(40), labels] < -math.cos(1.3)).sum() >= 3
    ref = margin_softmax_loss(emb, labels.tolist(), loss.weight.detach(), lambda c: arcface_target(c, 1.3), 2.0)
    torch.testing.assert_close(loss(emb, labels), ref, rtol=1e-10, atol=1e-10)


def test_sum_reduction_and_gradients_match_oracle() -> None:
    emb, labels = _batch()
    loss = _loss(margin=0.4, scale=8.0, reduction="sum")
    a = emb.clone().requires_grad_()
    w = loss.weight.detach().clone().requires_grad_()
    loss(a, labels).backward()
    b = emb.clone().requires_grad_()
    margin_softmax_loss(b, labels.tolist(), w, lambda c: arcface_target(c, 0.4), 8.0, "sum").backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(loss.weight.grad, w.grad, rtol=1e-9, atol=1e-11)


def test_closed_form() -> None:
    # W = I, x = (0.6, 0.8), class 0: target cos(acos 0.6 + m), other logit 0.8
    loss = ArcFaceLoss(2, 2, margin=0.5, scale=3.0).double()
    with torch.no_grad():
        loss.weight.copy_(torch.eye(2))
    emb = torch.tensor([[0.6, 0.8]], dtype=torch.float64)
    t = math.cos(math.acos(0.6) + 0.5)
    expected = math.log(1 + math.exp(3.0 * (0.8 - t)))
    assert loss(emb, torch.tensor([0])).item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(loss.get_logits(emb), 3.0 * torch.tensor([[0.6, 0.8]], dtype=torch.float64))


def test_gradcheck() -> None:
    emb, labels = _batch(5, 3, 3)
    loss = _loss(3, 3, margin=0.7, scale=2.0)
    w = loss.weight.detach().clone().requires_grad_()

    def fn_functional(e: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"weight": weight}, (e, labels))

    assert torch.autograd.gradcheck(fn_functional, (emb.clone().requires_grad_(), w))


def test_miner_selects_anchors() -> None:
    emb, labels = _batch(12, 6, 3)
    loss = _loss(3, 6, margin=0.5, scale=4.0)
    a, p, n = TripletMiner("all")(emb, labels)
    keep = (a == 2) | (a == 5) | (a == 7)
    triplets = (a[keep], p[keep], n[keep])
    ref = margin_softmax_loss(
        emb, labels.tolist(), loss.weight.detach(), lambda c: arcface_target(c, 0.5), 4.0, samples=[2, 5, 7]
    )
    torch.testing.assert_close(loss(emb, labels, triplets), ref, rtol=1e-10, atol=1e-10)
    # pair tuples: anchors are a1 ∪ a2, each once
    pairs = (torch.tensor([2, 2]), torch.tensor([0, 1]), torch.tensor([7, 5, 5]), torch.tensor([1, 2, 3]))
    torch.testing.assert_close(loss(emb, labels, pairs), ref, rtol=1e-10, atol=1e-10)


def test_empty_tuple_gives_zero_with_graph() -> None:
    emb, labels = _batch(6, 6, 3)
    emb.requires_grad_()
    loss = _loss(3, 6)
    empty = (torch.empty(0, dtype=torch.long),) * 3
    out = loss(emb, labels, empty)
    out.backward()
    assert out.item() == 0.0 and torch.all(emb.grad == 0)


def test_ref_emb_is_ignored() -> None:
    emb, labels = _batch()
    ref, ref_labels = _batch(7, seed=5)
    loss = _loss()
    torch.testing.assert_close(loss(emb, labels, ref_emb=ref, ref_labels=ref_labels), loss(emb, labels))


def test_matches_pml() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    emb, labels = _batch(16, 8, 5)
    for margin, scale in ((0.5, 64.0), (1.2, 10.0), (0.2, 1.0)):
        ours = _loss(5, 8, margin=margin, scale=scale)
        # PML: margin in degrees, W of shape (D, C) = our weight transposed, same scale
        theirs = pml_losses.ArcFaceLoss(num_classes=5, embedding_size=8, margin=math.degrees(margin), scale=scale)
        with torch.no_grad():
            theirs.W.data = ours.weight.detach().T.clone()
        a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        lo, lt = ours(a, labels), theirs(b, labels)
        torch.testing.assert_close(lo, lt, rtol=1e-9, atol=1e-10)
        lo.backward()
        lt.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-7, atol=1e-10)
        torch.testing.assert_close(ours.weight.grad, theirs.W.grad.T, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_scale_64_is_finite(dtype: torch.dtype) -> None:
    if dtype == torch.float16 and not torch.amp.autocast_mode.is_autocast_available("cpu"):
        pytest.skip("no CPU autocast")
    loss = ArcFaceLoss(50, 16, margin=0.5, scale=64.0)
    emb = torch.randn(32, 16, requires_grad=True)
    labels = torch.randint(0, 50, (32,))
    with torch.autocast("cpu", dtype=dtype):
        out = loss(emb, labels)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()
    torch.testing.assert_close(out, loss(emb, labels), rtol=0.05, atol=0.5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_keep_dtype(dtype: torch.dtype) -> None:
    loss = ArcFaceLoss(10, 8)
    emb = torch.randn(12, 8).to(dtype).requires_grad_()
    out = loss(emb, torch.arange(12) % 10)
    out.backward()
    assert out.dtype == dtype and torch.isfinite(out.float()) and torch.isfinite(emb.grad.float()).all()


def test_degenerate_inputs_have_finite_grads() -> None:
    loss = ArcFaceLoss(3, 4, margin=0.5, scale=64.0)
    # all-equal embeddings, and embeddings exactly on (cos = 1) and opposite to (cos = −1) their class weight
    w = torch.nn.functional.normalize(loss.weight.detach(), dim=1)
    cases = [torch.ones(6, 4), torch.cat([w, -w]), torch.zeros(3, 4)]
    for emb in cases:
        emb = emb.clone().requires_grad_()
        labels = torch.arange(emb.shape[0]) % 3
        out = loss(emb, labels)
        out.backward()
        assert torch.isfinite(out) and torch.isfinite(emb.grad).all() and torch.isfinite(loss.weight.grad).all()
        loss.weight.grad = None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_autocast() -> None:
    loss = ArcFaceLoss(1000, 128).cuda()
    emb = torch.randn(256, 128, device="cuda", requires_grad=True)
    labels = torch.randint(0, 1000, (256,), device="cuda")
    with torch.autocast("cuda", dtype=torch.float16):
        out = loss(emb, labels)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all()
    with pytest.raises(ValueError, match=r"in \[0, 1000\).*\[0, 1000\]"):
        loss(emb, torch.full((256,), 1000, device="cuda"))


def test_errors() -> None:
    loss = ArcFaceLoss(4, 6)
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\) \(`num_classes`=4\), but got values in \[0, 7\]"):
        loss(torch.randn(3, 6), torch.tensor([0, 7, 1]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\).*\[-1, 1\]"):
        loss(torch.randn(3, 6), torch.tensor([0, -1, 1]))
    with pytest.raises(TypeError, match="integer class ids"):
        loss(torch.randn(3, 6), torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="to have 6 columns"):
        loss(torch.randn(3, 5), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="to have 6 columns"):
        loss.get_logits(torch.randn(3, 5))
    with pytest.raises(TypeError, match="floating-point"):
        loss.get_logits(torch.ones(3, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"radians in \[0, π\).*math.radians\(28.6\)"):
        ArcFaceLoss(4, 6, margin=28.6)
    with pytest.raises(ValueError, match=r"radians in \[0, π\), but got -0.1"):
        ArcFaceLoss(4, 6, margin=-0.1)
    with pytest.raises(ValueError, match="`scale` to be > 0"):
        ArcFaceLoss(4, 6, scale=0.0)
    with pytest.raises(TypeError, match="`num_classes` to be an int"):
        ArcFaceLoss(4.0, 6)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`embedding_dim` to be >= 1"):
        ArcFaceLoss(4, 0)


def test_learns_on_digits() -> None:
    """A linear embedding trained with ArcFace on digits 0-4: the loss drops within a few steps."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    digits = sklearn_datasets.load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    keep = y < 5
    x, y = x[keep][:400], y[keep][:400]
    net = torch.nn.Linear(64, 16)
    loss = ArcFaceLoss(5, 16, margin=0.3, scale=16.0)
    opt = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        out = loss(net(x), y)
        out.backward()
        opt.step()
        losses.append(out.item())
    assert losses[-1] < 0.3 * losses[0]


# --- DDP rule: 2 ranks × B equal 1 process × 2B ------------------------------------------------------


def test_two_simulated_ranks_equal_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Class-weight losses need no gather; they must reduce through ``distributed.reduce_mean`` with the
    local sum and count.  Two ranks are simulated by a ``reduce_mean`` that divides by the global count and
    multiplies by W = 2 (what it does under ``global_reduction``); DDP then averages parameter gradients."""
    from lit_metric import distributed
    from lit_metric.losses import CenterLoss, SoftmaxLoss, SphereFaceLoss, WeightedSum

    emb_all = torch.randn(16, 6, dtype=torch.float64)
    labels_all = torch.randint(0, 4, (16,))
    makers = {
        "arcface": lambda: ArcFaceLoss(4, 6, scale=8.0),
        "sphereface": lambda: SphereFaceLoss(4, 6, margin=3),
        "center+softmax": lambda: WeightedSum([SoftmaxLoss(4, 6), CenterLoss(4, 6)], [1.0, 0.5]),
    }
    for name, make in makers.items():
        torch.manual_seed(1)
        single = make().double()
        emb = emb_all.clone().requires_grad_()
        value = single(emb, labels_all)
        value.backward()

        torch.manual_seed(1)
        ranked = make().double()
        counts: list[float] = []
        real = distributed.reduce_mean

        def fake_reduce_mean(total: torch.Tensor, count: object, counts: list[float] = counts) -> torch.Tensor:
            counts.append(float(torch.as_tensor(count)))
            return total * 2 / 16  # W · local total / global count (16 samples in all)

        monkeypatch.setattr(distributed, "reduce_mean", fake_reduce_mean)
        values, emb_grads = [], []
        for r in range(2):
            part = emb_all[r * 8 : (r + 1) * 8].clone().requires_grad_()
            v = ranked(part, labels_all[r * 8 : (r + 1) * 8])
            v.backward()  # parameter grads accumulate: their sum / 2 is DDP's average
            values.append(v.detach())
            emb_grads.append(part.grad / 2)  # backbone grads are averaged over the 2 ranks too
        monkeypatch.setattr(distributed, "reduce_mean", real)
        assert set(counts) == {8.0}, name  # local counts only
        torch.testing.assert_close((values[0] + values[1]) / 2, value.detach())
        torch.testing.assert_close(torch.cat(emb_grads), emb.grad)
        for p_ranked, p_single in zip(ranked.parameters(), single.parameters()):
            torch.testing.assert_close(p_ranked.grad / 2, p_single.grad)

