from __future__ import annotations

import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.miners import PairMarginMiner
from tests._helpers.pair_oracles import dist, is_similarity


def _brute_force(emb: torch.Tensor, labels: list[int], pos_m: float, neg_m: float, kind: str):
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(len(labels)):
            if i == j and labels[i] == labels[j]:
                continue
            d = float(dist(emb[i], emb[j], kind))
            hard_pos = d < pos_m if is_similarity(kind) else d > pos_m
            hard_neg = d > neg_m if is_similarity(kind) else d < neg_m
            if labels[i] == labels[j] and hard_pos:
                pos.append((i, j))
            if labels[i] != labels[j] and hard_neg:
                neg.append((i, j))
    return pos, neg


@pytest.mark.parametrize(
    "kind,distance,pos_m,neg_m",
    [("euclidean", EuclideanDistance(), 0.6, 1.2), ("cosine", CosineSimilarity(), 0.5, 0.1)],
)
def test_matches_brute_force(kind: str, distance, pos_m: float, neg_m: float) -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(14, 5, generator=g, dtype=torch.float64)
    labels = torch.arange(14) % 4
    a1, p, a2, n = PairMarginMiner(pos_m, neg_m, distance=distance)(emb, labels)
    pos, neg = _brute_force(emb, labels.tolist(), pos_m, neg_m, kind)
    assert list(zip(a1.tolist(), p.tolist())) == pos  # row-major order
    assert list(zip(a2.tolist(), n.tolist())) == neg
    assert all(t.dtype == torch.long for t in (a1, p, a2, n))


def test_references_and_self_index() -> None:
    emb = torch.randn(8, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    miner = PairMarginMiner(0.0, 2.0)
    full = miner(emb, labels)
    part = miner(emb[4:], labels[4:], emb, labels, self_index=torch.arange(4, 8))
    keep_pos, keep_neg = full[0] >= 4, full[2] >= 4
    assert torch.equal(part[0] + 4, full[0][keep_pos]) and torch.equal(part[1], full[1][keep_pos])
    assert torch.equal(part[2] + 4, full[2][keep_neg]) and torch.equal(part[3], full[3][keep_neg])


def test_no_grad_and_empty() -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    a1, p, a2, n = PairMarginMiner(5.0, 0.0)(emb, torch.tensor([0, 0, 1, 1]))
    assert a1.numel() == 0 and a2.numel() == 0 and not a1.requires_grad


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`pos_margin` to be >= 0"):
        PairMarginMiner(-0.1, 0.5)
    with pytest.raises(TypeError, match="`neg_margin` to be a number"):
        PairMarginMiner(0.1, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer class ids"):
        PairMarginMiner(0.1, 0.5)(torch.randn(3, 2), torch.tensor([0.0, 1.0, 1.0]))
