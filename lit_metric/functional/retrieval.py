"""Evaluation math (pure functions): retrieval metrics from one shared k-NN pass, verification ROC from all
pairs or a pair list, episodic N-way K-shot accuracy.

Conventions shared by every function here:

* Everything ranks by *dissimilarity* (``distance.to_dissimilarity``): smaller = closer, so one code path
  serves distances and similarities.
* Ties are broken **against** the query (pessimistic): a reference of another class at exactly the same
  score as a same-class reference ranks first, and a few-shot query tied between its class and another is
  wrong.  Collapsed embeddings (all equal) therefore score at chance level, never at 100 %, and the values
  do not depend on the order of the data.
* Lone queries — queries with no same-class reference (R = 0) — are left out of every retrieval mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from lit_metric.functional.knn import knn_chunks

if TYPE_CHECKING:
    from lit_metric.distances import BaseDistance

__all__ = [
    "expand_retrieval_metric_names",
    "few_shot_accuracy",
    "pair_verification_metrics",
    "retrieval_metrics",
    "verification_metrics",
]

DEFAULT_RETRIEVAL_METRICS = ("recall@k", "precision@1", "r_precision", "map@r")
_METRIC_NAME = re.compile(r"^(?:(recall|precision)@(k|[1-9][0-9]*)|r_precision|map@r)$")


def expand_retrieval_metric_names(metrics: Sequence[str], k: Sequence[int]) -> list[str]:
    """``"recall@k"`` / ``"precision@k"`` → one name per value of ``k``; others kept; duplicates dropped.

    Valid names: ``recall@k``, ``precision@k``, ``recall@<int>``, ``precision@<int>``, ``r_precision``, ``map@r``.

    Raises:
        ValueError: on an unknown name or an empty list.

    Example:
        >>> expand_retrieval_metric_names(["recall@k", "precision@1", "map@r"], k=(1, 4))
        ['recall@1', 'recall@4', 'precision@1', 'map@r']
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    names: list[str] = []
    for name in metrics:
        match = _METRIC_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise ValueError(
                "Expected argument `metrics` to hold names among ['recall@k', 'precision@k', 'recall@<int>', "
                f"'precision@<int>', 'r_precision', 'map@r'], but got {name!r}."
            )
        if match.group(2) == "k":
            names += [f"{match.group(1)}@{kk}" for kk in k]
        else:
            names.append(name)
    if not names:
        raise ValueError("Expected argument `metrics` to name at least one metric, but got an empty sequence.")
    return list(dict.fromkeys(names))


def _cutoff(name: str) -> int | None:
    kind, _, value = name.partition("@")
    return int(value) if kind in ("recall", "precision") else None


