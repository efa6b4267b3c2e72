from __future__ import annotations

import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.functional.quadruplet import Quadruplets
from lit_metric.miners import QuadrupletMiner
from tests._helpers.pair_oracles import hard_quadruplets


@pytest.mark.parametrize("strategy", ["hard", "batch_hard"])
@pytest.mark.parametrize("kind,distance", [("euclidean", EuclideanDistance()), ("cosine", CosineSimilarity())])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(strategy: str, kind: str, distance, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(13, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (13,), generator=g)
    q = QuadrupletMiner(strategy, distance=distance)(emb, labels)  # type: ignore[arg-type]
    expected = hard_quadruplets(emb, labels.tolist(), kind, batch_hard=strategy == "batch_hard")
    assert isinstance(q, Quadruplets)
    assert list(zip(*(t.tolist() for t in q))) == expected
    for a, p, n1, n2 in expected:  # the defining class constraints
        assert labels[a] == labels[p] and a != p
        assert labels[n1] != labels[a] and labels[n2] not in (labels[a], labels[n1])


def test_output_type_dtype_and_no_grad() -> None:
    emb = torch.randn(6, 3, requires_grad=True)
    q = QuadrupletMiner()(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
    assert type(q) is Quadruplets and all(t.dtype == torch.long and not t.requires_grad for t in q)


def test_two_classes_give_no_quadruplet() -> None:
    q = QuadrupletMiner()(torch.randn(4, 3), torch.tensor([0, 0, 1, 1]))
    assert all(t.numel() == 0 for t in q)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"`strategy` to be one of \['hard', 'batch_hard'\]"):
        QuadrupletMiner("semihard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        QuadrupletMiner()(torch.randn(4, 3), torch.tensor([[0, 0, 1, 1]]))
