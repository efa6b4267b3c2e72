"""The AT&T / ORL face database (40 subjects × 10 grey 112×92 PGM images) for face verification."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from lit_metric.data._image_files import (
    CorruptPolicy,
    FileList,
    ImageFilesDataModule,
    ImageMode,
    natural_key,
)
from lit_metric.data.omniglot import resolve_root

__all__ = ["ORLFacesDataModule"]

_SUBJECTS = 40


class ORLFacesDataModule(ImageFilesDataModule):
    """AT&T "The Database of Faces" (formerly ORL; Samaria & Harter 1994): folders ``s1`` … ``s40`` of ten
    112×92 8-bit PGM images each, taken at the Olivetti Research Laboratory, Cambridge, 1992–94.

    There is no standard metric-learning split; like ``../shared/data/README.md`` we train on subjects
    1–``num_train_subjects`` (default 20) and keep the others (21–40) as unseen identities for verification
    (ROC-AUC / EER over all positive and negative pairs) and retrieval. Labels are ``0 … C−1`` per split in
    subject order; ``train_set.classes`` / ``eval_set.classes`` hold ``"s1"`` … ``"s40"``.

    Defaults suit the small grey faces: ``image_mode="L"`` (1 channel), the native ``(112, 92)`` size with no
    crop, and a mild augmentation (±10° rotation, 5 % shift, 0.9–1.1 scale, horizontal flip). For an ImageNet
    backbone pass ``image_mode="RGB"``, a larger ``image_size`` and the backbone's ``mean``/``std``.

    ``root`` is the folder holding ``s1`` … ``s40`` (or a folder with ``att_faces/`` or ``orl_faces/`` inside).
    ``download=True`` fetches ``att_faces.zip`` (AT&T Laboratories Cambridge; mirrored by Idiap) and checks
    its MD5.

    Args:
        root: data folder.
        num_train_subjects: subjects ``1 … num_train_subjects`` train, the others are unseen.
        p, k: P×K training batches (P subjects × K images).
        batches_per_epoch: training batches per epoch (default: one pass worth of images).
        image_size: output size (int or ``(height, width)``).
        mean, std: normalisation; 1 or 3 values.
        eval_crop_pct: 1 = resize only (default); < 1 = resize then centre crop.
        image_mode: ``"L"`` (default) or ``"RGB"``.
        train_transform, eval_transform: replace the defaults (called on PIL images).
        eval_batch_size: batch size of validation/test/predict loaders.
        num_workers: DataLoader workers.
        seed: sampler seed.
        download: fetch the archive when ``root`` has no data.
        corrupt_images: ``"error"`` or ``"skip"`` (see :class:`~lit_metric.data.ImageFolderDataModule`).
        drop_singleton_classes: drop single-image training subjects instead of raising.

    Raises:
        ValueError: for ``num_train_subjects`` outside 1–39.
        FileNotFoundError: when ``root`` holds no ``s1`` … ``s40`` folders (says what to fetch).
    """

    URLS = (
        "https://www.cl.cam.ac.uk/research/dtg/attarchive/pub/data/att_faces.zip",
        "http://www.idiap.ch/software/bob/data/bob/att_faces.zip",
    )
    FILENAME = "att_faces.zip"
    # as published with the Idiap mirror (bob.bio.base); the archive of the Cambridge page is the same file
    MD5 = "6efb25cb0d40755e9492b9c012e3348d"
    DATA_HELP = (
        "download att_faces.zip (AT&T 'The Database of Faces', https://www.cl.cam.ac.uk/research/dtg/attarchive/"
        "facedatabase.html) and extract it so that `root` holds the folders s1 … s40 of 1.pgm … 10.pgm."
    )

    def __init__(
        self,
        root: str | Path,
        num_train_subjects: int = 20,
        p: int = 8,
        k: int = 4,
        batches_per_epoch: int | None = None,
        image_size: int | tuple[int, int] = (112, 92),
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        eval_crop_pct: float = 1.0,
        image_mode: ImageMode = "L",
        train_transform: Callable[[Image.Image], Any] | None = None,
        eval_transform: Callable[[Image.Image], Any] | None = None,
        eval_batch_size: int = 100,
        num_workers: int = 0,
        seed: int = 0,
        download: bool = False,
        corrupt_images: CorruptPolicy = "error",
        drop_singleton_classes: bool = False,
    ) -> None:
        if isinstance(num_train_subjects, bool) or not isinstance(num_train_subjects, int):
            raise TypeError(f"Expected argument `num_train_subjects` to be an int, but got {num_train_subjects!r}.")
        if not 1 <= num_train_subjects < _SUBJECTS:
            raise ValueError(f"Expected argument `num_train_subjects` to be in 1–{_SUBJECTS - 1}, but got {num_train_subjects}.")
        self.num_train_subjects = num_train_subjects
        super().__init__(
            root, p, k, batches_per_epoch, image_size, mean, std, eval_crop_pct, image_mode, train_transform,
            eval_transform, eval_batch_size, num_workers, seed, download, corrupt_images, drop_singleton_classes,
        )  # fmt: skip

    def default_train_transform(self) -> Callable[[Image.Image], Any]:
        from torchvision import transforms as T

        return T.Compose(
            [
                T.Resize(self.image_size, antialias=True),
                T.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
                T.RandomHorizontalFlip(),
                T.ToTensor(),
                T.Normalize(self.mean, self.std),
            ]
        )

    def find_data_dir(self) -> Path | None:
        root = resolve_root(self.root)  # a relative root is also looked up from the project checkout
        for candidate in (root, root / "att_faces", root / "orl_faces"):
            if (candidate / "s1").is_dir():
                return candidate
        return None

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        subjects = sorted(
            (d for d in data_dir.iterdir() if d.is_dir() and d.name[:1] == "s" and d.name[1:].isdigit()),
            key=lambda d: natural_key(d.name),
        )
        subjects = [d for d in subjects if 1 <= int(d.name[1:]) <= _SUBJECTS]
        numbers = [int(d.name[1:]) for d in subjects]
        missing = sorted(set(range(1, _SUBJECTS + 1)) - set(numbers))
        if missing:
            raise FileNotFoundError(
                f"{type(self).__name__}: expected the subject folders s1 … s{_SUBJECTS} in {data_dir}, but "
                f"{', '.join(f's{n}' for n in missing[:10])}{' …' if len(missing) > 10 else ''} are missing. "
                f"{self.DATA_HELP}"
            )
        train, evaluation = FileList([], []), FileList([], [])
        for number, folder in zip(numbers, subjects):
            images = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".pgm"), key=lambda p: natural_key(p.name))
            if not images:
                raise ValueError(f"The subject folder {folder} holds no .pgm image. Re-extract att_faces.zip into {data_dir}.")
            target = train if number <= self.num_train_subjects else evaluation
            target.paths.extend(images)
            target.classes.extend([number] * len(images))
            target.class_names[number] = folder.name
        return train, evaluation