def retrieval_metrics(
    queries: Tensor,
    query_labels: Tensor,
    refs: Tensor | None = None,
    ref_labels: Tensor | None = None,
    *,
    distance: BaseDistance,
    metrics: Sequence[str] = DEFAULT_RETRIEVAL_METRICS,
    k: Sequence[int] = (1, 2, 4, 8),
    query_ref_index: Tensor | None = None,
    chunk_size: int = 1024,
    backend: Literal["torch", "faiss"] = "torch",
) -> dict[str, Tensor]:
    """Recall@K, Precision@K, R-Precision and MAP@R from a single exact k-NN pass (Musgrave et al. 2020).

    For a query with R same-class references (itself excluded) and neighbours ranked 1, 2, … by the
    tie rule of the module doc, ``rel(i) = 1`` when neighbour i shares the query's label:

    * ``recall@K`` = 1 if ``rel(i) = 1`` for some i ≤ K (the metric-learning "Recall@K");
    * ``precision@K`` = ``Σ_{i≤K} rel(i) / K``;
    * ``r_precision`` = ``Σ_{i≤R} rel(i) / R``;
    * ``map@r`` = ``(1/R) Σ_{i≤R} rel(i) · P(i)`` with ``P(i) = Σ_{j≤i} rel(j) / i``.

    Each is averaged over the queries with R ≥ 1.  One k-NN pass with ``k_max = max(K values, max R)``
    serves all of them; metrics are reduced chunk by chunk, so peak memory is ``chunk_size × M`` scores
    plus ``chunk_size × k_max`` neighbours.  A K larger than the number of available references is clipped
    to it.

    Args:
        queries: ``(Q, D)`` query embeddings.
        query_labels: ``(Q,)`` integer labels.
        refs: ``(M, D)`` references (the gallery); ``None`` = leave-one-out on the queries.
        ref_labels: ``(M,)`` labels of the references.
        distance: the retrieval measure.
        metrics: names, see :func:`expand_retrieval_metric_names`.
        k: values substituted for ``k`` in ``recall@k`` / ``precision@k``.
        query_ref_index: ``(Q,)`` position of each query among the references (never retrieved, and not
            counted in its R), ``-1`` when the query is not a reference.  Set automatically when ``refs`` is None.
        chunk_size: queries per chunk.
        backend: k-NN backend (``"faiss"`` needs faiss-cpu).

    Returns:
        ``{name: scalar float32 tensor}`` in the order of the expanded names.

    Raises:
        ValueError: if no query has a same-class reference, or on invalid metric names.

    Example:
        >>> import torch
        >>> from lit_metric.distances import EuclideanDistance
        >>> emb = torch.tensor([[0.0], [1.0], [3.0], [4.0], [10.0]])
        >>> out = retrieval_metrics(emb, torch.tensor([0, 0, 1, 1, 0]), distance=EuclideanDistance(normalize=False))
        >>> {name: round(v.item(), 3) for name, v in out.items()}
        {'recall@1': 0.8, 'recall@2': 0.8, 'recall@4': 1.0, 'recall@8': 1.0, 'precision@1': 0.8, 'r_precision': 0.6, 'map@r': 0.6}
    """
    names = expand_retrieval_metric_names(metrics, k)
    if refs is None:
        refs, ref_labels = queries, query_labels
        query_ref_index = torch.arange(queries.shape[0], device=queries.device)
    if ref_labels is None:
        raise ValueError("Expected argument `ref_labels` with `refs`, but got None.")
    device = queries.device
    n_refs = refs.shape[0]
    in_refs = (
        query_ref_index >= 0
        if query_ref_index is not None
        else torch.zeros(queries.shape[0], dtype=torch.bool, device=device)
    )
    r_counts = _same_label_counts(query_labels, ref_labels) - in_refs.long()
    answerable = r_counts > 0
    n_answerable = int(answerable.sum())
    if n_answerable == 0:
        raise ValueError(
            "Expected at least one query with a same-class reference (R >= 1), but every query is alone in its "
            "class. Retrieval metrics need classes with two or more members (or a gallery holding the query classes)."
        )
    cutoffs = [c for c in (_cutoff(n) for n in names) if c is not None]
    needs_r = any(n in ("r_precision", "map@r") for n in names)
    totals = {name: 0.0 for name in names}
    for group in (in_refs, ~in_refs):  # self-excluded queries see M - 1 references, the others M
        rows_all = (answerable & group).nonzero(as_tuple=True)[0]
        if rows_all.numel() == 0:
            continue
        self_group = bool(group[rows_all[0]])
        n_avail = n_refs - (1 if self_group else 0)
        needed = max(cutoffs + ([int(r_counts[rows_all].max())] if needs_r else []))
        k_max = min(needed, n_avail)
        chunks = knn_chunks(
            queries[rows_all],
            refs,
            k_max,
            distance,
            chunk_size,
            query_ref_index[rows_all] if self_group and query_ref_index is not None else None,
            query_labels=query_labels[rows_all],
            ref_labels=ref_labels,
            backend=backend,
        )
        for start, _, idx in chunks:
            rows = rows_all[start : start + idx.shape[0]]
            hits = ref_labels.to(idx.device)[idx] == query_labels[rows].to(idx.device).unsqueeze(1)  # (c, k_max)
            _accumulate(totals, names, hits, r_counts[rows].to(idx.device), n_avail)
    return {name: torch.tensor(totals[name] / n_answerable, dtype=torch.float32, device=device) for name in names}


