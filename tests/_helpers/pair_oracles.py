"""Slow, obviously-correct loops for the pair, tuple and structured losses, written from the papers.

Never imports lit_metric: every distance is recomputed here from its formula, every sum is a
Python loop over the index set the paper writes.  Built from scalar torch ops so that autograd
gives the reference gradients too (keep the batches tiny).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# --- measures ---------------------------------------------------------------------------------


def unit(x: Tensor) -> Tensor:
    return x / x.norm()


def dist(x: Tensor, y: Tensor, kind: str) -> Tensor:
    """One pair's measure. kinds: euclidean (of unit vectors), sq_euclidean (of unit vectors),
    euclidean_raw, sq_euclidean_raw, cosine, dot."""
    if kind in ("euclidean", "sq_euclidean"):
        x, y = unit(x), unit(y)
    if kind in ("euclidean", "euclidean_raw"):
        return ((x - y) ** 2).sum().sqrt()
    if kind in ("sq_euclidean", "sq_euclidean_raw"):
        return ((x - y) ** 2).sum()
    if kind == "cosine":
        return (x @ y) / (x.norm() * y.norm())
    if kind == "dot":
        return x @ y
    raise ValueError(kind)


def is_similarity(kind: str) -> bool:
    return kind in ("cosine", "dot")


def _reduce(terms: list[Tensor], reduction: str, zero: Tensor) -> Tensor:
    if not terms:
        return zero
    t = torch.stack(terms)
    if reduction == "sum":
        return t.sum()
    if reduction == "mean":
        return t.mean()
    nonzero = int((t > 0).sum())
    return t.sum() / max(nonzero, 1)


def ordered_pairs(labels: list[int], positive: bool) -> list[tuple[int, int]]:
    n = len(labels)
    return [
        (i, j)
        for i in range(n)
        for j in range(n)
        if i != j and (labels[i] == labels[j]) == positive
    ]


# --- Hadsell et al. 2006 ------------------------------------------------------------------------


def contrastive_loss(
    emb: Tensor,
    labels: list[int],
    pos_margin: float,
    neg_margin: float,
    kind: str,
    squared: bool,
    reduction: str,
    pos_pairs: list[tuple[int, int]] | None = None,
    neg_pairs: list[tuple[int, int]] | None = None,
) -> Tensor:
    """Positive term [d − m₊]₊, negative term [m₋ − d]₊ (flipped for similarities); ½(·)² if squared.
    Positive and negative terms reduced separately and added."""
    pos_pairs = ordered_pairs(labels, True) if pos_pairs is None else pos_pairs
    neg_pairs = ordered_pairs(labels, False) if neg_pairs is None else neg_pairs
    sim = is_similarity(kind)

    def hinge(x: Tensor) -> Tensor:
        x = torch.clamp(x, min=0)
        return 0.5 * x * x if squared else x

    pos = []
    for i, j in pos_pairs:
        d = dist(emb[i], emb[j], kind)
        pos.append(hinge(pos_margin - d if sim else d - pos_margin))
    neg = []
    for i, j in neg_pairs:
        d = dist(emb[i], emb[j], kind)
        neg.append(hinge(d - neg_margin if sim else neg_margin - d))
    zero = emb.sum() * 0
    return _reduce(pos, reduction, zero) + _reduce(neg, reduction, zero)


# --- Song et al. 2016 ---------------------------------------------------------------------------


def lifted_structure_loss(
    emb: Tensor, labels: list[int], neg_margin: float, pos_margin: float, smooth: bool, kind: str
) -> Tensor:
    """L = 1/(2|P|) Σ_{(i,j)∈P} [J_ij]₊², J_ij = log(Σ_{(i,k)∈N} e^{α−D_ik} + Σ_{(j,l)∈N} e^{α−D_jl}) + D_ij − m₊
    (eq. 4); smooth=False: J_ij = max(max_k α − D_ik, max_l α − D_jl) + D_ij − m₊ (eq. 3).  P = ordered
    positive pairs; a similarity s stands for −D (α − D → s − α)."""
    n = len(labels)
    sim = is_similarity(kind)

    def slack(i: int, k: int) -> Tensor:
        d = dist(emb[i], emb[k], kind)
        return d - neg_margin if sim else neg_margin - d

    terms = []
    for i, j in ordered_pairs(labels, True):
        negs = [slack(i, k) for k in range(n) if labels[k] != labels[i]]
        negs += [slack(j, ll) for ll in range(n) if labels[ll] != labels[j]]
        if not negs:
            continue
        if smooth:
            neg_part = torch.log(sum(torch.exp(s) for s in negs))
        else:
            neg_part = torch.stack(negs).max()
        d_ij = dist(emb[i], emb[j], kind)
        j_ij = neg_part + ((pos_margin - d_ij) if sim else (d_ij - pos_margin))
        terms.append(torch.clamp(j_ij, min=0) ** 2)
    if not terms:
        return emb.sum() * 0
    return torch.stack(terms).sum() / (2 * len(terms))


# --- Sohn 2016 ----------------------------------------------------------------------------------


def npair_loss(emb: Tensor, labels: list[int], l2_reg: float) -> Tensor:
    """Per class c with ≥ 2 samples: anchor f_c = first sample, positive f_c⁺ = second sample;
    L = 1/N Σ_c [log(1 + Σ_{c'≠c} exp(f_cᵀf_{c'}⁺ − f_cᵀf_c⁺)) + λ(‖f_c‖² + ‖f_c⁺‖²)]."""
    first: dict[int, int] = {}
    second: dict[int, int] = {}
    for i, y in enumerate(labels):
        if y not in first:
            first[y] = i
        elif y not in second:
            second[y] = i
    classes = [c for c in first if c in second]
    terms = []
    for c in classes:
        f_c, f_cp = emb[first[c]], emb[second[c]]
        inner = 1 + sum(torch.exp(f_c @ emb[second[o]] - f_c @ f_cp) for o in classes if o != c)
        terms.append(torch.log(inner) + l2_reg * (f_c @ f_c + f_cp @ f_cp))
    if not terms:
        return emb.sum() * 0
    return torch.stack(terms).mean()


# --- Wang et al. 2017 ---------------------------------------------------------------------------


def angular_loss(emb: Tensor, labels: list[int], alpha: float, normalize: bool = True) -> Tensor:
    """Mean over ordered positive pairs (a, p) of
    log(1 + Σ_{n: y_n≠y_a} exp(4 tan²α (x_a + x_p)ᵀx_n − 2(1 + tan²α) x_aᵀx_p)) on unit vectors."""
    x = [unit(e) if normalize else e for e in emb]
    t = math.tan(alpha) ** 2
    n = len(labels)
    terms = []
    for a, p in ordered_pairs(labels, True):
        s = sum(
            torch.exp(4 * t * ((x[a] + x[p]) @ x[k]) - 2 * (1 + t) * (x[a] @ x[p]))
            for k in range(n)
            if labels[k] != labels[a]
        )
        terms.append(torch.log(1 + s))
    if not terms:
        return emb.sum() * 0
    return torch.stack(terms).mean()


def angle_at_negative(xa: Tensor, xp: Tensor, xn: Tensor) -> float:
    """The angle at x_n between x_n→x_c and x_n→x_m (Wang et al., Fig. 2): tan n' = ‖x_a − x_p‖ / (2‖x_n − x_c‖)."""
    xc = (xa + xp) / 2
    return math.atan(float((xa - xp).norm() / (2 * (xn - xc).norm())))


