from __future__ import annotations

import math

import pytest
import torch

from lit_metric.distances import EuclideanDistance
from lit_metric.losses import SupConLoss
from lit_metric.miners import PairMarginMiner


def _batch(n: int = 14, d: int = 5, seed: int = 0, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (n,), generator=g)


def supcon_oracle(emb: torch.Tensor, labels: list[int], tau: float, pairs=None) -> torch.Tensor:
    """Khosla et al. eq. 2 (L_out) written as loops over anchors, positives and candidates."""
    z = torch.nn.functional.normalize(emb, dim=1)
    n = len(labels)
    if pairs is not None:
        pos_set = {(int(a), int(p)) for a, p in zip(pairs[0], pairs[1])}
        neg_set = {(int(a), int(b)) for a, b in zip(pairs[2], pairs[3])}
    terms = []
    for i in range(n):
        if pairs is None:
            pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
            cand = [j for j in range(n) if j != i]
        else:
            pos = [j for j in range(n) if (i, j) in pos_set]
            cand = pos + [j for j in range(n) if (i, j) in neg_set]
        if not pos:
            continue
        denom = sum(torch.exp(z[i] @ z[a] / tau) for a in cand)
        terms.append(-sum(torch.log(torch.exp(z[i] @ z[p] / tau) / denom) for p in pos) / len(pos))
    return torch.stack(terms).mean() if terms else emb.sum() * 0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [0.07, 0.5, 1.0])
def test_matches_loop_oracle(seed: int, tau: float) -> None:
    emb, labels = _batch(seed=seed)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = SupConLoss(temperature=tau)(a, labels)
    ref = supcon_oracle(b, labels.tolist(), tau)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)


def test_mined_pairs_match_loop_oracle() -> None:
    emb, labels = _batch(seed=4)
    pairs = PairMarginMiner(pos_margin=0.6, neg_margin=0.9)(emb, labels)
    assert pairs[0].numel() and pairs[2].numel()
    ours = SupConLoss(temperature=0.2)(emb, labels, pairs)
    torch.testing.assert_close(ours, supcon_oracle(emb, labels.tolist(), 0.2, pairs), rtol=1e-10, atol=1e-12)


def test_matches_pytorch_metric_learning() -> None:
    pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
    # mapping: PML SupConLoss(temperature=τ) (cosine similarity, L_out) == ours SupConLoss(temperature=τ)
    for seed in range(3):
        emb, labels = _batch(20, 6, seed=seed)
        a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
        ours = SupConLoss(temperature=0.1)(a, labels)
        theirs = pml_losses.SupConLoss(temperature=0.1)(b, labels)
        torch.testing.assert_close(ours, theirs, rtol=1e-8, atol=1e-10)
        ours.backward()
        theirs.backward()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-6, atol=1e-10)


def test_reference_split_matches_full_batch() -> None:
    emb, labels = _batch(seed=5)
    full = SupConLoss(reduction="sum")(emb, labels)
    half = emb.shape[0] // 2
    parts = [
        SupConLoss(reduction="sum")(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(n0, n1))
        for s, n0, n1 in ((slice(0, half), 0, half), (slice(half, None), half, emb.shape[0]))
    ]
    torch.testing.assert_close(parts[0] + parts[1], full)


def test_hand_made_value_and_distance() -> None:
    emb = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
    loss = SupConLoss(temperature=1.0, distance=EuclideanDistance(normalize=False))
    # anchor 0: positive at d=1, negative at d=3; anchor 1: positive at 1, negative at 2
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    assert loss(emb, torch.tensor([0, 0, 1])).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([1, 1, 1, 1])])
def test_no_positive_or_no_negative(labels: torch.Tensor) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    out = SupConLoss()(emb, labels)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all()
    if labels.unique().numel() == 4:
        assert out.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    emb, labels = _batch(seed=6)
    x = emb.to(dtype).requires_grad_()
    out = SupConLoss(temperature=0.05)(x, labels)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()
    assert out.item() == pytest.approx(SupConLoss(temperature=0.05)(emb, labels).item(), rel=5e-2)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0.0)
