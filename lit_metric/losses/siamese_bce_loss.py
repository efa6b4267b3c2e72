"""Siamese network as a binary "same / different" classifier (Koch, Zemel & Salakhutdinov 2015)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lit_metric._validation import check_int
from lit_metric.functional.tuples import triplets_to_pairs
from lit_metric.functional.weighted_l1 import weighted_l1_matrix, weighted_l1_rowwise
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["SiameseBCELoss"]


class SiameseBCELoss(MetricLoss):
    r"""Binary cross-entropy of a learned weighted-L1 "same class" score of each pair.

    For a pair ``(x, y)`` of embeddings Koch et al. predict

    .. math::
        p(x, y) = \sigma\Big(\sum_d w_d\,|x_d - y_d| + b\Big)

    with learned ``w`` (``D`` weights) and ``b``, and minimise the binary cross-entropy with the target
    1 for a pair of the same class and 0 otherwise.  ``w`` and ``b`` are ``nn.Parameter``\ s (the module
    puts them in the optimiser).  ``w`` starts at ``−1/√D`` (closer pairs score higher) and ``b`` at 1.
    Without ``indices_tuple`` every (ordered) pair of the batch is used — the ``(B, N)`` score matrix is
    computed in chunks, never as a ``(B, N, D)`` tensor; with ``(a1, p, a2, n)`` pairs only those
    (triplets are split into their unique pairs).  Koch et al. train on balanced pairs: with
    ``balanced=True`` the positive and the negative pairs are averaged separately and the two means
    averaged (``"sum"`` is not affected).  :meth:`score` gives the same-class probability logits of any
    pairs, e.g. for one-shot classification.

    References:
        - Koch, Zemel & Salakhutdinov, "Siamese Neural Networks for One-shot Image Recognition",
          ICML Deep Learning Workshop 2015.

    Args:
        embedding_dim: the embedding size ``D``.
        balanced: average positive and negative pairs separately (Koch et al.'s balanced pairs).
        reduction: ``"mean"``, ``"nonzero_mean"`` (BCE terms are positive: same as mean) or ``"sum"``.
        chunk_elements: memory bound (elements) of one chunk of ``|x − y|``.

    Raises:
        ValueError: if ``embedding_dim < 1``, or the embeddings' size differs from it.
        TypeError: if ``embedding_dim`` is not an int.

    Example:
        >>> import torch
        >>> loss = SiameseBCELoss(embedding_dim=2)
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
        >>> value = loss(emb, torch.tensor([0, 0, 1]))
        >>> value.backward()
        >>> loss.weight.grad.shape, value.shape
        (torch.Size([2]), torch.Size([]))
    """

    def __init__(
        self,
        embedding_dim: int,
        balanced: bool = False,
        reduction: Reduction = "mean",
        chunk_elements: int = 2**22,
    ) -> None:
        super().__init__(reduction=reduction)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim")
        self.balanced = balanced
        self.chunk_elements = check_int(chunk_elements, "chunk_elements")
        self.weight = nn.Parameter(torch.full((embedding_dim,), -1.0 / math.sqrt(embedding_dim)))
        self.bias = nn.Parameter(torch.ones(()))

    def score(self, x: Tensor, y: Tensor) -> Tensor:
        """Logits of "same class" for matched rows: ``(P, D), (P, D) -> (P,)``."""
        return weighted_l1_rowwise(x, y, self.weight.to(x.dtype)) + self.bias.to(x.dtype)

    def score_matrix(self, x: Tensor, y: Tensor) -> Tensor:
        """Logits of "same class" for all pairs: ``(B, D), (N, D) -> (B, N)``."""
        return weighted_l1_matrix(x, y, self.weight.to(x.dtype), self.chunk_elements) + self.bias.to(x.dtype)

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        emb, ref = inputs.embeddings, inputs.ref_emb
        if emb.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Expected embeddings of size `embedding_dim`={self.embedding_dim}, but got {emb.shape[1]}."
            )
        if inputs.indices_tuple is None:
            pos_mask, neg_mask = inputs.masks()
            logits = self.score_matrix(emb, ref)
            pos_logits, neg_logits = logits[pos_mask], logits[neg_mask]
        else:
            pairs = inputs.indices_tuple
            a1, p, a2, n = triplets_to_pairs(*pairs) if len(pairs) == 3 else pairs
            pos_logits, neg_logits = self.score(emb[a1], ref[p]), self.score(emb[a2], ref[n])
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        pos_terms = bce(pos_logits, torch.ones_like(pos_logits), reduction="none")
        neg_terms = bce(neg_logits, torch.zeros_like(neg_logits), reduction="none")
        if self.balanced and self.reduction != "sum":
            loss = 0.5 * (self.reduce(pos_terms) + self.reduce(neg_terms))
        else:
            loss = self.reduce(torch.cat([pos_terms, neg_terms]))
        # keep the parameters in the graph (zero gradients) even when there is no pair
        return loss + self.zero(inputs) + 0.0 * (self.weight.sum() + self.bias).to(loss.dtype)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, balanced={self.balanced}, reduction={self.reduction!r}"
