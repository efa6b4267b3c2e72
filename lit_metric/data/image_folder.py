"""A folder per class (``root/<class>/<image>``) as a metric-learning data module."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from lit_metric._validation import check_choice
from lit_metric.data._image_files import (
    IMAGE_EXTENSIONS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptPolicy,
    FileList,
    ImageFilesDataModule,
    ImageMode,
)

__all__ = ["ImageFolderDataModule", "scan_class_folders"]


def scan_class_folders(directory: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> FileList:
    """Every image of ``directory/<class>/`` (searched recursively inside each class folder), classes named
    by their folder, sorted by name (as torchvision's ``ImageFolder``).

    Raises:
        FileNotFoundError: when ``directory`` does not exist.
        ValueError: when it holds no class folder, or a class folder holds no image.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"Expected a folder of class folders at {directory}, but it does not exist.")
    class_dirs = sorted(d for d in directory.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise ValueError(
            f"Expected one sub-folder per class in {directory} (root/<class>/<image>), but found none."
        )
    suffixes = tuple(e.lower() for e in extensions)
    paths: list[Path] = []
    classes: list[Any] = []
    for class_dir in class_dirs:
        images = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith(".")
        )
        if not images:
            raise ValueError(
                f"The class folder {class_dir} holds no image (extensions {list(suffixes)}). Remove the empty folder, "
                "or add its images."
            )
        paths += images
        classes += [class_dir.name] * len(images)
    return FileList(paths, classes)


