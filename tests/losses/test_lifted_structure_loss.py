from __future__ import annotations

import math

import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.losses import LiftedStructureLoss
from lit_metric.miners import PairMarginMiner
from tests._helpers.pair_oracles import lifted_structure_loss

DISTANCES = {
    "euclidean": EuclideanDistance(),
    "euclidean_raw": EuclideanDistance(normalize=False),
    "sq_euclidean": EuclideanDistance(squared=True),
    "cosine": CosineSimilarity(),
}


def _batch(n: int = 10, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5, torch.arange(n) % classes


@pytest.mark.parametrize("kind", list(DISTANCES))
@pytest.mark.parametrize("smooth", [True, False])
@pytest.mark.parametrize("margins", [(1.0, 0.0), (0.5, 0.2)])
def test_matches_loop_oracle(kind: str, smooth: bool, margins: tuple[float, float]) -> None:
    emb, labels = _batch()
    neg_m, pos_m = margins
    loss = LiftedStructureLoss(neg_margin=neg_m, pos_margin=pos_m, smooth=smooth, distance=DISTANCES[kind])
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = loss(a, labels)
    ref = lifted_structure_loss(b, labels.tolist(), neg_m, pos_m, smooth, kind)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_hand_made_value() -> None:
    loss = LiftedStructureLoss(neg_margin=1.0, distance=EuclideanDistance(normalize=False))
    emb = torch.tensor([[0.0], [1.0], [3.0], [3.5]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # pair (0,1), D=1: negatives of 0 at 3, 3.5; of 1 at 2, 2.5.  pair (2,3), D=0.5: of 2 at 3, 2; of 3 at 3.5, 2.5
    j01 = math.log(math.exp(-2) + math.exp(-2.5) + math.exp(-1) + math.exp(-1.5)) + 1.0
    j23 = math.log(math.exp(-2) + math.exp(-1) + math.exp(-2.5) + math.exp(-1.5)) + 0.5
    expected = (max(j01, 0) ** 2 + max(j23, 0) ** 2) / 2 / 2  # 1/(2|P|) over the two unordered pairs
    assert loss(emb, labels).item() == pytest.approx(expected, rel=1e-12)
    hard = LiftedStructureLoss(neg_margin=1.0, smooth=False, distance=EuclideanDistance(normalize=False))
    # hard form: J = max(α − D_ik, α − D_jl) + D_ij = −1 + 1 = 0 and −1 + 0.5 < 0
    assert hard(emb, labels).item() == 0.0


@pytest.mark.parametrize("classes", [3, 5])
def test_matches_pytorch_metric_learning(classes: int) -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    # mapping: PML LiftedStructureLoss(neg_margin, pos_margin) — per ordered positive pair (a1, p), log-sum-exp of
    # (neg_margin − D) over the negative pairs whose anchor is a1 or p, plus D − pos_margin, relu, squared, halved,
    # MeanReducer over the positive pairs == ours with smooth=True, reduction="mean"; default distance
    # LpDistance(normalize_embeddings=True, p=2, power=1) == EuclideanDistance().
    emb, labels = _batch(16, 6, classes, seed=2)
    for neg_m, pos_m in [(1.0, 0.0), (0.7, 0.1)]:
        ours = LiftedStructureLoss(neg_margin=neg_m, pos_margin=pos_m)
        theirs = pml_losses.LiftedStructureLoss(neg_margin=neg_m, pos_margin=pos_m)
        a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        x, y = ours(a, labels), theirs(b, labels)
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
        x.backward()
        y.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_mined_pairs_match_pytorch_metric_learning() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    emb, labels = _batch(12, 5, 3, seed=4)
    pairs = PairMarginMiner(0.6, 1.3)(emb, labels)
    assert pairs[0].numel() and pairs[2].numel()
    # a pair none of whose ends has a mined negative: PML takes its log-sum-exp as 0, ours leaves it out (no J)
    anchors_with_neg = set(pairs[2].tolist())
    keep = torch.tensor([a in anchors_with_neg or p in anchors_with_neg for a, p in zip(*pairs[:2])])
    pairs = (pairs[0][keep], pairs[1][keep], pairs[2], pairs[3])
    ours = LiftedStructureLoss()(emb, labels, pairs)
    theirs = pml_losses.LiftedStructureLoss()(emb, labels, pairs)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


def test_references_split_sums_to_full_batch() -> None:
    emb, labels = _batch(12)
    for smooth in (True, False):
        loss = LiftedStructureLoss(smooth=smooth, reduction="sum")
        parts = [
            loss(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(12)[s])
            for s in (slice(0, 5), slice(5, 12))
        ]
        torch.testing.assert_close(sum(parts), loss(emb, labels))


def test_memory_is_quadratic_not_cubic() -> None:
    # B=600: a |P|×|N| tensor (PML's path) would hold ~600·(600/4)·600·0.75 ≈ 4e7 elements per intermediate;
    # ours keeps only (B, N)-sized tensors.  The forward+backward must not allocate a cubic tensor.
    from torch.profiler import ProfilerActivity, profile

    emb = torch.randn(600, 16, requires_grad=True)
    labels = torch.arange(600) % 150
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        LiftedStructureLoss()(emb, labels).backward()
    largest = max(e.cpu_memory_usage for e in prof.events())  # the largest single op allocation
    assert largest < 40 * 600 * 600 * 4  # a few dozen (B, N) float tensors at most


def test_gradcheck() -> None:
    emb, labels = _batch(6, 3, 2, seed=1)
    for smooth in (True, False):
        loss = LiftedStructureLoss(neg_margin=1.5, smooth=smooth)
        assert torch.autograd.gradcheck(lambda e, f=loss: f(e, labels), (emb.clone().requires_grad_(),))


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])])
def test_no_positive_or_single_class_is_zero_with_zero_gradients(labels: torch.Tensor) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    value = LiftedStructureLoss()(emb, labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))


def test_mined_pairs_without_negatives_are_left_out() -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    empty = torch.tensor([], dtype=torch.long)
    value = LiftedStructureLoss()(emb, labels, (torch.tensor([0]), torch.tensor([1]), empty, empty))
    value.backward()
    assert value.item() == 0.0 and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("smooth", [True, False])
def test_low_precision_is_finite(dtype: torch.dtype, smooth: bool) -> None:
    base = torch.randn(1, 8).repeat(6, 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for emb in (base, base + 1e-3 * torch.randn(6, 8)):  # all equal, near-zero distances
        x = emb.to(dtype).requires_grad_()
        value = LiftedStructureLoss(smooth=smooth)(x, labels)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
        y = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = LiftedStructureLoss(smooth=smooth)(y, labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(y.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`neg_margin` to be >= 0"):
        LiftedStructureLoss(neg_margin=-1.0)
    with pytest.raises(TypeError, match="`pos_margin` to be a number"):
        LiftedStructureLoss(pos_margin=[0.1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected argument `labels`"):
        LiftedStructureLoss()(torch.randn(4, 2))
    with pytest.raises(ValueError, match="indices_tuple"):
        LiftedStructureLoss()(torch.randn(4, 2), torch.tensor([0, 0, 1, 1]), (torch.tensor([0]),) * 2)
