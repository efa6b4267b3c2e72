"""InfoNCE / NT-Xent / SupCon kernels on one logits matrix (pure functions).

Every contrastive loss of :mod:`lit_metric.losses.info_nce_loss` is a row-wise softmax over one
``(R, M)`` logits matrix: rows are anchors, columns are candidates (references, then extra
negatives).  The self column of each anchor is removed (set to ``-inf``) and either one positive
column per row (instance discrimination) or a boolean positive mask (SupCon) says what to pull.
Memory is ``O(R·M)``; nothing of size ``R·M·M`` is ever built.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["contrastive_logits", "info_nce_sum", "supcon_sum"]


def contrastive_logits(similarity: Tensor, temperature: float, self_cols: Tensor | None = None) -> Tensor:
    """``similarity / temperature`` with each anchor's self column set to ``-inf``.

    Half-precision inputs are upcast to float32 here (``exp(1/0.07)`` overflows float16); the
    gradient flows back to the original dtype through the cast.

    Args:
        similarity: ``(R, M)`` similarities (larger = closer).
        temperature: the softmax temperature ``τ > 0``.
        self_cols: ``(R,)`` column of each row's own copy, or ``-1`` where the row has none.

    Returns:
        ``(R, M)`` float logits.
    """
    logits = similarity.float() if similarity.dtype in (torch.float16, torch.bfloat16) else similarity
    logits = logits / temperature
    if self_cols is not None:
        rows = (self_cols >= 0).nonzero(as_tuple=True)[0]
        if rows.numel():
            neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
            logits = logits.index_put((rows, self_cols[rows]), neg_inf)
    return logits


def info_nce_sum(logits: Tensor, pos_cols: Tensor) -> tuple[Tensor, int]:
    """``Σ_i −log softmax(logits_i)[pos_cols_i]`` and the number of rows (one positive per row).

    Args:
        logits: ``(R, M)`` from :func:`contrastive_logits`.
        pos_cols: ``(R,)`` column of each row's positive.

    Returns:
        ``(total, count)``: the summed cross-entropy and ``R``.
    """
    total = torch.nn.functional.cross_entropy(logits, pos_cols, reduction="sum")
    return total, logits.shape[0]


def supcon_sum(logits: Tensor, pos_mask: Tensor) -> tuple[Tensor, Tensor]:
    r"""SupCon's :math:`\mathcal{L}^{sup}_{out}` summed over the anchors that have a positive.

    For anchor ``i`` with positives ``P(i)`` (``pos_mask[i]``) and candidates ``A(i)`` (every finite
    column of ``logits[i]``): ``−1/|P(i)| Σ_{p∈P(i)} log(exp(l_ip) / Σ_{a∈A(i)} exp(l_ia))``.  Anchors
    without a positive contribute nothing and are not counted.

    Args:
        logits: ``(R, M)`` from :func:`contrastive_logits` (self columns already ``-inf``).
        pos_mask: ``(R, M)`` boolean positives (must exclude the self columns).

    Returns:
        ``(total, count)``: the summed per-anchor losses and the number of anchors with a positive.
    """
    n_pos = pos_mask.sum(1)
    valid = n_pos > 0
    # rows without positives are zeroed first so that an all-(-inf) row can never produce NaN
    logits = torch.where(valid.unsqueeze(1), logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos_log_prob = torch.where(pos_mask, log_prob, torch.zeros((), dtype=log_prob.dtype, device=log_prob.device))
    per_anchor = -pos_log_prob.sum(1) / n_pos.clamp_min(1).to(log_prob.dtype)
    return per_anchor.sum(), valid.sum()