class ImageFolderDataModule(ImageFilesDataModule):
    """Any data set stored as a folder per class, ``root/<class>/<image>``, with a metric-learning split.

    ``split``:

    * ``"classes"`` (default): class-disjoint. Classes sorted by folder name (or shuffled with ``seed``
      when ``shuffle_classes``); the first ``train_fraction`` of them train, the others are the unseen
      evaluation classes. ``train_classes`` names the training classes explicitly instead.
    * ``"folders"``: the split is on disk, ``root/<train_dir>/<class>/…`` and ``root/<eval_dir>/<class>/…``.
    * ``"none"``: every image in both splits (e.g. to export embeddings of a whole folder).

    Items are ``(x, label, index)``; training batches are P×K, evaluation batches sequential. Labels are
    ``0 … C−1`` per split; ``train_set.classes`` / ``eval_set.classes`` give the folder names.

    Args:
        root: the folder of class folders.
        split: see above.
        train_fraction: share of the classes used for training with ``split="classes"``.
        train_classes: explicit training class names with ``split="classes"`` (overrides ``train_fraction``).
        shuffle_classes: shuffle the class order (with ``seed``) before the ``train_fraction`` cut.
        train_dir, eval_dir: sub-folders of ``root`` with ``split="folders"``.
        extensions: image file extensions searched for (case-insensitive).
        p: classes per training batch.
        k: images per class in a training batch.
        batches_per_epoch: training batches per epoch (default: one pass worth of images).
        image_size: output size, an int (square) or ``(height, width)``.
        mean, std: normalisation (default ImageNet's; use ``EFFICIENTNET_LITE_MEAN/STD`` with the offline
            EfficientNet-Lite0 weights).
        eval_crop_pct: evaluation resize to ``image_size / eval_crop_pct`` then centre crop.
        image_mode: ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).
        train_transform, eval_transform: replace the default transforms (called on PIL images).
        eval_batch_size: batch size of validation/test/predict loaders.
        num_workers: DataLoader workers.
        seed: sampler (and class shuffle) seed.
        download: unused (no archive behind a folder); kept for a uniform signature.
        corrupt_images: ``"error"`` (raise naming the file) or ``"skip"`` (decode every image once in
            ``setup`` and leave unreadable ones out, with a warning and :attr:`skipped_files`).
        drop_singleton_classes: drop training classes with one image instead of raising (when ``k >= 2``).

    Raises:
        ValueError: for an unknown ``split``, a ``train_fraction`` outside (0, 1), unknown
            ``train_classes``, an empty class folder, or a split without classes.
        FileNotFoundError: when ``root`` (or ``root/<train_dir>``, ``root/<eval_dir>``) does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> for c in ["ant", "bee", "cat", "dog"]:
        ...     (root / c).mkdir()
        ...     for i in range(3):
        ...         Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(root / c / f"{i}.png")
        >>> dm = ImageFolderDataModule(root, p=2, k=2, image_size=8)
        >>> dm.setup()
        >>> dm.train_set.classes, dm.eval_set.classes
        (['ant', 'bee'], ['cat', 'dog'])
        >>> x, y, index = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), y.tolist().count(y[0].item())
        ((4, 3, 8, 8), 2)
    """

    DATA_HELP = "point `root` at a folder holding one sub-folder of images per class (root/<class>/<image>)."

    def __init__(
        self,
        root: str | Path,
        split: Literal["classes", "folders", "none"] = "classes",
        train_fraction: float = 0.5,
        train_classes: Sequence[str] | None = None,
        shuffle_classes: bool = False,
        train_dir: str = "train",
        eval_dir: str = "val",
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        p: int = 8,
        k: int = 4,
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
        self.split = check_choice(split, "split", ("classes", "folders", "none"))
        if not 0 < train_fraction < 1:
            raise ValueError(f"Expected argument `train_fraction` to be in (0, 1), but got {train_fraction}.")
        self.train_fraction = float(train_fraction)
        self.train_classes = None if train_classes is None else [str(c) for c in train_classes]
        self.shuffle_classes = bool(shuffle_classes)
        self.train_dir, self.eval_dir = train_dir, eval_dir
        self.extensions = tuple(extensions)
        super().__init__(
            root, p, k, batches_per_epoch, image_size, mean, std, eval_crop_pct, image_mode, train_transform,
            eval_transform, eval_batch_size, num_workers, seed, download, corrupt_images, drop_singleton_classes,
        )  # fmt: skip

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        if self.split == "folders":
            for sub in (self.train_dir, self.eval_dir):
                if not (data_dir / sub).is_dir():
                    present = sorted(d.name for d in data_dir.iterdir() if d.is_dir())
                    raise FileNotFoundError(
                        f"With split='folders' {type(self).__name__} expects {data_dir / sub}, but it does not exist "
                        f"(sub-folders present: {present}). Set `train_dir` / `eval_dir`, or use split='classes'."
                    )
            return (
                scan_class_folders(data_dir / self.train_dir, self.extensions),
                scan_class_folders(data_dir / self.eval_dir, self.extensions),
            )
        files = scan_class_folders(data_dir, self.extensions)
        if self.split == "none":
            return files, files
        names = sorted({str(c) for c in files.classes})
        if self.train_classes is not None:
            unknown = sorted(set(self.train_classes) - set(names))
            if unknown:
                raise ValueError(
                    f"Expected argument `train_classes` to name class folders of {data_dir}, but got unknown {unknown} "
                    f"(classes: {names[:10]}{' …' if len(names) > 10 else ''})."
                )
            train_names = set(self.train_classes)
        else:
            order = list(names)
            if self.shuffle_classes:
                order = [names[i] for i in np.random.default_rng(self.seed).permutation(len(names))]
            n_train = int(round(self.train_fraction * len(order)))
            if n_train < 1 or n_train >= len(order):
                raise ValueError(
                    f"{type(self).__name__}: train_fraction={self.train_fraction} of {len(order)} classes leaves no "
                    "class for one of the splits. Add class folders or change `train_fraction`."
                )
            train_names = set(order[:n_train])
        is_train = [c in train_names for c in files.classes]
        if all(is_train):
            raise ValueError(f"{type(self).__name__}: `train_classes` covers every class; no unseen class is left.")
        return (
            files.select([i for i, t in enumerate(is_train) if t]),
            files.select([i for i, t in enumerate(is_train) if not t]),
        )
