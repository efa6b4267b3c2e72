from __future__ import annotations

import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.functional.quadruplet import Quadruplets, quadruplet_pair_gap_all_sum
from lit_metric.losses import QuadrupletLoss
from lit_metric.miners import QuadrupletMiner
from tests._helpers.pair_oracles import quadruplet_loss

DISTANCES = {
    "sq_euclidean": EuclideanDistance(squared=True),
    "euclidean": EuclideanDistance(),
    "euclidean_raw": EuclideanDistance(normalize=False),
    "cosine": CosineSimilarity(),
}
MARGINS = {"sq_euclidean": (1.0, 0.5), "euclidean": (0.4, 0.2), "euclidean_raw": (1.5, 0.7), "cosine": (0.3, 0.1)}


def _batch(n: int = 10, d: int = 3, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * 1.5, torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("kind", list(DISTANCES))
@pytest.mark.parametrize("reduction", ["mean", "nonzero_mean", "sum"])
def test_all_quadruplets_match_loop_oracle(kind: str, reduction: str) -> None:
    emb, labels = _batch()
    m_a, m_b = MARGINS[kind]
    loss = QuadrupletLoss(m_a, m_b, distance=DISTANCES[kind], reduction=reduction)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = loss(a, labels)
    ref = quadruplet_loss(b, labels.tolist(), m_a, m_b, kind, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_all_quadruplet_kernel_counts(seed: int) -> None:
    # the sort-and-subtract kernel against explicit enumeration, for unbalanced classes too
    emb, labels = _batch(11, 2, classes=3 + seed, seed=seed)
    d = torch.cdist(emb, emb)
    _, cls = torch.unique(labels, return_inverse=True)
    pos = [(i, j) for i in range(11) for j in range(11) if i != j and labels[i] == labels[j]]
    a = torch.tensor([i for i, _ in pos], dtype=torch.long)
    p = torch.tensor([j for _, j in pos], dtype=torch.long)
    total, count, nonzero = quadruplet_pair_gap_all_sum(d[a, p], cls[p], d, cls, 0.3)
    terms = [
        float(d[i, j] - d[k, ll] + 0.3)
        for i, j in pos
        for k in range(11)
        for ll in range(11)
        if labels[k] != labels[i] and labels[ll] not in (labels[i], labels[k])
    ]
    assert int(count) == len(terms)
    assert int(nonzero) == sum(t > 0 for t in terms)
    assert float(total) == pytest.approx(sum(max(t, 0.0) for t in terms), rel=1e-10)


@pytest.mark.parametrize("batch_hard", [False, True])
def test_mined_quadruplets_match_loop_oracle(batch_hard: bool) -> None:
    emb, labels = _batch(12, seed=3)
    q = QuadrupletMiner("batch_hard" if batch_hard else "hard")(emb, labels)
    assert isinstance(q, Quadruplets) and q.a.numel() > 0
    loss = QuadrupletLoss(0.5, 0.3, distance=EuclideanDistance())
    quads = list(zip(*(t.tolist() for t in q)))
    ref = quadruplet_loss(emb, labels.tolist(), 0.5, 0.3, "euclidean", "mean", quadruplets=quads)
    torch.testing.assert_close(loss(emb, labels, q), ref, rtol=1e-10, atol=1e-12)


def test_hand_made_values() -> None:
    dist_ = EuclideanDistance(normalize=False)
    emb = torch.tensor([[0.0], [1.0], [1.5], [2.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 2])
    q = Quadruplets(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]), torch.tensor([3]))
    assert QuadrupletLoss(1.0, 0.5, dist_)(emb, labels, q).item() == pytest.approx(0.5 + 1.0)
    # all quadruplets: anchors 0 and 1 (d_ap = 1), triplets (0,1,{2,3}) and (1,0,{2,3});
    # negative pairs among classes 1, 2 (ordered): (2,3) and (3,2) at 0.5
    t1 = [max(0.0, 1 - 1.5 + 1), max(0.0, 1 - 2 + 1), max(0.0, 1 - 0.5 + 1), max(0.0, 1 - 1 + 1)]
    t2 = [max(0.0, 1 - 0.5 + 0.5)] * 4
    expected = sum(t1) / 4 + sum(t2) / 4
    assert QuadrupletLoss(1.0, 0.5, dist_)(emb, labels).item() == pytest.approx(expected)


def test_plain_four_tuples_are_refused() -> None:
    emb, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    pairs = (torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), torch.tensor([2]))
    with pytest.raises(TypeError, match="Expected argument `indices_tuple` to be a `Quadruplets`"):
        QuadrupletLoss()(emb, labels, pairs)
    with pytest.raises(TypeError, match="`Quadruplets`"):
        QuadrupletLoss()(emb, labels, (torch.tensor([0]),) * 3)
    with pytest.raises(ValueError, match=r"`indices_tuple.n2` to index ref_emb \(references\) in \[0, 6\)"):
        QuadrupletLoss()(emb, labels, Quadruplets(*pairs[:3], torch.tensor([6])))
    with pytest.raises(ValueError, match="equal lengths"):
        QuadrupletLoss()(emb, labels, Quadruplets(*pairs[:3], torch.tensor([4, 5])))
    with pytest.raises(TypeError, match="integer indices"):
        QuadrupletLoss()(emb, labels, Quadruplets(*pairs[:3], torch.tensor([4.0])))


