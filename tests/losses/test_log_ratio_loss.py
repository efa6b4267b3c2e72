from __future__ import annotations

import math

import pytest
import torch

from lit_metric.losses import LogRatioLoss
from tests._helpers.pair_oracles import log_ratio_loss


def _batch(n: int = 9, d: int = 4, label_dim: int | None = None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0
    shape = (n,) if label_dim is None else (n, label_dim)
    return emb, torch.rand(shape, generator=g, dtype=torch.float64) * 10


@pytest.mark.parametrize("label_dim", [None, 1, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("eps", [1e-6, 0.1])
def test_matches_loop_oracle(label_dim: int | None, reduction: str, eps: float) -> None:
    emb, y = _batch(label_dim=label_dim)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = LogRatioLoss(eps=eps, reduction=reduction)(a, y)
    ref = log_ratio_loss(b, y, eps, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10)


def test_hand_made_values() -> None:
    y = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    # embeddings at distances proportional to the label distances: every log-ratio matches
    assert LogRatioLoss(eps=1e-12)(y.unsqueeze(1) * 5.0, y).item() == pytest.approx(0.0, abs=1e-12)
    # three samples: one unordered pair {i, j} per anchor; squared distances written out
    emb = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    terms = [
        (math.log(1 / 4) - math.log(1 / 9)) ** 2,  # a=0, i=1, j=2
        (math.log(1 / 1) - math.log(1 / 4)) ** 2,  # a=1, i=0, j=2
        (math.log(4 / 1) - math.log(9 / 4)) ** 2,  # a=2, i=0, j=1
    ]
    assert LogRatioLoss(eps=1e-12)(emb, y).item() == pytest.approx(sum(terms) / 3, rel=1e-9)


def test_mined_triplets_and_integer_labels() -> None:
    emb, _ = _batch(6)
    y = torch.tensor([0, 1, 3, 6, 10, 15])  # integer labels are numbers here
    a, i, j = torch.tensor([0, 2, 5]), torch.tensor([1, 0, 2]), torch.tensor([4, 3, 1])
    ours = LogRatioLoss()(emb, y, (a, i, j))
    yf = y.to(torch.float64)

    def term(a_: int, i_: int, j_: int) -> float:
        f = math.log((((emb[a_] - emb[i_]) ** 2).sum() + 1e-6) / (((emb[a_] - emb[j_]) ** 2).sum() + 1e-6))
        lab = math.log(((yf[a_] - yf[i_]) ** 2 + 1e-6) / ((yf[a_] - yf[j_]) ** 2 + 1e-6))
        return (f - lab) ** 2

    assert ours.item() == pytest.approx(sum(term(*t) for t in [(0, 1, 4), (2, 0, 3), (5, 2, 1)]) / 3, rel=1e-9)


def test_reference_split_sums_to_full_batch() -> None:
    emb, y = _batch(10, label_dim=2)
    loss = LogRatioLoss(reduction="sum")
    parts = [
        loss(emb[s], y[s], ref_emb=emb, ref_labels=y, self_index=torch.arange(10)[s])
        for s in (slice(0, 4), slice(4, 10))
    ]
    torch.testing.assert_close(sum(parts), loss(emb, y))


def test_gradcheck() -> None:
    emb, y = _batch(5, 3)
    assert torch.autograd.gradcheck(lambda e: LogRatioLoss()(e, y), (emb.requires_grad_(),))


def test_too_small_batches_are_zero() -> None:
    for n in (1, 2):  # fewer than 3 samples: no (a, i, j) triplet
        emb = torch.randn(n, 3, requires_grad=True)
        value = LogRatioLoss()(emb, torch.rand(n))
        value.backward()
        assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    base = torch.randn(1, 8).repeat(6, 1)
    y = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 5.0])  # equal labels too
    for emb in (base, base + 1e-3 * torch.randn(6, 8)):
        x = emb.to(dtype).requires_grad_()
        value = LogRatioLoss()(x, y)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
        z = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = LogRatioLoss()(z, y)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(z.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`eps` to be > 0"):
        LogRatioLoss(eps=0.0)
    with pytest.raises(TypeError, match="`eps` to be a number"):
        LogRatioLoss(eps="small")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`reduction` to be one of \['mean', 'sum'\]"):
        LogRatioLoss(reduction="nonzero_mean")
    with pytest.raises(ValueError, match=r"`labels` to have shape \(4,\) or \(4, L\)"):
        LogRatioLoss()(torch.randn(4, 2), torch.rand(3))
    with pytest.raises(ValueError, match="Expected argument `labels`"):
        LogRatioLoss()(torch.randn(4, 2))
