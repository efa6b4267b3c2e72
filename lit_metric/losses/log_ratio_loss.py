"""Log-ratio loss for continuous labels (Kim, Kim, Cho & Kwak 2019)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from lit_metric._validation import check_choice, check_positive
from lit_metric.functional.distances import euclidean_distance_matrix
from lit_metric.functional.tuples import pairs_to_triplets
from lit_metric.losses.base import LossInputs, MetricLoss

__all__ = ["LogRatioLoss"]


def _full_precision(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class LogRatioLoss(MetricLoss):
    r"""Match the *ratios* of embedding distances to the ratios of label distances ("beyond binary supervision").

    For an anchor ``a`` and two other samples ``i ≠ j``, with ``D`` the squared Euclidean distance of
    the embeddings ``f`` and of the continuous labels ``y``:

    .. math::
        \ell(a, i, j) = \Big(\log\frac{D(f_a, f_i)}{D(f_a, f_j)} - \log\frac{D(y_a, y_i)}{D(y_a, y_j)}\Big)^2

    Dense triplet mining: every anchor with every *unordered* pair ``{i, j}`` of the other samples
    (references), each once; ``"mean"`` averages over these triplets.  Writing
    ``u_i = log D(f_a, f_i) − log D(y_a, y_i)``, the term is ``(u_i − u_j)²`` and the sum over the
    pairs of an anchor is ``n·Σ(u_i − ū)²``, so the loss costs ``O(B·N)`` time and memory (no
    triplet is materialised).  With an ``indices_tuple`` of triplets ``(a, i, j)`` only those are used
    (pairs are first turned into triplets).  Labels are continuous: ``(B,)`` or ``(B, L)`` floats
    (integers are taken as numbers).  ``eps`` is added inside both logarithms so that equal labels or
    coincident embeddings stay finite.  The computation runs in float32 at least (autocast is
    switched off inside), since ``log`` of a near-zero half-precision distance has an enormous
    gradient; the result is cast back to the embeddings' dtype.

    References:
        - Kim, Kim, Cho & Kwak, "Deep Metric Learning Beyond Binary Supervision", CVPR 2019.

    Args:
        eps: added to both squared distances inside the logarithms.
        reduction: ``"mean"`` (over triplets) or ``"sum"``.

    Raises:
        ValueError: if ``eps`` is not positive or ``reduction`` is not ``"mean"``/``"sum"``.
        TypeError: if ``eps`` is not a number.

    Example:
        >>> import torch
        >>> loss = LogRatioLoss()
        >>> y = torch.tensor([0.0, 1.0, 3.0])
        >>> float(loss(y.unsqueeze(1) * 2.0, y)) < 1e-9  # embedding distances proportional to label distances
        True
    """

    continuous_labels = True

    def __init__(self, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction=check_choice(reduction, "reduction", ("mean", "sum")))  # type: ignore[arg-type]
        self.eps = check_positive(eps, "eps")

    def compute_loss(self, inputs: LossInputs) -> Tensor:
        if inputs.labels is None or inputs.ref_labels is None:  # labels are required: prepare() has checked
            raise ValueError(f"Expected argument `labels` for {type(self).__name__}, but got None.")
        device_type = inputs.embeddings.device.type
        autocast_off = (
            torch.autocast(device_type, enabled=False) if device_type in ("cpu", "cuda") else contextlib.nullcontext()
        )
        with autocast_off:
            emb, ref = _full_precision(inputs.embeddings), _full_precision(inputs.ref_emb)
            log_f = torch.log(euclidean_distance_matrix(emb, ref, squared=True) + self.eps)
            log_y = self._label_log_distances(inputs.labels, inputs.ref_labels).to(log_f.dtype)
            u = log_f - log_y  # (B, N)
            if inputs.indices_tuple is not None:
                triplets = inputs.indices_tuple
                a, i, j = triplets if len(triplets) == 3 else pairs_to_triplets(*triplets)
                loss = self.reduce((u[a, i] - u[a, j]).pow(2))
            else:
                valid = torch.ones_like(u, dtype=torch.bool)
                if inputs.self_index is not None:
                    valid[torch.arange(u.shape[0], device=u.device), inputs.self_index] = False
                n = valid.sum(1)
                u = torch.where(valid, u, torch.zeros_like(u))
                mean = u.sum(1, keepdim=True) / n.clamp_min(1).unsqueeze(1).to(u.dtype)
                centred = torch.where(valid, u - mean, torch.zeros_like(u))
                # Σ_{i<j} (u_i − u_j)² = n · Σ_i (u_i − ū)²  (per anchor)
                total = (n.to(u.dtype) * centred.pow(2).sum(1)).sum()
                count = (n * (n - 1) // 2).sum()
                loss = self.reduce_total(total, count, count)
        return (loss + self.zero(inputs)).to(inputs.embeddings.dtype)

    def _label_log_distances(self, labels: Tensor, ref_labels: Tensor) -> Tensor:
        """``log(‖y_a − y_i‖² + eps)`` (B, N), in float64 (labels carry no gradient; exact for large values)."""
        y = labels.detach().to(torch.float64)
        ref_y = ref_labels.detach().to(torch.float64)
        y = y.unsqueeze(1) if y.ndim == 1 else y
        ref_y = ref_y.unsqueeze(1) if ref_y.ndim == 1 else ref_y
        return torch.log(euclidean_distance_matrix(y, ref_y, squared=True) + self.eps)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"
