"""KNNAccuracy (Wu et al. weighted k-NN) against a numpy brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_metric.metrics import KNNAccuracy, knn_accuracy
from tests._helpers.ssl_oracles import knn_accuracy_numpy


def _data(n: int, d: int = 6, classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g) * 3 + 10  # non-contiguous class ids
    centres = torch.randn(classes * 3 + 10 + 1, d, generator=g)
    emb = centres[labels] + 0.9 * torch.randn(n, d, generator=g, dtype=torch.float32)
    return emb.double(), labels


@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_bank_mode_matches_numpy(k: int, tau: float) -> None:
    bank, bank_labels = _data(60, seed=1)
    queries, query_labels = _data(45, seed=2)
    metric = KNNAccuracy(k=k, temperature=tau, chunk_size=7)
    metric.update(bank[:30], bank_labels[:30], is_bank=True)
    metric.update(queries[:20], query_labels[:20])
    metric.update(bank[30:], bank_labels[30:], is_bank=True)
    metric.update(queries[20:], query_labels[20:])
    expected = knn_accuracy_numpy(queries.numpy(), query_labels.numpy(), bank.numpy(), bank_labels.numpy(), k, tau)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize("k", [1, 7, 200])
def test_leave_one_out_matches_numpy(k: int) -> None:
    queries, labels = _data(50, seed=3)
    metric = KNNAccuracy(k=k, temperature=0.1, chunk_size=16)
    metric.update(queries, labels)
    expected = knn_accuracy_numpy(queries.numpy(), labels.numpy(), None, None, min(k, 49), 0.1)
    assert metric.compute().item() == pytest.approx(expected, abs=1e-7)
    assert knn_accuracy(queries, labels, None, None, k, 0.1).item() == pytest.approx(expected, abs=1e-7)


def test_hand_made_case() -> None:
    # one query at angle 0; bank: class 1 at 10° (one item), class 2 at 20° and 25° (two items).
    # With τ = 1 the two class-2 votes outweigh the single closer class-1 vote; with τ = 0.01 the closest wins.
    deg = np.radians([10.0, 20.0, 25.0])
    bank = torch.tensor(np.stack([np.cos(deg), np.sin(deg)], 1))
    bank_labels = torch.tensor([1, 2, 2])
    q, ql = torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([2])
    assert knn_accuracy(q, ql, bank, bank_labels, k=3, temperature=1.0).item() == 1.0
    assert knn_accuracy(q, ql, bank, bank_labels, k=3, temperature=0.01).item() == 0.0
    assert knn_accuracy(q, ql, bank, bank_labels, k=1, temperature=1.0).item() == 0.0


def test_duplicates_from_padding_are_dropped() -> None:
    emb, labels = _data(30, seed=4)
    idx = torch.arange(30)
    clean = KNNAccuracy(k=5)
    clean.update(emb, labels, idx)
    padded = KNNAccuracy(k=5)
    padded.update(emb, labels, idx)
    padded.update(emb[:4], labels[:4], idx[:4])  # what a padded DistributedSampler repeats
    assert padded.compute().item() == clean.compute().item()


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_errors() -> None:
    with pytest.raises(ValueError, match="Expected argument `k` to be >= 1"):
        KNNAccuracy(k=0)
    with pytest.raises(ValueError, match="Expected argument `temperature` to be > 0"):
        KNNAccuracy(temperature=0.0)
    with pytest.raises(RuntimeError, match="before any query update"):
        KNNAccuracy().compute()
    with pytest.raises(TypeError, match="integer class ids"):
        KNNAccuracy().update(torch.randn(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        KNNAccuracy().update(torch.randn(3), torch.zeros(3, dtype=torch.long))
    metric = KNNAccuracy()
    metric.update(torch.randn(1, 2), torch.tensor([0]))
    with pytest.raises(ValueError, match="needs at least one query and one bank item"):
        metric.compute()
