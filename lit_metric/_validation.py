"""Input checks shared by losses, miners and metrics (private).

Messages follow one pattern: "Expected argument `x` to be …, but got …", plus the fix when known.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_embeddings", "check_int", "check_labels", "check_positive", "check_choice"]


def check_embeddings(embeddings: object, name: str = "embeddings") -> Tensor:
    if not isinstance(embeddings, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(embeddings).__name__}.")
    if embeddings.ndim != 2:
        raise ValueError(
            f"Expected argument `{name}` to be 2-D (batch, dim), but got shape {tuple(embeddings.shape)}."
            + (" Flatten the backbone output or add an EmbeddingHead." if embeddings.ndim > 2 else "")
        )
    if not embeddings.is_floating_point():
        raise TypeError(f"Expected argument `{name}` to be a floating-point tensor, but got dtype {embeddings.dtype}.")
    return embeddings


def check_labels(
    labels: object,
    n: int,
    name: str = "labels",
    *,
    continuous: bool = False,
) -> Tensor:
    """Class-id labels: 1-D integer tensor of length ``n``; ``continuous=True`` allows float (B,) or (B, L)."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"Expected argument `{name}` to be a torch.Tensor, but got {type(labels).__name__}.")
    if continuous:
        if labels.ndim not in (1, 2) or labels.shape[0] != n:
            raise ValueError(
                f"Expected argument `{name}` to have shape ({n},) or ({n}, L), but got {tuple(labels.shape)}."
            )
        return labels
    if labels.ndim != 1:
        raise ValueError(f"Expected argument `{name}` to be 1-D ({n},), but got shape {tuple(labels.shape)}.")
    if labels.shape[0] != n:
        raise ValueError(
            f"Expected argument `{name}` to have one entry per embedding ({n}), but got {labels.shape[0]}."
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(
            f"Expected argument `{name}` to hold integer class ids, but got dtype {labels.dtype}. "
            "Convert with `labels.long()` if the values are class ids."
        )
    return labels


def check_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"Expected argument `{name}` to be an int, but got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"Expected argument `{name}` to be >= {minimum}, but got {value}.")
    return value


def check_positive(value: float, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Expected argument `{name}` to be a number, but got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"Expected argument `{name}` to be {'>= 0' if allow_zero else '> 0'}, but got {value}.")
    return float(value)


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"Expected argument `{name}` to be one of {list(choices)}, but got {value!r}.")
    return str(value)
