"""Slow, obviously-correct references for the evaluation metrics, written from the definitions in numpy
(never importing lit_metric): retrieval (Musgrave et al. 2020), verification ROC, few-shot enumeration,
and Lake et al.'s modified-Hausdorff one-shot baseline."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = [
    "best_accuracy",
    "brute_force_retrieval",
    "dissimilarity_matrix",
    "enumerate_few_shot",
    "lake_points",
    "modified_hausdorff",
    "roc_reference",
]


def dissimilarity_matrix(x: np.ndarray, y: np.ndarray, metric: str) -> np.ndarray:
    """``(N, D), (M, D) -> (N, M)`` dissimilarities (smaller = closer), float64, one pair at a time."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    out = np.empty((len(x), len(y)))
    for i in range(len(x)):
        for j in range(len(y)):
            a, b = x[i], y[j]
            if metric == "cosine":
                out[i, j] = -(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
            elif metric == "dot":
                out[i, j] = -(a @ b)
            elif metric == "euclidean":
                out[i, j] = np.sqrt(((a - b) ** 2).sum())
            else:
                raise ValueError(metric)
    return out


def brute_force_retrieval(
    dis: np.ndarray,
    q_labels: np.ndarray,
    r_labels: np.ndarray,
    self_pos: np.ndarray | None,
    ks: tuple[int, ...],
) -> dict[str, float]:
    """recall@k, precision@k, r_precision and map@r from the definitions.

    ``dis`` (Q, M) dissimilarities; ``self_pos[i]`` = position of query i among the references or -1.  Ranking:
    by dissimilarity, ties with a different label first, then by reference position.  Lone queries (R = 0)
    are skipped; K is clipped to the number of available references.
    """
    sums: dict[str, float] = {}
    n_q = 0
    for i in range(dis.shape[0]):
        refs = [j for j in range(dis.shape[1]) if self_pos is None or j != self_pos[i]]
        same = {j: int(r_labels[j] == q_labels[i]) for j in refs}
        r = sum(same.values())
        if r == 0:
            continue
        n_q += 1
        ranked = sorted(refs, key=lambda j: (dis[i, j], same[j], j))
        rel = [same[j] for j in ranked]
        for k in ks:
            kc = min(k, len(rel))
            sums[f"recall@{k}"] = sums.get(f"recall@{k}", 0.0) + float(any(rel[:kc]))
            sums[f"precision@{k}"] = sums.get(f"precision@{k}", 0.0) + sum(rel[:kc]) / kc
        sums["r_precision"] = sums.get("r_precision", 0.0) + sum(rel[:r]) / r
        ap = 0.0
        for pos in range(1, r + 1):
            if rel[pos - 1]:
                ap += sum(rel[:pos]) / pos
        sums["map@r"] = sums.get("map@r", 0.0) + ap / r
    return {name: v / n_q for name, v in sums.items()}


def roc_reference(dis: np.ndarray, same: np.ndarray, fars: tuple[float, ...]) -> dict[str, float]:
    """ROC-AUC (scikit-learn), EER (interpolated crossing of FAR and FRR on scikit-learn's full ROC curve) and
    TAR@FAR (best TPR among ROC points with FPR <= far) for pair dissimilarities ``dis`` and booleans ``same``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    score = -np.asarray(dis, dtype=np.float64)  # larger = more likely "same"
    out = {"roc_auc": float(roc_auc_score(same, score))}
    fpr, tpr, _ = roc_curve(same, score, drop_intermediate=False)
    fnr = 1 - tpr
    f = fpr - fnr
    i = int(np.argmax(f >= 0))
    t = 0.0 if f[i] == f[i - 1] else -f[i - 1] / (f[i] - f[i - 1])
    out["eer"] = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    for far in fars:
        out[f"tar@far={far:g}"] = float(tpr[fpr <= far + 1e-15].max())
    return out


def best_accuracy(dis: np.ndarray, same: np.ndarray) -> float:
    """The best accuracy of the rule "same iff d <= t" over every threshold t (each score and -inf)."""
    candidates = np.concatenate([[-np.inf], np.unique(dis)])
    return max(float(((dis <= t) == same).mean()) for t in candidates)


def enumerate_few_shot(
    emb: np.ndarray, labels: np.ndarray, n_way: int, k_shot: int, metric: str, method: str
) -> float:
    """Exact expected N-way K-shot accuracy (one query per class) over *all* episodes, each equally likely:
    every n_way-subset of the eligible classes, every support set and query of each class.  A query tied
    between its class and another counts as wrong."""
    classes = sorted(set(labels.tolist()))
    members = {c: [i for i in range(len(labels)) if labels[i] == c] for c in classes}
    eligible = [c for c in classes if len(members[c]) >= k_shot + 1]
    dis = dissimilarity_matrix(emb, emb, metric)
    total, count = 0.0, 0
    for chosen in itertools.combinations(eligible, n_way):
        per_class = []
        for c in chosen:
            options = []
            for support in itertools.combinations(members[c], k_shot):
                for q in members[c]:
                    if q not in support:
                        options.append((support, q))
            per_class.append(options)
        for episode in itertools.product(*per_class):
            correct = 0
            for ci, (_, q) in enumerate(episode):
                scores = []
                for support, _ in episode:
                    if method == "nn":
                        scores.append(min(dis[q, s] for s in support))
                    else:
                        proto = emb[list(support)].mean(0, keepdims=True)
                        scores.append(dissimilarity_matrix(emb[[q]], proto, metric)[0, 0])
                own = scores[ci]
                correct += all(own < s for j, s in enumerate(scores) if j != ci)
            total += correct / n_way
            count += 1
    return total / count


def lake_points(image: np.ndarray) -> np.ndarray:
    """Stroke pixel coordinates of a binary Omniglot image (True = background), centred on their mean
    (as in Lake et al.'s demo_classification)."""
    rows, cols = np.nonzero(~image.astype(bool))
    pts = np.stack([rows, cols], 1).astype(np.float64)
    return pts - pts.mean(0)


def modified_hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Modified Hausdorff distance (Dubuisson & Jain 1994): max of the mean nearest-point distances both ways."""
    from scipy.spatial import cKDTree

    a_to_b = cKDTree(b).query(a)[0]  # distance of each point of a to its nearest point of b
    b_to_a = cKDTree(a).query(b)[0]
    return float(max(a_to_b.mean(), b_to_a.mean()))
