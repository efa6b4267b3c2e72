"""Angular loss (Wang, Zhou, Wen, Liu & Lin 2017)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lit_metric._validation import check_int
from lit_metric.functional.angular import angular_pair_terms
from lit_metric.functional.tuples import triplets_to_pairs
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["AngularLoss"]


class AngularLoss(MetricLoss):
    r"""Bound the angle at the negative of the triangle (anchor, positive, negative) by ``alpha``.

    For a positive pair ``(a, p)`` and the references ``n`` of another class (eq. 8 of the paper,
    the smooth form over all negatives of the batch):

    .. math::
        \ell_{ap} = \log\Big(1 + \sum_n \exp\big(4\tan^2\alpha\,(x_a + x_p)^\top x_n
                    - 2(1 + \tan^2\alpha)\,x_a^\top x_p\big)\Big)

    averaged over the (ordered) positive pairs of the batch, or over the pairs ``(a1, p)`` of an
    ``indices_tuple`` (the negatives are then still all references of another class, as in PyTorch
    Metric Learning).  The embeddings are L2-normalised first (``normalize=True``): the derivation
    assumes unit vectors.  ``alpha`` is in **radians** (the paper's best is 36°–45°).  The exponent
    matrix is assembled from the ``(B, N)`` anchor–reference and ``(U, N)`` positive–reference
    similarity matrices, never a ``(P, N, D)`` tensor, and processed in checkpointed chunks: memory
    ``O(B·N + chunk_elements)`` (PyTorch Metric Learning's is ``O(P·N)``, i.e. ``O(B³)`` for
    few classes).  Combine with :class:`~lit_metric.losses.NPairLoss` (the paper's best, weight 2)
    through a weighted sum of losses.

    References:
        - Wang, Zhou, Wen, Liu & Lin, "Deep Metric Learning with Angular Loss", ICCV 2017.

    Args:
        alpha: the angle bound ``α`` in radians, in ``(0, π/2)``.
        normalize: L2-normalise the embeddings and references first.
        reduction: ``"mean"``, ``"nonzero_mean"`` or ``"sum"`` over the positive pairs.
        chunk_elements: memory bound (elements) of one chunk of the exponent matrix.

    Raises:
        ValueError: if ``alpha`` is not in ``(0, π/2)`` or ``chunk_elements < 1``.
        TypeError: if ``alpha`` is not a number.

    Example:
        >>> import math, torch
        >>> loss = AngularLoss(alpha=math.radians(45))
        >>> emb = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> # x_a = x_p ⟂ x_n: f = 4·0 − 2·2·1 = −4, loss = log(1 + e^-4)
        >>> math.isclose(loss(emb, torch.tensor([0, 0, 1])).item(), math.log1p(math.exp(-4)), rel_tol=1e-6)
        True
    """

    def __init__(
        self,
        alpha: float = math.radians(45),
        normalize: bool = True,
        reduction: Reduction = "mean",
        chunk_elements: int = 2**22,
    ) -> None:
        super().__init__(reduction=reduction)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float):
            raise TypeError(f"Expected argument `alpha` to be a number (radians), but got {alpha!r}.")
        if not 0.0 < alpha < math.pi / 2:
            hint = f" It looks like degrees: use math.radians({alpha})." if 1.0 <= alpha < 90.0 else ""
            raise ValueError(f"Expected argument `alpha` to be in (0, π/2) radians, but got {alpha}.{hint}")
        self.alpha = float(alpha)
        self.normalize = normalize
        self.chunk_elements = check_int(chunk_elements, "chunk_elements")

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        labels, ref_labels = inputs.labels, inputs.ref_labels
        if labels is None or ref_labels is None:  # labels are required: prepare() has checked
            raise ValueError(f"Expected argument `labels` for {type(self).__name__}, but got None.")
        same = inputs.ref_emb is inputs.embeddings
        x = torch.nn.functional.normalize(inputs.embeddings, dim=1) if self.normalize else inputs.embeddings
        r = x if same else (torch.nn.functional.normalize(inputs.ref_emb, dim=1) if self.normalize else inputs.ref_emb)
        anchor_sim = x @ r.T
        if inputs.indices_tuple is None:
            pos_mask, _ = inputs.masks()
            a, p = pos_mask.nonzero(as_tuple=True)
        else:
            pairs = inputs.indices_tuple
            a, p = (triplets_to_pairs(*pairs) if len(pairs) == 3 else pairs)[:2]
        if same and inputs.ref_labels is inputs.labels:
            pos_sim, p_row = anchor_sim, p  # the references are the anchors: reuse the matrix
        else:
            uniq, p_row = torch.unique(p, return_inverse=True)
            pos_sim = r[uniq] @ r.T
        terms = angular_pair_terms(
            anchor_sim, pos_sim, a, p, p_row, labels, ref_labels, self.alpha, self.chunk_elements
        )
        return self.reduce(terms) + self.zero(inputs)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.6g} rad, normalize={self.normalize}, reduction={self.reduction!r}"
