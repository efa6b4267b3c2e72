"""Slow, obviously-correct loops for the triplet loss and miners, written from the definitions.

Never imports lit_metric: distances are recomputed here from their formulas.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def dist(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """One pair's measure from its formula. kinds: euclidean, sq_euclidean, euclidean_raw, cosine, dot."""
    if kind in ("euclidean", "sq_euclidean"):
        x, y = x / x.norm(), y / y.norm()
    if kind in ("euclidean", "euclidean_raw"):
        return ((x - y) ** 2).sum().sqrt()
    if kind == "sq_euclidean":
        return ((x - y) ** 2).sum()
    if kind == "cosine":
        return (x @ y) / (x.norm() * y.norm())
    if kind == "dot":
        return x @ y
    raise ValueError(kind)


def is_similarity(kind: str) -> bool:
    return kind in ("cosine", "dot")


def valid_triplets(labels: list[int]) -> list[tuple[int, int, int]]:
    n = len(labels)
    return [
        (a, p, q)
        for a in range(n)
        for p in range(n)
        for q in range(n)
        if p != a and labels[p] == labels[a] and labels[q] != labels[a]
    ]


def triplet_term(emb: Tensor, a: int, p: int, n: int, margin: float, kind: str, swap: bool, smooth: bool) -> Tensor:
    d_ap, d_an = dist(emb[a], emb[p], kind), dist(emb[a], emb[n], kind)
    if swap:
        d_pn = dist(emb[p], emb[n], kind)
        d_an = torch.maximum(d_an, d_pn) if is_similarity(kind) else torch.minimum(d_an, d_pn)
    x = (d_an - d_ap if is_similarity(kind) else d_ap - d_an) + margin
    return torch.log1p(torch.exp(x)) if smooth else torch.clamp(x, min=0)


def triplet_loss(
    emb: Tensor,
    labels: list[int],
    margin: float,
    kind: str,
    reduction: str,
    triplets: list[tuple[int, int, int]] | None = None,
    swap: bool = False,
    smooth: bool = False,
) -> Tensor:
    triplets = valid_triplets(labels) if triplets is None else triplets
    terms = [triplet_term(emb, a, p, n, margin, kind, swap, smooth) for a, p, n in triplets]
    if not terms:
        return emb.sum() * 0
    t = torch.stack(terms)
    if reduction == "sum":
        return t.sum()
    if reduction == "mean":
        return t.mean()
    nz = int((t > 0).sum())
    return t.sum() / max(nz, 1)


def mine_triplets(emb: Tensor, labels: list[int], strategy: str, margin: float, kind: str) -> set[tuple[int, int, int]]:
    out = set()
    for a, p, n in valid_triplets(labels):
        d_ap, d_an = float(dist(emb[a], emb[p], kind)), float(dist(emb[a], emb[n], kind))
        if is_similarity(kind):
            d_ap, d_an = -d_ap, -d_an
        keep = {
            "all": True,
            "hard": d_an <= d_ap,
            "semihard": d_ap < d_an <= d_ap + margin,
            "easy": d_an > d_ap + margin,
        }[strategy]
        if keep:
            out.add((a, p, n))
    return out


def batch_hard(emb: Tensor, labels: list[int], kind: str) -> set[tuple[int, int, int]]:
    out = set()
    n = len(labels)
    for a in range(n):
        best_p, best_n = None, None
        dp, dn = -math.inf, math.inf
        for j in range(n):
            d = float(dist(emb[a], emb[j], kind))
            d = -d if is_similarity(kind) else d
            if j != a and labels[j] == labels[a] and d > dp:
                dp, best_p = d, j
            if labels[j] != labels[a] and d < dn:
                dn, best_n = d, j
        if best_p is not None and best_n is not None:
            out.add((a, best_p, best_n))
    return out
