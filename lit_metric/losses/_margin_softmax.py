"""Shared machinery of the classification-style losses (private).

* :class:`ClassLabelLoss` — losses that hold one learned vector per class (margin-softmax weights,
  softmax head, centers): checks that labels lie in ``[0, num_classes)`` and that the embeddings have
  ``embedding_dim`` columns (clear errors instead of device-side asserts), turns a miner's
  ``indices_tuple`` into the set of anchors that contribute, and reduces per-sample terms through
  :meth:`~lit_metric.losses.base.MetricLoss.reduce` (global counts under DDP).
* :class:`MarginSoftmaxLoss` — normalised-weight softmax with a margin on the target logit; the public
  SphereFace / CosFace / ArcFace / CombinedMargin losses only say what the target logit is.
* :func:`margin_target_cosine` — the target-class "cosine with margin" ``ψ(θ)`` of all four losses.

These losses are per-sample classifiers: references (``ref_emb``/``ref_labels``) play no part, and
under DDP no gather is needed because the class matrix is a DDP-synchronised parameter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_metric._validation import check_embeddings, check_int
from lit_metric.losses.base import LossInputs, MetricLoss, Reduction

__all__ = ["ClassLabelLoss", "MarginSoftmaxLoss", "check_number", "margin_target_cosine", "work_dtype"]


def check_number(value: object, name: str) -> float:
    """A finite real number (ints allowed, bools not)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"Expected argument `{name}` to be a finite number, but got {value!r}.")
    return float(value)


