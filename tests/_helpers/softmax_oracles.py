"""Slow, obviously-correct loops for the classification-style losses, written from the papers' formulas.

Never imports lit_metric.  One sample and one class at a time; cosines, angles and cross-entropies are
recomputed from their definitions in float64 (torch scalars, so gradients can flow through them too).

* SphereFace (Liu et al. 2017): logit_c = ‖x‖ cos θ_c (or s cos θ_c), target ψ(θ) = (−1)^k cos(mθ) − 2k,
  k = ⌊mθ/π⌋; with λ: (λ cos θ + ψ(θ)) / (1 + λ).
* CosFace (Wang et al. 2018): target s (cos θ − m).
* ArcFace (Deng et al. 2019): target s cos(θ + m) if θ + m ≤ π else s (cos θ − m sin m);
  easy margin: s cos(θ + m) if cos θ > 0 else s cos θ.
* Combined (Deng et al. 2019, §3.3): cos(m1 θ + m2) − m3 with the same continuations.
* Center loss (Wen et al. 2016): ½ ‖x − c_y‖².
* Softmax: cross-entropy of W x + b.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def cosine(x: Tensor, w: Tensor) -> Tensor:
    return (x @ w) / (x.norm() * w.norm())


def cross_entropy(logits: list[Tensor], target: int) -> Tensor:
    """−log softmax(logits)[target], with the max subtracted for stability."""
    stacked = torch.stack(logits)
    top = stacked.max().detach()
    return -(stacked[target] - top) + torch.log(torch.exp(stacked - top).sum())


def arcface_target(cos: Tensor, m: float, easy_margin: bool = False) -> Tensor:
    theta = torch.acos(cos)
    if easy_margin:
        return torch.cos(theta + m) if cos > 0 else cos
    if theta + m <= math.pi:
        return torch.cos(theta + m)
    return cos - m * math.sin(m)


def cosface_target(cos: Tensor, m: float) -> Tensor:
    return cos - m


def sphereface_target(cos: Tensor, m: float, m2: float = 0.0) -> Tensor:
    theta = torch.acos(cos)
    u = m * theta + m2
    k = math.floor(float(u.detach()) / math.pi)
    return (-1) ** k * torch.cos(u) - 2 * k


def combined_target(cos: Tensor, m1: float, m2: float, m3: float) -> Tensor:
    if m1 == 1.0:
        return arcface_target(cos, m2) - m3
    return sphereface_target(cos, m1, m2) - m3


def margin_softmax_loss(
    emb: Tensor,
    labels: list[int],
    weight: Tensor,
    target_fn,
    scale: float | None,
    reduction: str = "mean",
    samples: list[int] | None = None,
) -> Tensor:
    """Mean (or sum) over samples of the cross-entropy with the target logit replaced by target_fn(cos θ_y).

    ``weight`` is (C, D); ``scale=None`` means the feature norm ‖x‖ (SphereFace).
    """
    terms = []
    for i in samples if samples is not None else range(emb.shape[0]):
        x, y = emb[i], labels[i]
        s = x.norm() if scale is None else scale
        logits = []
        for c in range(weight.shape[0]):
            cos = cosine(x, weight[c])
            logits.append(s * (target_fn(cos) if c == y else cos))
        terms.append(cross_entropy(logits, y))
    total = torch.stack(terms).sum()
    return total if reduction == "sum" else total / len(terms)


def center_loss(emb: Tensor, labels: list[int], centers: Tensor, reduction: str = "mean") -> Tensor:
    terms = [0.5 * ((emb[i] - centers[labels[i]]) ** 2).sum() for i in range(emb.shape[0])]
    total = torch.stack(terms).sum()
    return total if reduction == "sum" else total / len(terms)


def softmax_loss(emb: Tensor, labels: list[int], weight: Tensor, bias: Tensor | None) -> Tensor:
    terms = []
    for i in range(emb.shape[0]):
        logits = [emb[i] @ weight[c] + (bias[c] if bias is not None else 0.0) for c in range(weight.shape[0])]
        terms.append(cross_entropy(logits, labels[i]))
    return torch.stack(terms).mean()