def _same_label_counts(query_labels: Tensor, ref_labels: Tensor) -> Tensor:
    """``(Q,)`` number of references sharing each query's label."""
    uniq, counts = torch.unique(ref_labels, return_counts=True)
    pos = torch.searchsorted(uniq, query_labels.to(uniq.device)).clamp_max(uniq.numel() - 1)
    present = uniq[pos] == query_labels.to(uniq.device)
    return torch.where(present, counts[pos], torch.zeros_like(counts[pos])).to(query_labels.device)


def _accumulate(totals: dict[str, float], names: Sequence[str], hits: Tensor, r: Tensor, n_avail: int) -> None:
    k_max = hits.shape[1]
    cum = None
    for name in names:
        cutoff = _cutoff(name)
        if name.startswith("recall@"):
            assert cutoff is not None
            totals[name] += float(hits[:, : min(cutoff, k_max)].any(1).sum())
        elif name.startswith("precision@"):
            assert cutoff is not None
            kc = min(cutoff, n_avail)
            totals[name] += float(hits[:, :kc].sum()) / kc
        else:
            if cum is None:
                cum = hits.cumsum(1)  # (c, k_max) number of hits among the first i
            r_f = r.double()
            if name == "r_precision":
                totals[name] += float((cum.gather(1, (r - 1).unsqueeze(1)).squeeze(1).double() / r_f).sum())
            else:  # map@r
                rank = torch.arange(1, k_max + 1, device=hits.device)
                within_r = rank.unsqueeze(0) <= r.unsqueeze(1)
                precision_at_i = cum.double() / rank.double()
                ap = torch.where(hits & within_r, precision_at_i, torch.zeros_like(precision_at_i)).sum(1) / r_f
                totals[name] += float(ap.sum())


# --- verification ---------------------------------------------------------------------------------------


@dataclass
class _NegativeCounts:
    """Streaming summary of negative-pair dissimilarities relative to the sorted positive ones.

    For a negative n: ``L(n) = #{positives < n}``, ``R(n) = #{positives <= n}``.  ``hist_left[l]`` counts the
    negatives with ``L = l``, ``hist_right`` likewise for R; ``gap_min[l]`` is the smallest negative with ``L = l``.
    Memory ``O(P)`` whatever the number of negatives.
    """

    sorted_pos: Tensor
    hist_left: Tensor = field(init=False)
    hist_right: Tensor = field(init=False)
    gap_min: Tensor = field(init=False)
    n_neg: int = 0

    def __post_init__(self) -> None:
        size = self.sorted_pos.numel() + 1
        dev = self.sorted_pos.device
        self.hist_left = torch.zeros(size, dtype=torch.long, device=dev)
        self.hist_right = torch.zeros(size, dtype=torch.long, device=dev)
        self.gap_min = torch.full((size,), float("inf"), dtype=torch.float64, device=dev)

    def add(self, neg: Tensor) -> None:
        if neg.numel() == 0:
            return
        neg = neg.to(device=self.sorted_pos.device, dtype=torch.float64).contiguous()
        left = torch.searchsorted(self.sorted_pos, neg, right=False)
        right = torch.searchsorted(self.sorted_pos, neg, right=True)
        size = self.hist_left.numel()
        self.hist_left += torch.bincount(left, minlength=size)
        self.hist_right += torch.bincount(right, minlength=size)
        self.gap_min.scatter_reduce_(0, left, neg, reduce="amin")
        self.n_neg += neg.numel()


def _check_far(far: Sequence[float]) -> tuple[float, ...]:
    values = (far,) if isinstance(far, int | float) else tuple(far)
    for f in values:
        if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f < 1:
            raise ValueError(f"Expected argument `far` to hold false-accept rates in (0, 1), but got {f!r}.")
    return tuple(float(f) for f in values)


