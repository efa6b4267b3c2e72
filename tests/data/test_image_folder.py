"""ImageFolderDataModule on generated folder trees: splits, P×K batches, eval items, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_metric.data import ImageFolderDataModule
from tests.data._image_fixtures import write_image

CLASSES = ["ant", "bee", "cat", "dog", "eel", "fox"]


def _tree(root: Path, classes: list[str] = CLASSES, per_class: int = 4) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_image(root / name / ("sub" if i == 3 else "") / f"{i}.{'jpg' if i % 2 else 'png'}", seed=10 * c + i)
    (root / classes[0] / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def test_class_disjoint_split_and_loaders(tmp_path: Path) -> None:
    dm = ImageFolderDataModule(_tree(tmp_path), p=3, k=2, image_size=8, eval_batch_size=5)
    dm.setup()
    assert dm.train_set.classes == ["ant", "bee", "cat"] and dm.eval_set.classes == ["dog", "eel", "fox"]
    assert len(dm.train_set) == 12 and len(dm.eval_set) == 12  # nested sub-folder images count, .txt not
    assert dm.num_classes == 3
    assert not set(dm.train_set.paths) & set(dm.eval_set.paths)
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 3, 8, 8) and sorted(torch.bincount(y).tolist()) == [2, 2, 2]
    for i, label in zip(index.tolist(), y.tolist()):  # the index names the item the label belongs to
        assert dm.train_set.labels[i] == label
    batches = list(dm.val_dataloader())
    assert [b[0].shape[0] for b in batches] == [5, 5, 2]
    assert torch.cat([b[2] for b in batches]).tolist() == list(range(12))  # sequential, every item once
    assert torch.cat([b[1] for b in batches]).tolist() == dm.eval_set.labels.tolist()
    assert len(dm.test_dataloader()) == len(dm.predict_dataloader()) == 3


def test_split_options(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    dm = ImageFolderDataModule(root, p=1, k=2, train_fraction=1 / 3, image_size=8)
    dm.setup()
    assert dm.train_set.classes == ["ant", "bee"]
    dm = ImageFolderDataModule(root, p=1, k=2, train_classes=["fox", "ant"], image_size=8)
    dm.setup()
    assert dm.train_set.classes == ["ant", "fox"] and dm.eval_set.classes == ["bee", "cat", "dog", "eel"]
    shuffled = ImageFolderDataModule(root, p=1, k=2, shuffle_classes=True, seed=3, image_size=8)
    shuffled.setup()
    again = ImageFolderDataModule(root, p=1, k=2, shuffle_classes=True, seed=3, image_size=8)
    again.setup()
    assert shuffled.train_set.classes == again.train_set.classes and len(shuffled.train_set.classes) == 3
    dm = ImageFolderDataModule(root, split="none", p=1, k=2, image_size=8)
    dm.setup()
    assert dm.train_set.classes == dm.eval_set.classes == CLASSES


def test_split_on_disk(tmp_path: Path) -> None:
    _tree(tmp_path / "train", CLASSES[:3])
    _tree(tmp_path / "test", CLASSES[3:])
    dm = ImageFolderDataModule(tmp_path, split="folders", eval_dir="test", p=2, k=2, image_size=8)
    dm.setup()
    assert dm.train_set.classes == CLASSES[:3] and dm.eval_set.classes == CLASSES[3:]
    with pytest.raises(FileNotFoundError, match=r"expects .*val, but it does not exist \(sub-folders present: \['test', 'train'\]\)"):
        ImageFolderDataModule(tmp_path, split="folders", p=2, k=2).setup()


def test_grey_mode_and_size(tmp_path: Path) -> None:
    dm = ImageFolderDataModule(_tree(tmp_path), p=2, k=2, image_size=(10, 6), image_mode="L", eval_crop_pct=1.0)
    dm.setup()
    assert dm.eval_set[0][0].shape == (1, 10, 6)
    assert next(iter(dm.train_dataloader()))[0].shape == (4, 1, 10, 6)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no data set found at .*nowhere\. To fix it, point `root` at a folder"):
        ImageFolderDataModule(tmp_path / "nowhere").setup()
    root = _tree(tmp_path / "data")
    (root / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"class folder .*empty_class holds no image.*Remove the empty folder"):
        ImageFolderDataModule(root).setup()
    (root / "empty_class").rmdir()
    with pytest.raises(ValueError, match=r"`split` to be one of \['classes', 'folders', 'none'\]"):
        ImageFolderDataModule(root, split="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`train_fraction` to be in \(0, 1\)"):
        ImageFolderDataModule(root, train_fraction=1.0)
    with pytest.raises(ValueError, match=r"`train_classes` to name class folders .*unknown \['gnu'\]"):
        ImageFolderDataModule(root, train_classes=["ant", "gnu"]).setup()
    with pytest.raises(ValueError, match="covers every class"):
        ImageFolderDataModule(root, train_classes=CLASSES).setup()
    with pytest.raises(ValueError, match="leaves no class for one of the splits"):
        ImageFolderDataModule(root, train_fraction=0.01).setup()
    flat = tmp_path / "flat"
    write_image(flat / "a.png")
    with pytest.raises(ValueError, match=r"one sub-folder per class in .*flat"):
        ImageFolderDataModule(flat).setup()
    with pytest.raises(ValueError, match=r"PKSampler needs p × world_size = 4 classes"):
        dm = ImageFolderDataModule(root, p=4, k=2, image_size=8)
        dm.setup()
        dm.train_dataloader()


def test_lightning_cli_signature(tmp_path: Path) -> None:
    """The constructor is the config: jsonargparse reads it from YAML-like values."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(ImageFolderDataModule, "data")
    cfg = parser.parse_args(["--data.root", str(tmp_path), "--data.image_size", "[32, 16]", "--data.split", "folders"])
    init = parser.instantiate_classes(cfg)
    assert init.data.image_size == (32, 16) and init.data.split == "folders"
