"""The miner contract: ``miner(embeddings, labels, ref_emb=None, ref_labels=None) -> indices_tuple``.

Miners run under ``torch.no_grad()``, validate their inputs like the losses do, and return long
tensors: ``(a, p, n)`` triplets or ``(a1, p, a2, n)`` pairs, with ``a`` indexing ``embeddings`` and
``p``/``n`` indexing ``ref_emb`` (default: ``embeddings``, each anchor's own copy excluded).
Keyword-only ``self_index`` (B,) excludes self pairs when ``ref_emb`` holds the anchors (DDP).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from lit_metric._validation import check_embeddings, check_labels
from lit_metric.distances import BaseDistance, EuclideanDistance
from lit_metric.functional.tuples import pair_masks

__all__ = ["Miner", "MinerInputs"]


class MinerInputs(NamedTuple):
    embeddings: Tensor
    labels: Tensor
    ref_emb: Tensor
    ref_labels: Tensor
    self_index: Tensor | None

    def masks(self) -> tuple[Tensor, Tensor]:
        return pair_masks(self.labels, self.ref_labels, self.self_index)


class Miner(nn.Module):
    """Base class of miners; subclasses implement :meth:`mine` on validated :class:`MinerInputs`."""

    def __init__(self, distance: BaseDistance | None = None) -> None:
        super().__init__()
        self.distance = distance if distance is not None else EuclideanDistance()

    @torch.no_grad()
    def forward(
        self,
        embeddings: Tensor,
        labels: Tensor,
        ref_emb: Tensor | None = None,
        ref_labels: Tensor | None = None,
        *,
        self_index: Tensor | None = None,
    ) -> tuple[Tensor, ...]:
        """Mine index tuples.

        Args:
            embeddings: ``(B, D)`` anchors.
            labels: ``(B,)`` integer class ids.
            ref_emb: ``(N, D)`` references (default ``embeddings``).
            ref_labels: ``(N,)`` reference class ids (required with ``ref_emb``).
            self_index: ``(B,)`` position of each anchor in ``ref_emb``.

        Raises:
            ValueError: on wrong shapes or missing ``ref_labels``.
            TypeError: on float labels.
        """
        check_embeddings(embeddings)
        check_labels(labels, embeddings.shape[0])
        if ref_emb is None:
            if ref_labels is not None:
                raise ValueError("Got `ref_labels` without `ref_emb`: pass both or neither.")
            ref_emb, ref_labels = embeddings, labels
            if self_index is None:
                self_index = torch.arange(embeddings.shape[0], device=embeddings.device)
        else:
            check_embeddings(ref_emb, "ref_emb")
            if ref_labels is None:
                raise ValueError("Expected argument `ref_labels` together with `ref_emb`, but got None.")
            check_labels(ref_labels, ref_emb.shape[0], "ref_labels")
        embeddings, ref_emb = embeddings.detach(), ref_emb.detach()
        out = self.mine(MinerInputs(embeddings, labels, ref_emb, ref_labels, self_index))
        return tuple(t.long() for t in out)

    def mine(self, inputs: MinerInputs) -> tuple[Tensor, ...]:
        raise NotImplementedError