def _roc_summary(
    pos: Tensor, counts: _NegativeCounts, far: Sequence[float], distance: BaseDistance
) -> dict[str, Tensor]:
    """Exact ROC-AUC, EER, TAR@FAR and best-accuracy threshold from sorted positives + negative counts."""
    n_pos, n_neg = pos.numel(), counts.n_neg
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"Expected both positive (same-class) and negative pairs, but got {n_pos} positive and {n_neg} negative "
            "pairs. Verification needs at least one of each."
        )
    f64 = torch.float64
    zero = torch.zeros(1, dtype=torch.long, device=pos.device)
    neg_le = torch.cat([zero, counts.hist_left.cumsum(0)[:n_pos]])  # [j]: #neg <= p_j (p_1 ≤ … ≤ p_P), j = 0..P
    neg_lt = torch.cat([zero, counts.hist_right.cumsum(0)[:n_pos]])  # [j]: #neg < p_j
    # thresholds one can realise: accept nothing (j = 0) or everything up to the end of a group of equal positives
    realizable = torch.ones(n_pos + 1, dtype=torch.bool, device=pos.device)
    realizable[1:n_pos] = pos[:-1] < pos[1:]
    ends = realizable[1:].nonzero(as_tuple=True)[0] + 1  # j = b of each group (1-based)
    starts = realizable[:-1].nonzero(as_tuple=True)[0] + 1  # j = a of each group
    # ROC polyline (FAR, TAR): (0,0), then per group (just below it, just above it), then (1,1)
    x = torch.stack([neg_lt[starts], neg_le[ends]], 1).reshape(-1).to(f64) / n_neg
    y = torch.stack([starts - 1, ends], 1).reshape(-1).to(f64) / n_pos
    one = torch.ones(1, dtype=f64, device=pos.device)
    x = torch.cat([0 * one, x, one])
    y = torch.cat([0 * one, y, one])
    sizes = torch.arange(n_pos + 1, device=pos.device, dtype=f64)
    auc = float(((counts.hist_left.to(f64) + counts.hist_right.to(f64)) * sizes).sum()) / (2.0 * n_pos * n_neg)
    # EER: where FAR = FRR = 1 - TAR on the polyline (linear interpolation)
    f = x - (1 - y)
    i = int((f >= 0).nonzero(as_tuple=True)[0][0])
    t = 0.0 if f[i] == f[i - 1] else float(-f[i - 1] / (f[i] - f[i - 1]))
    eer = float(x[i - 1] + t * (x[i] - x[i - 1]))
    # threshold of each realisable j: midway between p_j and the next larger score (positive or negative)
    inf = torch.full((1,), float("inf"), dtype=f64, device=pos.device)
    next_pos = torch.cat([pos, inf])  # [j] = p_{j+1}
    next_neg = counts.gap_min.flip(0).cummin(0).values.flip(0)  # [j] = min negative with L >= j, i.e. > p_j
    upper = torch.minimum(next_pos, next_neg)
    lower = torch.cat([-inf, pos])  # [j] = p_j
    tau = torch.where(torch.isfinite(upper), (lower + upper) / 2, lower)
    tau[0] = -float("inf")
    j_all = torch.arange(n_pos + 1, device=pos.device)
    out: dict[str, Tensor] = {"roc_auc": torch.tensor(auc, dtype=f64), "eer": torch.tensor(eer, dtype=f64)}
    for rate in far:
        ok = realizable & (neg_le.to(f64) <= rate * n_neg * (1 + 1e-12))
        j = int(j_all[ok].max())
        out[f"tar@far={rate:g}"] = torch.tensor(j / n_pos, dtype=f64)
        out[f"threshold@far={rate:g}"] = distance.to_dissimilarity(tau[j].cpu())
    accuracy = (j_all + n_neg - neg_le).to(f64) / (n_pos + n_neg)
    accuracy = torch.where(realizable, accuracy, torch.full_like(accuracy, -1.0))
    best = int(accuracy.argmax())
    out["accuracy"] = accuracy[best].cpu()
    out["threshold"] = distance.to_dissimilarity(tau[best].cpu())
    return out


