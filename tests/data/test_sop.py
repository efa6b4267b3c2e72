"""SOPDataModule on a generated Stanford_Online_Products tree (Ebay_train.txt / Ebay_test.txt)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from lit_metric.data import SOPDataModule
from lit_metric.data._image_files import file_md5
from tests.data._image_fixtures import write_image

HEADER = "image_id class_id super_class_id path"


def _sop(root: Path) -> Path:
    """Products 1–4 train, 5–7 test (class-disjoint), 2–3 images each, in two super-classes."""
    data = root / "Stanford_Online_Products"
    rows = {"train": [HEADER], "test": [HEADER]}
    image_id = 0
    for product in range(1, 8):
        super_class, folder = (1, "bicycle_final") if product % 2 else (2, "chair_final")
        for i in range(2 + product % 2):
            image_id += 1
            rel = f"{folder}/{111000 + product}_{i}.JPG"
            write_image(data / rel, seed=image_id)
            rows["train" if product <= 4 else "test"].append(f"{image_id} {product} {super_class} {rel}")
    for split, lines in rows.items():
        (data / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_official_split(tmp_path: Path) -> None:
    dm = SOPDataModule(_sop(tmp_path), p=3, k=2, image_size=16)
    dm.setup()
    assert dm.train_set.class_keys == [1, 2, 3, 4] and dm.eval_set.class_keys == [5, 6, 7]
    assert len(dm.train_set) == 10 and len(dm.eval_set) == 8
    assert dm.train_set.super_class.tolist() == [1, 1, 1, 2, 2, 1, 1, 1, 2, 2]
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 3, 16, 16) and sorted(torch.bincount(y)[torch.bincount(y) > 0].tolist()) == [2, 2, 2]
    _, y, index = next(iter(dm.val_dataloader()))
    assert y.tolist() == [0, 0, 0, 1, 1, 2, 2, 2] and index.tolist() == list(range(8))


def test_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _sop(tmp_path / "src")
    archive = tmp_path / "Stanford_Online_Products.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.rglob("*")):
            zf.write(f, f.relative_to(src).as_posix())
    monkeypatch.setattr(SOPDataModule, "URLS", (archive.as_uri(),))
    monkeypatch.setattr(SOPDataModule, "MD5", file_md5(archive))
    dm = SOPDataModule(tmp_path / "root", download=True, p=2, k=2, image_size=8)
    dm.setup()
    assert len(dm.eval_set) == 8


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no data set found at .*pass `download=True`.*Stanford_Online_Products\.zip"):
        SOPDataModule(tmp_path).setup()
    (tmp_path / "Ebay_train.txt").write_text(f"{HEADER}\n1 1 1 a.JPG\n")
    with pytest.raises(FileNotFoundError, match=r"split file .*Ebay_test\.txt"):
        SOPDataModule(tmp_path, k=1).setup()
    (tmp_path / "Ebay_train.txt").write_text(f"{HEADER}\n1 1 a.JPG\n")
    with pytest.raises(ValueError, match=r"Ebay_train\.txt, line 2: expected 'image_id class_id super_class_id path'"):
        SOPDataModule(tmp_path).setup()
