"""Shared machinery of the image-file data modules (private).

A split is a list of image files with a class key each (:class:`FileList`); :class:`ImageFileDataset`
loads them with PIL and returns ``(x, label, index)``; :class:`ImageFilesDataModule` turns a
subclass's two file lists (train classes, unseen evaluation classes) into a P×K training loader and
sequential evaluation loaders, with ImageNet-style default transforms and up-front checks (missing
root, missing or unreadable files, single-image classes) whose errors name the path and the fix.
Downloads (:func:`download_and_extract`) verify an MD5 checksum before extracting anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import tarfile
import urllib.request
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from lit_metric._validation import check_choice, check_int
from lit_metric.data.samplers import PKSampler, disable_sampler_injection, distributed_eval_sampler

__all__ = [
    "CorruptPolicy",
    "ImageMode",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "FileList",
    "ImageFileDataset",
    "ImageFilesDataModule",
    "build_eval_transform",
    "build_train_transform",
    "download_and_extract",
    "file_md5",
    "natural_key",
    "read_table",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: ``(x − 127) / 128`` on 0–255 pixels, the input scaling of the TF EfficientNet-Lite weights.
EFFICIENTNET_LITE_MEAN: tuple[float, float, float] = (127 / 255, 127 / 255, 127 / 255)
EFFICIENTNET_LITE_STD: tuple[float, float, float] = (128 / 255, 128 / 255, 128 / 255)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pbm", ".tif", ".tiff", ".webp", ".gif")

ImageMode = Literal["RGB", "L"]
CorruptPolicy = Literal["error", "skip"]


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``s2`` before ``s10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


@dataclass
class FileList:
    """The image files of one split.

    Attributes:
        paths: image files.
        classes: each file's class key (any sortable value: a name or an original id).
        class_names: optional display name of each class key.
        extras: optional per-file columns (e.g. In-Shop's ``is_query`` / ``is_gallery``).
    """

    paths: list[Path]
    classes: list[Hashable]
    class_names: dict[Hashable, str] = field(default_factory=dict)
    extras: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.paths) != len(self.classes):
            raise ValueError(f"FileList needs one class per path, but got {len(self.classes)} and {len(self.paths)}.")
        for name, column in self.extras.items():
            if len(column) != len(self.paths):
                raise ValueError(f"FileList column {name!r} has {len(column)} entries for {len(self.paths)} files.")

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, keep: Sequence[int] | np.ndarray) -> FileList:
        """The files at positions ``keep`` (in that order)."""
        keep = [int(i) for i in keep]
        return FileList(
            [self.paths[i] for i in keep],
            [self.classes[i] for i in keep],
            dict(self.class_names),
            {name: [column[i] for i in keep] for name, column in self.extras.items()},
        )

    def name_of(self, key: Hashable) -> str:
        return self.class_names.get(key, str(key))


class ImageFileDataset(Dataset[tuple[Tensor, Tensor, int]]):
    """Items ``(x, label, index)`` from image files, loaded with PIL and converted to ``mode``.

    Labels are contiguous ``0 … C−1`` in the sorted order of the split's class keys
    (:attr:`class_keys` maps them back, :attr:`classes` gives display names).  Extra per-file columns
    of the :class:`FileList` become attributes: bool columns as bool tensors (e.g. ``is_query``).

    Args:
        files: the split.
        transform: applied to the PIL image (default: ``ToTensor``).
        mode: PIL mode, ``"RGB"`` (3 channels) or ``"L"`` (grey, 1 channel).
        corrupt_hint: appended to the error raised on an unreadable image.
    """

    def __init__(
        self,
        files: FileList,
        transform: Callable[[Image.Image], Any] | None = None,
        mode: ImageMode = "RGB",
        corrupt_hint: str = "",
    ) -> None:
        self.paths = list(files.paths)
        self.class_keys: list[Hashable] = sorted(set(files.classes), key=_class_sort_key)
        index_of = {key: i for i, key in enumerate(self.class_keys)}
        self.labels = torch.tensor([index_of[c] for c in files.classes], dtype=torch.long)
        self.classes: list[str] = [files.name_of(key) for key in self.class_keys]
        self.transform = transform
        self.mode = mode
        self.corrupt_hint = corrupt_hint
        for name, column in files.extras.items():
            value: Any = column
            if column and all(isinstance(v, bool | np.bool_) for v in column):
                value = torch.tensor(column, dtype=torch.bool)
            elif column and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in column):
                value = torch.tensor(column, dtype=torch.long)
            setattr(self, name, value)

    @property
    def num_classes(self) -> int:
        return len(self.class_keys)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Image.Image:
        """The PIL image of item ``index`` in :attr:`mode` (no transform)."""
        path = self.paths[index]
        try:
            with Image.open(path) as image:
                return image.convert(self.mode)
        except (OSError, SyntaxError, ValueError) as err:
            raise RuntimeError(f"Cannot read image {path}: {err}.{self.corrupt_hint}") from err

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        image = self.load_image(index)
        x = self.transform(image) if self.transform is not None else _to_tensor(image)
        return x, self.labels[index], index


def _class_sort_key(key: Hashable) -> tuple[Any, ...]:
    return (0, key) if isinstance(key, int | np.integer) else (1, natural_key(str(key)))


def _to_tensor(image: Image.Image) -> Tensor:
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div(255.0)


# --- transforms --------------------------------------------------------------------------------
def _size_pair(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        check_int(image_size, "image_size", 1)
        return image_size, image_size
    if isinstance(image_size, Sequence) and len(image_size) == 2 and all(isinstance(s, int) and s >= 1 for s in image_size):
        return int(image_size[0]), int(image_size[1])
    raise ValueError(f"Expected argument `image_size` to be an int or (height, width) of ints >= 1, but got {image_size!r}.")


def _channel_stats(mean: Sequence[float], std: Sequence[float], mode: ImageMode) -> tuple[list[float], list[float]]:
    channels = 3 if mode == "RGB" else 1
    out = []
    for name, value in (("mean", mean), ("std", std)):
        values = [float(v) for v in value]
        if len(values) == 3 and channels == 1:
            values = [sum(values) / 3]
        if len(values) == 1 and channels == 3:
            values = values * 3
        if len(values) != channels:
            raise ValueError(
                f"Expected argument `{name}` to have 1 or {channels} values for image_mode={mode!r}, but got {values}."
            )
        out.append(values)
    if any(s <= 0 for s in out[1]):
        raise ValueError(f"Expected argument `std` to be > 0, but got {list(std)}.")
    return out[0], out[1]


def build_train_transform(
    image_size: int | Sequence[int] = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mode: ImageMode = "RGB",
    scale: tuple[float, float] = (0.2, 1.0),
) -> Callable[[Image.Image], Tensor]:
    """ImageNet-style training augmentation: random resized crop (``scale`` of the area), horizontal flip,
    to tensor, normalise."""
    from torchvision import transforms as T

    m, s = _channel_stats(mean, std, mode)
    return T.Compose(
        [
            T.RandomResizedCrop(_size_pair(image_size), scale=scale, antialias=True),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(m, s),
        ]
    )


def build_eval_transform(
    image_size: int | Sequence[int] = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mode: ImageMode = "RGB",
    crop_pct: float = 0.875,
    interpolation: Literal["bilinear", "bicubic"] = "bicubic",
) -> Callable[[Image.Image], Tensor]:
    """Evaluation transform: resize to ``image_size / crop_pct`` (shorter side), centre crop ``image_size``,
    to tensor, normalise (the ImageNet evaluation protocol: 256 → 224 for ``crop_pct=0.875``).

    With ``crop_pct=1`` and a ``(height, width)`` size the image is resized to exactly that size.
    """
    from torchvision import transforms as T

    if not 0 < crop_pct <= 1:
        raise ValueError(f"Expected argument `eval_crop_pct` to be in (0, 1], but got {crop_pct}.")
    m, s = _channel_stats(mean, std, mode)
    h, w = _size_pair(image_size)
    mode_ = T.InterpolationMode.BICUBIC if interpolation == "bicubic" else T.InterpolationMode.BILINEAR
    if crop_pct == 1 and h != w:
        resize: list[Any] = [T.Resize((h, w), interpolation=mode_, antialias=True)]
    else:
        resize = [
            T.Resize(int(round(min(h, w) / crop_pct)), interpolation=mode_, antialias=True),
            T.CenterCrop((h, w)),
        ]
    return T.Compose([*resize, T.ToTensor(), T.Normalize(m, s)])


# --- downloads ---------------------------------------------------------------------------------
def file_md5(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_and_extract(urls: Sequence[str], root: str | Path, filename: str, md5: str) -> Path:
    """Download ``filename`` into ``root`` from the first working URL, check its MD5, extract it there.

    An archive already in ``root`` with the right checksum is not downloaded again.

    Raises:
        RuntimeError: when every URL fails or the checksum does not match (the bad file is removed).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / filename
    if not (archive.is_file() and file_md5(archive) == md5):
        errors = []
        for url in urls:
            try:
                _fetch(url, archive)
            except (OSError, ValueError) as err:  # URLError is an OSError
                errors.append(f"{url}: {err}")
                continue
            got = file_md5(archive)
            if got == md5:
                break
            archive.unlink()
            errors.append(f"{url}: MD5 {got} does not match the expected {md5}")
        else:
            raise RuntimeError(
                f"Could not download {filename} into {root}:\n  " + "\n  ".join(errors) + "\nDownload it by hand "
                f"into {root} (it is then checked and extracted), or extract it there yourself."
            )
    _extract(archive, root)
    return root


def _fetch(url: str, target: Path) -> None:
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:  # noqa: S310
        total = int(response.headers.get("Content-Length") or 0) or None
        bar = _progress(total, f"Downloading {target.name}")
        for chunk in iter(lambda: response.read(1 << 20), b""):
            out.write(chunk)
            if bar is not None:
                bar.update(len(chunk))
        if bar is not None:
            bar.close()
    os.replace(partial, target)


def _progress(total: int | None, desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False)


def _extract(archive: Path, root: Path) -> None:
    target = root.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if not (target / name).resolve().is_relative_to(target):
                    raise RuntimeError(f"Refusing to extract {name!r} from {archive}: it points outside {root}.")
            zf.extractall(root)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                tf.extractall(root, filter="data")
            except TypeError:  # pragma: no cover - Python without extraction filters
                for member in tf.getmembers():
                    if not (target / member.name).resolve().is_relative_to(target):
                        raise RuntimeError(f"Refusing to extract {member.name!r} from {archive}.") from None
                tf.extractall(root)
    else:
        raise RuntimeError(f"{archive} is neither a zip nor a tar archive.")


# --- the data module -----------------------------------------------------------------------------
class ImageFilesDataModule(L.LightningDataModule):
    """Base of the image-file data modules: a subclass implements :meth:`load_file_lists` (and optionally
    :meth:`find_data_dir`, :meth:`download_data`); the base does the checks, transforms and loaders.

    Items are ``(x, label, index)``; training batches are P×K (:class:`~lit_metric.data.PKSampler`),
    evaluation batches sequential over the unseen classes (validation, test and predict share them).
    """

    #: Shown when the data is missing: what to fetch and where to put it.
    DATA_HELP: str = ""
    #: Subclasses with a public archive set ``URLS``, ``FILENAME``, ``MD5``.
    URLS: tuple[str, ...] = ()
    FILENAME: str = ""
    MD5: str = ""

    def __init__(
        self,
        root: str | Path,
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
        super().__init__()
        if not isinstance(root, str | Path):
            raise TypeError(f"Expected argument `root` to be a path, but got {type(root).__name__}.")
        self.root = Path(root).expanduser()
        self.p = check_int(p, "p", 1)
        self.k = check_int(k, "k", 1)
        self.batches_per_epoch = None if batches_per_epoch is None else check_int(batches_per_epoch, "batches_per_epoch", 1)
        self.image_size = _size_pair(image_size)
        self.image_mode: ImageMode = check_choice(image_mode, "image_mode", ("RGB", "L"))  # type: ignore[assignment]
        self.mean, self.std = _channel_stats(mean, std, self.image_mode)
        if not 0 < eval_crop_pct <= 1:
            raise ValueError(f"Expected argument `eval_crop_pct` to be in (0, 1], but got {eval_crop_pct}.")
        self.eval_crop_pct = float(eval_crop_pct)
        self.train_transform = train_transform if train_transform is not None else self.default_train_transform()
        self.eval_transform = eval_transform if eval_transform is not None else self.default_eval_transform()
        self.eval_batch_size = check_int(eval_batch_size, "eval_batch_size", 1)
        self.num_workers = check_int(num_workers, "num_workers", 0)
        self.seed = int(seed)
        self.download = bool(download)
        self.corrupt_images: CorruptPolicy = check_choice(corrupt_images, "corrupt_images", ("error", "skip"))  # type: ignore[assignment]
        self.drop_singleton_classes = bool(drop_singleton_classes)
        self.train_set: ImageFileDataset | None = None
        self.eval_set: ImageFileDataset | None = None
        self.skipped_files: list[Path] = []

    # --- hooks of the subclasses -------------------------------------------------------------------
    def default_train_transform(self) -> Callable[[Image.Image], Any]:
        return build_train_transform(self.image_size, self.mean, self.std, self.image_mode)

    def default_eval_transform(self) -> Callable[[Image.Image], Any]:
        return build_eval_transform(self.image_size, self.mean, self.std, self.image_mode, self.eval_crop_pct)

    def find_data_dir(self) -> Path | None:
        """The folder holding the data set inside (or at) :attr:`root`, or None when it is not there."""
        return self.root if self.root.is_dir() else None

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        """The training and evaluation splits."""
        raise NotImplementedError

    def download_data(self) -> None:
        """Fetch the official archive into :attr:`root` (only where a public URL exists)."""
        if not self.URLS:
            raise FileNotFoundError(self._missing_message(can_download=False))
        download_and_extract(self.URLS, self.root, self.FILENAME, self.MD5)

    # --- setup ---------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.download and self.find_data_dir() is None:
            self.download_data()

    def setup(self, stage: str | None = None) -> None:
        # the P×K batch sampler shards itself across ranks: Lightning must not inject a DistributedSampler
        disable_sampler_injection(self.trainer)
        if self.train_set is not None:
            return
        data_dir = self.find_data_dir()
        if data_dir is None and self.download:
            self.download_data()
            data_dir = self.find_data_dir()
        if data_dir is None:
            raise FileNotFoundError(self._missing_message(can_download=bool(self.URLS)))
        train, evaluation = self.load_file_lists(data_dir)
        train = self._check_files(train, "training")
        evaluation = self._check_files(evaluation, "evaluation")
        train = self._check_class_sizes(train)
        hint = (
            " Replace or delete the file, or pass `corrupt_images='skip'` to leave unreadable images out."
            if self.corrupt_images == "error"
            else ""
        )
        self.train_set = ImageFileDataset(train, self.train_transform, self.image_mode, hint)
        self.eval_set = ImageFileDataset(evaluation, self.eval_transform, self.image_mode, hint)

    def _missing_message(self, can_download: bool) -> str:
        how = "pass `download=True` to fetch the official archive, or " if can_download else ""
        return f"{type(self).__name__}: no data set found at {self.root}. To fix it, {how}{self.DATA_HELP}"

    def _check_files(self, files: FileList, split: str) -> FileList:
        if len(files) == 0:
            raise ValueError(f"{type(self).__name__}: the {split} split under {self.root} holds no images.")
        missing = [i for i, path in enumerate(files.paths) if not path.is_file()]
        bad: list[int] = list(missing)
        if self.corrupt_images == "skip":
            missing_set = set(missing)
            candidates = [i for i in range(len(files)) if i not in missing_set]
            bad += [i for i in _progress_iter(candidates, f"Checking {split} images") if not _readable(files.paths[i])]
        elif missing:
            shown = "\n  ".join(str(files.paths[i]) for i in missing[:5])
            raise FileNotFoundError(
                f"{type(self).__name__}: {len(missing)} image file(s) listed in the {split} split are missing, e.g.\n  "
                f"{shown}\nThe download is incomplete: re-extract the archive into {self.root}, or pass "
                "`corrupt_images='skip'` to leave them out."
            )
        if not bad:
            return files
        bad_set = set(bad)
        skipped = [files.paths[i] for i in sorted(bad_set)]
        self.skipped_files.extend(skipped)
        shown = ", ".join(str(p) for p in skipped[:5])
        warnings.warn(
            f"{type(self).__name__}: skipped {len(skipped)} missing or unreadable image(s) of the {split} split "
            f"(corrupt_images='skip'): {shown}{' …' if len(skipped) > 5 else ''}",
            stacklevel=2,
        )
        kept = files.select([i for i in range(len(files)) if i not in bad_set])
        if len(kept) == 0:
            raise ValueError(f"{type(self).__name__}: no readable image left in the {split} split under {self.root}.")
        return kept

    def _check_class_sizes(self, files: FileList) -> FileList:
        if self.k < 2:
            return files
        counts = Counter(files.classes)
        lone = {c for c, n in counts.items() if n < 2}
        if not lone:
            return files
        path_of = {c: p for c, p in zip(files.classes, files.paths) if c in lone}
        names = [f"{files.name_of(c)!r} ({path_of[c]})" for c in sorted(lone, key=_class_sort_key)]
        listed = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
        if not self.drop_singleton_classes:
            raise ValueError(
                f"{type(self).__name__}: {len(lone)} training class(es) have a single image, but k={self.k} draws "
                f"{self.k} images per class and needs at least 2 distinct ones for a positive pair: {listed}. "
                "Add images, remove the class, set k=1, or pass `drop_singleton_classes=True`."
            )
        warnings.warn(f"{type(self).__name__}: dropped {len(lone)} single-image training class(es): {listed}", stacklevel=2)
        return files.select([i for i, c in enumerate(files.classes) if c not in lone])

    # --- loaders -------------------------------------------------------------------------------
    def _require(self, dataset: ImageFileDataset | None) -> ImageFileDataset:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call `setup()` before asking for a data loader.")
        return dataset

    @property
    def num_classes(self) -> int:
        """Number of training classes (e.g. for a classification loss's ``num_classes``)."""
        return self._require(self.train_set).num_classes

    def train_dataloader(self) -> DataLoader:
        train_set = self._require(self.train_set)
        sampler = PKSampler(train_set.labels, self.p, self.k, self.batches_per_epoch, seed=self.seed)
        return DataLoader(
            train_set, batch_sampler=sampler, num_workers=self.num_workers, persistent_workers=self.num_workers > 0
        )

    def _eval_loader(self, dataset: ImageFileDataset | Subset | None = None) -> DataLoader:
        dataset = self._require(self.eval_set) if dataset is None else dataset
        return DataLoader(
            dataset,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=distributed_eval_sampler(dataset),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader()


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def _progress_iter(items: list[int], desc: str) -> Iterable[int]:
    if len(items) < 2000:
        return items
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return items
    return tqdm(items, desc=desc, leave=False)


def read_table(path: Path, columns: int, int_columns: Sequence[int] = ()) -> list[list[Any]]:
    """Rows of a CUB-style metadata file: space- or comma-separated, ``columns`` fields (the last keeps any
    spaces); the fields at ``int_columns`` are converted to int.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: on a row with too few fields or a non-integer id (names the file and line).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Expected the metadata file {path}, but it does not exist.")
    rows: list[list[Any]] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts: list[Any] = [p.strip() for p in (line.split(",", columns - 1) if "," in line else line.split(None, columns - 1))]
        if len(parts) != columns:
            raise ValueError(f"{path}, line {number}: expected {columns} fields, but got {line!r}.")
        for c in int_columns:
            try:
                parts[c] = int(parts[c])
            except ValueError:
                raise ValueError(f"{path}, line {number}: expected an integer id in field {c + 1}, but got {line!r}.") from None
        rows.append(parts)
    return rows