def test_other_losses_refuse_quadruplets() -> None:
    from lit_metric.losses import ContrastiveLoss

    emb, labels = torch.randn(6, 3), torch.tensor([0, 0, 1, 1, 2, 2])
    q = QuadrupletMiner()(emb, labels)
    with pytest.raises(TypeError, match="only QuadrupletLoss reads them"):
        ContrastiveLoss()(emb, labels, q)


def test_reference_split_sums_to_full_batch() -> None:
    emb, labels = _batch(12, seed=5)
    loss = QuadrupletLoss(reduction="sum")
    parts = [
        loss(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(12)[s])
        for s in (slice(0, 5), slice(5, 12))
    ]
    torch.testing.assert_close(sum(parts), loss(emb, labels))
    # mined: the split miner output indexes the same references
    miner = QuadrupletMiner()
    full = miner(emb, labels)
    part = miner(emb[5:], labels[5:], emb, labels, self_index=torch.arange(5, 12))
    keep = full.a >= 5
    assert torch.equal(part.a + 5, full.a[keep]) and torch.equal(part.n2, full.n2[keep])


def test_gradcheck() -> None:
    emb, labels = _batch(7, 2, classes=3, seed=2)
    loss = QuadrupletLoss(1.0, 0.5)
    assert torch.autograd.gradcheck(lambda e: loss(e, labels), (emb.clone().requires_grad_(),))
    q = QuadrupletMiner()(emb, labels)
    assert torch.autograd.gradcheck(lambda e: loss(e, labels, q), (emb.clone().requires_grad_(),))


@pytest.mark.parametrize(
    "labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5]), torch.tensor([0, 0, 1, 1])]
)
def test_degenerate_batches_are_zero_with_zero_gradients(labels: torch.Tensor) -> None:
    # no positive; one class; two classes (no quadruplet, but triplets: checked to be finite)
    emb = torch.randn(4, 3, requires_grad=True)
    value = QuadrupletLoss()(emb, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(emb.grad).all()
    if len(set(labels.tolist())) != 2:
        assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))
    q = QuadrupletMiner()(emb, labels)
    assert q.a.numel() == 0
    assert QuadrupletLoss()(emb, labels, q).item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    base = torch.randn(1, 8).repeat(6, 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for emb in (base, base + 1e-3 * torch.randn(6, 8)):
        x = emb.to(dtype).requires_grad_()
        value = QuadrupletLoss()(x, labels)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
        y = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = QuadrupletLoss()(y, labels, QuadrupletMiner()(y, labels))
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(y.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`margin_a` to be >= 0"):
        QuadrupletLoss(margin_a=-1.0)
    with pytest.raises(TypeError, match="`margin_b` to be a number"):
        QuadrupletLoss(margin_b="0.5")  # type: ignore[arg-type]