def work_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype the loss math runs in: the widest of the inputs, and at least float32 (fp16/bf16 are upcast)."""
    dtype = torch.float32
    for t in tensors:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _chebyshev_cos(cos: Tensor, m: int) -> Tensor:
    """``cos(m·θ)`` from ``cos θ`` by the Chebyshev recurrence ``T_{n+1} = 2c·T_n − T_{n−1}`` (a polynomial:
    exact and smooth at ``cos θ = ±1``, where ``acos`` has an infinite derivative)."""
    prev, cur = torch.ones_like(cos), cos
    if m == 0:
        return prev
    for _ in range(m - 1):
        prev, cur = cur, 2.0 * cos * cur - prev
    return cur


def margin_target_cosine(cos: Tensor, m1: float = 1.0, m2: float = 0.0, m3: float = 0.0, easy_margin: bool = False) -> Tensor:
    r"""The target-class logit (before scaling) of the margin-softmax family: ``cos(m1·θ + m2) − m3``.

    ``θ = acos(cos)`` is the angle between an embedding and its class weight.  ``cos(m1·θ + m2)`` is not
    monotone in θ once ``m1·θ + m2 > π``; each special case keeps the standard monotone continuation:

    * ``m1 = 1`` (ArcFace ``m2``, CosFace ``m3``, and their combination): ``cos(θ + m2)`` while
      ``θ + m2 ≤ π``, else ArcFace's fallback ``cos θ − m2·sin(m2)``; with ``easy_margin`` the margin is
      applied only where ``cos θ > 0`` (elsewhere the plain ``cos θ``).
    * ``m1 ≠ 1`` (SphereFace's multiplicative margin): SphereFace's
      ``ψ = (−1)^k cos(m1·θ + m2) − 2k`` with ``k = ⌊(m1·θ + m2)/π⌋`` — continuous and decreasing on [0, π].

    The cosine is clamped to ``[−1 + ε, 1 − ε]`` (ε = machine epsilon of the dtype) before ``sin θ`` or
    ``acos``, so gradients stay finite at ``cos θ = ±1``; the margin-free branches use the unclamped cosine.
    An integer ``m1`` with ``m2 = 0`` goes through the Chebyshev polynomial ``T_m1(cos θ)`` (no ``acos``).

    Args:
        cos: ``(N,)`` cosines of the target class (float32/float64).
        m1: multiplicative angular margin (SphereFace), ``>= 1``.
        m2: additive angular margin in radians (ArcFace), in ``[0, π)``.
        m3: additive cosine margin (CosFace).
        easy_margin: ArcFace's easy margin (only with ``m1 = 1``).

    Returns:
        ``(N,)`` margin-modified target cosines.
    """
    if m1 == 1.0 and m2 == 0.0:
        return cos - m3
    eps = torch.finfo(cos.dtype).eps
    c = cos.clamp(-1.0 + eps, 1.0 - eps)
    if m1 == 1.0:
        sin = torch.sqrt(1.0 - c * c)
        shifted = c * math.cos(m2) - sin * math.sin(m2)  # cos(θ + m2)
        if easy_margin:
            out = torch.where(cos > 0, shifted, cos)
        else:  # θ + m2 > π  <=>  cos θ < cos(π − m2) = −cos(m2)
            out = torch.where(c > -math.cos(m2), shifted, cos - m2 * math.sin(m2))
        return out - m3
    if m2 == 0.0 and float(m1).is_integer():
        cos_u = _chebyshev_cos(cos, int(m1))
    else:
        cos_u = torch.cos(m1 * torch.acos(c) + m2)
    with torch.no_grad():
        # k = ⌊(m1·θ + m2)/π⌋ = #{j >= 1: θ >= θ_j}, θ_j = (jπ − m2)/m1, i.e. #{j: cos θ <= cos θ_j}
        k = torch.zeros_like(cos)
        j = 1
        while (j * math.pi - m2) / m1 <= math.pi:
            k += (cos <= math.cos((j * math.pi - m2) / m1)).to(cos.dtype)
            j += 1
        sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * cos_u - 2.0 * k - m3


class ClassLabelLoss(MetricLoss):
    """Base of losses with one learned row per class (private; see the module docstring).

    ``indices_tuple`` (from any miner) selects which anchors contribute: the distinct anchor indices
    (``a`` of triplets, ``a1`` and ``a2`` of pairs), each counted once; positives/negatives are ignored
    since the class weights play their part.  (PML instead weights every sample by how often it occurs
    anywhere in the tuple.)
    """

    has_class_weights = True

    def __init__(self, num_classes: int, embedding_dim: int, reduction: Reduction = "mean") -> None:
        super().__init__(reduction=reduction)
        self.num_classes = check_int(num_classes, "num_classes", 1)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", 1)

    def check_embedding_dim(self, embeddings: Tensor) -> None:
        if embeddings.ndim == 2 and embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Expected argument `embeddings` to have {self.embedding_dim} columns (the loss's `embedding_dim`), "
                f"but got shape {tuple(embeddings.shape)}. Set the loss's `embedding_dim` to the model's embedding size."
            )

    def check_label_range(self, labels: Tensor) -> None:
        if labels.numel() == 0:
            return
        lo, hi = (int(v) for v in torch.aminmax(labels))
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(
                f"Expected argument `labels` to be class ids in [0, {self.num_classes}) (`num_classes`={self.num_classes}), "
                f"but got values in [{lo}, {hi}]. Set `num_classes` to at least {hi + 1} or remap the labels to 0..C-1."
            )

    def prepare(
        self,
        embeddings: Tensor,
        labels: Tensor | None,
        indices_tuple: tuple[Tensor, ...] | None,
        ref_emb: Tensor | None,
        ref_labels: Tensor | None,
        self_index: Tensor | None,
    ) -> LossInputs:
        inputs = super().prepare(embeddings, labels, indices_tuple, ref_emb, ref_labels, self_index)
        self.check_embedding_dim(inputs.embeddings)
        assert inputs.labels is not None  # requires_labels: checked by MetricLoss.prepare
        self.check_label_range(inputs.labels)
        return inputs

    @staticmethod
    def selected_anchors(inputs: LossInputs) -> Tensor | None:
        """Sorted distinct anchor indices of ``inputs.indices_tuple`` (None: every sample contributes)."""
        if inputs.indices_tuple is None:
            return None
        tup = inputs.indices_tuple
        anchors = tup[0] if len(tup) == 3 else torch.cat([tup[0], tup[2]])
        return torch.unique(anchors)

    def per_sample_terms(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """``(B, D), (B,) -> (B,)`` the loss of each sample; subclasses implement it."""
        raise NotImplementedError

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        emb, labels = inputs.embeddings, inputs.labels
        assert labels is not None
        idx = self.selected_anchors(inputs)
        if idx is not None:
            if idx.numel() == 0:
                return self.zero(inputs)
            emb, labels = emb[idx], labels[idx]
        if emb.shape[0] == 0:
            return self.zero(inputs)
        terms = self.per_sample_terms(emb, labels)
        return self.reduce(terms).to(inputs.embeddings.dtype)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, reduction={self.reduction!r}"


class _TargetReplacedCrossEntropy(torch.autograd.Function):
    """Per-row cross-entropy of ``logits`` whose label column is replaced by ``target``, in one fused pass.

    Equals ``F.cross_entropy(logits.index_put((rows, labels), target), labels, reduction="none")`` but
    keeps a single ``(B, C)`` buffer (the softmax) for the backward: ``∂/∂logits = p`` off the label
    column (0 on it, where ``logits`` is not used) and ``∂/∂target = p_y − 1``, times the incoming grad.
    ``logits`` is overwritten with the softmax (callers pass a temporary that nothing else holds).
    """

    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, target: Tensor) -> Tensor:  # type: ignore[override]
        rows = torch.arange(labels.shape[0], device=labels.device)
        p = logits if logits.is_contiguous() else logits.contiguous()
        p[rows, labels] = target
        top = p.amax(dim=1, keepdim=True)
        p.sub_(top).exp_()
        total = p.sum(dim=1, keepdim=True)
        p.div_(total)
        ctx.save_for_backward(p, labels)
        return (top + total.log()).squeeze(1) - target

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, Tensor]:  # type: ignore[override]
        p, labels = ctx.saved_tensors
        rows = torch.arange(labels.shape[0], device=labels.device)
        grad_logits = p * grad.unsqueeze(1)
        grad_target = grad_logits[rows, labels] - grad
        grad_logits[rows, labels] = 0.0
        return grad_logits, None, grad_target


class MarginSoftmaxLoss(ClassLabelLoss):
    """Softmax cross-entropy over ``scale · cos(x, W_c)`` with a margin on the target class (private base).

    ``weight`` ``(C, D)`` holds one learned vector per class (an ``nn.Parameter``, L2-normalised in every
    forward).  Subclasses implement :meth:`target_cosine`.  ``scale=None`` uses the feature norm ``‖x‖``
    as the scale (SphereFace).  Math runs in at least float32 (fp16/bf16 inputs and autocast matmuls are
    upcast before the margin and the softmax), and the loss comes back in the embeddings' dtype.

    One forward costs one ``(B, D) × (D, C)`` matmul (the scale is folded into the normalised embeddings),
    a ``(B,)`` margin on the target cosines (a row-wise dot product, no gather from the ``(B, C)`` matrix)
    and a fused cross-entropy that keeps a single ``(B, C)`` buffer for the backward.
    """

    def __init__(self, num_classes: int, embedding_dim: int, scale: float | None, reduction: Reduction = "mean") -> None:
        super().__init__(num_classes, embedding_dim, reduction=reduction)
        if scale is not None:
            scale = check_number(scale, "scale")
            if scale <= 0:
                raise ValueError(f"Expected argument `scale` to be > 0, but got {scale}.")
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(self.num_classes, self.embedding_dim))
        nn.init.normal_(self.weight)

    def _scaled(self, embeddings: Tensor) -> tuple[Tensor, Tensor, Tensor | float]:
        """``x_s`` ``(B, D)`` and ``ŵ`` ``(C, D)`` with ``x_s·ŵ_c = scale·cos θ_c``, and the scale (float or ``(B,)``)."""
        dtype = work_dtype(embeddings, self.weight)
        x = embeddings.to(dtype)
        w = self.weight.to(dtype)
        w = w * w.norm(dim=1, keepdim=True).clamp_min(1e-12).reciprocal()  # F.normalize, one (C, D) pass fewer
        if self.scale is None:  # ‖x‖·cos θ_c = x·ŵ_c
            return x, w, x.norm(dim=1).clamp_min(torch.finfo(dtype).tiny)
        # scale·x/‖x‖ as one multiply by a (B, 1) factor (cheaper backward than normalize, then scale)
        return x * (self.scale / x.norm(dim=1, keepdim=True).clamp_min(1e-12)), w, self.scale

    def get_cosine(self, embeddings: Tensor) -> Tensor:
        """``(B, D) -> (B, C)`` cosines between embeddings and class weights (at least float32)."""
        dtype = work_dtype(embeddings, self.weight)
        x = F.normalize(embeddings.to(dtype), dim=1)
        w = F.normalize(self.weight.to(dtype), dim=1)
        return (x @ w.T).to(dtype)  # an autocast matmul returns fp16/bf16: upcast again

    def get_logits(self, embeddings: Tensor) -> Tensor:
        """``(B, D) -> (B, C)`` class logits without margin (``scale · cos θ_c``), e.g. for closed-set classification.

        Raises:
            ValueError: if ``embeddings`` is not ``(B, embedding_dim)``.
            TypeError: if ``embeddings`` is not a floating-point tensor.
        """
        check_embeddings(embeddings)
        self.check_embedding_dim(embeddings)
        x_s, w, _ = self._scaled(embeddings)
        return (x_s @ w.T).to(x_s.dtype)

    def target_cosine(self, cos_target: Tensor) -> Tensor:
        """``(N,) -> (N,)`` the margin-modified cosine of each sample's own class."""
        raise NotImplementedError

    def per_sample_terms(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        x_s, w, scale = self._scaled(embeddings)
        # (B, C) scale·cos (an autocast matmul is upcast again); a temporary the fused CE overwrites
        logits = (x_s @ w.T).to(x_s.dtype)
        cos_target = (x_s * w[labels]).sum(dim=1) / scale  # (B,) in full precision
        target = self.target_cosine(cos_target) * scale
        return _TargetReplacedCrossEntropy.apply(logits, labels, target)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"
