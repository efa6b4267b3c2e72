"""InfoNCE: SimCLR's NT-Xent, SupCon with labels, and extra (queue) negatives (MoCo-style)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn

from lit_metric import distributed
from lit_metric._validation import check_embeddings, check_labels, check_positive
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.info_nce import contrastive_logits, info_nce_sum, supcon_sum

__all__ = ["InfoNCELoss"]


class InfoNCELoss(nn.Module):
    r"""Contrastive InfoNCE over two views: NT-Xent (SimCLR), SupCon with ``labels``, MoCo-style ``negatives``.

    References:
        - van den Oord et al., "Representation Learning with Contrastive Predictive Coding", 2018 (InfoNCE).
        - Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020
          (SimCLR, NT-Xent).
        - Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (SupCon, :math:`\mathcal{L}^{sup}_{out}`).
        - He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020 (a queue of
          extra negatives).

    Logits are ``s(x, y) / τ`` with ``s`` the ``distance``'s similarity (a distance enters as ``−d``);
    the default cosine similarity L2-normalises the inputs.  With ``symmetric=True`` (SimCLR) the
    ``2B`` views ``[z_a; z_b]`` are stacked and every view is an anchor whose candidates are the
    other ``2B − 1`` views plus the ``K`` extra negatives: one ``(2B) × (2B + K)`` logits matrix,
    each anchor's own column removed.  The positive of view ``a_i`` is ``b_i`` and vice versa::

        loss = 1/(2B) Σ_{v ∈ 2B views} −log( exp(s(v, v⁺)/τ) / Σ_{u ≠ v} exp(s(v, u)/τ) )

    i.e. the average of the ``a``-anchored and the ``b``-anchored directions (lightly's
    ``NTXentLoss``, PML's ``SelfSupervisedLoss(NTXentLoss)``).  With ``symmetric=False`` only one
    direction ``a → b`` is computed: anchors ``z_a``, candidates ``z_b`` plus ``negatives`` (a
    ``B × (B + K)`` matrix; CPC/MoCo-v3-style InfoNCE, PML's ``SelfSupervisedLoss(..., symmetric=False)``).

    With ``labels`` ``(B,)`` (one per instance, shared by its two views) it is SupCon: every other
    view with the same label is a positive, the loss of an anchor is the mean of ``−log p`` over its
    positives, and anchors without a positive are left out of the mean.  ``z_b=None`` with labels is
    single-view SupCon over ``z_a``.  Extra ``negatives`` are never positives.

    Distributed (the rule of :mod:`lit_metric.distributed`): pass the gathered views as references,
    ``ref_a``/``ref_b`` ``(N, D)`` from :func:`~lit_metric.distributed.all_gather_with_grad` (and
    ``ref_labels``), with ``self_index`` ``(B,)`` the position of each local instance among them
    (``rank·B + arange(B)``); the local views stay the anchors and the mean divides by the global
    anchor count under :func:`~lit_metric.distributed.global_reduction` — so W ranks × B is exactly
    1 rank × W·B.  :class:`~lit_metric.SelfSupervisedModule` does this; alternatively
    ``gather_distributed=True`` makes the loss gather and reduce globally by itself (every rank must
    then call it, as in a training step).

    Args:
        temperature: softmax temperature ``τ > 0``.
        symmetric: ``True``: all ``2B`` views are anchors (the mean of both directions, SimCLR);
            ``False``: one direction, anchors ``z_a`` against candidates ``z_b`` (+ ``negatives``).
        distance: the similarity; default :class:`~lit_metric.distances.CosineSimilarity`.
        gather_distributed: under DDP, gather both views from all ranks (with gradient) when no
            ``ref_a``/``ref_b`` are given, and normalise by the global anchor count.

    Raises:
        ValueError: if ``temperature`` is not positive.

    Example:
        >>> import torch
        >>> z = torch.eye(4)  # four orthogonal instances, two identical views each
        >>> InfoNCELoss(temperature=1.0)(z, z).round(decimals=4)  # log(1 + 6/e)
        tensor(1.1654)
    """

    def __init__(
        self,
        temperature: float = 0.1,
        symmetric: bool = True,
        distance: BaseDistance | None = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.symmetric = bool(symmetric)
        self.distance = distance if distance is not None else CosineSimilarity()
        self.gather_distributed = bool(gather_distributed)

    def forward(
        self,
        z_a: Tensor,
        z_b: Tensor | None = None,
        labels: Tensor | None = None,
        negatives: Tensor | None = None,
        *,
        ref_a: Tensor | None = None,
        ref_b: Tensor | None = None,
        ref_labels: Tensor | None = None,
        self_index: Tensor | None = None,
    ) -> Tensor:
        """The scalar loss.

        Args:
            z_a: ``(B, D)`` first views (anchors).
            z_b: ``(B, D)`` second views; row ``i`` is the same instance as ``z_a[i]``.  ``None``:
                single-view SupCon (needs ``labels``).
            labels: ``(B,)`` integer class ids per instance (SupCon); ``None``: instance discrimination.
            negatives: ``(K, D)`` extra negatives (e.g. a :class:`~lit_metric.memory_bank.MemoryQueue`).
            ref_a: ``(N, D)`` first views of all instances (gathered across ranks); needs ``self_index``.
            ref_b: ``(N, D)`` second views of all instances (required with ``ref_a`` when ``z_b`` is given).
            ref_labels: ``(N,)`` labels of the references (required with ``ref_a`` when ``labels`` is given).
            self_index: ``(B,)`` row of each local instance in ``ref_a``/``ref_b``.

        Raises:
            ValueError: on mismatched shapes, ``z_b=None`` without labels, references without
                ``self_index`` (or the reverse), or ``self_index`` out of range.
            TypeError: on non-tensor or non-float embeddings, or non-integer labels.
        """
        check_embeddings(z_a, "z_a")
        b, dim = z_a.shape
        if z_b is not None:
            self._check_same(z_b, "z_b", (b, dim))
        elif labels is None:
            raise ValueError(
                "Expected argument `z_b` (the second view) or `labels`, but got neither: instance "
                "discrimination needs two views; single-view InfoNCE is SupCon and needs labels."
            )
        if labels is not None:
            check_labels(labels, b)
        if negatives is not None:
            check_embeddings(negatives, "negatives")
            if negatives.shape[1] != dim:
                raise ValueError(
                    f"Expected argument `negatives` to have the embedding dimension {dim}, but got {negatives.shape[1]}."
                )
        context: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if ref_a is None and ref_b is None:
            if ref_labels is not None or self_index is not None:
                raise ValueError("Got `ref_labels`/`self_index` without `ref_a`: pass the references too.")
            if self.gather_distributed and distributed.is_distributed():
                ref_a, ref_b, ref_labels, self_index = self._gather(z_a, z_b, labels)
                context = distributed.global_reduction(True)
            else:
                ref_a, ref_b, ref_labels = z_a, z_b, labels
                self_index = torch.arange(b, device=z_a.device)
        else:
            ref_a, ref_b, ref_labels, self_index = self._check_refs(z_a, z_b, labels, ref_a, ref_b, ref_labels, self_index)
        with context:
            return self._loss(z_a, z_b, labels, negatives, ref_a, ref_b, ref_labels, self_index)

    # --- internals -----------------------------------------------------------------------------
    @staticmethod
    def _check_same(t: object, name: str, shape: tuple[int, int]) -> None:
        got = tuple(check_embeddings(t, name).shape)
        if got != shape:
            raise ValueError(f"Expected argument `{name}` to have shape {shape}, but got {got}.")

    def _check_refs(
        self,
        z_a: Tensor,
        z_b: Tensor | None,
        labels: Tensor | None,
        ref_a: Tensor | None,
        ref_b: Tensor | None,
        ref_labels: Tensor | None,
        self_index: Tensor | None,
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
        if ref_a is None:
            raise ValueError("Expected argument `ref_a` together with `ref_b`, but got None.")
        check_embeddings(ref_a, "ref_a")
        n = ref_a.shape[0]
        if ref_a.shape[1] != z_a.shape[1]:
            raise ValueError(
                f"Expected `ref_a` to have the embedding dimension {z_a.shape[1]}, but got {ref_a.shape[1]}."
            )
        if z_b is not None:
            if ref_b is None:
                raise ValueError("Expected argument `ref_b` (gathered second views) together with `ref_a`, but got None.")
            self._check_same(ref_b, "ref_b", (n, z_a.shape[1]))
        elif ref_b is not None:
            raise ValueError("Got `ref_b` without `z_b`: single-view SupCon takes `ref_a` only.")
        if labels is not None:
            if ref_labels is None:
                raise ValueError("Expected argument `ref_labels` together with `ref_a` and `labels`, but got None.")
            check_labels(ref_labels, n, "ref_labels")
        if self_index is None:
            raise ValueError(
                "Expected argument `self_index` (position of each local instance in `ref_a`) together with "
                "`ref_a`, but got None."
            )
        if self_index.shape != (z_a.shape[0],) or self_index.is_floating_point():
            raise ValueError(
                f"Expected `self_index` to be an integer tensor of shape ({z_a.shape[0]},), but got "
                f"{self_index.dtype} {tuple(self_index.shape)}."
            )
        if self_index.numel() and (int(self_index.min()) < 0 or int(self_index.max()) >= n):
            raise ValueError(
                f"Expected `self_index` values in [0, {n}) (rows of `ref_a`), but got "
                f"[{int(self_index.min())}, {int(self_index.max())}]."
            )
        return ref_a, ref_b, ref_labels, self_index.long()

    @staticmethod
    def _gather(
        z_a: Tensor, z_b: Tensor | None, labels: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor]:
        ref_a = distributed.all_gather_with_grad(z_a, check_sizes=True)
        ref_b = distributed.all_gather_with_grad(z_b) if z_b is not None else None
        ref_labels = distributed.all_gather_no_grad(labels) if labels is not None else None
        b = z_a.shape[0]
        self_index = torch.arange(b, device=z_a.device) + distributed.rank() * b
        return ref_a, ref_b, ref_labels, self_index

    def _loss(
        self,
        z_a: Tensor,
        z_b: Tensor | None,
        labels: Tensor | None,
        negatives: Tensor | None,
        ref_a: Tensor,
        ref_b: Tensor | None,
        ref_labels: Tensor | None,
        self_index: Tensor,
    ) -> Tensor:
        n = ref_a.shape[0]
        anchor_labels = cand_labels = None
        if z_b is None or ref_b is None:  # single-view SupCon
            anchors, cands, self_cols, pos_cols = z_a, [ref_a], self_index, None
            anchor_labels, cand_labels = labels, ref_labels
        elif self.symmetric:  # NT-Xent / SupCon over the 2B views
            anchors = torch.cat([z_a, z_b])
            # one process: the references are the anchors themselves (no second copy)
            cands = [anchors] if (ref_a is z_a and ref_b is z_b) else [torch.cat([ref_a, ref_b])]
            self_cols = torch.cat([self_index, self_index + n])
            pos_cols = torch.cat([self_index + n, self_index])
            if labels is not None and ref_labels is not None:
                anchor_labels, cand_labels = labels.repeat(2), ref_labels.repeat(2)
        else:  # one direction a -> b
            anchors, cands, self_cols, pos_cols = z_a, [ref_b], None, self_index
            anchor_labels, cand_labels = labels, ref_labels
        if negatives is not None:
            cands.append(negatives.to(anchors.dtype))
        refs = cands[0] if len(cands) == 1 else torch.cat(cands)
        similarity = -self.distance.to_dissimilarity(self.distance.pairwise(anchors, refs))
        logits = contrastive_logits(similarity, self.temperature, self_cols)
        if anchor_labels is None or cand_labels is None:
            assert pos_cols is not None
            total, count = info_nce_sum(logits, pos_cols)
            loss = distributed.reduce_mean(total, count)
        else:
            pos_mask = anchor_labels.unsqueeze(1) == cand_labels.unsqueeze(0)
            if self_cols is not None:
                pos_mask[torch.arange(pos_mask.shape[0], device=pos_mask.device), self_cols] = False
            if negatives is not None:
                pos_mask = torch.cat([pos_mask, pos_mask.new_zeros(pos_mask.shape[0], negatives.shape[0])], dim=1)
            total, count_t = supcon_sum(logits, pos_mask)
            loss = distributed.reduce_mean(total, count_t)
        return loss.to(z_a.dtype)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, symmetric={self.symmetric}, "
            f"gather_distributed={self.gather_distributed}"
        )
