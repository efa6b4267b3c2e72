from __future__ import annotations

import math

import pytest
import torch

from lit_metric.losses import AngularLoss
from lit_metric.miners import PairMarginMiner, TripletMiner
from tests._helpers.pair_oracles import angle_at_negative, angular_loss


def _batch(n: int = 10, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5, torch.arange(n) % classes


@pytest.mark.parametrize("alpha_deg", [30.0, 45.0, 55.0])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_elements", [2**22, 7])  # one chunk, or checkpointed chunks of one pair
def test_matches_loop_oracle(alpha_deg: float, reduction: str, chunk_elements: int) -> None:
    emb, labels = _batch()
    loss = AngularLoss(alpha=math.radians(alpha_deg), reduction=reduction, chunk_elements=chunk_elements)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = loss(a, labels)
    ref = angular_loss(b, labels.tolist(), math.radians(alpha_deg))
    if reduction == "sum":
        ref = ref * sum(1 for i in range(10) for j in range(10) if i != j and labels[i] == labels[j])
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_unnormalised_variant_matches_oracle() -> None:
    emb, labels = _batch(8, 3, 2, seed=5)
    emb = emb * 0.3
    ours = AngularLoss(math.radians(40), normalize=False)(emb, labels)
    torch.testing.assert_close(ours, angular_loss(emb, labels.tolist(), math.radians(40), normalize=False))


def test_hand_made_values_and_the_angle_it_bounds() -> None:
    alpha = math.radians(45)
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # x_a = x_p ⟂ x_n: f = 4·(x_a + x_p)·x_n − 4·x_a·x_p = −4 for both ordered pairs
    assert AngularLoss(alpha)(emb, torch.tensor([0, 0, 1])).item() == pytest.approx(math.log1p(math.exp(-4)))
    # the exponent is positive exactly when the angle at the negative exceeds α (the constraint is violated)
    xa, xp = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    for xn in (torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.6, 0.6, 0.52])):
        xn = xn / xn.norm()
        t = math.tan(alpha) ** 2
        f = 4 * t * float((xa + xp) @ xn) - 2 * (1 + t) * float(xa @ xp)
        assert (f > 0) == (angle_at_negative(xa, xp, xn) > alpha)


def test_matches_pytorch_metric_learning_on_unit_norm_inputs() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    # mapping: PML AngularLoss(alpha=degrees) == ours AngularLoss(alpha=math.radians(degrees)); PML normalises the
    # anchors and positives but multiplies by the raw references, so inputs are unit-norm; PML averages over the
    # ordered positive pairs (MeanReducer) like ours with reduction="mean".  The gradients then differ only along
    # the radial directions (ours differentiates through the normalisation of the references too): compare their
    # projections on the tangent space of the unit sphere.
    emb, labels = _batch(16, 6, 4, seed=7)
    emb = torch.nn.functional.normalize(emb, dim=1)
    for degrees in (36.0, 45.0):
        a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        ours = AngularLoss(alpha=math.radians(degrees))(a, labels)
        theirs = pml_losses.AngularLoss(alpha=degrees)(b, labels)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        ours.backward()
        theirs.backward()

        def tangent(g: torch.Tensor) -> torch.Tensor:
            return g - (g * emb).sum(1, keepdim=True) * emb

        torch.testing.assert_close(tangent(a.grad), tangent(b.grad), rtol=1e-8, atol=1e-12)
    # with mined pairs: positive pairs from the tuple, negatives still all other-class references.  (PML turns
    # triplets into pairs without removing duplicates, we use each unique pair once: compare on pairs.)
    pairs = PairMarginMiner(0.9, 1.2)(emb, labels)
    assert 0 < pairs[0].numel() < 48
    ours = AngularLoss(alpha=math.radians(40))(emb, labels, pairs)
    theirs = pml_losses.AngularLoss(alpha=40)(emb, labels, pairs)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    triplets = TripletMiner("semihard", margin=0.5)(emb, labels)
    unique_pairs = set(zip(triplets[0].tolist(), triplets[1].tolist()))
    expected = AngularLoss(alpha=math.radians(40))(
        emb, labels, tuple(torch.tensor(list(t)) for t in zip(*sorted(unique_pairs))) + pairs[2:]
    )
    torch.testing.assert_close(AngularLoss(alpha=math.radians(40))(emb, labels, triplets), expected)


def test_references_split_sums_to_full_batch() -> None:
    emb, labels = _batch(12)
    loss = AngularLoss(reduction="sum", chunk_elements=20)
    parts = [
        loss(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(12)[s])
        for s in (slice(0, 7), slice(7, 12))
    ]
    torch.testing.assert_close(sum(parts), loss(emb, labels))


def test_gradcheck() -> None:
    emb, labels = _batch(6, 3, 2, seed=1)
    for chunk in (2**22, 5):
        loss = AngularLoss(alpha=math.radians(40), chunk_elements=chunk)
        assert torch.autograd.gradcheck(lambda e, f=loss: f(e, labels), (emb.clone().requires_grad_(),))


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])])
def test_no_positive_or_single_class_is_zero_with_zero_gradients(labels: torch.Tensor) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    value = AngularLoss()(emb, labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    base = torch.randn(1, 8).repeat(6, 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for emb in (base, base + 1e-3 * torch.randn(6, 8)):
        x = emb.to(dtype).requires_grad_()
        value = AngularLoss(alpha=math.radians(55))(x, labels)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
        y = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = AngularLoss(alpha=math.radians(55))(y, labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(y.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"It looks like degrees: use math.radians\(45\)"):
        AngularLoss(alpha=45)
    with pytest.raises(ValueError, match=r"`alpha` to be in \(0, π/2\)"):
        AngularLoss(alpha=0.0)
    with pytest.raises(TypeError, match="`alpha` to be a number"):
        AngularLoss(alpha="45")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`chunk_elements` to be >= 1"):
        AngularLoss(chunk_elements=0)
    with pytest.raises(ValueError, match="Expected argument `labels`"):
        AngularLoss()(torch.randn(4, 2))
