"""Omniglot (Lake et al. 2015) with Lake's background/evaluation split, supervised (P×K) or self-supervised.

Reads, under ``root``, either the npz copies (``images_background.npz`` / ``images_evaluation.npz``:
``images`` bool ``(C, 20, 105, 105)`` with True = white background, ``labels`` ``(C, 20)``) or the
official zips (``images_background.zip`` / ``images_evaluation.zip``, layout
``images_<split>/<alphabet>/<character>/<NNNN_MM>.png``, 105×105 1-bit PNGs).  Characters are numbered
in sorted (alphabet, character) order and drawings in sorted file-name order; images are inverted so
strokes are 1.0 and the background 0.0, resized once to ``image_size`` at setup (area interpolation)
and kept in memory as uint8.  ``download=True`` fetches the official zips from
github.com/brendenlake/omniglot (MD5-checked); nothing is downloaded otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, default_collate

from lit_metric._validation import check_choice, check_int
from lit_metric.data.datasets import TensorImageDataset
from lit_metric.data.samplers import PKSampler, disable_sampler_injection, distributed_eval_sampler
from lit_metric.data.two_view import SimCLRAffineTransform, ssl_dataloader

__all__ = [
    "OMNIGLOT_MD5",
    "OMNIGLOT_URLS",
    "OmniglotDataModule",
    "download_omniglot",
    "load_omniglot",
    "resolve_root",
    "rotation_classes",
]

Split = Literal["background", "evaluation"]
SPLITS: tuple[str, ...] = ("background", "evaluation")

OMNIGLOT_URLS: dict[str, str] = {
    "background": "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_background.zip",
    "evaluation": "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_evaluation.zip",
}
#: MD5 of the official zips (the values torchvision's Omniglot dataset checks too)
OMNIGLOT_MD5: dict[str, str] = {
    "background": "68d2efa1b9178cc56df9314c21c6e718",
    "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` (separate so that tests can replace it; they never touch the network)."""
    torch.hub.download_url_to_file(url, str(dest), progress=True)