def verification_metrics(
    embeddings: Tensor,
    labels: Tensor,
    *,
    distance: BaseDistance,
    far: Sequence[float] = (1e-3, 1e-2),
    chunk_size: int = 1024,
) -> dict[str, Tensor]:
    """Verification over *all* unordered pairs ``i < j``: same-label pairs are positives, the rest negatives.

    The ROC is exact, computed without holding the ``N(N-1)/2`` pair scores: the positive pairs' scores are
    kept and sorted (``P = Σ_c n_c(n_c-1)/2`` values); the negatives stream through in chunks of
    ``chunk_size`` rows, each binary-searched into the sorted positives and counted.  Memory:
    ``O(P + chunk_size × N)``.  Time: ``O(N² (D + log P))``.

    A pair is accepted as "same" when its dissimilarity ``d <= τ``; for a similarity ``s`` the dissimilarity is
    ``-s``, so the returned thresholds are in the measure's own units and mean "same when ``s >= threshold``".

    Returns:
        ``roc_auc`` (ties count ½), ``eer`` (equal error rate, interpolated on the ROC), ``tar@far=f`` (the
        highest true-accept rate of a threshold whose false-accept rate is ``<= f``, no interpolation) with its
        ``threshold@far=f``, and ``accuracy`` / ``threshold`` of the best-accuracy threshold (the smallest one
        among equals).  A threshold lies midway between the last accepted and the next score.

    Raises:
        ValueError: without at least one positive and one negative pair.

    Example:
        >>> import torch
        >>> from lit_metric.distances import EuclideanDistance
        >>> emb = torch.tensor([[0.0], [1.0], [5.0], [6.5]])
        >>> out = verification_metrics(emb, torch.tensor([0, 0, 1, 1]), distance=EuclideanDistance(normalize=False))
        >>> round(out["roc_auc"].item(), 3), out["accuracy"].item(), out["threshold"].item()
        (1.0, 1.0, 2.75)
    """
    far = _check_far(far)
    n = embeddings.shape[0]
    order = torch.argsort(labels, stable=True)
    sorted_labels = labels[order]
    _, counts_per_class = torch.unique_consecutive(sorted_labels, return_counts=True)
    pos_parts: list[Tensor] = []
    offset = 0
    for c in counts_per_class.tolist():
        members = order[offset : offset + c]
        offset += c
        for s in range(0, c - 1, chunk_size):
            rows = members[s : s + chunk_size]
            dis = distance.to_dissimilarity(distance.pairwise(embeddings[rows], embeddings[members[s:]]))
            upper = torch.ones_like(dis, dtype=torch.bool).triu(1)
            pos_parts.append(dis[upper].double())
    pos = torch.cat(pos_parts).sort().values if pos_parts else embeddings.new_zeros(0, dtype=torch.float64)
    counts = _NegativeCounts(pos)
    for s in range(0, n, chunk_size):
        e = min(s + chunk_size, n)
        dis = distance.to_dissimilarity(distance.pairwise(embeddings[s:e], embeddings[s:]))  # (c, N - s)
        mask = torch.ones_like(dis, dtype=torch.bool).triu(1)
        mask &= labels[s:e].unsqueeze(1) != labels[s:].unsqueeze(0)
        counts.add(dis[mask])
    return _roc_summary(pos, counts, far, distance)


def pair_verification_metrics(
    scores: Tensor,
    is_same: Tensor,
    *,
    distance: BaseDistance,
    far: Sequence[float] = (1e-3, 1e-2),
) -> dict[str, Tensor]:
    """:func:`verification_metrics` for a given pair list (LFW style): ``(P,)`` pair scores in the measure's
    units and ``(P,)`` booleans, True for same-identity pairs.

    Example:
        >>> import torch
        >>> from lit_metric.distances import CosineSimilarity
        >>> out = pair_verification_metrics(torch.tensor([0.9, 0.8, 0.3, 0.85]), torch.tensor([True, True, False, False]),
        ...                                 distance=CosineSimilarity())
        >>> out["roc_auc"].item(), round(out["threshold"].item(), 3)  # a similarity: "same" when s >= 0.875
        (0.75, 0.875)
    """
    far = _check_far(far)
    dis = distance.to_dissimilarity(scores.detach()).double().reshape(-1)
    same = is_same.reshape(-1).bool().to(dis.device)
    counts = _NegativeCounts(dis[same].sort().values)
    counts.add(dis[~same])
    return _roc_summary(counts.sorted_pos, counts, far, distance)


# --- few-shot ---------------------------------------------------------------------------------------------


