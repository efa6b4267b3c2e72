"""Distributed helpers: rank/world-size fallbacks, gathers (with and without gradient), global counts.

Every function degrades to the single-process identity when no process group is initialised, so
the same loss code runs unchanged on one CPU and on many GPUs.

The *distributed rule* of ``lit_metric`` (see the README): with W ranks of B samples each, a
training step is the same computation as one process with the concatenated W·B batch.  Local
embeddings are anchors, gathered embeddings (with gradient) are references, self pairs are
excluded by *global* index (:func:`global_offset`), and reductions divide by *global* counts and
multiply by W to undo the gradient averaging of DDP.  The last part is switched on by
:func:`global_reduction`, which the modules enter around their loss computation.

Collectives inside :func:`global_reduction` follow a small protocol so that a rank whose loss has
nothing to reduce (e.g. its miner found no triplet and the loss returned early) neither hangs nor
pairs its next collective with another rank's count: every count all-reduce carries an "active"
flag, and leaving the context drains — it keeps answering the other ranks' count all-reduces with a
zero count until every rank has left.  A rank that skipped a reduction therefore contributes a zero
count to it, which is exactly its share of the single-process computation.  Rules for loss
authors: on every rank, reductions are issued in the same order (a rank may stop early, never skip
one in the middle and do a later one), and any other collective (a loss that gathers by itself, the
estimate of a normalising constant) is issued by every rank before a data-dependent early exit.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_no_grad",
    "all_gather_uneven",
    "all_gather_with_grad",
    "global_offset",
    "global_reduction",
    "global_reduction_active",
    "global_sum",
    "is_distributed",
    "rank",
    "reduce_mean",
    "reduce_sum",
    "world_size",
]


@dataclass
class _ReductionState:
    """State of one (outermost) :func:`global_reduction` context on this rank."""

    enabled: bool


_GLOBAL_REDUCTION: contextvars.ContextVar[_ReductionState | None] = contextvars.ContextVar(
    "lit_metric_global_reduction", default=None
)


def is_distributed() -> bool:
    """Whether a ``torch.distributed`` process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sends each rank the gradient of its own slice, summed over ranks.

    Every rank computes a loss from the gathered tensor; the gradient w.r.t. rank r's slice is the
    sum over all ranks of their gradients w.r.t. that slice (an all-reduce), then rank r keeps it.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        ctx.batch_size = tensor.shape[0]
        out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(out, tensor.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = dist.get_rank() * ctx.batch_size
        return grad[start : start + ctx.batch_size]


def _check_equal_sizes(tensor: Tensor) -> None:
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    if any(int(s) != int(size) for s in sizes):
        raise ValueError(
            f"Expected every rank to hold the same batch size for the all-gather, but got sizes "
            f"{[int(s) for s in sizes]}. Use full batches on every rank: the P×K sampler always yields them; "
            "with a plain DataLoader pass `drop_last=True`."
        )


def all_gather_with_grad(tensor: Tensor, check_sizes: bool = False) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0, keeping the autograd graph.

    The backward pass all-reduces the gradient of the gathered tensor and hands each rank the rows
    it contributed, so every rank receives the gradient of *all* ranks' losses w.r.t. its own rows.

    Args:
        tensor: ``(B, ...)`` local tensor; every rank must pass the same ``B``.
        check_sizes: all-gather the batch sizes first and raise a clear error on a mismatch (one
            extra tiny collective; without it unequal sizes fail inside the backend, or hang).

    Returns:
        ``(W·B, ...)``; rank r's rows are ``[r·B, (r+1)·B)``.  Without a process group: ``tensor``.

    Raises:
        ValueError: with ``check_sizes=True``, if the ranks hold different batch sizes (raised on
            every rank, so no rank is left waiting).

    Example:
        >>> import torch
        >>> all_gather_with_grad(torch.ones(2, 3)).shape  # no process group: identity
        torch.Size([2, 3])
    """
    if not is_distributed():
        return tensor
    if check_sizes:
        _check_equal_sizes(tensor)
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` (labels, indices, …) from all ranks along dim 0, without gradient.

    Every rank must pass the same shape (check it first with :func:`all_gather_with_grad`'s
    ``check_sizes`` when that is not guaranteed).
    """
    if not is_distributed():
        return tensor
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


def all_gather_uneven(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0 (rank order), without gradient, when the ranks hold
    *different* numbers of rows (e.g. the tuples each rank's miner found).

    Two collectives: the row counts, then the rows padded to the largest count.  Every rank must call it.
    Without a process group: ``tensor``.

    Example:
        >>> import torch
        >>> all_gather_uneven(torch.arange(3)).tolist()  # no process group: identity
        [0, 1, 2]
    """
    if not is_distributed():
        return tensor
    count = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    out = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(out, padded.contiguous())
    return torch.cat([chunk[:n] for chunk, n in zip(out, sizes)], dim=0)


def global_offset(batch_size: int) -> int:
    """Position of this rank's first row in a gathered ``(W·B, …)`` tensor: ``rank · B``.

    ``torch.arange(B) + global_offset(B)`` is the ``self_index`` that excludes each local anchor's
    own copy from the gathered references.
    """
    return rank() * batch_size


def global_sum(value: Tensor) -> Tensor:
    """Sum of a (detached) tensor over ranks; identity without a process group.

    A plain all-reduce: every rank must call it.  Inside :func:`global_reduction` use
    :func:`reduce_mean` / :func:`reduce_sum`, which tolerate a rank that has nothing to reduce.
    """
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def _protocol_device() -> torch.device:
    """NCCL needs CUDA tensors; every other backend gets the (tiny) protocol tensors on the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _count_all_reduce(count: Tensor) -> Tensor:
    """All-reduce ``[count, active=1]`` (float64: exact counts) under the drain protocol -> global count."""
    device = _protocol_device()  # on NCCL the count stays on the GPU: no host synchronisation here
    one = torch.ones((), dtype=torch.float64, device=device)
    buf = torch.stack([count.detach().reshape(()).to(device=device, dtype=torch.float64), one])
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf[0]


def _drain() -> None:
    """Answer other ranks' count all-reduces with zero counts until every rank has left the context."""
    buf = torch.zeros(2, dtype=torch.float64, device=_protocol_device())
    while True:
        buf.zero_()
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        if float(buf[1]) == 0.0:
            return


@contextlib.contextmanager
def global_reduction(enabled: bool = True) -> Iterator[None]:
    """Within this context, losses normalise by counts summed over all ranks (see module doc).

    The modules enter it around mining and loss computation in ``training_step``; every rank must
    enter and leave it (leaving costs one tiny all-reduce).  Outside it (the default) a loss is a
    plain local computation and issues no collective, so it is safe to call from rank 0 alone
    (callbacks, evaluation scripts).  Nested contexts share the outermost one's protocol;
    ``enabled=False`` makes the inside local again.

    Example:
        >>> import torch
        >>> with global_reduction():  # no process group: plain local means
        ...     reduce_mean(torch.tensor(6.0), 3)
        tensor(2.)
    """
    outer = _GLOBAL_REDUCTION.get()
    if outer is not None and enabled == outer.enabled:
        yield
        return
    state = _ReductionState(enabled=enabled)
    token = _GLOBAL_REDUCTION.set(state)
    drain = enabled and is_distributed() and (outer is None or not outer.enabled)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _GLOBAL_REDUCTION.reset(token)
        if drain and not failed:
            _drain()


def global_reduction_active() -> bool:
    """Whether :func:`global_reduction` is active *and* more than one rank is running."""
    state = _GLOBAL_REDUCTION.get()
    return state is not None and state.enabled and is_distributed()


def reduce_mean(total: Tensor, count: Tensor | int | float) -> Tensor:
    """``total / count`` where, under :func:`global_reduction`, ``count`` is summed over ranks.

    ``total`` is this rank's (differentiable) partial sum.  Under global reduction the result is
    ``total · W / Σ_r count_r``: DDP averages gradients over W ranks, so the averaged gradient is that of
    ``Σ_r total_r / Σ_r count_r`` — the single-process mean — and the mean of the per-rank values (what
    ``self.log(..., sync_dist=True)`` reports) is that value too.  A zero count gives a zero that keeps the
    graph (never NaN).

    Example:
        >>> import torch
        >>> reduce_mean(torch.tensor(6.0), 4)
        tensor(1.5000)
        >>> reduce_mean(torch.zeros(0).sum(), 0)  # an empty batch: zero, not NaN
        tensor(0.)
    """
    if global_reduction_active():
        count_t = torch.as_tensor(count, device=total.device)
        global_count = _count_all_reduce(count_t).to(device=total.device, dtype=total.dtype)
        return total * world_size() / global_count.clamp_min(1)
    count_t = torch.as_tensor(count, dtype=total.dtype, device=total.device)
    return total / count_t.clamp_min(1)


def reduce_sum(total: Tensor) -> Tensor:
    """``total`` (this rank's partial sum), scaled by W under :func:`global_reduction` (see :func:`reduce_mean`)."""
    if global_reduction_active():
        return total * world_size()
    return total
