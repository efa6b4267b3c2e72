"""Persistent memory banks: a per-instance bank (Wu et al. 2018) and a FIFO queue (MoCo).

Both keep their contents in registered buffers, so they are saved in checkpoints, restored by
``load_state_dict`` and moved by ``.to(device)`` with the module that owns them.

DDP: the update methods take ``(indices, embeddings)`` **already gathered from every rank**
(:func:`lit_metric.distributed.all_gather_no_grad`, rank-major order, as the losses and the
:class:`~lit_metric.SelfSupervisedModule` do), so every rank applies the identical update and holds
the identical bank after every step — the bank one process would hold with the concatenated
batch.  Initial contents come from a seeded generator (identical on every rank too).  DDP's own
buffer broadcast (``broadcast_buffers=True``, Lightning's default) copies rank 0's buffers to the
other ranks before each forward: with identical banks that copy changes nothing, it only costs
bandwidth (a 60k × 128 float bank is 31 MB per step), so for large banks pass
``strategy=DDPStrategy(broadcast_buffers=False)``; correctness does not depend on it either way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_metric._validation import check_embeddings, check_int

__all__ = ["MemoryBank", "MemoryQueue", "check_indices", "first_occurrence"]


def first_occurrence(indices: Tensor) -> Tensor:
    """Positions of the first occurrence of each distinct value of ``indices`` (in order of position).

    Used to make bank updates deterministic when an index occurs twice in one gathered batch (the
    duplicates a padded ``DistributedSampler`` adds): the first occurrence wins, on every rank.
    """
    uniq, inverse = torch.unique(indices, return_inverse=True)
    first = torch.full((uniq.numel(),), indices.numel(), dtype=torch.long, device=indices.device)
    first.scatter_reduce_(0, inverse, torch.arange(indices.numel(), device=indices.device), reduce="amin")
    return first.sort().values


def check_indices(indices: object, n: int | None, num_samples: int, name: str = "indices") -> Tensor:
    """Validate ``(n,)`` integer dataset indices in ``[0, num_samples)`` (``n=None``: any length)."""
    if not isinstance(indices, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(indices).__name__}.")
    if indices.ndim != 1 or (n is not None and indices.shape[0] != n):
        expected = f"({n},)" if n is not None else "(N,)"
        raise ValueError(f"Expected argument `{name}` to have shape {expected}, but got {tuple(indices.shape)}.")
    if indices.is_floating_point() or indices.dtype == torch.bool:
        raise TypeError(f"Expected argument `{name}` to hold integer dataset indices, but got dtype {indices.dtype}.")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_samples):
        raise ValueError(
            f"Expected argument `{name}` to hold dataset indices in [0, {num_samples}), but got values in "
            f"[{int(indices.min())}, {int(indices.max())}]. Set `num_samples` to the size of the training set."
        )
    return indices.long()


class MemoryBank(nn.Module):
    r"""One L2-normalised embedding per training instance, updated with momentum.

    ``bank`` is a ``(num_samples, embedding_dim)`` buffer, initialised with random unit vectors
    (seeded: identical on every rank).  :meth:`update` applies
    :math:`v_i \leftarrow \mathrm{normalise}(m\,v_i + (1 - m)\,f_i)` (Wu et al. 2018), with ``f_i``
    L2-normalised first, to the rows of the given dataset indices.

    References:
        - Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018.

    Args:
        num_samples: number of training instances (rows of the bank).
        embedding_dim: embedding size D.
        momentum: ``m`` in ``[0, 1)``; ``0`` replaces an entry by the new (normalised) embedding.
        seed: seed of the random initial contents.

    Raises:
        ValueError: if ``num_samples``/``embedding_dim`` < 1 or ``momentum`` is outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> bank = MemoryBank(num_samples=4, embedding_dim=2, momentum=0.0)
        >>> bank.update(torch.tensor([2]), torch.tensor([[3.0, 4.0]]))
        >>> bank.bank[2]
        tensor([0.6000, 0.8000])
    """

    bank: Tensor

    def __init__(self, num_samples: int, embedding_dim: int = 128, momentum: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.num_samples = check_int(num_samples, "num_samples", 1)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", 1)
        if isinstance(momentum, bool) or not isinstance(momentum, int | float) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"Expected argument `momentum` to be a number in [0, 1), but got {momentum!r}.")
        self.momentum = float(momentum)
        generator = torch.Generator().manual_seed(int(seed))
        init = torch.randn(self.num_samples, self.embedding_dim, generator=generator)
        self.register_buffer("bank", torch.nn.functional.normalize(init, dim=1))

    def forward(self, indices: Tensor) -> Tensor:
        """The stored ``(len(indices), D)`` entries (no gradient: the bank is a buffer)."""
        return self.bank[check_indices(indices, None, self.num_samples).to(self.bank.device)]

    @torch.no_grad()
    def update(self, indices: Tensor, embeddings: Tensor) -> None:
        """Momentum update of the rows ``indices`` with ``embeddings`` (gathered from all ranks under DDP).

        Args:
            indices: ``(N,)`` dataset indices; an index occurring twice is updated once, from its first occurrence.
            embeddings: ``(N, D)`` new embeddings (normalised here; detached).

        Raises:
            ValueError: on mismatched shapes or indices outside ``[0, num_samples)``.
            TypeError: on non-integer indices or non-float embeddings.
        """
        check_embeddings(embeddings)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Expected argument `embeddings` to have dimension {self.embedding_dim}, but got {embeddings.shape[1]}."
            )
        idx = check_indices(indices, embeddings.shape[0], self.num_samples).to(self.bank.device)
        emb = torch.nn.functional.normalize(embeddings.detach().to(device=self.bank.device, dtype=self.bank.dtype), dim=1)
        keep = first_occurrence(idx)
        idx, emb = idx[keep], emb[keep]
        new = self.momentum * self.bank[idx] + (1.0 - self.momentum) * emb
        self.bank.index_copy_(0, idx, torch.nn.functional.normalize(new, dim=1))

    def extra_repr(self) -> str:
        return f"num_samples={self.num_samples}, embedding_dim={self.embedding_dim}, momentum={self.momentum}"


class MemoryQueue(nn.Module):
    """A FIFO queue of the last ``size`` embeddings: MoCo's extra negatives.

    Pass :meth:`negatives` as ``negatives=`` to :class:`~lit_metric.losses.InfoNCELoss`, then
    :meth:`enqueue` the (gathered, detached) keys of the step.  Buffers ``queue`` ``(size, D)``,
    ``ptr`` (next write position) and ``filled`` (valid rows) live in checkpoints.

    References:
        - He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020.

    Args:
        size: queue length K.
        embedding_dim: embedding size D.

    Raises:
        ValueError: if ``size`` or ``embedding_dim`` < 1.

    Example:
        >>> import torch
        >>> q = MemoryQueue(size=3, embedding_dim=2)
        >>> q.enqueue(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        >>> q.negatives()
        tensor([[1., 0.],
                [0., 1.]])
    """

    queue: Tensor
    ptr: Tensor
    filled: Tensor

    def __init__(self, size: int, embedding_dim: int = 128) -> None:
        super().__init__()
        self.size = check_int(size, "size", 1)
        self.embedding_dim = check_int(embedding_dim, "embedding_dim", 1)
        self.register_buffer("queue", torch.zeros(self.size, self.embedding_dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def negatives(self) -> Tensor:
        """The ``(filled, D)`` stored embeddings, in storage order (a ring buffer: not sorted by age)."""
        return self.queue[: int(self.filled)]

    @torch.no_grad()
    def enqueue(self, embeddings: Tensor) -> None:
        """Append ``(N, D)`` embeddings (L2-normalised, detached), overwriting the oldest entries.

        Raises:
            ValueError: on a wrong embedding dimension.
        """
        check_embeddings(embeddings)
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Expected argument `embeddings` to have dimension {self.embedding_dim}, but got {embeddings.shape[1]}."
            )
        emb = torch.nn.functional.normalize(embeddings.detach().to(self.queue), dim=1)[-self.size :]
        n = emb.shape[0]
        pos = (int(self.ptr) + torch.arange(n, device=self.queue.device)) % self.size
        self.queue.index_copy_(0, pos, emb)
        self.ptr.fill_((int(self.ptr) + n) % self.size)
        self.filled.fill_(min(self.size, int(self.filled) + n))

    def extra_repr(self) -> str:
        return f"size={self.size}, embedding_dim={self.embedding_dim}"
