"""Distributed helpers: rank/world-size fallbacks, gathers (with and without gradient), global counts.

Every function degrades to the single-process identity when no process group is initialised, so
the same loss code runs unchanged on one CPU and on many GPUs.

The *distributed rule* of ``lit_metric`` (see the README): with W ranks of B samples each, a
training step is the same computation as one process with the concatenated W·B batch.  Local
embeddings are anchors, gathered embeddings (with gradient) are references, self pairs are
excluded by *global* index, and reductions divide by *global* counts and multiply by W to undo the
gradient averaging of DDP.  The last part is switched on by :func:`global_reduction`, which the
modules enter around their loss computation.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "all_gather_no_grad",
    "all_gather_with_grad",
    "global_reduction",
    "global_reduction_active",
    "global_sum",
    "is_distributed",
    "rank",
    "reduce_mean",
    "reduce_sum",
    "world_size",
]

_GLOBAL_REDUCTION: contextvars.ContextVar[bool] = contextvars.ContextVar("lit_metric_global_reduction", default=False)


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
            f"{[int(s) for s in sizes]}. Use `drop_last=True` (the P×K sampler always yields full batches)."
        )


def all_gather_with_grad(tensor: Tensor, check_sizes: bool = False) -> Tensor:
    """Concatenate ``tensor`` from all ranks along dim 0, keeping the autograd graph.

    Args:
        tensor: ``(B, ...)`` local tensor; every rank must pass the same ``B``.
        check_sizes: all-gather the batch sizes first and raise a clear error on a mismatch
            (costs one extra tiny collective).

    Returns:
        ``(W·B, ...)``; rank r's rows are ``[r·B, (r+1)·B)``.  Without a process group: ``tensor``.
    """
    if not is_distributed():
        return tensor
    if check_sizes:
        _check_equal_sizes(tensor)
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: Tensor) -> Tensor:
    """Concatenate ``tensor`` (labels, indices, …) from all ranks along dim 0, without gradient."""
    if not is_distributed():
        return tensor
    out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor.contiguous())
    return torch.cat(out, dim=0)


def global_sum(value: Tensor) -> Tensor:
    """Sum of a (detached) tensor over ranks; identity without a process group."""
    if not is_distributed():
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


@contextlib.contextmanager
def global_reduction(enabled: bool = True) -> Iterator[None]:
    """Within this context, losses normalise by counts summed over all ranks (see module doc).

    The modules enter it around mining and loss computation in ``training_step``.  Outside it (the
    default) a loss is a plain local computation and issues no collective, so it is safe to call
    from rank 0 alone (callbacks, evaluation scripts).
    """
    token = _GLOBAL_REDUCTION.set(enabled)
    try:
        yield
    finally:
        _GLOBAL_REDUCTION.reset(token)


def global_reduction_active() -> bool:
    """Whether :func:`global_reduction` is active *and* more than one rank is running."""
    return _GLOBAL_REDUCTION.get() and is_distributed()


def reduce_mean(total: Tensor, count: Tensor | int | float) -> Tensor:
    """``total / count`` where, under :func:`global_reduction`, ``count`` is summed over ranks.

    ``total`` is this rank's (differentiable) partial sum.  Under global reduction the result is
    ``total · W / Σ_r count_r``: DDP averages gradients over W ranks, so the averaged gradient is that of
    ``Σ_r total_r / Σ_r count_r`` — the single-process mean — and the mean of the per-rank values (what
    ``self.log(..., sync_dist=True)`` reports) is that value too.  A zero count gives a zero that keeps the
    graph (never NaN).
    """
    count_t = torch.as_tensor(count, dtype=total.dtype, device=total.device)
    if global_reduction_active():
        count_t = global_sum(count_t)
        total = total * world_size()
    return total / count_t.clamp_min(1)


def reduce_sum(total: Tensor) -> Tensor:
    """``total`` (this rank's partial sum), scaled by W under :func:`global_reduction` (see :func:`reduce_mean`)."""
    if global_reduction_active():
        return total * world_size()
    return total
