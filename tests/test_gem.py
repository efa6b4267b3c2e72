"""GeM pooling and ``create_backbone(global_pool="gem")``."""

from __future__ import annotations

import pytest
import torch

from lit_metric.backbones import GeM, create_backbone


def test_gem_matches_its_definition_and_limits() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64) + 0.1
    # loop oracle from the formula (mean over positions of x^p)^(1/p), per image and channel
    for p in (1.0, 3.0, 4.5):
        expected = torch.tensor(
            [[(sum(float(v) ** p for v in x[b, c].flatten()) / 20) ** (1 / p) for c in range(3)] for b in range(2)],
            dtype=torch.float64,
        )
        torch.testing.assert_close(GeM(p)(x), expected)
    torch.testing.assert_close(GeM(1.0)(x), x.mean((2, 3)))  # p = 1: average pooling
    torch.testing.assert_close(GeM(200.0)(x), x.amax((2, 3)), rtol=0.02, atol=0)  # large p: max pooling
    torch.testing.assert_close(GeM(3.0)(-torch.ones(1, 1, 2, 2)), torch.full((1, 1), 1e-6))  # negatives clamped at eps


def test_gem_learnable_power_gets_a_gradient() -> None:
    pool = GeM(3.0, learnable=True)
    assert [n for n, _ in pool.named_parameters()] == ["p"]
    pool(torch.rand(2, 3, 4, 4) + 0.1).sum().backward()
    assert pool.p.grad is not None and torch.isfinite(pool.p.grad) and pool.p.grad != 0
    fixed = GeM(2.0)
    assert not list(fixed.parameters()) and "p" in fixed.state_dict()


@pytest.mark.parametrize("p", [0, -1.0, float("nan"), True, "3"])
def test_gem_rejects_bad_power(p: object) -> None:
    with pytest.raises(ValueError, match="`p` to be a number > 0"):
        GeM(p)  # type: ignore[arg-type]


def test_gem_rejects_non_maps() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\) for GeM, but got \(2, 3\)"):
        GeM()(torch.rand(2, 3))


def test_create_backbone_gem_pools_the_feature_maps() -> None:
    torch.manual_seed(0)
    model = create_backbone("resnet18", global_pool="gem").eval()
    assert isinstance(model.global_pool, GeM) and float(model.global_pool.p) == 3.0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = model.forward_features(x)
        torch.testing.assert_close(model(x), maps.clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3))
    assert float(create_backbone("resnet18", global_pool="gem:4").global_pool.p) == 4.0
    assert type(create_backbone("resnet18", global_pool="max").global_pool).__name__ == "SelectAdaptivePool2d"


@pytest.mark.parametrize("value", ["gem:", "gem:x", "gem:-2", "gemx"])
def test_create_backbone_bad_gem_spec(value: str) -> None:
    with pytest.raises(ValueError, match="`global_pool` to be 'gem' or 'gem:<p>'"):
        create_backbone("resnet18", global_pool=value)


def test_create_backbone_gem_needs_a_pool_module() -> None:
    with pytest.raises(ValueError, match="`global_pool` module for global_pool='gem'"):
        create_backbone("vit_tiny_patch16_224", global_pool="gem", img_size=32)
