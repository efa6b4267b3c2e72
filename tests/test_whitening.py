from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_metric import WithinClassWhitening
from lit_metric.backbones import MultiLevelPool


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(6).repeat_interleave(5)
    # class centres plus a strong nuisance direction shared by every class
    nuisance = torch.randn(1, 10, generator=g)
    emb = 3 * torch.randn(6, 10, generator=g)[labels] + 2 * torch.randn(30, 1, generator=g) * nuisance
    return emb.double() + 0.1 * torch.randn(30, 10, generator=g, dtype=torch.float64), labels


def test_matches_numpy_definition() -> None:
    emb, labels = _data()
    lam = 0.3
    x = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    y = labels.numpy()
    centred = np.concatenate([x[y == c] - x[y == c].mean(0) for c in np.unique(y)])
    sw = centred.T @ centred / len(x)
    reg = sw + lam * np.trace(sw) / sw.shape[0] * np.eye(sw.shape[0])
    w, v = np.linalg.eigh(reg)
    expected = (x - x.mean(0)) @ (v @ np.diag(w**-0.5) @ v.T)
    ours = WithinClassWhitening(lam).fit(emb, labels)(emb)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-9, atol=1e-10)


def test_whitened_within_class_scatter_is_identity_minus_ridge() -> None:
    emb, labels = _data(1)
    whiten = WithinClassWhitening(0.05).fit(emb, labels)
    z = whiten(emb)
    centred = torch.cat([z[labels == c] - z[labels == c].mean(0) for c in labels.unique()])
    scatter = centred.T @ centred / z.shape[0]
    # W (S_w + r I) W = I, so W S_w W = I - r W² : every eigenvalue below 1, the largest close to 1
    evals = torch.linalg.eigvalsh(scatter)
    assert float(evals.max()) < 1.0 and float(evals.max()) > 0.9


def test_improves_verification_of_unseen_classes_with_shared_nuisance() -> None:
    from lit_metric.metrics import VerificationMetrics

    g = torch.Generator().manual_seed(3)
    nuisance = torch.randn(2, 16, generator=g)

    def make(classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(classes).repeat_interleave(8)
        centres = torch.randn(classes, 16, generator=g)[labels]
        return centres + 3 * torch.randn(len(labels), 2, generator=g) @ nuisance, labels

    train, test = make(10), make(10)  # test classes never seen by fit
    whiten = WithinClassWhitening(0.1).fit(*train)

    def auc(emb: torch.Tensor) -> float:
        metric = VerificationMetrics()
        metric.update(emb, test[1])
        return float(metric.compute()["roc_auc"])

    assert auc(whiten(test[0])) > auc(test[0]) + 0.1


def test_state_dict_round_trip_and_errors() -> None:
    emb, labels = _data(2)
    fitted = WithinClassWhitening(0.1).fit(emb.float(), labels)
    fresh = WithinClassWhitening(0.1)
    fresh.load_state_dict(fitted.state_dict())
    torch.testing.assert_close(fresh(emb.float()), fitted(emb.float()))
    with pytest.raises(ValueError, match="call fit"):
        WithinClassWhitening()(emb)
    with pytest.raises(ValueError, match="width 10"):
        fitted(torch.randn(3, 4))
    with pytest.raises(ValueError, match="at least two classes"):
        WithinClassWhitening().fit(emb[:5], torch.zeros(5, dtype=torch.long) + 0 * labels[:5])
    with pytest.raises(ValueError, match="regularization"):
        WithinClassWhitening(0.0)


def test_multi_level_pool_concatenates_normalised_levels() -> None:
    torch.manual_seed(0)
    pool = MultiLevelPool("efficientnet_lite0", indices=[5, 7], intermediate_kwargs={"extra_blocks": True}).eval()
    widths = [112, 320, 1280]  # blocks[4], blocks[6], the head
    assert pool.num_features == sum(widths)
    out = pool(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, sum(widths))
    for part in out.split(widths, dim=1):
        torch.testing.assert_close(part.norm(dim=1), torch.ones(2))
    with pytest.raises(TypeError, match="forward_intermediates"):
        MultiLevelPool(torch.nn.Linear(3, 3))
