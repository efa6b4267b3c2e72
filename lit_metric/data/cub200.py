"""Caltech-UCSD Birds-200-2011 with the class-disjoint metric-learning split (first half of the classes
train, second half unseen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lit_metric.data._image_files import (
    FileList,
    ImageFilesDataModule,
    read_table,
)

__all__ = ["CUB200DataModule"]


class CUB200DataModule(ImageFilesDataModule):
    """CUB-200-2011 (Wah et al. 2011, 11,788 images of 200 bird species) for fine-grained retrieval.

    The metric-learning protocol of Oh Song et al. 2016 (*Deep Metric Learning via Lifted Structured
    Feature Embedding*) and later papers: the first half of the classes (1–100) train, the second half
    (101–200) are unseen evaluation classes; the image-level ``train_test_split.txt`` (a closed-set
    classification split) is ignored.

    Reads the official layout (``images.txt`` "1 001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
    ``image_class_labels.txt``, ``classes.txt``: space-separated, 1-based ids, images under ``images/``) and
    the same files comma-separated with 0-based ids (the 100-species subset in ``../shared/data/cub100``,
    split 50/50 the same way). ``root`` is the folder with those files or its parent holding
    ``CUB_200_2011/``. ``download=True`` fetches ``CUB_200_2011.tgz`` from CaltechDATA (MD5 checked).

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
        drop_singleton_classes: drop single-image training classes instead of raising.

    Raises:
        FileNotFoundError: when ``root`` has no ``images.txt`` (says what to fetch), or listed images are missing.
        ValueError: on malformed metadata (names the file and line).
    """

    URLS = ("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",)
    FILENAME = "CUB_200_2011.tgz"
    MD5 = "97eceeb196236b17998738112f37df78"
    DATA_HELP = (
        "download CUB_200_2011.tgz from https://www.vision.caltech.edu/datasets/cub_200_2011/ and extract it "
        "into `root` (root/CUB_200_2011/images.txt, root/CUB_200_2011/images/…)."
    )

    def find_data_dir(self) -> Path | None:
        for candidate in (self.root, self.root / "CUB_200_2011"):
            if (candidate / "images.txt").is_file():
                return candidate
        return None

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        images = {i: path for i, path in read_table(data_dir / "images.txt", 2, int_columns=(0,))}
        labels = {i: c for i, c in read_table(data_dir / "image_class_labels.txt", 2, int_columns=(0, 1))}
        names: dict[Any, str] = {}
        if (data_dir / "classes.txt").is_file():
            names = {c: name for c, name in read_table(data_dir / "classes.txt", 2, int_columns=(0,))}
        unlabelled = sorted(set(images) - set(labels))
        if unlabelled:
            raise ValueError(
                f"{data_dir / 'image_class_labels.txt'} has no class for image id(s) {unlabelled[:5]} of images.txt."
            )
        class_ids = sorted(set(labels[i] for i in images))
        if len(class_ids) < 2:
            raise ValueError(f"{type(self).__name__}: {data_dir} holds {len(class_ids)} class; the split needs >= 2.")
        train_ids = set(class_ids[: len(class_ids) // 2])
        train, evaluation = FileList([], [], names), FileList([], [], names)
        for image_id in sorted(images):
            target = train if labels[image_id] in train_ids else evaluation
            target.paths.append(data_dir / "images" / images[image_id])
            target.classes.append(labels[image_id])
        return train, evaluation
