from __future__ import annotations

import math

import pytest
import torch

from lit_metric.distances import EuclideanDistance
from lit_metric.losses import NPairLoss
from lit_metric.miners import PairMarginMiner
from tests._helpers.pair_oracles import npair_loss


def _batch(n: int = 12, d: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (n,), generator=g)  # unordered, some classes may have one sample
    return emb, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("l2_reg", [0.0, 0.02, 0.5])
def test_matches_loop_oracle(seed: int, l2_reg: float) -> None:
    emb, labels = _batch(seed=seed)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = NPairLoss(l2_reg=l2_reg)(a, labels)
    ref = npair_loss(b, labels.tolist(), l2_reg)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_hand_made_value() -> None:
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: logits (1, 0) -> −log(e/(e+1)); anchor 2: logits (0, 2) -> −log(e²/(e²+1))
    ce = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 2
    reg = 0.1 * ((1 + 1) + (1 + 4)) / 2
    assert NPairLoss(l2_reg=0.1)(emb, labels).item() == pytest.approx(ce + reg, rel=1e-12)
    # a distance gives logits −d: anchor 0 -> (−0, −√5), anchor 2 -> (−√2, −1)
    d = NPairLoss(l2_reg=0.0, distance=EuclideanDistance(normalize=False))(emb, labels).item()
    expected = (math.log1p(math.exp(-math.sqrt(5))) + math.log1p(math.exp(1 - math.sqrt(2)))) / 2
    assert d == pytest.approx(expected, rel=1e-12)


def test_matches_pytorch_metric_learning() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    pml_distances = pytest.importorskip("pytorch_metric_learning.distances")
    # mapping: PML NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False)) == ours NPairLoss(l2_reg=0)
    # (PML's default DotProductSimilarity L2-normalises; Sohn's embeddings are not normalised and PML has no L2
    # regulariser).  Both take, per class, the first positive pair in row-major order: (first, second sample).
    for seed in range(3):
        emb, labels = _batch(20, 6, seed=seed)
        a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        ours = NPairLoss(l2_reg=0.0)(a, labels)
        pml = pml_losses.NPairsLoss(distance=pml_distances.DotProductSimilarity(normalize_embeddings=False))
        theirs = pml(b, labels)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)
        pairs = PairMarginMiner(0.0, 2.0)(emb, labels)
        torch.testing.assert_close(NPairLoss(l2_reg=0.0)(emb, labels, pairs), pml(emb, labels, pairs))


def test_reference_split_matches_full_batch() -> None:
    emb, labels = _batch(16, seed=3)
    loss = NPairLoss(reduction="sum")
    parts = [
        loss(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(16)[s])
        for s in (slice(0, 8), slice(8, 16))
    ]
    torch.testing.assert_close(sum(parts), loss(emb, labels))


def test_separate_references_without_self_index() -> None:
    # e.g. a query batch against a gallery: anchor = first query of the class, positive = first gallery item
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    g = torch.tensor([[0.0, 2.0], [2.0, 0.0]], dtype=torch.float64)
    value = NPairLoss(l2_reg=0.0)(q, torch.tensor([0, 1, 2]), ref_emb=g, ref_labels=torch.tensor([1, 0]))
    # query 0 (class 0): logits (0, 2) target col of class 0 = 0 ... classes sorted: [0, 1] -> positives (g1, g0)
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-2))) / 2
    assert value.item() == pytest.approx(expected, rel=1e-12)


def test_gradcheck() -> None:
    emb, labels = _batch(8, 3, seed=4)
    loss = NPairLoss(l2_reg=0.05)
    assert torch.autograd.gradcheck(lambda e: loss(e, labels), (emb.requires_grad_(),))


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])])
def test_no_positive_or_single_class(labels: torch.Tensor) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    value = NPairLoss(l2_reg=0.0)(emb, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(emb.grad).all()
    if labels[0] != labels[1]:  # no pair at all: zero with zero gradients
        assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))
    else:  # one class: one pair whose only candidate is its own positive: log(1) = 0
        assert value.item() == pytest.approx(0.0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    base = torch.randn(1, 8).repeat(6, 1) * 4
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for emb in (base, base + 1e-3 * torch.randn(6, 8)):
        x = emb.to(dtype).requires_grad_()
        value = NPairLoss()(x, labels)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
        y = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = NPairLoss()(y, labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(y.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`l2_reg` to be >= 0"):
        NPairLoss(l2_reg=-0.1)
    with pytest.raises(TypeError, match="`l2_reg` to be a number"):
        NPairLoss(l2_reg="0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one entry per embedding"):
        NPairLoss()(torch.randn(4, 2), torch.tensor([0, 0, 1]))


def test_mined_pairs_choose_the_lowest_anchor_of_each_class() -> None:
    # the choice does not depend on how the tuples are listed: per class the lowest anchor, its first pair
    emb, labels = _batch(20, 6, seed=3)
    a1, p, a2, n = PairMarginMiner(0.0, 2.0)(emb, labels)
    shuffle = torch.randperm(a1.numel(), generator=torch.Generator().manual_seed(0))
    loss = NPairLoss(l2_reg=0.0)
    sorted_pairs = (a1, p, a2, n)
    shuffled = (a1[shuffle], p[shuffle], a2, n)
    # brute force: per class, the smallest anchor and its first listed positive in the *sorted* list
    chosen: dict[int, tuple[int, int]] = {}
    for i, j in zip(a1.tolist(), p.tolist()):
        c = int(labels[i])
        if c not in chosen or i < chosen[c][0]:
            chosen[c] = (i, j)
    anchors = torch.tensor([chosen[c][0] for c in sorted(chosen)])
    positives = torch.tensor([chosen[c][1] for c in sorted(chosen)])
    logits = emb[anchors] @ emb[positives].T
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(len(chosen)))
    torch.testing.assert_close(loss(emb, labels, sorted_pairs), expected)
    # shuffled: the same anchors; each anchor's positive is its first pair in the shuffled order
    first_listed: dict[int, int] = {}
    for i, j in zip(a1[shuffle].tolist(), p[shuffle].tolist()):
        first_listed.setdefault(i, j)
    positives = torch.tensor([first_listed[int(i)] for i in anchors])
    logits = emb[anchors] @ emb[positives].T
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(len(chosen)))
    torch.testing.assert_close(loss(emb, labels, shuffled), expected)
