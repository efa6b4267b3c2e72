"""The evaluation metrics under DDP: 2 gloo processes fed by a padded, shuffled ``DistributedSampler`` give the
single-process value (states gathered with ``cat``, padding duplicates dropped by dataset index)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.distributed._spawn import spawn

N = 101  # odd: rank 1 gets a padding duplicate


def _data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (N,), generator=g)
    emb = torch.randn(6, 5, generator=g)[labels] + torch.randn(N, 5, generator=g)
    emb[10] = emb[20]  # exact ties
    emb[30] = emb[20]
    is_query = torch.rand(N, generator=g) < 0.6
    is_gallery = ~is_query | (torch.rand(N, generator=g) < 0.3)
    pair_b = emb[torch.randperm(N, generator=g)] + 0.1 * torch.randn(N, 5, generator=g)
    is_same = torch.rand(N, generator=g) < 0.5
    pair_b[is_same] = emb[is_same] + 0.5 * torch.randn(int(is_same.sum()), 5, generator=g)
    return {"emb": emb, "labels": labels, "is_query": is_query, "is_gallery": is_gallery, "pair_b": pair_b, "is_same": is_same}


def _metrics() -> dict[str, Any]:
    from lit_metric.metrics import ClusteringMetrics, FewShotAccuracy, RetrievalMetrics, VerificationMetrics

    every = ("recall@k", "precision@k", "r_precision", "map@r")
    return {
        "retrieval": RetrievalMetrics(metrics=every),
        "in_shop": RetrievalMetrics(metrics=every),
        "verification": VerificationMetrics(far=(0.01, 0.1)),
        "pairs": VerificationMetrics(far=(0.01, 0.1)),
        "clustering": ClusteringMetrics(),
        "few_shot": FewShotAccuracy(n_way=4, k_shot=2, n_query=2, episodes=40, method="prototype"),
    }


def _feed(metrics: dict[str, Any], d: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, dict[str, float]]:
    for chunk in idx.split(16):
        e, y = d["emb"][chunk], d["labels"][chunk]
        metrics["retrieval"].update(e, y, chunk)
        metrics["in_shop"].update(e, y, chunk, is_query=d["is_query"][chunk], is_gallery=d["is_gallery"][chunk])
        metrics["verification"].update(e, y, chunk)
        metrics["pairs"].update(e, pair_embeddings=d["pair_b"][chunk], is_same=d["is_same"][chunk], indices=chunk)
        metrics["clustering"].update(e, y, chunk)
        metrics["few_shot"].update(e, y, chunk)
    return {name: {k: float(v) for k, v in m.compute().items()} for name, m in metrics.items()}


def _worker(rank: int, world: int) -> dict[str, Any]:
    from torch.utils.data import DistributedSampler

    idx = torch.tensor(list(DistributedSampler(range(N), num_replicas=world, rank=rank, shuffle=True, seed=3)))
    return {"n_local": idx.numel(), "values": _feed(_metrics(), _data(), idx)}


@pytest.fixture(scope="module")
def two_ranks() -> list[dict[str, Any]]:
    return spawn(_worker, 2, timeout=240)


def test_uneven_dataset_is_padded(two_ranks: list[dict[str, Any]]) -> None:
    assert [r["n_local"] for r in two_ranks] == [51, 51]  # 102 > 101: one duplicate


def test_two_processes_equal_one_process(two_ranks: list[dict[str, Any]]) -> None:
    expected = _feed(_metrics(), _data(), torch.arange(N))
    for rank in two_ranks:
        for name, values in expected.items():
            assert rank["values"][name] == pytest.approx(values, rel=1e-6, abs=1e-7), name
