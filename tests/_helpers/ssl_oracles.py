"""Slow reference implementations of the self-supervised losses and the k-NN monitor, written from the
papers' formulas with Python loops over float64 values.  They never import lit_metric.

* SimCLR NT-Xent (Chen et al. 2020, eq. 1) and SupCon L_out (Khosla et al. 2020, eq. 2);
* non-parametric instance discrimination (Wu et al. 2018): full softmax (eq. 2) and NCE (eqs. 3–5);
* Wu et al.'s weighted k-NN classifier (section 3.4 of the paper).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor


def _unit_rows(x: Tensor) -> list[list[float]]:
    rows = x.detach().double().tolist()
    out = []
    for r in rows:
        norm = math.sqrt(sum(v * v for v in r))
        out.append([v / norm for v in r])
    return out


def _dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def contrastive_loop(
    z_a: Tensor,
    z_b: Tensor | None,
    tau: float,
    labels: Tensor | None = None,
    symmetric: bool = True,
    negatives: Tensor | None = None,
) -> float:
    """NT-Xent (labels None) or SupCon L_out (labels given), cosine similarity / tau.

    Anchors: all 2B views (symmetric) or the B views of z_a (one direction; candidates z_b only), or z_a alone
    when z_b is None (candidates z_a).  Candidates exclude the anchor itself; extra negatives are candidates
    that are never positives.  Instance discrimination: the positive of view a_i is b_i (and vice versa).
    """
    a = _unit_rows(z_a)
    b = _unit_rows(z_b) if z_b is not None else None
    neg = _unit_rows(negatives) if negatives is not None else []
    n = len(a)
    lab = labels.tolist() if labels is not None else None
    # every view: (vector, instance id, label)
    if b is None:
        anchors = [(a[i], ("a", i), lab[i] if lab else None) for i in range(n)]
        cands = list(anchors)
    elif symmetric:
        anchors = [(a[i], ("a", i), lab[i] if lab else None) for i in range(n)] + [
            (b[i], ("b", i), lab[i] if lab else None) for i in range(n)
        ]
        cands = list(anchors)
    else:
        anchors = [(a[i], ("a", i), lab[i] if lab else None) for i in range(n)]
        cands = [(b[i], ("b", i), lab[i] if lab else None) for i in range(n)]
    cands = cands + [(v, ("neg", j), None) for j, v in enumerate(neg)]
    losses = []
    for vec, ident, y in anchors:
        others = [(cv, cid, cy) for cv, cid, cy in cands if cid != ident]
        denom = sum(math.exp(_dot(vec, cv) / tau) for cv, _, _ in others)
        if lab is None:
            pos = [cv for cv, cid, _ in others if cid[0] != "neg" and cid[1] == ident[1] and cid[0] != ident[0]]
        else:
            pos = [cv for cv, cid, cy in others if cid[0] != "neg" and cy == y]
        if not pos:
            continue
        losses.append(-sum(math.log(math.exp(_dot(vec, p) / tau) / denom) for p in pos) / len(pos))
    return sum(losses) / len(losses) if losses else 0.0


def memory_bank_exact_loop(f: Tensor, indices: Tensor, bank: Tensor, tau: float) -> float:
    """Wu et al. eq. 2 with the memory: mean of −log exp(v_i·f/τ) / Σ_j exp(v_j·f/τ)."""
    fs, v = _unit_rows(f), bank.double().tolist()
    total = 0.0
    for row, i in zip(fs, indices.tolist()):
        denom = sum(math.exp(_dot(vj, row) / tau) for vj in v)
        total += -math.log(math.exp(_dot(v[i], row) / tau) / denom)
    return total / len(fs)


def nce_z_loop(f: Tensor, bank: Tensor, noise: list[list[int]], tau: float) -> float:
    """Z ≈ n · mean over anchors and their noise samples of exp(v_j·f/τ) (Monte-Carlo, Wu et al. §3.2)."""
    fs, v = _unit_rows(f), bank.double().tolist()
    values = [math.exp(_dot(v[j], row) / tau) for row, js in zip(fs, noise) for j in js]
    return len(v) * sum(values) / len(values)


def memory_bank_nce_loop(f: Tensor, indices: Tensor, bank: Tensor, noise: list[list[int]], tau: float, z: float) -> float:
    """Wu et al. eqs. 3–5: h(i, v) = P(i|v) / (P(i|v) + m·P_n), P_n = 1/n uniform; per anchor
    −log h(i, f) − Σ_k log(1 − h(j_k, f)); the mean over anchors."""
    fs, v = _unit_rows(f), bank.double().tolist()
    n = len(v)
    total = 0.0
    for row, i, js in zip(fs, indices.tolist(), noise):
        m = len(js)

        def h(j: int, row: list[float] = row, m: int = m) -> float:
            p = math.exp(_dot(v[j], row) / tau) / z
            return p / (p + m / n)

        total += -math.log(h(i)) - sum(math.log(1.0 - h(j)) for j in js)
    return total / len(fs)


def momentum_update_loop(bank: Tensor, indices: Tensor, f: Tensor, momentum: float) -> Tensor:
    """v_i <- normalise(m·v_i + (1−m)·f_i/‖f_i‖) row by row (the first occurrence of an index wins)."""
    out = bank.double().clone()
    fs = _unit_rows(f)
    seen: set[int] = set()
    for row, i in zip(fs, indices.tolist()):
        if i in seen:
            continue
        seen.add(i)
        new = [momentum * a + (1 - momentum) * b for a, b in zip(out[i].tolist(), row)]
        norm = math.sqrt(sum(x * x for x in new))
        out[i] = torch.tensor([x / norm for x in new], dtype=torch.float64)
    return out


def knn_accuracy_numpy(
    queries: np.ndarray,
    query_labels: np.ndarray,
    bank: np.ndarray | None,
    bank_labels: np.ndarray | None,
    k: int,
    tau: float,
) -> float:
    """Brute-force weighted k-NN (cosine, weights exp(s/τ), ties to the smaller class id); bank None =
    leave-one-out over the queries."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    loo = bank is None
    ref = q if loo else bank / np.linalg.norm(bank, axis=1, keepdims=True)
    ref_labels = query_labels if loo else bank_labels
    assert ref_labels is not None
    correct = 0
    for i in range(len(q)):
        sims = ref @ q[i]
        cand = [j for j in range(len(ref)) if not (loo and j == i)]
        cand.sort(key=lambda j: (-sims[j], j))
        votes: dict[int, float] = {}
        for j in cand[:k]:
            votes[int(ref_labels[j])] = votes.get(int(ref_labels[j]), 0.0) + math.exp(sims[j] / tau)
        best = max(votes.items(), key=lambda kv: (kv[1], -kv[0]))[0]
        correct += int(best == int(query_labels[i]))
    return correct / len(q)
