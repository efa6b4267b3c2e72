"""Distance objects: one interface for distances (smaller = closer) and similarities (larger = closer).

Losses and miners never branch on the kind of measure: they call :meth:`BaseDistance.to_dissimilarity`
(identity for a distance, negation for a similarity) or :meth:`BaseDistance.gap`, so a margin always
means "the negative must be farther than the positive by this much" in the measure's own units.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from lit_metric.functional.distances import (
    cosine_similarity_matrix,
    dot_product_matrix,
    euclidean_distance_matrix,
    safe_sqrt,
)

__all__ = ["BaseDistance", "CosineSimilarity", "DotProductSimilarity", "EuclideanDistance"]


class BaseDistance(nn.Module, ABC):
    """Maps ``(N, D), (M, D) -> (N, M)``; knows whether larger means closer (:attr:`is_similarity`)."""

    is_similarity: bool = False

    @abstractmethod
    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        """All pairs: ``(N, D), (M, D) -> (N, M)``."""

    @abstractmethod
    def rowwise(self, x: Tensor, y: Tensor) -> Tensor:
        """Matched rows: ``(N, D), (N, D) -> (N,)``."""

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``pairwise(x, y)`` with ``y`` defaulting to ``x``."""
        _check_embedding_pair(x, x if y is None else y)
        return self.pairwise(x, x if y is None else y)

    def to_dissimilarity(self, values: Tensor) -> Tensor:
        """Values where *smaller* means closer: identity for a distance, negation for a similarity."""
        return -values if self.is_similarity else values

    def gap(self, pos: Tensor, neg: Tensor) -> Tensor:
        """How much closer the negative is than the positive (> 0: the negative wins without margin)."""
        return self.to_dissimilarity(pos) - self.to_dissimilarity(neg)

    def extra_repr(self) -> str:
        return f"is_similarity={self.is_similarity}"


def _check_embedding_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ValueError(
            f"Expected 2-D embeddings (N, D) and (M, D), but got shapes {tuple(x.shape)} and {tuple(y.shape)}."
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"Expected embeddings of the same dimension, but got D={x.shape[1]} and D={y.shape[1]}.")


class EuclideanDistance(BaseDistance):
    """Euclidean distance ``‖x − y‖₂`` (or its square).

    Args:
        squared: return ``‖x − y‖²`` (FaceNet's distance).
        normalize: L2-normalise the embeddings first (distances then lie in ``[0, 2]``).

    Example:
        >>> import torch
        >>> d = EuclideanDistance(normalize=False)
        >>> d(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]]))
        tensor([[5.]])
    """

    is_similarity = False

    def __init__(self, squared: bool = False, normalize: bool = True) -> None:
        super().__init__()
        self.squared = squared
        self.normalize = normalize

    def _prep(self, x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x, dim=-1) if self.normalize else x

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        xp = self._prep(x)
        return euclidean_distance_matrix(xp, xp if y is x else self._prep(y), squared=self.squared)

    def rowwise(self, x: Tensor, y: Tensor) -> Tensor:
        sq = (self._prep(x) - self._prep(y)).pow(2).sum(-1)
        return sq if self.squared else safe_sqrt(sq)

    def extra_repr(self) -> str:
        return f"squared={self.squared}, normalize={self.normalize}"


class CosineSimilarity(BaseDistance):
    """Cosine similarity (a similarity: larger is closer).

    Example:
        >>> import torch
        >>> CosineSimilarity()(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        tensor([[1., 0.]])
    """

    is_similarity = True

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        return cosine_similarity_matrix(x, y)

    def rowwise(self, x: Tensor, y: Tensor) -> Tensor:
        return (torch.nn.functional.normalize(x, dim=-1) * torch.nn.functional.normalize(y, dim=-1)).sum(-1)


class DotProductSimilarity(BaseDistance):
    """Inner product ``x·y`` (a similarity; equals cosine on unit-norm embeddings)."""

    is_similarity = True

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        return dot_product_matrix(x, y)

    def rowwise(self, x: Tensor, y: Tensor) -> Tensor:
        return (x * y).sum(-1)