# --- Kim et al. 2019 ----------------------------------------------------------------------------


def log_ratio_loss(emb: Tensor, y: Tensor, eps: float, reduction: str = "mean") -> Tensor:
    """Mean over anchors a and unordered pairs {i, j} (i, j ≠ a, i ≠ j) of
    (log((D_f(a,i)+ε)/(D_f(a,j)+ε)) − log((D_y(a,i)+ε)/(D_y(a,j)+ε)))², D = squared Euclidean."""
    y = y.reshape(y.shape[0], -1).to(emb.dtype)
    n = emb.shape[0]
    terms = []
    for a in range(n):
        for i in range(n):
            for j in range(i + 1, n):
                if a in (i, j):
                    continue
                df_i, df_j = ((emb[a] - emb[i]) ** 2).sum() + eps, ((emb[a] - emb[j]) ** 2).sum() + eps
                dy_i, dy_j = ((y[a] - y[i]) ** 2).sum() + eps, ((y[a] - y[j]) ** 2).sum() + eps
                terms.append((torch.log(df_i / df_j) - torch.log(dy_i / dy_j)) ** 2)
    return _reduce(terms, reduction, emb.sum() * 0)


# --- Chen et al. 2017 ---------------------------------------------------------------------------


def quadruplet_loss(
    emb: Tensor,
    labels: list[int],
    margin_a: float,
    margin_b: float,
    kind: str,
    reduction: str,
    quadruplets: list[tuple[int, int, int, int]] | None = None,
) -> Tensor:
    """Σ_{i,j,k}[g_ij − g_ik + α₁]₊ + Σ_{i,j,k,l}[g_ij − g_lk + α₂]₊ (eq. 4 with g = the measure),
    s_i = s_j, s_k ≠ s_i, s_l ∉ {s_i, s_k}; each sum reduced over its own index set.  With
    ``quadruplets`` (i, j, k, l) both sums run over them."""
    n = len(labels)
    sim = is_similarity(kind)

    def gap(pos: Tensor, neg: Tensor) -> Tensor:
        return neg - pos if sim else pos - neg

    first, second = [], []
    if quadruplets is None:
        for i, j in ordered_pairs(labels, True):
            d_ij = dist(emb[i], emb[j], kind)
            for k in range(n):
                if labels[k] == labels[i]:
                    continue
                first.append(torch.clamp(gap(d_ij, dist(emb[i], emb[k], kind)) + margin_a, min=0))
                for ll in range(n):
                    if labels[ll] in (labels[i], labels[k]):
                        continue
                    second.append(torch.clamp(gap(d_ij, dist(emb[ll], emb[k], kind)) + margin_b, min=0))
    else:
        for i, j, k, ll in quadruplets:
            d_ij = dist(emb[i], emb[j], kind)
            first.append(torch.clamp(gap(d_ij, dist(emb[i], emb[k], kind)) + margin_a, min=0))
            second.append(torch.clamp(gap(d_ij, dist(emb[ll], emb[k], kind)) + margin_b, min=0))
    zero = emb.sum() * 0
    return _reduce(first, reduction, zero) + _reduce(second, reduction, zero)


