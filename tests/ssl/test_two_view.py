"""Two-view datasets, the per-batch collate, SimCLRAffineTransform and TwoViewDataModule."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from lit_metric.data import (
    DigitsDataModule,
    SimCLRAffineTransform,
    SingleViewDataset,
    TwoViewCollate,
    TwoViewDataModule,
    TwoViewDataset,
    ssl_dataloader,
)


def _images(n: int = 6, size: int = 12) -> torch.Tensor:
    return torch.rand(n, 1, size, size)


def test_two_view_dataset_items() -> None:
    base = TensorDataset(_images(), torch.arange(6))
    ds = TwoViewDataset(base, transform=SimCLRAffineTransform())
    (v1, v2), index = ds[3]
    assert v1.shape == v2.shape == (1, 12, 12) and index == 3
    assert not torch.equal(v1, v2)  # two independent draws
    (w1, w2), y, index = TwoViewDataset(base, transform=lambda x: x, transform_b=lambda x: -x, keep_labels=True)[2]
    assert torch.equal(w1, -w2) and int(y) == 2 and index == 2
    assert len(ds) == 6


def test_single_view_dataset_items() -> None:
    base = [torch.ones(1, 3, 3), torch.zeros(1, 3, 3)]  # bare x items without labels
    view, index = SingleViewDataset(base, transform=lambda x: x + 1)[1]
    assert torch.equal(view, torch.ones(1, 3, 3)) and index == 1
    with pytest.raises(ValueError, match="Expected labelled items"):
        SingleViewDataset(base, keep_labels=True)[0]


def test_collate_per_batch() -> None:
    items = [(torch.rand(1, 8, 8), 7 + i, i) for i in range(5)]
    (v1, v2), index = TwoViewCollate(SimCLRAffineTransform(image_size=6))(items)
    assert v1.shape == v2.shape == (5, 1, 6, 6) and index.tolist() == [0, 1, 2, 3, 4]
    view, labels, index = TwoViewCollate(None, num_views=1, keep_labels=True)(items)
    assert view.shape == (5, 1, 8, 8) and labels.tolist() == [7, 8, 9, 10, 11]
    with pytest.raises(ValueError, match="Expected argument `num_views` to be 1 or 2"):
        TwoViewCollate(None, num_views=3)


def test_affine_identity_and_flip_are_exact() -> None:
    x = _images(4)
    ident = SimCLRAffineTransform(min_scale=1.0, ratio=(1.0, 1.0), rotation_degrees=0.0, shear_degrees=0.0)
    torch.testing.assert_close(ident(x), x)
    torch.testing.assert_close(ident(x[0]), x[0])  # a single (C, H, W) image
    flip = SimCLRAffineTransform(min_scale=1.0, ratio=(1.0, 1.0), rotation_degrees=0.0, shear_degrees=0.0, hflip_prob=1.0)
    torch.testing.assert_close(flip(x), x.flip(-1))


def test_affine_random_per_image_and_resizes() -> None:
    x = torch.rand(1, 1, 28, 28).expand(8, 1, 28, 28)
    t = SimCLRAffineTransform(image_size=16, erase_prob=1.0)
    out = t(x)
    assert out.shape == (8, 1, 16, 16) and out.min() >= 0 and out.max() <= 1
    assert len({round(float(o.sum()), 4) for o in out}) == 8  # each image got its own parameters
    erased = SimCLRAffineTransform(min_scale=1.0, ratio=(1.0, 1.0), rotation_degrees=0, shear_degrees=0, erase_prob=1.0)
    ones = erased(torch.ones(4, 1, 10, 10))
    assert ((ones == 0).flatten(1).sum(1) > 0).all()  # a rectangle was zeroed in every image
    assert "SimCLRAffineTransform(image_size=16" in repr(t)


def test_affine_errors() -> None:
    with pytest.raises(ValueError, match="Expected 0 < `min_scale` <= `max_scale` <= 1"):
        SimCLRAffineTransform(min_scale=0.9, max_scale=0.5)
    with pytest.raises(ValueError, match="Expected argument `ratio`"):
        SimCLRAffineTransform(ratio=(2.0, 1.0))
    with pytest.raises(ValueError, match="Expected argument `hflip_prob` to be in"):
        SimCLRAffineTransform(hflip_prob=1.5)
    with pytest.raises(ValueError, match="Expected argument `erase_scale`"):
        SimCLRAffineTransform(erase_scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="Expected argument `padding_mode` to be one of"):
        SimCLRAffineTransform(padding_mode="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"Expected a \(C, H, W\) image"):
        SimCLRAffineTransform()(torch.rand(5, 5))


@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("num_views", [1, 2])
def test_ssl_dataloader_paths_give_the_same_structure(batched: bool, num_views: int) -> None:
    base = TensorDataset(_images(10), torch.arange(10))
    loader = ssl_dataloader(base, SimCLRAffineTransform(image_size=8), batch_size=4, num_views=num_views, batched=batched)
    batches = list(loader)
    assert len(batches) == 2  # drop_last
    views, index = batches[0]
    if num_views == 2:
        assert isinstance(views, tuple | list) and len(views) == 2 and views[0].shape == (4, 1, 8, 8)
    else:
        assert views.shape == (4, 1, 8, 8)
    assert index.shape == (4,) and index.dtype == torch.long
    with pytest.raises(ValueError, match="Expected argument `num_views` to be 1 or 2"):
        ssl_dataloader(base, None, 4, num_views=0)


def test_lightly_view_transform_per_item_on_rgb_pil() -> None:
    """Per-item path with lightly's SimCLR view transform (the right tool for RGB photos)."""
    from lightly.transforms import SimCLRViewTransform
    from PIL import Image

    base = [(Image.new("RGB", (40, 40), color=(i * 20, 100, 50)), i) for i in range(4)]
    ds = TwoViewDataset(base, transform=SimCLRViewTransform(input_size=32))
    (v1, v2), index = ds[1]
    assert v1.shape == v2.shape == (3, 32, 32) and index == 1


def test_two_view_data_module_wraps_digits() -> None:
    dm = TwoViewDataModule(DigitsDataModule(eval_batch_size=500), batch_size=64)
    dm.setup("fit")
    (v1, v2), index = next(iter(dm.train_dataloader()))
    assert v1.shape == v2.shape == (64, 1, 8, 8) and int(index.max()) < len(dm.train_set)  # type: ignore[arg-type]
    x, y, idx = next(iter(dm.val_dataloader()))
    assert x.shape[1:] == (1, 8, 8) and y.min() >= 5  # evaluation digits 5-9, labelled
    assert dm.test_dataloader() is not None and dm.predict_dataloader() is not None
    with pytest.raises(ValueError, match="Expected argument `num_views` to be 1 or 2"):
        TwoViewDataModule(DigitsDataModule(), num_views=4)
