"""Stanford Cars (Cars196) with the class-disjoint metric-learning split (classes 1–98 train, 99–196
unseen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lit_metric.data._image_files import (
    FileList,
    ImageFilesDataModule,
)

__all__ = ["Cars196DataModule"]


def _load_mat(path: Path) -> dict[str, Any]:
    from scipy.io import loadmat

    try:
        return loadmat(path, squeeze_me=True, struct_as_record=True)
    except Exception as err:  # scipy raises several types on a bad file
        raise ValueError(f"Cannot read the MATLAB file {path}: {err}. Download it again.") from err


def _column(records: Any, name: str, path: Path) -> list[Any]:
    if records.dtype.names is None or name not in records.dtype.names:
        raise ValueError(
            f"{path}: expected an `annotations` struct with a field {name!r}, but the fields are {records.dtype.names}."
        )
    return np.atleast_1d(records[name]).tolist()


class Cars196DataModule(ImageFilesDataModule):
    """Stanford Cars (Krause et al. 2013, *3D Object Representations for Fine-Grained Categorization*):
    16,185 images of 196 car models. Metric-learning protocol (Oh Song et al. 2016): all images of classes
    1–98 train, all images of classes 99–196 are the unseen evaluation classes (the official train/test
    image split is ignored).

    Two layouts are read from ``root``:

    * the full release used by metric-learning code: ``cars_annos.mat`` (struct ``annotations`` with
      ``relative_im_path`` "car_ims/000001.jpg" and 1-based ``class``; ``class_names``) and ``car_ims/``;
    * the devkit layout (also torchvision's ``StanfordCars``): ``cars_train/``, ``cars_test/``,
      ``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat`` (in ``root`` or ``devkit/``)
      with fields ``fname`` and ``class``, ``devkit/cars_meta.mat`` with ``class_names``.

    The files are no longer served at a public URL (the Stanford page is gone), so there is no download:
    fetch them from a mirror you trust and place them as above.

    Args:
        root: data folder (or its parent holding ``stanford_cars/``).
        p, k: P×K training batches.
        batches_per_epoch: training batches per epoch (default: one pass worth of images).
        image_size, mean, std, eval_crop_pct, image_mode, train_transform, eval_transform: see
            :class:`~lit_metric.data.ImageFolderDataModule`.
        eval_batch_size: batch size of validation/test/predict loaders.
        num_workers: DataLoader workers.
        seed: sampler seed.
        download: raises, with what to fetch (no public URL).
        corrupt_images: ``"error"`` or ``"skip"``.
        drop_singleton_classes: drop single-image training classes instead of raising.

    Raises:
        FileNotFoundError: when neither layout is found in ``root`` (says what to fetch and where).
        ValueError: on an unreadable or unexpected ``.mat`` file.
    """

    DATA_HELP = (
        "the Stanford Cars files are no longer at a public URL: get `car_ims.tgz` + `cars_annos.mat` (or the "
        "devkit layout: cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
        "cars_test_annos_withlabels.mat) from a mirror and place them in `root` (root/cars_annos.mat, "
        "root/car_ims/000001.jpg …)."
    )

    def find_data_dir(self) -> Path | None:
        for candidate in (self.root, self.root / "stanford_cars"):
            if (candidate / "cars_annos.mat").is_file() or (candidate / "devkit" / "cars_train_annos.mat").is_file():
                return candidate
        return None

    def load_file_lists(self, data_dir: Path) -> tuple[FileList, FileList]:
        if (data_dir / "cars_annos.mat").is_file():
            path = data_dir / "cars_annos.mat"
            mat = _load_mat(path)
            records = mat["annotations"]
            paths = [data_dir / str(p) for p in _column(records, "relative_im_path", path)]
            classes = [int(c) for c in _column(records, "class", path)]
            class_names = mat.get("class_names")
        else:
            paths, classes = [], []
            test_annos = data_dir / "cars_test_annos_withlabels.mat"
            if not test_annos.is_file():
                test_annos = data_dir / "devkit" / "cars_test_annos_withlabels.mat"
            for annos, folder in ((data_dir / "devkit" / "cars_train_annos.mat", "cars_train"), (test_annos, "cars_test")):
                if not annos.is_file():
                    raise FileNotFoundError(f"{type(self).__name__}: expected {annos}. To fix it, {self.DATA_HELP}")
                records = _load_mat(annos)["annotations"]
                fnames = _column(records, "fname", annos)
                paths += [data_dir / folder / str(n) for n in fnames]
                classes += [int(c) for c in _column(records, "class", annos)]
            meta = data_dir / "devkit" / "cars_meta.mat"
            class_names = _load_mat(meta).get("class_names") if meta.is_file() else None
        names: dict[Any, str] = {}
        if class_names is not None:
            names = {i + 1: str(n) for i, n in enumerate(np.atleast_1d(class_names).tolist())}
        class_ids = sorted(set(classes))
        train_ids = set(class_ids[: len(class_ids) // 2])
        is_train = [c in train_ids for c in classes]
        files = FileList(paths, list(classes), names)
        return (
            files.select([i for i, t in enumerate(is_train) if t]),
            files.select([i for i, t in enumerate(is_train) if not t]),
        )
