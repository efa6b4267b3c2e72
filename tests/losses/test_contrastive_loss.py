from __future__ import annotations

import pytest
import torch

from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from lit_metric.losses import ContrastiveLoss
from lit_metric.miners import PairMarginMiner
from tests._helpers.pair_oracles import contrastive_loss

DISTANCES = {
    "euclidean": EuclideanDistance(),
    "sq_euclidean": EuclideanDistance(squared=True),
    "euclidean_raw": EuclideanDistance(normalize=False),
    "cosine": CosineSimilarity(),
    "dot": DotProductSimilarity(),
}
MARGINS = {  # (pos_margin, neg_margin) in each measure's units
    "euclidean": (0.3, 1.2),
    "sq_euclidean": (0.2, 1.5),
    "euclidean_raw": (1.0, 4.0),
    "cosine": (0.8, 0.2),
    "dot": (2.0, 0.5),
}


def _batch(n: int = 10, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5, torch.arange(n) % classes


@pytest.mark.parametrize("kind", list(DISTANCES))
@pytest.mark.parametrize("reduction", ["mean", "nonzero_mean", "sum"])
@pytest.mark.parametrize("squared", [False, True])
def test_matches_loop_oracle(kind: str, reduction: str, squared: bool) -> None:
    emb, labels = _batch()
    pos_m, neg_m = MARGINS[kind]
    loss = ContrastiveLoss(pos_m, neg_m, distance=DISTANCES[kind], squared=squared, reduction=reduction)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = loss(a, labels)
    ref = contrastive_loss(b, labels.tolist(), pos_m, neg_m, kind, squared, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_hand_made_values() -> None:
    dist = EuclideanDistance(normalize=False)
    emb = torch.tensor([[0.0, 0.0], [0.0, 0.5], [0.0, 0.8]])
    labels = torch.tensor([0, 0, 1])
    # positives at 0.5 (twice); negatives at 0.8 and 0.3 (twice each)
    assert ContrastiveLoss(0.0, 1.0, dist)(emb, labels).item() == pytest.approx(0.5 + (0.2 + 0.7) / 2)
    squared = ContrastiveLoss(0.0, 1.0, dist, squared=True)(emb, labels).item()
    assert squared == pytest.approx(0.5 * 0.25 + 0.5 * (0.04 + 0.49) / 2)
    assert ContrastiveLoss(0.0, 1.0, dist, reduction="sum")(emb, labels).item() == pytest.approx(1.0 + 1.8)
    # everything satisfied: zero
    assert ContrastiveLoss(0.6, 0.2, dist)(emb, labels).item() == 0.0


def test_mined_pairs_and_triplets_match_oracle() -> None:
    emb, labels = _batch(12)
    miner = PairMarginMiner(pos_margin=0.5, neg_margin=1.0)
    a1, p, a2, n = miner(emb, labels)
    assert a1.numel() and a2.numel()
    loss = ContrastiveLoss(0.5, 1.0)
    ref = contrastive_loss(
        emb, labels.tolist(), 0.5, 1.0, "euclidean", False, "mean",
        pos_pairs=list(zip(a1.tolist(), p.tolist())), neg_pairs=list(zip(a2.tolist(), n.tolist())),
    )
    torch.testing.assert_close(loss(emb, labels, (a1, p, a2, n)), ref)
    # the miner keeps exactly the non-zero terms: same value as all pairs with nonzero_mean
    nz = ContrastiveLoss(0.5, 1.0, reduction="nonzero_mean")
    torch.testing.assert_close(nz(emb, labels, (a1, p, a2, n)), nz(emb, labels))
    # triplets are split into their unique pairs
    ta, tp, tn = torch.tensor([0, 0, 3]), torch.tensor([3, 3, 0]), torch.tensor([1, 2, 1])
    ref = contrastive_loss(
        emb, labels.tolist(), 0.5, 1.0, "euclidean", False, "mean",
        pos_pairs=[(0, 3), (3, 0)], neg_pairs=[(0, 1), (0, 2), (3, 1)],
    )
    torch.testing.assert_close(loss(emb, labels, (ta, tp, tn)), ref)


@pytest.mark.parametrize("kind", ["euclidean", "cosine"])
def test_matches_pytorch_metric_learning(kind: str) -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    # mapping: PML ContrastiveLoss(pos_margin, neg_margin) with its default AvgNonZeroReducer on the positive
    # and the negative sub-losses (added) == ours with reduction="nonzero_mean"; PML's default distance
    # LpDistance(normalize_embeddings=True, p=2, power=1) == EuclideanDistance(); PML CosineSimilarity() ==
    # CosineSimilarity().  PairMarginMiner(pos_margin, neg_margin) has the same arguments and strict comparisons.
    emb, labels = _batch(16, 6, 4, seed=3)
    pos_m, neg_m = MARGINS[kind]
    pml_dist = pml_distances.LpDistance() if kind == "euclidean" else pml_distances.CosineSimilarity()
    ours = ContrastiveLoss(pos_m, neg_m, distance=DISTANCES[kind], reduction="nonzero_mean")
    theirs = pml_losses.ContrastiveLoss(pos_margin=pos_m, neg_margin=neg_m, distance=pml_dist)
    torch.testing.assert_close(ours(emb, labels), theirs(emb, labels), rtol=1e-10, atol=1e-12)
    pml_miner = pml_miners.PairMarginMiner(pos_margin=pos_m, neg_margin=neg_m, distance=pml_dist)
    our_pairs = PairMarginMiner(pos_m, neg_m, distance=DISTANCES[kind])(emb, labels)
    their_pairs = pml_miner(emb, labels)
    for x, y in zip(our_pairs, their_pairs):
        assert x.tolist() == y.tolist()
    torch.testing.assert_close(ours(emb, labels, our_pairs), theirs(emb, labels, their_pairs), rtol=1e-10, atol=1e-12)


def test_gradcheck() -> None:
    emb, labels = _batch(5, 3, 2, seed=1)
    loss = ContrastiveLoss(0.1, 1.5, squared=True)
    assert torch.autograd.gradcheck(lambda e: loss(e, labels), (emb.requires_grad_(),))


def test_reference_split_sums_to_full_batch() -> None:
    # the distributed semantics: rank r's anchors against all references, self excluded by global index
    emb, labels = _batch(12)
    loss = ContrastiveLoss(0.3, 1.2, reduction="sum")
    halves = [
        loss(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(12)[s])
        for s in (slice(0, 6), slice(6, 12))
    ]
    torch.testing.assert_close(sum(halves), loss(emb, labels))


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])])
def test_degenerate_batches_give_a_differentiable_finite_loss(labels: torch.Tensor) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    value = ContrastiveLoss()(emb, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(emb.grad).all()
    empty = ContrastiveLoss()(emb, labels, (torch.tensor([], dtype=torch.long),) * 4)
    assert empty.item() == 0.0


def test_no_pair_at_all_is_a_zero_with_zero_gradients() -> None:
    emb = torch.randn(1, 3, requires_grad=True)
    value = ContrastiveLoss()(emb, torch.tensor([0]))
    value.backward()
    assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    base = torch.randn(1, 8).repeat(6, 1)
    for emb in (base, base + 1e-4 * torch.randn(6, 8)):  # all equal, near-zero distances
        x = emb.to(dtype).requires_grad_()
        value = ContrastiveLoss(squared=True)(x, torch.tensor([0, 0, 1, 1, 2, 2]))
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
    x = base.clone().requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        value = ContrastiveLoss()(x, torch.tensor([0, 0, 1, 1, 2, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`neg_margin` to be >= 0"):
        ContrastiveLoss(neg_margin=-1.0)
    with pytest.raises(TypeError, match="`pos_margin` to be a number"):
        ContrastiveLoss(pos_margin="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`reduction` to be one of"):
        ContrastiveLoss(reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        ContrastiveLoss()(torch.randn(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(TypeError, match="integer class ids"):
        ContrastiveLoss()(torch.randn(4, 2), torch.tensor([0.0, 0.0, 1.0, 1.0]))