def download_omniglot(root: str | Path, splits: tuple[str, ...] = SPLITS) -> list[Path]:
    """Fetch the official ``images_<split>.zip`` files into ``root`` and check their MD5.

    Files already present with the right checksum are kept.

    Raises:
        RuntimeError: if a downloaded file's MD5 does not match (the file is removed).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in splits:
        check_choice(split, "split", SPLITS)
        dest = root / f"images_{split}.zip"
        if not (dest.is_file() and _md5(dest) == OMNIGLOT_MD5[split]):
            tmp = dest.with_suffix(".zip.part")
            _fetch(OMNIGLOT_URLS[split], tmp)
            digest = _md5(tmp)
            if digest != OMNIGLOT_MD5[split]:
                tmp.unlink(missing_ok=True)
                raise RuntimeError(
                    f"Checksum mismatch for {OMNIGLOT_URLS[split]}: expected MD5 {OMNIGLOT_MD5[split]}, got {digest}. "
                    "The download was removed; retry, or fetch the file by hand into `root`."
                )
            tmp.replace(dest)
        paths.append(dest)
    return paths


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        images = data["images"]  # (C, 20, 105, 105) bool, True = background
        labels = data["labels"]
    c, d = images.shape[:2]
    return images.reshape(c * d, *images.shape[2:]), labels.reshape(c * d).astype(np.int64)


def _read_zip(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".png"))
        keys = []
        for name in names:
            parts = name.split("/")
            if len(parts) < 3:
                raise ValueError(f"Unexpected file {name!r} in {path}: expected <alphabet>/<character>/<image>.png.")
            keys.append((parts[-3], parts[-2], parts[-1]))
        order = sorted(range(len(names)), key=lambda i: keys[i])
        characters = sorted({(a, c) for a, c, _ in keys})
        char_id = {ac: i for i, ac in enumerate(characters)}
        images = []
        labels = []
        for i in order:
            with Image.open(io.BytesIO(zf.read(names[i]))) as img:
                images.append(np.asarray(img.convert("L")) > 127)  # True = white background
            labels.append(char_id[keys[i][:2]])
    if not images:
        raise ValueError(f"No PNG images found in {path}.")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _resize(background: np.ndarray, image_size: int, chunk: int = 2048) -> Tensor:
    """Bool ``(N, H, W)`` with True = background -> uint8 ``(N, 1, S, S)`` with strokes 255 (chunked)."""
    n = background.shape[0]
    out = torch.empty((n, 1, image_size, image_size), dtype=torch.uint8)
    for start in range(0, n, chunk):
        # numpy's bool -> float32 cast is several times faster than torch's on CPU
        x = torch.from_numpy((~background[start : start + chunk]).astype(np.float32)).unsqueeze(1)
        if x.shape[-1] != image_size or x.shape[-2] != image_size:
            x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="area")
        out[start : start + chunk] = (x * 255).round_().to(torch.uint8)
    return out


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime: float, size: int, image_size: int) -> tuple[Tensor, Tensor]:
    p = Path(path)
    background, labels = _read_npz(p) if p.suffix == ".npz" else _read_zip(p)
    return _resize(background, image_size), torch.from_numpy(labels)


_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_root(root: str | Path) -> Path:
    """``root`` as given if it exists; a relative ``root`` that does not exist from the working directory is
    also looked up from the project checkout, so that ``../shared/data/omniglot`` in the configs works from
    any working directory.  Returns ``root`` unchanged when neither exists (the loader then explains)."""
    path = Path(root).expanduser()
    if path.exists() or path.is_absolute():
        return path
    fallback = _PROJECT_ROOT / path
    return fallback if fallback.exists() else path


def _find(root: Path, split: str, source: str) -> Path | None:
    candidates = {"npz": [root / f"images_{split}.npz"], "zip": [root / f"images_{split}.zip"]}
    order = candidates["npz"] + candidates["zip"] if source == "auto" else candidates[source]
    return next((p for p in order if p.is_file()), None)


def load_omniglot(
    root: str | Path,
    split: Split = "background",
    image_size: int = 28,
    source: Literal["auto", "npz", "zip"] = "auto",
) -> tuple[Tensor, Tensor]:
    """One Omniglot split as ``(images, labels)``: uint8 ``(N, 1, S, S)`` (strokes 255) and ``(N,)`` character ids.

    Cached in memory per (file, size) so that repeated setups are free.

    Args:
        root: folder holding ``images_<split>.npz`` or ``images_<split>.zip``.
        split: ``"background"`` (964 characters, training) or ``"evaluation"`` (659 characters).
        image_size: output side; 105 keeps the original resolution.
        source: ``"auto"`` prefers the npz, then the zip.

    Raises:
        FileNotFoundError: when ``root`` holds neither file (the message says what to fetch and from where).
    """
    check_choice(split, "split", SPLITS)
    check_choice(source, "source", ("auto", "npz", "zip"))
    check_int(image_size, "image_size", 1)
    root = resolve_root(root)
    path = _find(root, split, source)
    if path is None:
        wanted = {"auto": f"images_{split}.npz or images_{split}.zip", "npz": f"images_{split}.npz"}.get(
            source, f"images_{split}.zip"
        )
        raise FileNotFoundError(
            f"Omniglot {split} set not found: expected {wanted} in {root.resolve()}. Pass `download=True` to "
            f"OmniglotDataModule (or call lit_metric.data.download_omniglot(root)) to fetch the official zip from "
            f"{OMNIGLOT_URLS[split]}, or point `root` at a folder that has it (e.g. ../shared/data/omniglot)."
        )
    stat = path.stat()
    return _load_cached(str(path.resolve()), stat.st_mtime, stat.st_size, image_size)


class _ToFloat:
    """uint8 ``[0, 255]`` -> float ``[0, 1]``, then an optional transform (pickleable for workers)."""

    def __init__(self, transform: Callable[[Tensor], Tensor] | None = None) -> None:
        self.transform = transform

    def __call__(self, x: Tensor) -> Tensor:
        x = x.float().div_(255.0)
        return self.transform(x) if self.transform is not None else x


class _BatchTransformCollate:
    """``default_collate``, then one call of a batch-capable transform on the stacked images (pickleable)."""

    def __init__(self, transform: Callable[[Tensor], Tensor]) -> None:
        self.transform = transform

    def __call__(self, items: list[Any]) -> Any:
        batch = default_collate(items)
        return (self.transform(batch[0]), *batch[1:])


def rotation_classes(images: Tensor, labels: Tensor, rotations: int) -> tuple[Tensor, Tensor]:
    """Each class rotated by ``90°·r`` for ``r < rotations`` becomes a new class (Santoro et al. 2016, Vinyals et
    al. 2016): images ``(N, C, S, S)`` → ``(rotations·N, …)``, labels shifted by ``r · num_classes``.

    Example:
        >>> import torch
        >>> x, y = rotation_classes(torch.arange(4).view(1, 1, 2, 2), torch.tensor([0]), 4)
        >>> y.tolist(), x[1, 0].tolist()
        ([0, 1, 2, 3], [[1, 3], [0, 2]])
    """
    if rotations == 1:
        return images, labels
    num_classes = int(labels.max()) + 1 if labels.numel() else 0
    rotated = [torch.rot90(images, r, dims=(-2, -1)) for r in range(rotations)]
    return torch.cat(rotated), torch.cat([labels + r * num_classes for r in range(rotations)])


class OmniglotDataModule(L.LightningDataModule):
    """Omniglot, Lake's split: train on the 964 *background* characters, evaluate on the 659 *evaluation* ones.

    * ``mode="supervised"``: training batches are P×K (``p`` characters × ``k`` drawings, a character is a
      class), items ``(x, y, index)``; ``train_transform`` (per item, optional) augments them.
    * ``mode="ssl"``: training items are views of the background images **without labels** —
      ``((v1, v2), index)`` (``num_views=2``, InfoNCE) or ``(v, index)`` (``num_views=1``, memory bank;
      ``index`` in ``[0, 19280)``) — augmented per batch by ``ssl_transform``.

    Validation, test and predict loaders iterate the evaluation characters in order, items ``(x, y, index)``
    with ``y`` in ``[0, 659)``.  Images are ``(1, image_size, image_size)`` floats, strokes 1, background 0.

    Args:
        root: folder with ``images_{background,evaluation}.npz`` or the official ``.zip`` files (a relative
            path missing from the working directory is also tried from the project checkout).
        image_size: side of the resized images (105 = original).
        p: characters per supervised batch.
        k: drawings per character in a supervised batch (each character has 20).
        mode: ``"supervised"`` or ``"ssl"``.
        batches_per_epoch: supervised batches per epoch (default: one pass worth of images).
        batch_size: instances per SSL batch.
        num_views: views per SSL item (2 or 1).
        ssl_transform: SSL augmentation; default :class:`~lit_metric.data.SimCLRAffineTransform` at ``image_size``.
        train_transform: augmentation of supervised training images (float ``(1, S, S)`` in, same out).  A
            transform with ``supports_batches = True`` (e.g. :class:`~lit_metric.data.SimCLRAffineTransform`) is
            applied once per P×K batch, which is several times faster on a CPU than item by item.
        rotations: 1 (default), 2 or 4: supervised training also uses each background character rotated by
            90°, 180°, 270° as a *new* class (964·rotations classes), the standard class augmentation of the
            few-shot literature; evaluation data is never rotated.
        eval_batch_size: batch size of the evaluation loaders.
        source: ``"auto"`` (npz, then zip), ``"npz"`` or ``"zip"``.
        download: fetch the official zips (MD5-checked) when ``root`` has neither file.
        seed: P×K sampler seed.
        num_workers: DataLoader workers.

    Raises:
        ValueError: on an unknown ``mode``/``source`` or ``num_views`` not in (1, 2).
        FileNotFoundError: at ``setup`` when ``root`` holds no data and ``download=False``.
    """

    def __init__(
        self,
        root: str = "data/omniglot",
        image_size: int = 28,
        p: int = 32,
        k: int = 4,
        mode: Literal["supervised", "ssl"] = "supervised",
        batches_per_epoch: int | None = None,
        batch_size: int = 256,
        num_views: int = 2,
        ssl_transform: Callable[[Any], Any] | None = None,
        train_transform: Callable[[Any], Any] | None = None,
        eval_batch_size: int = 512,
        source: Literal["auto", "npz", "zip"] = "auto",
        download: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        rotations: int = 1,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.image_size = check_int(image_size, "image_size", 1)
        self.p, self.k = check_int(p, "p", 1), check_int(k, "k", 1)
        self.mode = check_choice(mode, "mode", ("supervised", "ssl"))
        self.batches_per_epoch = batches_per_epoch
        self.batch_size = check_int(batch_size, "batch_size", 1)
        if num_views not in (1, 2):
            raise ValueError(f"Expected argument `num_views` to be 1 or 2, but got {num_views!r}.")
        self.num_views = num_views
        self.ssl_transform = ssl_transform if ssl_transform is not None else SimCLRAffineTransform(self.image_size)
        self.train_transform = train_transform
        if rotations not in (1, 2, 4):
            raise ValueError(f"Expected argument `rotations` to be 1, 2 or 4, but got {rotations!r}.")
        self.rotations = rotations
        self.eval_batch_size = check_int(eval_batch_size, "eval_batch_size", 1)
        check_choice(source, "source", ("auto", "npz", "zip"))
        self.source: Literal["auto", "npz", "zip"] = source
        self.download = download
        self.seed = seed
        self.num_workers = num_workers
        self.train_set: TensorImageDataset | None = None
        self.eval_set: TensorImageDataset | None = None

    def prepare_data(self) -> None:
        root = resolve_root(self.root)
        missing = tuple(s for s in SPLITS if _find(root, s, self.source) is None)
        if self.download and missing:
            download_omniglot(root, missing)

    def setup(self, stage: str | None = None) -> None:
        if self.mode == "supervised":
            # the P×K batch sampler shards itself across ranks: Lightning must not inject a DistributedSampler
            disable_sampler_injection(self.trainer)
        if self.train_set is not None:
            return
        if self.download:
            self.prepare_data()
        images, labels = load_omniglot(self.root, "background", self.image_size, self.source)
        per_item = self.mode == "supervised" and self._batch_transform() is None
        if self.mode == "supervised":
            images, labels = rotation_classes(images, labels, self.rotations)
        self.train_set = TensorImageDataset(images, labels, transform=_ToFloat(self.train_transform if per_item else None))
        images, labels = load_omniglot(self.root, "evaluation", self.image_size, self.source)
        self.eval_set = TensorImageDataset(images, labels, transform=_ToFloat())

    def _require(self, dataset: TensorImageDataset | None) -> TensorImageDataset:
        if dataset is None:
            raise RuntimeError("OmniglotDataModule: call setup() before asking for a dataloader.")
        return dataset

    def train_dataloader(self) -> DataLoader:
        train_set = self._require(self.train_set)
        if self.mode == "ssl":
            return ssl_dataloader(
                train_set, self.ssl_transform, self.batch_size, num_views=self.num_views, num_workers=self.num_workers
            )
        sampler = PKSampler(train_set.labels, self.p, self.k, self.batches_per_epoch, seed=self.seed)
        batch_transform = self._batch_transform()
        collate = _BatchTransformCollate(batch_transform) if batch_transform is not None else None
        return DataLoader(train_set, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate)

    def _batch_transform(self) -> Callable[[Any], Any] | None:
        """``train_transform`` when it runs once per batch (``supports_batches = True``), else None."""
        return self.train_transform if getattr(self.train_transform, "supports_batches", False) else None

    def _eval_loader(self) -> DataLoader:
        eval_set = self._require(self.eval_set)
        return DataLoader(
            eval_set,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=distributed_eval_sampler(eval_set),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader()
