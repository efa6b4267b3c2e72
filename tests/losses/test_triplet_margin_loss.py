from __future__ import annotations

import pytest
import torch

from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance
from lit_metric.losses import TripletMarginLoss
from lit_metric.miners import TripletMiner
from tests._helpers.triplet_oracles import triplet_loss

DISTANCES = {
    "euclidean": EuclideanDistance(),
    "sq_euclidean": EuclideanDistance(squared=True),
    "euclidean_raw": EuclideanDistance(normalize=False),
    "cosine": CosineSimilarity(),
    "dot": DotProductSimilarity(),
}


def _batch(n: int = 12, d: int = 5, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0  # not normalised
    labels = torch.arange(n) % classes
    return emb, labels


@pytest.mark.parametrize("kind", list(DISTANCES))
@pytest.mark.parametrize("reduction", ["mean", "nonzero_mean", "sum"])
@pytest.mark.parametrize("margin", [0.0, 0.3, 1.5])
def test_all_triplets_match_loop_oracle(kind: str, reduction: str, margin: float) -> None:
    emb, labels = _batch()
    ours = TripletMarginLoss(margin=margin, distance=DISTANCES[kind], reduction=reduction)(emb, labels)
    ref = triplet_loss(emb, labels.tolist(), margin, kind, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["euclidean", "cosine"])
@pytest.mark.parametrize("swap,smooth", [(True, False), (False, True), (True, True)])
def test_swap_and_smooth_match_oracle(kind: str, swap: bool, smooth: bool) -> None:
    emb, labels = _batch(10)
    loss = TripletMarginLoss(margin=0.4, distance=DISTANCES[kind], swap=swap, smooth=smooth, chunk_elements=50)
    ref = triplet_loss(emb, labels.tolist(), 0.4, kind, "mean", swap=swap, smooth=smooth)
    torch.testing.assert_close(loss(emb, labels), ref, rtol=1e-10, atol=1e-12)


def test_gradients_match_oracle() -> None:
    emb, labels = _batch(9)
    a = emb.clone().requires_grad_()
    b = emb.clone().requires_grad_()
    TripletMarginLoss(margin=0.5, reduction="nonzero_mean")(a, labels).backward()
    triplet_loss(b, labels.tolist(), 0.5, "euclidean", "nonzero_mean").backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_mined_triplets_and_pairs_match_oracle() -> None:
    emb, labels = _batch(12)
    a, p, n = TripletMiner("all")(emb, labels)
    keep = torch.arange(a.numel()) % 3 == 0
    triplets = (a[keep], p[keep], n[keep])
    loss = TripletMarginLoss(margin=0.3)
    ref = triplet_loss(emb, labels.tolist(), 0.3, "euclidean", "mean", triplets=list(zip(*[t.tolist() for t in triplets])))
    torch.testing.assert_close(loss(emb, labels, triplets), ref)


def test_ref_emb_uses_references_without_self_exclusion() -> None:
    emb, labels = _batch(6)
    ref, ref_labels = _batch(8, seed=1)
    ours = TripletMarginLoss(margin=0.3, reduction="sum")(emb, labels, ref_emb=ref, ref_labels=ref_labels)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(6):
        for j in range(8):
            for k in range(8):
                if ref_labels[j] == labels[i] and ref_labels[k] != labels[i]:
                    d_ap = (emb[i] / emb[i].norm() - ref[j] / ref[j].norm()).norm()
                    d_an = (emb[i] / emb[i].norm() - ref[k] / ref[k].norm()).norm()
                    total += torch.clamp(d_ap - d_an + 0.3, min=0)
    torch.testing.assert_close(ours, total)


def test_closed_form_case() -> None:
    # anchor (1,0), positive (0,1): d_ap = sqrt(2); negative (-1,0): d_an = 2 -> term max(0, sqrt2 - 2 + 1)
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    loss = TripletMarginLoss(margin=1.0, reduction="sum")(emb, labels)
    # two anchors (0 and 1), each with one positive and the one negative; anchor 1: d_ap=sqrt2, d_an=sqrt2
    expected = (2**0.5 - 2 + 1) + (2**0.5 - 2**0.5 + 1)
    torch.testing.assert_close(loss, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3]])
