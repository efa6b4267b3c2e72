from __future__ import annotations

import math

import pytest
import torch

from lit_metric.distances import CosineSimilarity, DotProductSimilarity, EuclideanDistance


def test_values_against_formulas() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    raw = EuclideanDistance(normalize=False)(x, y)
    torch.testing.assert_close(raw, torch.cdist(x, y))
    torch.testing.assert_close(EuclideanDistance(squared=True, normalize=False)(x, y), torch.cdist(x, y) ** 2)
    xn, yn = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    torch.testing.assert_close(EuclideanDistance()(x, y), torch.cdist(xn, yn))
    torch.testing.assert_close(CosineSimilarity()(x, y), xn @ yn.T)
    torch.testing.assert_close(DotProductSimilarity()(x, y), x @ y.T)
    for d in (EuclideanDistance(), CosineSimilarity(), DotProductSimilarity(), EuclideanDistance(squared=True)):
        torch.testing.assert_close(d.rowwise(x[:4], y), torch.diagonal(d(x[:4], y)))


def test_similarity_flag_and_gap() -> None:
    assert CosineSimilarity().is_similarity and not EuclideanDistance().is_similarity
    # a closer positive gives a negative gap in both kinds of measure
    assert EuclideanDistance().gap(torch.tensor(0.1), torch.tensor(0.5)) < 0
    assert CosineSimilarity().gap(torch.tensor(0.9), torch.tensor(0.5)) < 0


def test_zero_distance_has_finite_gradient() -> None:
    x = torch.ones(3, 2, requires_grad=True)
    EuclideanDistance(normalize=False)(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_closed_form() -> None:
    d = EuclideanDistance()(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 5.0]]))
    assert d.item() == pytest.approx(math.sqrt(2))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="2-D"):
        CosineSimilarity()(torch.randn(3))
    with pytest.raises(ValueError, match="same dimension"):
        CosineSimilarity()(torch.randn(3, 2), torch.randn(3, 4))