def hard_quadruplets(emb: Tensor, labels: list[int], kind: str, batch_hard: bool) -> list[tuple[int, int, int, int]]:
    """Per anchor: n1 = closest negative, n2 = closest to n1 with a third class (lowest index on ties);
    every positive (or the farthest one when ``batch_hard``)."""
    n = len(labels)
    sign = -1.0 if is_similarity(kind) else 1.0

    def d(i: int, j: int) -> float:
        return sign * float(dist(emb[i], emb[j], kind))

    out = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [k for k in range(n) if labels[k] != labels[a]]
        if not pos or not neg:
            continue
        n1 = min(neg, key=lambda k: (d(a, k), k))
        third = [ll for ll in range(n) if labels[ll] not in (labels[a], labels[n1])]
        if not third:
            continue
        n2 = min(third, key=lambda ll: (d(n1, ll), ll))
        if batch_hard:
            pos = [max(pos, key=lambda p: (d(a, p), -p))]
        out += [(a, p, n1, n2) for p in pos]
    return out


# --- Koch et al. 2015 ---------------------------------------------------------------------------


def siamese_bce_loss(
    emb: Tensor, labels: list[int], weight: Tensor, bias: Tensor, balanced: bool, reduction: str = "mean"
) -> Tensor:
    """p_ij = σ(Σ_d w_d |x_id − x_jd| + b); BCE with target [y_i = y_j] over ordered pairs i ≠ j."""
    pos, neg = [], []
    for i in range(emb.shape[0]):
        for j in range(emb.shape[0]):
            if i == j:
                continue
            z = (weight * (emb[i] - emb[j]).abs()).sum() + bias
            prob = 1 / (1 + torch.exp(-z))
            if labels[i] == labels[j]:
                pos.append(-torch.log(prob))
            else:
                neg.append(-torch.log(1 - prob))
    zero = emb.sum() * 0
    if reduction == "sum":
        return _reduce(pos + neg, "sum", zero)
    if balanced:
        return 0.5 * (_reduce(pos, "mean", zero) + _reduce(neg, "mean", zero))
    return _reduce(pos + neg, "mean", zero)
