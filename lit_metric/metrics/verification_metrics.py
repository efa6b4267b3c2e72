"""VerificationMetrics: ROC-AUC, EER, TAR@FAR and the best-accuracy threshold (face-verification style)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_metric._validation import check_embeddings, check_int, check_labels
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.retrieval import _check_far, pair_verification_metrics, verification_metrics
from lit_metric.metrics._embedding_states import canonical_order, has_entries
from lit_metric.metrics.retrieval_metrics import check_mask

__all__ = ["VerificationMetrics", "verify_pairs"]


def verify_pairs(a: Tensor, b: Tensor, threshold: float, distance: BaseDistance) -> Tensor:
    """``(B, D), (B, D) -> (B,)`` bool: "same" when the pair's dissimilarity is ``<= threshold``'s, i.e.
    ``d(a, b) <= threshold`` for a distance and ``s(a, b) >= threshold`` for a similarity (``threshold`` in the
    measure's units, as returned by :class:`VerificationMetrics`)."""
    score = distance.rowwise(a, b)
    limit = torch.as_tensor(threshold, dtype=score.dtype, device=score.device)
    return distance.to_dissimilarity(score) <= distance.to_dissimilarity(limit)


class VerificationMetrics(Metric):
    """Verification ("same identity or not?") metrics of face recognition (LFW, Huang et al. 2007; IJB-C,
    Maze et al. 2018): ROC-AUC, equal error rate, TAR at given FARs and the best-accuracy threshold.

    Two input forms (do not mix them in one accumulation):

    * **all pairs**: ``update(embeddings, labels)``; every unordered pair ``i < j`` of the accumulated items is
      scored, same-label pairs being positives.  N items make ``N(N-1)/2`` pairs; they are never held: the
      positive pairs' scores (``P = Σ_c n_c(n_c-1)/2`` values) are sorted and the negatives stream through in
      chunks of ``chunk_size`` rows and are only counted.  Memory ``O(P + chunk_size × N)``, time ``O(N² D)``.
    * **a pair list** (LFW style): ``update(emb_a, pair_embeddings=emb_b, is_same=same)``; only the ``(B,)`` pair
      scores are kept.

    The ROC is exact (no histogram, no interpolation of scores).  **Threshold convention**: a pair is declared
    "same" when ``d <= τ`` for a distance; for a similarity ``s`` (cosine, dot product) the rule is ``s >= τ`` —
    every threshold is returned in the measure's own units and :func:`verify_pairs` /
    :meth:`lit_metric.EmbeddingIndex.verify` apply the matching rule, so a saved ``threshold`` is reused at
    inference as is.  A threshold lies midway between the last accepted and the next score.

    Outputs: ``roc_auc`` (ties count ½, = scikit-learn's ``roc_auc_score``), ``eer`` (where FAR = FRR, linearly
    interpolated on the ROC), ``tar@far=f`` (the highest TAR of a threshold with FAR ``<= f``; no interpolation)
    with ``threshold@far=f``, and ``accuracy`` / ``threshold`` at the best-accuracy threshold.  That accuracy is
    measured on the pairs that chose the threshold (optimistic): for a fair number pick it on held-out pairs
    (LFW's 10 folds) and apply it with :func:`verify_pairs`.

    Args:
        far: false-accept rates for ``tar@far`` (each in (0, 1)).
        distance: the measure (default cosine similarity).
        chunk_size: rows per chunk of the all-pairs pass.

    Raises:
        ValueError / TypeError: on bad arguments, bad or mixed ``update`` inputs; ``compute`` raises ValueError
            without at least one positive and one negative pair.

    Example:
        >>> import torch
        >>> metric = VerificationMetrics(far=(0.25,))
        >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0], [0.3, 0.9]])
        >>> metric.update(emb, torch.tensor([0, 0, 1, 1]))
        >>> out = metric.compute()
        >>> round(out["roc_auc"].item(), 3), out["eer"].item(), round(out["threshold"].item(), 3)
        (1.0, 0.0, 0.732)
    """

    is_differentiable = False
    higher_is_better = None  # EER: lower; the others: higher
    full_state_update = False
    embeddings: list[Tensor]
    labels: list[Tensor]
    indices: list[Tensor]
    pair_scores: list[Tensor]
    pair_same: list[Tensor]
    pair_indices: list[Tensor]

    def __init__(
        self,
        far: float | Sequence[float] = (1e-3, 1e-2),
        distance: BaseDistance | None = None,
        chunk_size: int = 1024,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.far = _check_far(far)  # type: ignore[arg-type]
        self.distance = distance if distance is not None else CosineSimilarity()
        if not isinstance(self.distance, BaseDistance):
            raise TypeError(
                f"Expected argument `distance` to be a lit_metric distance, but got {type(self.distance).__name__}."
            )
        self.chunk_size = check_int(chunk_size, "chunk_size", 1)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.add_state("indices", default=[], dist_reduce_fx="cat")
        self.add_state("pair_scores", default=[], dist_reduce_fx="cat")
        self.add_state("pair_same", default=[], dist_reduce_fx="cat")
        self.add_state("pair_indices", default=[], dist_reduce_fx="cat")

    def update(
        self,
        embeddings: Tensor,
        labels: Tensor | None = None,
        indices: Tensor | None = None,
        pair_embeddings: Tensor | None = None,
        is_same: Tensor | None = None,
    ) -> None:
        """All pairs: ``embeddings (B, D)``, ``labels (B,)``, optional dataset ``indices (B,)``.
        Pair list: ``embeddings (B, D)`` and ``pair_embeddings (B, D)`` (row i is a pair), ``is_same (B,)`` bool,
        optional pair ``indices (B,)``."""
        check_embeddings(embeddings)
        n = embeddings.shape[0]
        if indices is not None:
            check_labels(indices, n, "indices")
        if pair_embeddings is None:
            if is_same is not None:
                raise ValueError("Expected `is_same` only with `pair_embeddings`, but got `is_same` alone.")
            if labels is None:
                raise ValueError("Expected argument `labels` (all-pairs mode) or `pair_embeddings` + `is_same`.")
            if has_entries(self.pair_scores):
                raise ValueError("Expected one input form per accumulation, but got all-pairs after pair-list updates.")
            check_labels(labels, n)
            self.embeddings.append(embeddings.detach())
            self.labels.append(labels.detach().long())
            self.indices.append((indices if indices is not None else torch.full_like(labels, -1)).detach().long())
            return
        check_embeddings(pair_embeddings, "pair_embeddings")
        if pair_embeddings.shape != embeddings.shape:
            raise ValueError(
                "Expected argument `pair_embeddings` to have the shape of `embeddings` "
                f"{tuple(embeddings.shape)}, but got {tuple(pair_embeddings.shape)}."
            )
        if labels is not None:
            raise ValueError("Expected `labels=None` with `pair_embeddings` (pass `is_same`), but got labels.")
        if is_same is None:
            raise ValueError("Expected argument `is_same` with `pair_embeddings`, but got None.")
        check_mask(is_same, n, "is_same")
        if has_entries(self.embeddings):
            raise ValueError("Expected one input form per accumulation, but got pair-list after all-pairs updates.")
        scores = self.distance.rowwise(embeddings.detach(), pair_embeddings.detach())
        self.pair_scores.append(scores)
        self.pair_same.append(is_same.to(device=scores.device, dtype=torch.uint8))
        idx = indices if indices is not None else torch.full((n,), -1, dtype=torch.long)
        self.pair_indices.append(idx.detach().long().to(scores.device))

    def compute(self) -> dict[str, Tensor]:
        if has_entries(self.embeddings):
            emb, labels = canonical_order(
                dim_zero_cat(self.indices), dim_zero_cat(self.embeddings), dim_zero_cat(self.labels)
            )
            return verification_metrics(emb, labels, distance=self.distance, far=self.far, chunk_size=self.chunk_size)
        if has_entries(self.pair_scores):
            scores, same = canonical_order(
                dim_zero_cat(self.pair_indices), dim_zero_cat(self.pair_scores), dim_zero_cat(self.pair_same)
            )
            return pair_verification_metrics(scores, same.bool(), distance=self.distance, far=self.far)
        raise RuntimeError("VerificationMetrics.compute() called before any update().")
