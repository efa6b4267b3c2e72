"""Stanford Online Products with its official class-disjoint split (Ebay_train.txt / Ebay_test.txt)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from lit_metric.data._image_files import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptPolicy,
    FileList,
    ImageFilesDataModule,
    ImageMode,
)

__all__ = ["SOPDataModule", "read_ebay_list"]


def read_ebay_list(path: Path, data_dir: Path) -> FileList:
    """``Ebay_train.txt`` / ``Ebay_test.txt``: a header ``image_id class_id super_class_id path`` then one
    space-separated row per image; classes are the product ids (``class_id``), paths relative to
    ``data_dir``. The super-class (bicycle, chair, …) is kept as the ``super_class`` column.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: on a row without 4 fields (names the file and line).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Expected the split file {path}, but it does not exist.")
    lines = path.read_text().splitlines()
    files = FileList([], [], extras={"super_class": []})
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or (number == 1 and not parts[0].isdigit()):
            continue  # blank line or the header
        if len(parts) != 4:
            raise ValueError(f"{path}, line {number}: expected 'image_id class_id super_class_id path', got {line!r}.")
        files.paths.append(data_dir / parts[3])
        files.classes.append(int(parts[1]))
        files.extras["super_class"].append(int(parts[2]))
    return files


class SOPDataModule(ImageFilesDataModule):
    """Stanford Online Products (Oh Song et al. 2016, *Deep Metric Learning via Lifted Structured Feature
    Embedding*): 120,053 eBay images of 22,634 products in 12 super-classes. The official split is
    class-disjoint: ``Ebay_train.txt`` (11,318 products, 59,551 images) and ``Ebay_test.txt`` (11,316
    products, 60,502 images). Most products have 2–12 images, so small ``k`` (2–4) is usual.

    ``root`` holds ``Ebay_train.txt``, ``Ebay_test.txt`` and the image folders (``bicycle_final/`` …), or is
    the parent of ``Stanford_Online_Products/``. ``download=True`` fetches ``Stanford_Online_Products.zip``
    from the authors' Stanford server (MD5 checked). The product super-class of each image is
    ``train_set.super_class`` / ``eval_set.super_class``.

    Args:
        root: data folder.
        p, k: P×K training batches.
        batches_per_epoch: training batches per epoch (default: one pass worth of images).
        image_size, mean, std, eval_crop_pct, image_mode, train_transform, eval_transform: see
            :class:`~lit_metric.data.ImageFolderDataModule`.
        eval_batch_size: batch size of validation/test/predict loaders.
        num_workers: DataLoader workers.
        seed: sampler seed.
        download: fetch the archive when ``root`` has no data.
        corrupt_images: ``"error"`` or ``"skip"``.
        drop_singleton_classes: drop single-image training products instead of raising.

    Raises:
        FileNotFoundError: when ``root`` has no ``Ebay_train.txt`` (says what to fetch).
        ValueError: on a malformed split file.
    """

    URLS = (
        "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
        "http://ftp.cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
    )
    FILENAME = "Stanford_Online_Products.zip"
    MD5 = "7f73d41a2f44250d4779881525aea32e"
    DATA_HELP = (
        "download Stanford_Online_Products.zip (https://cvgl.stanford.edu/projects/lifted_struct/) and extract it "
        "into `root` (root/Stanford_Online_Products/Ebay_train.txt, …/bicycle_final/…)."
    )

    def __init__(
        self,
        root: str | Path,
        p: int = 16,
        k: int = 2,
        batches_per_epoch: int | None = None,
        image_size: int | tuple[int, int] = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        eval_crop_pct: float = 0.875,
        image_mode: ImageMode = "RGB",
        train_transform: Callable[[Image.Image], Any] | None = None,
        eval_transform: Callable[[Image.Image], Any] | None = None,
        eval_batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        corrupt_images: CorruptPolicy = "error",
        drop_singleton_classes: bool = False,
    ) -> None:
        super().__init__(
            root, p, k, batches_per_epoch, image_size, mean, std, eval_crop_pct, image_mode, train_transform,
            eval_transform, eval_batch_size, num_workers, seed, download, corrupt_images, drop_singleton_classes,
        )  # fmt: skip

    def find_data_dir(self) -> Path | None:
        for candidate in (self.root, self.root / "Stanford_Online_Products"):
            if (candidate / "Ebay_train.txt").is_file():
                return candidate
        return None

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        return read_ebay_list(data_dir / "Ebay_train.txt", data_dir), read_ebay_list(data_dir / "Ebay_test.txt", data_dir)
