"""Cars196DataModule on generated trees of both official layouts (cars_annos.mat + car_ims/, and the devkit)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from lit_metric.data import Cars196DataModule
from tests.data._image_fixtures import write_image

NUM_CLASSES = 6  # 1–3 train, 4–6 unseen (the real set: 1–98 / 99–196)


def _records(fields: dict[str, list[object]]) -> np.ndarray:
    """A MATLAB struct array (1 × N) as scipy writes it."""
    n = len(next(iter(fields.values())))
    out = np.zeros((1, n), dtype=[(name, "O") for name in fields])
    for name, values in fields.items():
        for i, v in enumerate(values):
            out[name][0, i] = v
    return out


def _names() -> np.ndarray:
    names = np.empty((1, NUM_CLASSES), dtype=object)
    for i in range(NUM_CLASSES):
        names[0, i] = f"Make{i + 1} Model 20{i:02d}"
    return names


def _full_release(root: Path, per_class: int = 3) -> Path:
    paths, classes, test = [], [], []
    n = 0
    for c in range(1, NUM_CLASSES + 1):
        for i in range(per_class):
            n += 1
            rel = f"car_ims/{n:06d}.jpg"
            write_image(root / rel, seed=n)
            paths.append(rel)
            classes.append(c)
            test.append(i % 2)  # the official image-level split, ignored by the metric-learning protocol
    savemat(root / "cars_annos.mat", {"annotations": _records({"relative_im_path": paths, "class": classes, "test": test}), "class_names": _names()})
    return root


def _devkit(root: Path, per_class: int = 3) -> Path:
    for split, folder in (("train", "cars_train"), ("test", "cars_test")):
        names, classes = [], []
        for c in range(1, NUM_CLASSES + 1):
            for i in range(per_class if split == "train" else 1):
                name = f"{c:02d}{i:03d}.jpg"
                write_image(root / folder / name, seed=100 * c + i)
                names.append(name)
                classes.append(c)
        target = root / "devkit" / "cars_train_annos.mat" if split == "train" else root / "cars_test_annos_withlabels.mat"
        target.parent.mkdir(parents=True, exist_ok=True)
        savemat(target, {"annotations": _records({"fname": names, "class": classes})})
    savemat(root / "devkit" / "cars_meta.mat", {"class_names": _names()})
    return root


@pytest.mark.parametrize("layout", ["full", "devkit"])
def test_layouts_and_split(tmp_path: Path, layout: str) -> None:
    root = _full_release(tmp_path) if layout == "full" else _devkit(tmp_path)
    dm = Cars196DataModule(root, p=3, k=2, image_size=16)
    dm.setup()
    assert dm.train_set.classes == [f"Make{i} Model 20{i - 1:02d}" for i in (1, 2, 3)]
    assert dm.eval_set.class_keys == [4, 5, 6]
    per_class = 3 if layout == "full" else 4  # the devkit adds each class's test image: both halves use all images
    assert len(dm.train_set) == len(dm.eval_set) == 3 * per_class
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 3, 16, 16) and torch.bincount(y).tolist() == [2, 2, 2]
    _, y, _ = next(iter(dm.val_dataloader()))
    assert sorted(set(y.tolist())) == [0, 1, 2]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no data set found at .*no longer at a public URL: get `car_ims\.tgz` \+ `cars_annos\.mat`"):
        Cars196DataModule(tmp_path).setup()
    with pytest.raises(FileNotFoundError, match="no longer at a public URL"):  # download=True cannot help: says so
        Cars196DataModule(tmp_path, download=True).setup()
    savemat(tmp_path / "cars_annos.mat", {"annotations": _records({"path": ["a.jpg"], "class": [1]})})
    with pytest.raises(ValueError, match=r"cars_annos\.mat: expected an `annotations` struct with a field 'relative_im_path'"):
        Cars196DataModule(tmp_path).setup()
    (tmp_path / "cars_annos.mat").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"Cannot read the MATLAB file .*cars_annos\.mat"):
        Cars196DataModule(tmp_path).setup()
