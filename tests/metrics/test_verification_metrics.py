from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_metric.distances import CosineSimilarity, EuclideanDistance
from lit_metric.functional import pair_verification_metrics, verification_metrics
from lit_metric.metrics import VerificationMetrics, verify_pairs
from tests._helpers.retrieval_oracles import best_accuracy, dissimilarity_matrix, roc_reference

FARS = (1e-3, 1e-2, 0.1)


def _all_pairs(dis: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    i, j = np.triu_indices(len(labels), k=1)
    return dis[i, j], labels[i] == labels[j]


def _check_against_reference(out: dict[str, torch.Tensor], pair_dis: np.ndarray, same: np.ndarray, sign: float) -> None:
    ref = roc_reference(pair_dis, same, FARS)
    assert float(out["roc_auc"]) == pytest.approx(ref["roc_auc"], abs=1e-12)
    assert float(out["eer"]) == pytest.approx(ref["eer"], abs=1e-12)
    for far in FARS:
        assert float(out[f"tar@far={far:g}"]) == pytest.approx(ref[f"tar@far={far:g}"], abs=1e-12)
        # the threshold realises that operating point: FAR <= far and TAR as reported
        accept = pair_dis <= sign * float(out[f"threshold@far={far:g}"])
        assert accept[~same].mean() <= far + 1e-12
        assert accept[same].mean() == pytest.approx(float(out[f"tar@far={far:g}"]))
    assert float(out["accuracy"]) == pytest.approx(best_accuracy(pair_dis, same), abs=1e-12)
    # the returned threshold reproduces the best accuracy (in the measure's units: sign flips a similarity)
    accept = pair_dis <= sign * float(out["threshold"])
    assert (accept == same).mean() == pytest.approx(float(out["accuracy"]), abs=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_all_pairs_match_sklearn_and_brute_force(metric: str) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=120)
    emb = rng.normal(size=(10, 5))[labels] + 1.5 * rng.normal(size=(120, 5))
    dist = CosineSimilarity() if metric == "cosine" else EuclideanDistance(normalize=False)
    m = VerificationMetrics(far=FARS, distance=dist, chunk_size=17)
    for part in np.array_split(np.arange(120), 3):
        m.update(torch.from_numpy(emb[part]), torch.from_numpy(labels[part]))
    out = m.compute()
    pair_dis, same = _all_pairs(dissimilarity_matrix(emb, emb, metric), labels)
    _check_against_reference(out, pair_dis, same, -1.0 if metric == "cosine" else 1.0)


def test_ties_between_positive_and_negative_scores() -> None:
    # integer points: many positive and negative pairs share exactly the same distance
    rng = np.random.default_rng(1)
    emb = rng.integers(0, 3, size=(60, 2)).astype(np.float64)
    labels = rng.integers(0, 3, size=60)
    out = verification_metrics(torch.from_numpy(emb), torch.from_numpy(labels), distance=EuclideanDistance(normalize=False), far=FARS, chunk_size=8)
    pair_dis, same = _all_pairs(dissimilarity_matrix(emb, emb, "euclidean"), labels)
    _check_against_reference(out, pair_dis, same, 1.0)


def test_pair_list_mode_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 4)), rng.normal(size=(300, 4))
    same = rng.random(300) < 0.4
    b[same] = a[same] + 0.8 * rng.normal(size=(same.sum(), 4))
    m = VerificationMetrics(far=FARS)
    for part in np.array_split(np.arange(300), 4):
        m.update(torch.from_numpy(a[part]), pair_embeddings=torch.from_numpy(b[part]), is_same=torch.from_numpy(same[part]))
    out = m.compute()
    pair_dis = np.array([dissimilarity_matrix(a[[i]], b[[i]], "cosine")[0, 0] for i in range(300)])
    _check_against_reference(out, pair_dis, same, -1.0)


