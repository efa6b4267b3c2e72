from __future__ import annotations

import math

import pytest
import torch

from lit_metric.functional.weighted_l1 import weighted_l1_matrix
from lit_metric.losses import SiameseBCELoss
from tests._helpers.pair_oracles import siamese_bce_loss


def _batch(n: int = 8, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.arange(n) % classes


def _loss(d: int, seed: int = 1, **kwargs) -> SiameseBCELoss:
    loss = SiameseBCELoss(embedding_dim=d, **kwargs).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random signs: exercise both branches of |x − y| weighting
        loss.weight.copy_(torch.randn(d, generator=g, dtype=torch.float64))
        loss.bias.fill_(0.3)
    return loss


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk_elements", [2**22, 5])  # one chunk, or one row per chunk
def test_matches_loop_oracle(balanced: bool, reduction: str, chunk_elements: int) -> None:
    emb, labels = _batch()
    loss = _loss(4, balanced=balanced, reduction=reduction, chunk_elements=chunk_elements)
    a, b = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    w, bias = loss.weight.detach().clone().requires_grad_(), loss.bias.detach().clone().requires_grad_()
    ours = loss(a, labels)
    ref = siamese_bce_loss(b, labels.tolist(), w, bias, balanced, reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    ours.backward()
    ref.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(loss.weight.grad, w.grad, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(loss.bias.grad, bias.grad, rtol=1e-8, atol=1e-12)


def test_hand_made_value() -> None:
    loss = SiameseBCELoss(embedding_dim=2).double()
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([-1.0, -2.0]))
        loss.bias.fill_(1.0)
    emb = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # logits: (0,1): 1 − 1 = 0 (same class), (0,2): 1 − 2 = −1, (1,2): 1 − 1 − 2 = −2 (different)
    pos = math.log(2)
    neg = (math.log1p(math.exp(-1)) + math.log1p(math.exp(-2))) / 2
    value = loss(emb, torch.tensor([0, 0, 1]))
    assert value.item() == pytest.approx((2 * pos + 2 * 2 * neg) / 6, rel=1e-12)
    balanced = SiameseBCELoss(embedding_dim=2, balanced=True).double()
    balanced.load_state_dict(loss.state_dict())
    assert balanced(emb, torch.tensor([0, 0, 1])).item() == pytest.approx((pos + neg) / 2, rel=1e-12)
    # score() gives the same logits for given pairs
    logits = loss.score(emb[[0, 0, 1]], emb[[1, 2, 2]])
    torch.testing.assert_close(logits, torch.tensor([0.0, -1.0, -2.0], dtype=torch.float64))


def test_mined_pairs_match_the_oracle_on_those_pairs() -> None:
    emb, labels = _batch(6)
    loss = _loss(4)
    pairs = (torch.tensor([0, 3]), torch.tensor([3, 0]), torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]))
    z_pos = [loss.weight.detach() @ (emb[i] - emb[j]).abs() + loss.bias.detach() for i, j in [(0, 3), (3, 0)]]
    z_neg = [loss.weight.detach() @ (emb[i] - emb[j]).abs() + loss.bias.detach() for i, j in [(0, 1), (1, 2), (2, 3)]]
    expected = (sum(math.log1p(math.exp(-float(z))) for z in z_pos) + sum(math.log1p(math.exp(float(z))) for z in z_neg)) / 5
    assert loss(emb, labels, pairs).item() == pytest.approx(expected, rel=1e-10)
    # triplets are split into unique pairs
    value = loss(emb, labels, (torch.tensor([0, 0]), torch.tensor([3, 3]), torch.tensor([1, 2])))
    pairs = (torch.tensor([0]), torch.tensor([3]), torch.tensor([0, 0]), torch.tensor([1, 2]))
    torch.testing.assert_close(value, loss(emb, labels, pairs))


def test_weighted_l1_kernel_gradcheck_including_zero_weights() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.0, -1.5, 2.0], dtype=torch.float64, requires_grad=True)
    for chunk in (2**22, 3, 16):
        assert torch.autograd.gradcheck(lambda a, b, c, n=chunk: weighted_l1_matrix(a, b, c, n), (x, y, w))
    # the gradient w.r.t. a zero weight is not stuck at zero
    weighted_l1_matrix(x, y, w).sum().backward()
    assert w.grad[0] > 0


def test_gradcheck() -> None:
    emb, labels = _batch(5, 3, 2)
    loss = _loss(3)
    params = (emb.requires_grad_(), loss.weight, loss.bias)

    def f(e: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(loss, {"weight": w, "bias": b}, (e, labels))

    assert torch.autograd.gradcheck(f, params)


def test_reference_split_sums_to_full_batch() -> None:
    emb, labels = _batch(10)
    loss = _loss(4, reduction="sum")
    parts = [
        loss(emb[s], labels[s], ref_emb=emb, ref_labels=labels, self_index=torch.arange(10)[s])
        for s in (slice(0, 3), slice(3, 10))
    ]
    torch.testing.assert_close(sum(parts), loss(emb, labels))


def test_parameters_are_learned_by_the_module() -> None:
    from lit_metric import MetricLearningModule

    loss = SiameseBCELoss(embedding_dim=8)
    module = MetricLearningModule(backbone=torch.nn.Flatten(), backbone_features=12, embedding_dim=8, loss=loss)
    groups = module.parameter_groups()
    assert {id(p) for p in groups[-1]["params"]} == {id(loss.weight), id(loss.bias)}


@pytest.mark.parametrize("labels", [torch.tensor([0, 1, 2, 3]), torch.tensor([5, 5, 5, 5])])
def test_single_kind_batches_are_finite(labels: torch.Tensor) -> None:
    emb = torch.randn(4, 3, requires_grad=True)
    for balanced in (False, True):
        value = SiameseBCELoss(3, balanced=balanced)(emb, labels)
        value.backward()
        assert value.item() > 0 and torch.isfinite(emb.grad).all()


def test_no_pair_at_all_is_a_zero_with_zero_gradients() -> None:
    emb = torch.randn(1, 3, requires_grad=True)
    value = SiameseBCELoss(3)(emb, torch.tensor([0]))
    value.backward()
    assert value.item() == 0.0 and torch.equal(emb.grad, torch.zeros_like(emb))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_finite(dtype: torch.dtype) -> None:
    base = torch.randn(1, 8).repeat(6, 1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    for emb in (base, base + 1e-3 * torch.randn(6, 8)):
        x = emb.to(dtype).requires_grad_()
        value = SiameseBCELoss(8)(x, labels)
        value.backward()
        assert value.dtype == dtype and torch.isfinite(value) and torch.isfinite(x.grad).all()
        y = emb.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            value = SiameseBCELoss(8)(y, labels)
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(y.grad).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="`embedding_dim` to be >= 1"):
        SiameseBCELoss(embedding_dim=0)
    with pytest.raises(TypeError, match="`embedding_dim` to be an int"):
        SiameseBCELoss(embedding_dim=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="embeddings of size `embedding_dim`=4, but got 3"):
        SiameseBCELoss(embedding_dim=4)(torch.randn(5, 3), torch.tensor([0, 0, 1, 1, 2]))
