"""SphereFace: angular softmax with a multiplicative margin (Liu et al. 2017)."""

from __future__ import annotations

import torch
from torch import Tensor

from lit_metric._validation import check_int
from lit_metric.losses._margin_softmax import MarginSoftmaxLoss, check_number, margin_target_cosine
from lit_metric.losses.base import LossInputs, Reduction

__all__ = ["SphereFaceLoss"]


class SphereFaceLoss(MarginSoftmaxLoss):
    r"""A-Softmax: cross-entropy over ``‖x‖·cos θ_c`` with ``ψ(θ_y)`` in place of the target cosine.

    References:
        - Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017.
        - Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016
          (the multiplicative margin and the λ annealing).

    With ``θ_c`` the angle between the embedding ``x`` and the (L2-normalised, learned) weight ``W_c`` of
    class c, the target class gets the multiplicative angular margin

    .. math:: ψ(θ) = (−1)^k \cos(mθ) − 2k, \qquad k = ⌊mθ/π⌋,\ θ ∈ [0, π],

    a continuous, decreasing extension of ``cos(mθ)`` (``m`` a positive integer; ``cos(mθ)`` is evaluated
    as the Chebyshev polynomial ``T_m(cos θ)``, so no ``acos`` enters the gradient).  Logits are
    ``‖x‖·cos θ_c`` (``scale=None``, the paper: weights normalised, features not) or ``scale·cos θ_c``
    (a fixed scale, i.e. normalised features as in NormFace/CosFace — use this when the model
    L2-normalises its embeddings, as :class:`~lit_metric.MetricLearningModule` does by default).

    **λ annealing** (``lambda_annealing=True``): A-Softmax is hard to optimise from scratch, so the paper
    trains with the target logit ``(λ·cos θ_y + ψ(θ_y)) / (1 + λ)``, λ decaying from a large value (pure
    softmax) to ``lambda_min``: ``λ = max(lambda_min, lambda_base·(1 + lambda_gamma·t)^(−lambda_power))``
    with t the number of training forward passes so far (the official schedule: base 1000, γ 0.12,
    power 1, minimum 5).  ``t`` is the buffer :attr:`iteration`, counted in training mode under
    gradient, saved in checkpoints; :meth:`current_lambda` gives the λ in use.

    ``indices_tuple``: the distinct anchors of a miner's tuples are the samples that contribute (each
    once); ``ref_emb``/``ref_labels`` are ignored (no gather needed under DDP: ``weight`` is a parameter
    synchronised by DDP; the mean over samples still divides by the global count).

    Mapping to ``pytorch_metric_learning.losses.SphereFaceLoss`` (2.9.0): ``W_pml = weight.T``,
    ``scale=None`` ↔ PML ``scale=1`` (PML multiplies by ``‖x‖·scale``); a float ``scale`` equals PML's on
    unit-norm embeddings.  PML has no λ annealing.

    Args:
        num_classes: number of classes C (labels must lie in ``[0, C)``).
        embedding_dim: embedding size D.
        margin: the integer multiplicative margin m (``m = 1``: normalised-weight softmax).
        scale: fixed logit scale, or None for the feature norm ``‖x‖`` (the paper).
        lambda_annealing: blend the target logit with ``cos θ`` by the annealed λ (see above).
        lambda_base, lambda_gamma, lambda_power, lambda_min: the λ schedule.
        reduction: ``"mean"`` over samples, ``"sum"``, or ``"nonzero_mean"``.

    Raises:
        TypeError: if ``margin`` is not an int.
        ValueError: if ``margin < 1``, ``scale <= 0``, ``lambda_min < 0``, labels are outside
            ``[0, num_classes)`` or the embeddings do not have ``embedding_dim`` columns.

    Example:
        >>> import torch
        >>> loss = SphereFaceLoss(num_classes=2, embedding_dim=2, margin=2, scale=1.0)
        >>> with torch.no_grad():
        ...     _ = loss.weight.copy_(torch.eye(2))
        >>> emb = torch.tensor([[0.6, 0.8]])  # cos θ_0 = 0.6: ψ = cos(2θ_0) = 2·0.6² − 1 = −0.28
        >>> round(loss(emb, torch.tensor([0])).item(), 4)  # log(1 + e^(0.8 + 0.28))
        1.3724
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int,
        margin: int = 4,
        scale: float | None = None,
        lambda_annealing: bool = False,
        lambda_base: float = 1000.0,
        lambda_gamma: float = 0.12,
        lambda_power: float = 1.0,
        lambda_min: float = 5.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_dim, scale, reduction=reduction)
        self.margin = check_int(margin, "margin", 1)
        self.lambda_annealing = bool(lambda_annealing)
        self.lambda_base = check_number(lambda_base, "lambda_base")
        self.lambda_gamma = check_number(lambda_gamma, "lambda_gamma")
        self.lambda_power = check_number(lambda_power, "lambda_power")
        self.lambda_min = check_number(lambda_min, "lambda_min")
        if self.lambda_min < 0 or self.lambda_base < 0 or self.lambda_gamma < 0:
            raise ValueError(
                "Expected arguments `lambda_base`, `lambda_gamma` and `lambda_min` to be >= 0, but got "
                f"{self.lambda_base}, {self.lambda_gamma} and {self.lambda_min}."
            )
        self.iteration: Tensor
        #: training forward passes so far (drives the λ schedule; saved in checkpoints)
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def current_lambda(self) -> float:
        """λ of the annealing schedule at the current :attr:`iteration` (0.0 without annealing)."""
        if not self.lambda_annealing:
            return 0.0
        t = int(self.iteration)
        return max(self.lambda_min, self.lambda_base * (1.0 + self.lambda_gamma * t) ** (-self.lambda_power))

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        psi = margin_target_cosine(cos_target, m1=float(self.margin))
        lam = self.current_lambda()
        if lam > 0:
            psi = (lam * cos_target + psi) / (1.0 + lam)
        return psi

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        out = super().compute_loss(inputs)
        if self.training and torch.is_grad_enabled():
            self.iteration.add_(1)
        return out

    def extra_repr(self) -> str:
        extra = f", lambda_annealing=True, lambda={self.current_lambda():.4g}" if self.lambda_annealing else ""
        return f"{super().extra_repr()}, margin={self.margin}{extra}"