def few_shot_accuracy(
    embeddings: Tensor,
    labels: Tensor,
    *,
    distance: BaseDistance,
    n_way: int = 20,
    k_shot: int = 1,
    n_query: int = 1,
    episodes: int = 1000,
    method: Literal["nn", "prototype"] = "nn",
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Episodic N-way K-shot accuracy.

    Each episode draws ``n_way`` classes (among those with at least ``k_shot + n_query`` items), then
    ``k_shot`` support and ``n_query`` query items per class, all without replacement.  A query is classified
    by its nearest support item (``"nn"``) or nearest class prototype, the mean support embedding
    (``"prototype"``, Snell et al. 2017).  A query tied between its class and another is counted wrong.
    Sampling uses a CPU ``torch.Generator`` seeded with ``seed``: the same items give the same episodes.

    Returns:
        ``(accuracy, ci95)``: the mean over all queries of all episodes, and the 95 % confidence half-width
        ``1.96 · std(episode accuracies) / sqrt(episodes)``.

    Raises:
        ValueError: if fewer than ``n_way`` classes have ``k_shot + n_query`` items.
    """
    per_class = k_shot + n_query
    uniq, inverse, counts = torch.unique(labels.cpu(), return_inverse=True, return_counts=True)
    eligible = (counts >= per_class).nonzero(as_tuple=True)[0]
    if eligible.numel() < n_way:
        raise ValueError(
            f"Expected at least n_way={n_way} classes with k_shot + n_query = {per_class} items each, but only "
            f"{eligible.numel()} of the {uniq.numel()} classes have that many. Lower `n_way`, `k_shot` or `n_query`."
        )
    order = torch.argsort(inverse, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    max_count = int(counts[eligible].max())
    slot = torch.arange(max_count)
    members = starts[eligible].unsqueeze(1) + slot  # (C, max_count) positions in `order`
    valid = slot.unsqueeze(0) < counts[eligible].unsqueeze(1)
    members = torch.where(valid, order[members.clamp_max(order.numel() - 1)], torch.full_like(members, -1))
    gen = torch.Generator().manual_seed(int(seed))
    n_q, n_s = n_way * n_query, n_way * (1 if method == "prototype" else k_shot)
    # episodes are scored in batches through one (batch·n_q, batch·n_s) score matrix whose diagonal blocks are
    # the episodes' own scores: vectorised, with at most ~2**18 scores per batch
    batch = max(1, min(episodes, int((2**18 / (n_q * n_s)) ** 0.5)))
    truth = torch.arange(n_way).repeat_interleave(n_query).to(embeddings.device)
    per_episode: list[Tensor] = []
    for e0 in range(0, episodes, batch):
        eb = min(batch, episodes - e0)
        classes = torch.rand(eb, eligible.numel(), generator=gen).argsort(1)[:, :n_way]  # (eb, n_way)
        keys = torch.rand(eb, n_way, max_count, generator=gen)
        keys = torch.where(valid[classes], keys, torch.full_like(keys, 2.0))  # padding sorts last
        picks = keys.argsort(-1)[..., :per_class]
        items = members[classes].gather(2, picks).to(embeddings.device)  # (eb, n_way, k_shot + n_query) rows
        support = embeddings[items[:, :, :k_shot]]  # (eb, n_way, k_shot, D)
        query = embeddings[items[:, :, k_shot:]].reshape(eb * n_q, -1)
        if method == "prototype":
            support = support.mean(2, keepdim=True)  # (eb, n_way, 1, D)
        dis = distance.to_dissimilarity(distance.pairwise(query, support.reshape(eb * n_s, -1)))
        block = torch.arange(eb, device=dis.device)
        dis = dis.view(eb, n_q, eb, n_s)[block, :, block, :]  # (eb, n_q, n_s): each episode's own scores
        dis = dis.reshape(eb, n_q, n_way, -1).amin(-1)  # nearest support item (or prototype) of each class
        own = dis.gather(2, truth.view(1, -1, 1).expand(eb, -1, 1)).squeeze(2)
        others = dis.scatter(2, truth.view(1, -1, 1).expand(eb, -1, 1), float("inf")).amin(2)
        per_episode.append((own < others).double().mean(1).cpu())
    episode_acc = torch.cat(per_episode)
    mean = episode_acc.mean()
    std = episode_acc.std(unbiased=True) if episodes > 1 else torch.zeros((), dtype=torch.float64)
    return mean, 1.96 * std / math.sqrt(episodes)
