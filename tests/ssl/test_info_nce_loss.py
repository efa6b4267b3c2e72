"""InfoNCELoss: loop oracle, lightly and PML peers, closed forms, reference (DDP) design, precision, errors.

Parameter mapping to the peers (all with cosine similarity):
* lightly ``NTXentLoss(temperature=τ)(z_a, z_b)``  == ``InfoNCELoss(τ, symmetric=True)(z_a, z_b)``;
* PML ``SelfSupervisedLoss(NTXentLoss(temperature=τ), symmetric=s)(z_a, z_b)`` == ``InfoNCELoss(τ, symmetric=s)``;
* PML ``SupConLoss(temperature=τ)(cat([z_a, z_b]), labels.repeat(2))`` == ``InfoNCELoss(τ)(z_a, z_b, labels)``;
  one direction: ``SupConLoss(τ)(z_a, labels, ref_emb=z_b, ref_labels=labels.clone())`` (the clone matters: PML
  drops the diagonal when ``ref_labels is labels``); single view: ``SupConLoss(τ)(z_a, labels)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from lit_metric.distances import EuclideanDistance
from lit_metric.losses import InfoNCELoss
from tests._helpers.ssl_oracles import contrastive_loop

B, D = 6, 5


def _views(b: int = B, d: int = D) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, d, generator=g, dtype=torch.float64) * 3, torch.randn(b, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("n_neg", [0, 4])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_matches_loop_oracle(symmetric: bool, with_labels: bool, n_neg: int, tau: float) -> None:
    z_a, z_b = _views()
    labels = torch.tensor([0, 1, 0, 2, 1, 0]) if with_labels else None
    negatives = torch.randn(n_neg, D, dtype=torch.float64) if n_neg else None
    ours = InfoNCELoss(tau, symmetric=symmetric)(z_a, z_b, labels, negatives)
    expected = contrastive_loop(z_a, z_b, tau, labels, symmetric, negatives)
    assert ours.dtype == torch.float64
    assert ours.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("n_neg", [0, 3])
def test_single_view_supcon_matches_oracle(n_neg: int) -> None:
    z_a, _ = _views()
    labels = torch.tensor([3, 1, 3, 1, 1, 7])  # class 7 has no positive: left out of the mean
    negatives = torch.randn(n_neg, D, dtype=torch.float64) if n_neg else None
    ours = InfoNCELoss(0.2)(z_a, None, labels, negatives)
    assert ours.item() == pytest.approx(contrastive_loop(z_a, None, 0.2, labels, negatives=negatives), rel=1e-10)


@pytest.mark.parametrize("tau", [0.07, 0.1, 0.5])
def test_equals_lightly_ntxent(tau: float) -> None:
    from lightly.loss import NTXentLoss

    z_a, z_b = _views(16, 8)
    assert InfoNCELoss(tau)(z_a, z_b).item() == pytest.approx(NTXentLoss(temperature=tau)(z_a, z_b).item(), rel=1e-10)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("tau", [0.07, 0.3])
def test_equals_pml_self_supervised_ntxent(symmetric: bool, tau: float) -> None:
    from pytorch_metric_learning.losses import NTXentLoss, SelfSupervisedLoss

    z_a, z_b = _views(12, 8)
    pml = SelfSupervisedLoss(NTXentLoss(temperature=tau), symmetric=symmetric)(z_a, z_b)
    assert InfoNCELoss(tau, symmetric=symmetric)(z_a, z_b).item() == pytest.approx(pml.item(), rel=1e-10)


@pytest.mark.parametrize("tau", [0.07, 0.3])
def test_supcon_equals_pml(tau: float) -> None:
    from pytorch_metric_learning.losses import SupConLoss

    z_a, z_b = _views(12, 8)
    labels = torch.randint(0, 4, (12,), generator=torch.Generator().manual_seed(3))
    both = SupConLoss(temperature=tau)(torch.cat([z_a, z_b]), labels.repeat(2))
    assert InfoNCELoss(tau)(z_a, z_b, labels).item() == pytest.approx(both.item(), rel=1e-10)
    one_way = SupConLoss(temperature=tau)(z_a, labels, ref_emb=z_b, ref_labels=labels.clone())
    assert InfoNCELoss(tau, symmetric=False)(z_a, z_b, labels).item() == pytest.approx(one_way.item(), rel=1e-10)
    single = SupConLoss(temperature=tau)(z_a, labels)
    assert InfoNCELoss(tau)(z_a, None, labels).item() == pytest.approx(single.item(), rel=1e-10)


def test_closed_form_identical_views() -> None:
    # every one of the 2n views is the same vector: each anchor's softmax is uniform over 2n - 1 candidates
    n = 5
    z = torch.ones(n, 3, dtype=torch.float64)
    assert InfoNCELoss(0.1)(z, z.clone()).item() == pytest.approx(-math.log(1 / (2 * n - 1)), rel=1e-12)
    # the same in SupCon with one shared class: every positive has probability 1 / (2n - 1)
    assert InfoNCELoss(0.1)(z, z.clone(), torch.zeros(n, dtype=torch.long)).item() == pytest.approx(
        math.log(2 * n - 1), rel=1e-12
    )
    # n orthogonal instances, two identical views each: positive logit 1/τ, the 2n - 2 others 0
    tau = 0.25
    e = torch.eye(n, dtype=torch.float64) * 2.5
    assert InfoNCELoss(tau)(e, e.clone()).item() == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-12)
    # one direction: candidates are the n views of z_b only
    assert InfoNCELoss(tau, symmetric=False)(e, e.clone()).item() == pytest.approx(
        math.log(1 + (n - 1) * math.exp(-1 / tau)), rel=1e-12
    )
    # K extra negatives orthogonal to everything add K terms of exp(0)
    k = 3
    zpad = torch.cat([e, torch.zeros(n, k, dtype=torch.float64)], 1)
    negs = torch.cat([torch.zeros(k, n, dtype=torch.float64), torch.eye(k, dtype=torch.float64)], 1)
    assert InfoNCELoss(tau)(zpad, zpad.clone(), negatives=negs).item() == pytest.approx(
        math.log(1 + (2 * n - 2 + k) * math.exp(-1 / tau)), rel=1e-12
    )


def test_squared_euclidean_on_unit_vectors_equals_cosine_at_half_temperature() -> None:
    # ‖x − y‖² = 2 − 2 cos on the unit sphere: the constant cancels in the softmax, the factor 2 halves τ
    z_a, z_b = _views()
    euclid = InfoNCELoss(0.4, distance=EuclideanDistance(squared=True, normalize=True))(z_a, z_b)
    assert euclid.item() == pytest.approx(InfoNCELoss(0.2)(z_a, z_b).item(), rel=1e-10)


def test_gradcheck() -> None:
    z_a, z_b = _views(4, 3)
    z_a.requires_grad_(True)
    z_b.requires_grad_(True)
    negs = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 1])
    assert torch.autograd.gradcheck(lambda a, b, n: InfoNCELoss(0.3)(a, b, None, n), (z_a, z_b, negs))
    assert torch.autograd.gradcheck(lambda a, b: InfoNCELoss(0.3, symmetric=False)(a, b, labels), (z_a, z_b))


@pytest.mark.parametrize("symmetric", [True, False])
def test_references_split_like_two_ranks_equal_full_batch(symmetric: bool) -> None:
    """The DDP design in one process: each "rank" contrasts its local views against the gathered ones."""
    z_a, z_b = _views(8, 4)
    full_a, full_b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    loss_fn = InfoNCELoss(0.2, symmetric=symmetric)
    full = loss_fn(full_a, full_b)
    full.backward()
    ref_a, ref_b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    per_rank = []
    for r in range(2):
        sl = slice(4 * r, 4 * r + 4)
        per_rank.append(
            loss_fn(ref_a[sl], ref_b[sl], ref_a=ref_a, ref_b=ref_b, self_index=torch.arange(4) + 4 * r)
        )
    mean = (per_rank[0] + per_rank[1]) / 2  # what DDP's gradient averaging computes
    mean.backward()
    assert mean.item() == pytest.approx(full.item(), rel=1e-12)
    torch.testing.assert_close(ref_a.grad, full_a.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ref_b.grad, full_b.grad, rtol=1e-10, atol=1e-12)


def test_supcon_references_with_labels() -> None:
    z_a, z_b = _views(8, 4)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 3, 3])
    loss_fn = InfoNCELoss(0.2)
    full = loss_fn(z_a, z_b, labels)
    # one "rank" holding rows 4..7: its anchors against all references, normalised by its own count
    local = loss_fn(z_a[4:], z_b[4:], labels[4:], ref_a=z_a, ref_b=z_b, ref_labels=labels, self_index=torch.arange(4, 8))
    other = loss_fn(z_a[:4], z_b[:4], labels[:4], ref_a=z_a, ref_b=z_b, ref_labels=labels, self_index=torch.arange(4))
    # every anchor has a positive here (its other view), so the counts are equal and the mean is exact
    assert ((local + other) / 2).item() == pytest.approx(full.item(), rel=1e-12)


def test_gather_distributed_flag_without_process_group_is_plain() -> None:
    z_a, z_b = _views()
    assert InfoNCELoss(0.1, gather_distributed=True)(z_a, z_b).item() == InfoNCELoss(0.1)(z_a, z_b).item()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_labels", [False, True])
def test_low_precision_finite(dtype: torch.dtype, with_labels: bool) -> None:
    z_a = torch.randn(32, 16).to(dtype).requires_grad_(True)
    z_b = torch.randn(32, 16).to(dtype).requires_grad_(True)
    labels = torch.randint(0, 4, (32,)) if with_labels else None
    loss = InfoNCELoss(0.07)(z_a, z_b, labels, torch.randn(8, 16).to(dtype))
    loss.backward()
    assert loss.dtype == dtype and torch.isfinite(loss)
    assert z_a.grad is not None and torch.isfinite(z_a.grad).all() and torch.isfinite(z_b.grad).all()


def test_no_positive_gives_zero_with_graph() -> None:
    z = torch.randn(4, 3, requires_grad=True)
    loss = InfoNCELoss(0.1)(z, None, torch.arange(4))  # single-view SupCon, every class alone
    loss.backward()
    assert loss.item() == 0.0 and z.grad is not None and torch.equal(z.grad, torch.zeros_like(z))


def test_single_instance_batch_is_finite() -> None:
    z = torch.randn(1, 3, requires_grad=True)
    loss = InfoNCELoss(0.1)(z, torch.randn(1, 3))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-7) and torch.isfinite(z.grad).all()


def test_errors() -> None:
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="Expected argument `temperature` to be > 0"):
        InfoNCELoss(0.0)
    with pytest.raises(ValueError, match="Expected argument `z_b` .* or `labels`"):
        InfoNCELoss()(z)
    with pytest.raises(ValueError, match="Expected argument `z_b` to have shape"):
        InfoNCELoss()(z, torch.randn(5, 3))
    with pytest.raises(TypeError, match="Expected argument `z_a` to be a torch.Tensor"):
        InfoNCELoss()([1.0], z)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="integer class ids"):
        InfoNCELoss()(z, z, torch.zeros(4))
    with pytest.raises(ValueError, match="Expected argument `negatives` to have the embedding dimension 3"):
        InfoNCELoss()(z, z, negatives=torch.randn(2, 4))
    with pytest.raises(ValueError, match="without `ref_a`"):
        InfoNCELoss()(z, z, self_index=torch.arange(4))
    with pytest.raises(ValueError, match="Expected argument `self_index`"):
        InfoNCELoss()(z, z, ref_a=z, ref_b=z)
    with pytest.raises(ValueError, match="Expected argument `ref_b`"):
        InfoNCELoss()(z, z, ref_a=z, self_index=torch.arange(4))
    with pytest.raises(ValueError, match="Expected argument `ref_a` together with `ref_b`"):
        InfoNCELoss()(z, z, ref_b=z, self_index=torch.arange(4))
    with pytest.raises(ValueError, match="Expected argument `ref_labels`"):
        InfoNCELoss()(z, z, torch.arange(4), ref_a=z, ref_b=z, self_index=torch.arange(4))
    with pytest.raises(ValueError, match=r"Expected `self_index` values in \[0, 4\)"):
        InfoNCELoss()(z, z, ref_a=z, ref_b=z, self_index=torch.arange(4) + 1)
    with pytest.raises(ValueError, match="Expected `self_index` to be an integer tensor"):
        InfoNCELoss()(z, z, ref_a=z, ref_b=z, self_index=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="Got `ref_b` without `z_b`"):
        InfoNCELoss()(z, None, torch.arange(4), ref_a=z, ref_b=z, ref_labels=torch.arange(4), self_index=torch.arange(4))
    with pytest.raises(ValueError, match="Expected `ref_a` to have the embedding dimension"):
        InfoNCELoss()(z, z, ref_a=torch.randn(4, 2), ref_b=torch.randn(4, 2), self_index=torch.arange(4))
