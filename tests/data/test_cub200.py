"""CUB200DataModule: the official CUB_200_2011 layout (space-separated, 1-based ids), the comma/0-based
subset layout of ../shared/data/cub100, download, errors."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
import torch

from lit_metric.data import CUB200DataModule
from lit_metric.data._image_files import file_md5
from tests.data._image_fixtures import write_image

SPECIES = ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani"]


def _official(root: Path, per_class: int = 3) -> Path:
    """CUB_200_2011/ with images.txt "1 001.Black_footed_Albatross/Black_Footed_Albatross_0001_1.jpg" etc."""
    data = root / "CUB_200_2011"
    images, labels, classes, split = [], [], [], []
    image_id = 1
    for c, name in enumerate(SPECIES, start=1):
        folder = f"{c:03d}.{name}"
        classes.append(f"{c} {folder}")
        for i in range(per_class):
            rel = f"{folder}/{name}_{i:04d}_{image_id}.jpg"
            write_image(data / "images" / rel, seed=image_id)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {i % 2}")
            image_id += 1
    for name, rows in [("images", images), ("image_class_labels", labels), ("classes", classes), ("train_test_split", split)]:
        (data / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return root


def _subset(root: Path, per_class: int = 3) -> Path:
    """The comma-separated, 0-based layout of ../shared/data/cub100."""
    images, labels, classes = [], [], []
    image_id = 0
    for c, name in enumerate(SPECIES):
        classes.append(f"{c}, {name}")
        for i in range(per_class):
            write_image(root / "images" / name / f"{i:04d}.jpg", seed=image_id)
            images.append(f"{image_id}, {name}/{i:04d}.jpg")
            labels.append(f"{image_id}, {c}")
            image_id += 1
    (root / "images.txt").write_text("\n".join(images))
    (root / "image_class_labels.txt").write_text("\n".join(labels))
    (root / "classes.txt").write_text("\n".join(classes))
    (root / "train_test_split.txt").write_text("\n".join(f"{i}, 1" for i in range(image_id)))
    return root


@pytest.mark.parametrize("layout", ["official", "subset"])
def test_class_disjoint_halves(tmp_path: Path, layout: str) -> None:
    root = _official(tmp_path) if layout == "official" else _subset(tmp_path)
    dm = CUB200DataModule(root, p=2, k=2, image_size=16)
    dm.setup()
    prefix = ("001.", "002.", "003.", "004.") if layout == "official" else ("",) * 4
    assert dm.train_set.classes == [prefix[0] + SPECIES[0], prefix[1] + SPECIES[1]]
    assert dm.eval_set.classes == [prefix[2] + SPECIES[2], prefix[3] + SPECIES[3]]
    assert len(dm.train_set) == len(dm.eval_set) == 6  # train_test_split.txt is ignored
    assert all(SPECIES[0] in str(p) or SPECIES[1] in str(p) for p in dm.train_set.paths)
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 16, 16) and torch.bincount(y).tolist() == [2, 2]
    x, y, index = next(iter(dm.val_dataloader()))
    assert x.shape == (6, 3, 16, 16) and y.tolist() == [0, 0, 0, 1, 1, 1] and index.tolist() == list(range(6))


def test_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _official(tmp_path / "src")
    archive = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src / "CUB_200_2011", arcname="CUB_200_2011")
    monkeypatch.setattr(CUB200DataModule, "URLS", (archive.as_uri(),))
    monkeypatch.setattr(CUB200DataModule, "MD5", file_md5(archive))
    dm = CUB200DataModule(tmp_path / "root", download=True, p=2, k=2, image_size=8)
    dm.setup()
    assert len(dm.train_set) == 6 and (tmp_path / "root" / "CUB_200_2011" / "images.txt").is_file()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no data set found at .*download CUB_200_2011\.tgz"):
        CUB200DataModule(tmp_path).setup()
    root = _subset(tmp_path / "a")
    (root / "image_class_labels.txt").write_text("0, 0\n1, 0\n")
    with pytest.raises(ValueError, match=r"image_class_labels\.txt has no class for image id\(s\) \[2, 3, 4, 5, 6\]"):
        CUB200DataModule(root).setup()
    (root / "image_class_labels.txt").write_text("0 0 0\n")
    with pytest.raises(ValueError, match=r"image_class_labels\.txt, line 1: expected an integer id in field 2"):
        CUB200DataModule(root).setup()
    (root / "image_class_labels.txt").write_text("7\n")
    with pytest.raises(ValueError, match=r"image_class_labels\.txt, line 1: expected 2 fields"):
        CUB200DataModule(root).setup()


def test_shared_cub100(shared_data: Path) -> None:
    root = shared_data / "cub100"
    if not (root / "images.txt").is_file():
        pytest.skip(f"{root} not found (see ../shared/data/README.md)")
    dm = CUB200DataModule(root, p=4, k=2, image_size=32)
    dm.setup()
    # classes 0–49 train, 50–99 unseen (5,902 images in all)
    assert dm.train_set.num_classes == dm.eval_set.num_classes == 50
    assert len(dm.train_set) + len(dm.eval_set) == 5902
    assert dm.train_set.classes[0] == "Black_footed_Albatross"
    assert dm.eval_set.class_keys == list(range(50, 100))
    assert not {p.parent.name for p in dm.train_set.paths} & {p.parent.name for p in dm.eval_set.paths}
    x, y, index = dm.eval_set[0]
    assert x.shape == (3, 32, 32) and int(y) == 0 and index == 0
