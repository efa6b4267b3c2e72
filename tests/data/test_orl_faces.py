"""ORLFacesDataModule on a generated s1…s40 PGM tree and on ../shared/data/orl_faces."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_metric.data import ORLFacesDataModule
from tests.data._image_fixtures import write_image


def _orl_tree(root: Path, per_subject: int = 3) -> Path:
    for s in range(1, 41):
        for i in range(1, per_subject + 1):
            write_image(root / f"s{s}" / f"{i}.pgm", seed=100 * s + i, size=(9, 11), mode="L")
    (root / "README").write_text("The ORL face database")
    return root


def test_fixture_tree_split(tmp_path: Path) -> None:
    dm = ORLFacesDataModule(_orl_tree(tmp_path / "att_faces").parent, p=4, k=2)
    dm.setup()
    # subjects 1–20 train, 21–40 unseen; in subject order (s2 before s10), labels 0..19 per split
    assert dm.train_set.classes == [f"s{i}" for i in range(1, 21)]
    assert dm.eval_set.classes == [f"s{i}" for i in range(21, 41)]
    assert dm.train_set.paths[3].parent.name == "s2" and int(dm.train_set.labels[3]) == 1
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 112, 92) and sorted(torch.bincount(y)[torch.bincount(y) > 0].tolist()) == [2] * 4
    x, y, index = next(iter(dm.val_dataloader()))
    assert x.shape == (60, 1, 112, 92) and index.tolist() == list(range(60))
    dm = ORLFacesDataModule(tmp_path, num_train_subjects=30, p=4, k=2)
    dm.setup()
    assert len(dm.train_set.classes) == 30 and dm.eval_set.classes[0] == "s31"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no data set found at .*To fix it, .*download att_faces\.zip .* holds the folders s1 … s40"):
        ORLFacesDataModule(tmp_path).setup()
    with pytest.raises(FileNotFoundError, match="pass `download=True` to fetch the official archive"):
        ORLFacesDataModule(tmp_path).setup()
    root = _orl_tree(tmp_path / "orl")
    for f in (root / "s17").iterdir():
        f.unlink()
    (root / "s17").rmdir()
    with pytest.raises(FileNotFoundError, match=r"expected the subject folders s1 … s40 .* but s17 are missing"):
        ORLFacesDataModule(root).setup()
    with pytest.raises(ValueError, match=r"`num_train_subjects` to be in 1–39, but got 40"):
        ORLFacesDataModule(root, num_train_subjects=40)
    with pytest.raises(TypeError, match="`num_train_subjects` to be an int"):
        ORLFacesDataModule(root, num_train_subjects=2.5)  # type: ignore[arg-type]


def test_shared_orl_faces(shared_data: Path) -> None:
    root = shared_data / "orl_faces"
    if not root.is_dir():
        pytest.skip(f"{root} not found (see ../shared/data/README.md)")
    dm = ORLFacesDataModule(root, p=5, k=4)
    dm.setup()
    assert len(dm.train_set) == 200 and len(dm.eval_set) == 200
    x, _, _ = dm.eval_set[0]
    assert x.shape == (1, 112, 92)  # native size: nothing resampled
    raw = torch.tensor(list((root / "s21" / "1.pgm").read_bytes()[-112 * 92 :]), dtype=torch.float32).view(112, 92)
    torch.testing.assert_close(x[0], (raw / 255 - 0.5) / 0.5)  # the PGM pixels, normalised
    rgb = ORLFacesDataModule(root, image_mode="RGB", image_size=64, eval_crop_pct=0.875, mean=(0.5,) * 3, std=(0.5,) * 3)
    rgb.setup()
    assert rgb.eval_set[0][0].shape == (3, 64, 64)


def test_download_checks_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """download=True: fetch (a file:// stand-in for the official URL), check the MD5, extract, load."""
    import zipfile

    from lit_metric.data._image_files import file_md5

    tree = _orl_tree(tmp_path / "src", per_subject=2)
    archive = tmp_path / "att_faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(tree.rglob("*")):
            zf.write(f, f.relative_to(tree).as_posix())
    monkeypatch.setattr(ORLFacesDataModule, "URLS", (archive.as_uri(),))
    monkeypatch.setattr(ORLFacesDataModule, "MD5", file_md5(archive))
    dm = ORLFacesDataModule(tmp_path / "root", download=True, p=2, k=2)
    dm.prepare_data()
    dm.setup()
    assert len(dm.train_set) == 40 and (tmp_path / "root" / "s40" / "2.pgm").is_file()
    monkeypatch.setattr(ORLFacesDataModule, "MD5", "f" * 32)
    with pytest.raises(RuntimeError, match=r"does not match the expected f{32}"):
        ORLFacesDataModule(tmp_path / "other", download=True).setup()