def test_no_valid_triplet_gives_zero_with_zero_grad(labels: list[int]) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    for loss in (TripletMarginLoss(), TripletMarginLoss(smooth=True)):
        out = loss(emb, torch.tensor(labels))
        out.backward()
        assert out.item() == 0.0
        assert emb.grad is not None and torch.all(emb.grad == 0)
        emb.grad = None
    empty = (torch.empty(0, dtype=torch.long),) * 3
    out = TripletMarginLoss()(emb, torch.tensor(labels), empty)
    out.backward()
    assert out.item() == 0.0 and torch.all(emb.grad == 0)


def test_identical_embeddings_finite_grads() -> None:
    emb = torch.ones(6, 4, requires_grad=True)
    out = TripletMarginLoss(margin=0.2)(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all()
    torch.testing.assert_close(out, torch.tensor(0.2))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    emb = (torch.randn(16, 8) * 1e-3).to(dtype).requires_grad_()
    out = TripletMarginLoss()(emb, torch.arange(16) % 4)
    out.backward()
    assert torch.isfinite(out.float()) and torch.isfinite(emb.grad.float()).all()
    assert out.dtype == dtype


def test_matches_pml() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    emb, labels = _batch(24, 8, 4)
    # PML's TripletMarginLoss(margin=m) averages over triplets with a positive term: our "nonzero_mean"
    for margin in (0.1, 0.5):
        ours = TripletMarginLoss(margin=margin, reduction="nonzero_mean")(emb, labels)
        theirs = pml_losses.TripletMarginLoss(margin=margin)(emb, labels)
        torch.testing.assert_close(ours, theirs)
        for strategy in ("semihard", "hard", "easy"):
            triplets = TripletMiner(strategy, margin=margin)(emb, labels)
            pml_triplets = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets=strategy)(emb, labels)
            ours = TripletMarginLoss(margin=margin, reduction="nonzero_mean")(emb, labels, triplets)
            theirs = pml_losses.TripletMarginLoss(margin=margin)(emb, labels, pml_triplets)
            torch.testing.assert_close(ours, theirs)


def test_large_batch_does_not_allocate_cubic_memory() -> None:
    # B=2048 would need 8.6e9 elements for a B×B×B tensor; the sorted path needs O(B²)
    emb = torch.randn(2048, 16)
    labels = torch.arange(2048) % 64
    out = TripletMarginLoss()(emb, labels)
    assert torch.isfinite(out)


def test_bad_inputs() -> None:
    loss = TripletMarginLoss()
    with pytest.raises(ValueError, match="`embeddings` to be 2-D"):
        loss(torch.randn(4), torch.arange(4))
    with pytest.raises(ValueError, match="`labels` to be 1-D"):
        loss(torch.randn(4, 2), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="one entry per embedding"):
        loss(torch.randn(4, 2), torch.arange(3))
    with pytest.raises(TypeError, match="integer class ids"):
        loss(torch.randn(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="`labels`"):
        loss(torch.randn(4, 2))
    with pytest.raises(ValueError, match="tuple of 3 tensors"):
        loss(torch.randn(4, 2), torch.arange(4), (torch.arange(2), torch.arange(2)))
    with pytest.raises(ValueError, match=r"`indices_tuple\[1\]` to index"):
        loss(torch.randn(4, 2), torch.arange(4), (torch.tensor([0]), torch.tensor([9]), torch.tensor([1])))
    with pytest.raises(ValueError, match="`reduction`"):
        TripletMarginLoss(reduction="avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`margin`"):
        TripletMarginLoss(margin=-1.0)
