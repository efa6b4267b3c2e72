from __future__ import annotations

import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.miners import BatchHardMiner, TripletMiner
from tests._helpers.triplet_oracles import batch_hard, mine_triplets

DISTANCES = {"euclidean": EuclideanDistance(), "cosine": CosineSimilarity()}


def _as_set(t: tuple[torch.Tensor, ...]) -> set[tuple[int, ...]]:
    return set(zip(*[x.tolist() for x in t]))


def _batch(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.arange(n) % 4


@pytest.mark.parametrize("strategy", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("kind", list(DISTANCES))
@pytest.mark.parametrize("margin", [0.05, 0.3])
def test_strategies_match_brute_force(strategy: str, kind: str, margin: float) -> None:
    emb, labels = _batch()
    mined = TripletMiner(strategy, margin=margin, distance=DISTANCES[kind])(emb, labels)
    assert all(t.dtype == torch.long for t in mined)
    triplets = _as_set(mined)
    assert len(triplets) == mined[0].numel()  # no duplicates
    assert triplets == mine_triplets(emb, labels.tolist(), strategy, margin, kind)


def test_strategies_partition_all_triplets() -> None:
    emb, labels = _batch(20, seed=3)
    parts = [_as_set(TripletMiner(s, margin=0.2)(emb, labels)) for s in ("hard", "semihard", "easy")]
    assert set.union(*parts) == _as_set(TripletMiner("all")(emb, labels))
    assert sum(len(p) for p in parts) == len(set.union(*parts))


@pytest.mark.parametrize("strategy", ["all", "hard", "semihard", "easy"])
def test_triplets_equal_pml_as_sets(strategy: str) -> None:
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    emb, labels = _batch(32, seed=5)
    ours = _as_set(TripletMiner(strategy, margin=0.2)(emb, labels))
    theirs = _as_set(pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets=strategy)(emb, labels))
    if strategy == "all":
        # PML's "all" keeps only margin violators: our hard ∪ semihard
        ours = ours - _as_set(TripletMiner("easy", margin=0.2)(emb, labels))
    assert ours == theirs


def test_reference_set_and_self_index() -> None:
    emb, labels = _batch(8)
    ref = torch.cat([emb, emb[:3]])  # the anchors plus three duplicates
    ref_labels = torch.cat([labels, labels[:3]])
    a, p, n = TripletMiner("all")(emb, labels, ref, ref_labels, self_index=torch.arange(8))
    assert not torch.any(p == a)  # own copy excluded
    assert torch.all(ref_labels[p] == labels[a]) and torch.all(ref_labels[n] != labels[a])
    # the duplicate of anchor 0 (ref index 8) is a legitimate positive of anchor 0
    assert bool(((a == 0) & (p == 8)).any())


def test_no_positive_or_negative_gives_empty() -> None:
    emb = torch.randn(4, 3)
    for labels in ([0, 1, 2, 3], [1, 1, 1, 1]):
        a, p, n = TripletMiner("all")(emb, torch.tensor(labels))
        assert a.numel() == p.numel() == n.numel() == 0
        a, p, n = BatchHardMiner()(emb, torch.tensor(labels))
        assert a.numel() == 0


@pytest.mark.parametrize("kind", list(DISTANCES))
def test_batch_hard_matches_brute_force(kind: str) -> None:
    emb, labels = _batch(15, seed=7)
    assert _as_set(BatchHardMiner(DISTANCES[kind])(emb, labels)) == batch_hard(emb, labels.tolist(), kind)


def test_batch_hard_matches_pml() -> None:
    pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
    emb, labels = _batch(24, seed=2)
    ours = _as_set(BatchHardMiner()(emb, labels))
    theirs = _as_set(pml_miners.BatchHardMiner()(emb, labels))
    assert ours == theirs


def test_miner_runs_without_grad() -> None:
    emb = torch.randn(8, 4, requires_grad=True)
    out = TripletMiner("all")(emb, torch.arange(8) % 2)
    assert not any(t.requires_grad for t in out)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"`strategy` to be one of \['all', 'hard', 'semihard', 'easy'\]"):
        TripletMiner("hardest")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer class ids"):
        TripletMiner()(torch.randn(4, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="`ref_labels`"):
        TripletMiner()(torch.randn(4, 2), torch.arange(4), torch.randn(3, 2))
    with pytest.raises(ValueError, match="2-D"):
        BatchHardMiner()(torch.randn(4, 2, 1), torch.arange(4))
