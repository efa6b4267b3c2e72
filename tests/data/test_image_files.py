"""The shared machinery of the image-file data modules: transforms, checks, corrupt files, downloads."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_metric.data import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    ImageFileDataset,
    ImageFolderDataModule,
)
from lit_metric.data._image_files import (
    FileList,
    build_eval_transform,
    build_train_transform,
    download_and_extract,
    file_md5,
    natural_key,
    read_table,
)
from tests.data._image_fixtures import write_corrupt, write_image, write_truncated


def _tree(root: Path, classes: int = 4, per_class: int = 3, suffix: str = ".png") -> Path:
    for c in range(classes):
        for i in range(per_class):
            write_image(root / f"class{c}" / f"{i}{suffix}", seed=10 * c + i)
    return root


def test_eval_transform_resizes_then_crops() -> None:
    image = Image.new("RGB", (300, 200), (255, 127, 0))
    x = build_eval_transform(224, EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD)(image)
    assert x.shape == (3, 224, 224)
    # (v − 127) / 128 per channel on 0–255 pixels: the TF EfficientNet-Lite scaling
    expected = (torch.tensor([255.0, 127.0, 0.0]) - 127) / 128
    torch.testing.assert_close(x.mean(dim=(1, 2)), expected, atol=1e-3, rtol=0)
    # crop_pct=1 with (h, w): exactly that size, no crop
    assert build_eval_transform((40, 30), crop_pct=1.0)(image).shape == (3, 40, 30)


def test_grey_mode_uses_one_channel_stats() -> None:
    image = Image.new("L", (20, 20), 255)
    x = build_eval_transform(16, mode="L")(image)
    assert x.shape == (1, 16, 16)
    mean, std = sum((0.485, 0.456, 0.406)) / 3, sum((0.229, 0.224, 0.225)) / 3
    torch.testing.assert_close(x, torch.full_like(x, (1 - mean) / std), atol=1e-5, rtol=0)
    y = build_train_transform(16, mode="L")(image)
    assert y.shape == (1, 16, 16)


def test_transform_errors() -> None:
    with pytest.raises(ValueError, match="`image_size` to be an int or"):
        build_eval_transform((0, 3))
    with pytest.raises(ValueError, match="`eval_crop_pct` to be in"):
        build_eval_transform(8, crop_pct=1.5)
    with pytest.raises(ValueError, match="`mean` to have 1 or 3 values"):
        build_eval_transform(8, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match="`std` to be > 0"):
        build_eval_transform(8, std=(0.0,))


def test_dataset_items_and_label_order(tmp_path: Path) -> None:
    paths = [write_image(tmp_path / f"{i}.png", seed=i) for i in range(4)]
    files = FileList(paths, ["s10", "s2", "s2", "s10"], extras={"flag": [True, False, True, False], "group": [3, 1, 2, 0]})
    ds = ImageFileDataset(files)
    assert ds.classes == ["s2", "s10"]  # natural order, not "s10" < "s2"
    assert ds.labels.tolist() == [1, 0, 0, 1]
    assert ds.flag.dtype == torch.bool and ds.flag.tolist() == [True, False, True, False]
    assert ds.group.tolist() == [3, 1, 2, 0]
    x, y, index = ds[2]
    assert x.shape == (3, 10, 12) and 0 <= x.min() and x.max() <= 1 and int(y) == 0 and index == 2
    raw = torch.tensor(np.array(Image.open(paths[2]).convert("RGB"))).permute(2, 0, 1) / 255
    torch.testing.assert_close(x, raw.float())


def test_filelist_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one class per path"):
        FileList([tmp_path / "a.png"], [])
    with pytest.raises(ValueError, match="column 'x' has 2 entries for 1 files"):
        FileList([tmp_path / "a.png"], [0], extras={"x": [1, 2]})


def test_natural_key_and_read_table(tmp_path: Path) -> None:
    assert sorted(["s10", "s2", "s1"], key=natural_key) == ["s1", "s2", "s10"]
    (tmp_path / "a.txt").write_text("1 001.A/x y.jpg\n\n2 002.B/z.jpg\n")
    assert read_table(tmp_path / "a.txt", 2) == [["1", "001.A/x y.jpg"], ["2", "002.B/z.jpg"]]
    (tmp_path / "b.txt").write_text("0, A/0.jpg\n1, B/1.jpg\n")
    assert read_table(tmp_path / "b.txt", 2) == [["0", "A/0.jpg"], ["1", "B/1.jpg"]]
    (tmp_path / "c.txt").write_text("7\n")
    with pytest.raises(ValueError, match=r"c.txt, line 1: expected 2 fields"):
        read_table(tmp_path / "c.txt", 2)
    with pytest.raises(FileNotFoundError, match="metadata file .*nope.txt"):
        read_table(tmp_path / "nope.txt", 2)


def test_corrupt_image_error_names_the_file(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    bad = write_corrupt(root / "class0" / "9.png")
    dm = ImageFolderDataModule(root, p=2, k=2, image_size=8)
    dm.setup()
    index = dm.train_set.paths.index(bad)
    with pytest.raises(RuntimeError, match=r"Cannot read image .*9\.png.*corrupt_images='skip'"):
        dm.train_set[index]


def test_corrupt_images_skipped_with_warning_and_count(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", suffix=".jpg")
    bad = [write_corrupt(root / "class1" / "8.jpg"), write_truncated(root / "class3" / "9.jpg")]
    dm = ImageFolderDataModule(root, p=2, k=2, image_size=8, corrupt_images="skip")
    with pytest.warns(UserWarning, match=r"skipped 1 missing or unreadable image\(s\) of the training split"):
        with pytest.warns(UserWarning, match=r"skipped 1 .* of the evaluation split.*9\.jpg"):
            dm.setup()
    assert sorted(dm.skipped_files) == sorted(bad)
    assert len(dm.train_set) == 6 and len(dm.eval_set) == 6
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for x, _, _ in loader:
            assert torch.isfinite(x).all()


def test_missing_listed_files(tmp_path: Path) -> None:
    from lit_metric.data import CUB200DataModule

    root = tmp_path / "cub"
    (root / "images").mkdir(parents=True)
    lines = []
    for i in range(4):
        lines.append(f"{i} {i % 2}/{i}.jpg")
        if i != 3:
            write_image(root / "images" / str(i % 2) / f"{i}.jpg", seed=i)
    (root / "images.txt").write_text("\n".join(lines))
    (root / "image_class_labels.txt").write_text("\n".join(f"{i} {i % 2}" for i in range(4)))
    with pytest.raises(FileNotFoundError, match=r"(?s)1 image file\(s\) listed in the evaluation split are missing.*3\.jpg"):
        CUB200DataModule(root, p=1, k=2, image_size=8).setup()
    dm = CUB200DataModule(root, p=1, k=2, image_size=8, corrupt_images="skip")
    with pytest.warns(UserWarning, match="skipped 1"):
        dm.setup()
    assert len(dm.eval_set) == 1


def test_singleton_class_is_an_error_or_dropped(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data")
    write_image(root / "a_lonely" / "0.png")
    with pytest.raises(ValueError, match=r"1 training class\(es\) have a single image.*'a_lonely'.*drop_singleton_classes"):
        ImageFolderDataModule(root, p=2, k=2, image_size=8).setup()
    dm = ImageFolderDataModule(root, p=2, k=2, image_size=8, drop_singleton_classes=True)
    with pytest.warns(UserWarning, match="dropped 1 single-image training class"):
        dm.setup()
    assert "a_lonely" not in dm.train_set.classes
    dm = ImageFolderDataModule(root, p=2, k=1, image_size=8)  # k=1 needs no pairs
    dm.setup()
    assert "a_lonely" in dm.train_set.classes


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="`root` to be a path"):
        ImageFolderDataModule(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`p` to be >= 1"):
        ImageFolderDataModule(tmp_path, p=0)
    with pytest.raises(ValueError, match=r"`image_mode` to be one of \['RGB', 'L'\]"):
        ImageFolderDataModule(tmp_path, image_mode="CMYK")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`corrupt_images` to be one of \['error', 'skip'\]"):
        ImageFolderDataModule(tmp_path, corrupt_images="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`eval_crop_pct` to be in"):
        ImageFolderDataModule(tmp_path, eval_crop_pct=0)
    with pytest.raises(RuntimeError, match="call `setup\\(\\)` before"):
        ImageFolderDataModule(tmp_path).train_dataloader()


def _archive(tmp_path: Path, kind: str) -> Path:
    src = tmp_path / "src"
    write_image(src / "pack" / "a.png")
    if kind == "tgz":
        path = tmp_path / "pack.tgz"
        with tarfile.open(path, "w:gz") as tf:
            tf.add(src / "pack", arcname="pack")
    else:
        path = tmp_path / "pack.zip"
        with zipfile.ZipFile(path, "w") as zf:
            zf.write(src / "pack" / "a.png", "pack/a.png")
    return path


@pytest.mark.parametrize("kind", ["tgz", "zip"])
def test_download_checks_md5_and_extracts(tmp_path: Path, kind: str) -> None:
    archive = _archive(tmp_path, kind)
    url = archive.as_uri()  # file:// — no network in tests
    target = tmp_path / "root"
    download_and_extract(["file:///nonexistent/x", url], target, archive.name, file_md5(archive))
    assert (target / "pack" / "a.png").is_file() and (target / archive.name).is_file()
    with pytest.raises(RuntimeError, match=r"MD5 [0-9a-f]{32} does not match the expected 0{32}"):
        download_and_extract([url], tmp_path / "other", archive.name, "0" * 32)
    assert not (tmp_path / "other" / archive.name).exists()  # the bad file is removed


def test_download_refuses_paths_outside_root(tmp_path: Path) -> None:
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("../escaped.txt", "x")
    with pytest.raises(RuntimeError, match="points outside"):
        download_and_extract([path.as_uri()], tmp_path / "root", "evil.zip", file_md5(path))
    assert not (tmp_path / "escaped.txt").exists()