def test_closed_form_perfect_and_reversed() -> None:
    d = EuclideanDistance(normalize=False)
    perfect = pair_verification_metrics(torch.tensor([0.1, 0.2, 0.9, 1.0]), torch.tensor([True, True, False, False]), distance=d)
    assert perfect["roc_auc"] == 1 and perfect["eer"] == 0 and perfect["accuracy"] == 1
    assert perfect["threshold"].item() == pytest.approx(0.55)  # midway between 0.2 and 0.9
    reversed_ = pair_verification_metrics(torch.tensor([0.9, 1.0, 0.1, 0.2]), torch.tensor([True, True, False, False]), distance=d)
    assert reversed_["roc_auc"] == 0 and reversed_["eer"] == 1 and reversed_["accuracy"] == 0.5
    assert reversed_["threshold"].item() == -float("inf")  # accepting nothing is best
    tied = pair_verification_metrics(torch.ones(4), torch.tensor([True, True, False, False]), distance=d)
    assert tied["roc_auc"] == 0.5 and tied["eer"] == 0.5


def test_saved_threshold_reused_by_verify_pairs() -> None:
    rng = np.random.default_rng(3)
    labels = torch.from_numpy(rng.integers(0, 5, size=50))
    emb = torch.from_numpy(rng.normal(size=(5, 3)))[labels] * 2 + torch.from_numpy(rng.normal(size=(50, 3)))
    out = VerificationMetrics(distance=CosineSimilarity())
    out.update(emb, labels)
    tau = float(out.compute()["threshold"])
    i, j = torch.triu_indices(50, 50, 1)
    decided = verify_pairs(emb[i], emb[j], tau, CosineSimilarity())
    assert (decided == (labels[i] == labels[j])).double().mean().item() == pytest.approx(float(out.compute()["accuracy"]))


def test_duplicates_dropped_by_index() -> None:
    rng = np.random.default_rng(4)
    emb, labels = torch.from_numpy(rng.normal(size=(30, 3))), torch.from_numpy(rng.integers(0, 4, size=30))
    clean, padded = VerificationMetrics(), VerificationMetrics()
    clean.update(emb, labels, torch.arange(30))
    padded.update(emb[15:], labels[15:], torch.arange(15, 30))
    padded.update(emb[:15], labels[:15], torch.arange(15))
    padded.update(emb[:2], labels[:2], torch.arange(2))
    a, b = clean.compute(), padded.compute()
    assert {k: float(v) for k, v in a.items()} == {k: float(v) for k, v in b.items()}


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="Expected argument `far`"):
        VerificationMetrics(far=(0.0,))
    with pytest.raises(ValueError, match="Expected argument `far`"):
        VerificationMetrics(far=(1.5,))
    with pytest.raises(ValueError, match="Expected argument `chunk_size`"):
        VerificationMetrics(chunk_size=0)
    with pytest.raises(TypeError, match="Expected argument `distance`"):
        VerificationMetrics(distance=1)  # type: ignore[arg-type]
    m = VerificationMetrics()
    with pytest.raises(ValueError, match="Expected argument `labels`"):
        m.update(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="Expected `is_same` only"):
        m.update(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), is_same=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="Expected argument `is_same` with"):
        m.update(torch.zeros(2, 2), pair_embeddings=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="Expected `labels=None`"):
        m.update(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), pair_embeddings=torch.zeros(2, 2), is_same=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="`pair_embeddings` to have the shape"):
        m.update(torch.zeros(2, 2), pair_embeddings=torch.zeros(3, 2), is_same=torch.ones(2, dtype=torch.bool))
    m.update(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="one input form"):
        m.update(torch.zeros(2, 2), pair_embeddings=torch.zeros(2, 2), is_same=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="both positive"):
        m.compute()  # one pair, negative only
    p = VerificationMetrics()
    p.update(torch.randn(2, 2), pair_embeddings=torch.randn(2, 2), is_same=torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="one input form"):
        p.update(torch.randn(2, 2), torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="before any update"):
        VerificationMetrics().compute()
