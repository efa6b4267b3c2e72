"""DeepFashion In-Shop Clothes Retrieval: train items, and query/gallery images of unseen items."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from lit_metric.data._image_files import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CorruptPolicy,
    FileList,
    ImageFilesDataModule,
    ImageMode,
)

__all__ = ["InShopDataModule", "read_eval_partition"]

_STATUSES = ("train", "query", "gallery")


def read_eval_partition(path: Path, image_dir: Path) -> tuple[FileList, FileList]:
    """``list_eval_partition.txt``: a count line, a header ``image_name item_id evaluation_status``, then one
    whitespace-separated row per image (status ``train``, ``query`` or ``gallery``). Returns the training
    items and the evaluation items (queries and gallery, in file order) with ``is_query`` / ``is_gallery``
    columns; paths are relative to ``image_dir``.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: on a malformed row or an unknown status (names the file and line).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Expected the partition file {path}, but it does not exist.")
    train = FileList([], [])
    evaluation = FileList([], [], extras={"is_query": [], "is_gallery": []})
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or (number <= 2 and (parts[0].isdigit() or parts[0] == "image_name")):
            continue  # blank, count, header
        if len(parts) != 3 or parts[2] not in _STATUSES:
            raise ValueError(
                f"{path}, line {number}: expected 'image_name item_id evaluation_status' with a status in "
                f"{list(_STATUSES)}, but got {line!r}."
            )
        name, item, status = parts
        if status == "train":
            train.paths.append(image_dir / name)
            train.classes.append(item)
        else:
            evaluation.paths.append(image_dir / name)
            evaluation.classes.append(item)
            evaluation.extras["is_query"].append(status == "query")
            evaluation.extras["is_gallery"].append(status == "gallery")
    return train, evaluation


class InShopDataModule(ImageFilesDataModule):
    """In-Shop Clothes Retrieval benchmark of DeepFashion (Liu et al. 2016, *DeepFashion: Powering Robust
    Clothes Recognition and Retrieval with Rich Annotations*): 52,712 images of 7,982 clothing items.
    Official split (``Eval/list_eval_partition.txt``): 3,997 items (25,882 images) train; 3,985 unseen
    items split into 14,218 query and 12,612 gallery images. Queries are searched in the gallery only.

    The evaluation set holds queries and gallery together (loaders yield ``(x, label, index)``); each item
    carries its flags in ``eval_set.is_query`` / ``eval_set.is_gallery`` (bool tensors indexed by the dataset
    index), so a metric can be fed per batch::

        is_query, is_gallery = dm.query_gallery_masks(index)
        metric.update(embeddings, labels, index, is_query=is_query, is_gallery=is_gallery)

    :meth:`query_dataloader` / :meth:`gallery_dataloader` load each side alone (indices still index
    ``eval_set``). Labels: item ids mapped to ``0 … C−1`` per split.

    ``root`` holds ``list_eval_partition.txt`` (directly or in ``Eval/``) and the ``img/`` folder it names
    (directly or in ``Img/``). The data sits behind the authors' Google-Drive form, so there is no download.

    Args:
        root: data folder.
        p, k: P×K training batches.
        batches_per_epoch: training batches per epoch (default: one pass worth of images).
        image_size, mean, std, eval_crop_pct, image_mode, train_transform, eval_transform: see
            :class:`~lit_metric.data.ImageFolderDataModule`.
        eval_batch_size: batch size of the evaluation loaders.
        num_workers: DataLoader workers.
        seed: sampler seed.
        download: raises, with what to fetch (no public URL).
        corrupt_images: ``"error"`` or ``"skip"``.
        drop_singleton_classes: drop single-image training items instead of raising.

    Raises:
        FileNotFoundError: when ``root`` has no ``list_eval_partition.txt`` (says what to fetch and where).
        ValueError: on a malformed partition file.
    """

    DATA_HELP = (
        "download the 'In-shop Clothes Retrieval Benchmark' of DeepFashion "
        "(https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html): Img/img.zip and "
        "Eval/list_eval_partition.txt, and place them as root/Eval/list_eval_partition.txt and root/Img/img/… "
        "(or root/list_eval_partition.txt and root/img/…)."
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

    def _partition_file(self, data_dir: Path) -> Path | None:
        for candidate in (data_dir / "list_eval_partition.txt", data_dir / "Eval" / "list_eval_partition.txt"):
            if candidate.is_file():
                return candidate
        return None

    def find_data_dir(self) -> Path | None:
        for candidate in (self.root, self.root / "In-shop Clothes Retrieval Benchmark", self.root / "inshop"):
            if self._partition_file(candidate) is not None:
                return candidate
        return None

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        partition = self._partition_file(data_dir)
        if partition is None:
            raise FileNotFoundError(self._missing_message(can_download=False))
        image_dir = data_dir / "Img" if (data_dir / "Img").is_dir() else data_dir
        train, evaluation = read_eval_partition(partition, image_dir)
        if not any(evaluation.extras["is_query"]) or not any(evaluation.extras["is_gallery"]):
            raise ValueError(f"{partition} lists no query or no gallery image; the benchmark needs both.")
        return train, evaluation

    def query_gallery_masks(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """``(is_query, is_gallery)`` bool masks of a batch, from its dataset indices."""
        eval_set = self._require(self.eval_set)
        index = index.cpu().long()
        is_query: Tensor = eval_set.is_query  # type: ignore[attr-defined]
        is_gallery: Tensor = eval_set.is_gallery  # type: ignore[attr-defined]
        return is_query[index], is_gallery[index]

    def query_dataloader(self) -> DataLoader:
        """The query images only (their ``index`` still indexes ``eval_set``)."""
        eval_set = self._require(self.eval_set)
        return self._eval_loader(Subset(eval_set, eval_set.is_query.nonzero().flatten().tolist()))  # type: ignore[attr-defined]

    def gallery_dataloader(self) -> DataLoader:
        """The gallery images only (their ``index`` still indexes ``eval_set``)."""
        eval_set = self._require(self.eval_set)
        return self._eval_loader(Subset(eval_set, eval_set.is_gallery.nonzero().flatten().tolist()))  # type: ignore[attr-defined]
