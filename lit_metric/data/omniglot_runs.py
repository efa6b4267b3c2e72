"""Lake et al.'s official Omniglot one-shot classification runs: reader and 400-trial accuracy.

The 20 runs of ``all_runs.zip`` (github.com/brendenlake/omniglot, MIT licence) are the within-alphabet
20-way one-shot benchmark of Lake, Salakhutdinov & Tenenbaum, *Human-level concept learning through
probabilistic program induction*, Science 2015, also used by Koch et al. 2015 (Siamese networks, 92.0 %).
Each ``runNN/`` holds ``training/classNN.png`` (one image of each of 20 characters), ``test/itemNN.png``
(20 other drawings of the same characters) and ``class_labels.txt`` (lines ``runNN/test/itemKK.png
runNN/training/classJJ.png``: the answer key).  Each test image is classified by its nearest training image:
20 runs × 20 test images = 400 trials.

Image convention (both the PNGs and ``images_evaluation.npz``): 105×105 binary, **True / 1 = white
background**, strokes False / 0.  The embedding function receives them as :func:`omniglot_run_images` prepares
them — by default exactly as :class:`~lit_metric.data.OmniglotDataModule` prepares its training images
(strokes 1.0, area-resized to ``image_size``).  All run images also occur in ``images_evaluation.npz``: train
on the background set only.
"""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from lit_metric._validation import check_int
from lit_metric.distances import BaseDistance, CosineSimilarity

__all__ = ["OmniglotRun", "omniglot_one_shot_accuracy", "omniglot_run_images", "read_omniglot_runs"]

IMAGE_SIZE = 105


@dataclass(frozen=True)
class OmniglotRun:
    """One official run.

    Attributes:
        name: ``"run01"`` … ``"run20"``.
        training: ``(20, 105, 105)`` bool, ``training[j]`` = ``training/class{j+1:02d}.png`` (True = background).
        test: ``(20, 105, 105)`` bool, ``test[i]`` = ``test/item{i+1:02d}.png``.
        answers: ``(20,)`` long: ``answers[i]`` is the index into ``training`` of the class of ``test[i]``.
    """

    name: str
    training: Tensor
    test: Tensor
    answers: Tensor


def _read_member(archive: zipfile.ZipFile, prefix: str, member: str) -> bytes:
    return archive.read(prefix + member)


def _open_runs(root: str | Path) -> tuple[Callable[[str], bytes], list[str]]:
    """A reader of member files and the list of members, from ``all_runs.zip``, a folder holding it, or an
    extracted ``all_runs/`` folder."""
    path = Path(root)
    candidates = [path] if path.suffix == ".zip" else [path / "all_runs.zip", path / "omniglot" / "all_runs.zip"]
    for zpath in candidates:
        if zpath.is_file():
            archive = zipfile.ZipFile(zpath)
            names = [n.rstrip("/") for n in archive.namelist()]
            prefix = "all_runs/" if any(n.startswith("all_runs/") for n in names) else ""
            return functools.partial(_read_member, archive, prefix), [n[len(prefix) :] for n in names]
    folder = path / "all_runs" if (path / "all_runs").is_dir() else path
    if folder.is_dir() and any(folder.glob("run*/class_labels.txt")):
        names = [p.relative_to(folder).as_posix() for p in folder.rglob("*")]
        return (lambda member: (folder / member).read_bytes()), names
    raise FileNotFoundError(
        f"Expected `root` to be Lake et al.'s all_runs.zip, a folder holding it, or an extracted all_runs/ folder, "
        f"but found none at {path}. Download it from https://github.com/brendenlake/omniglot (python/one-shot-classification)."
    )


def _read_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("1"), dtype=bool)


def read_omniglot_runs(root: str | Path) -> list[OmniglotRun]:
    """Read the 20 official runs.

    Args:
        root: ``all_runs.zip``, the folder that holds it (e.g. ``../shared/data/omniglot``), or an extracted
            ``all_runs/`` folder.

    Returns:
        The runs in order ``run01`` … ``run20``.

    Raises:
        FileNotFoundError: when no runs are found at ``root``.
        ValueError: on a malformed answer key.
    """
    read, names = _open_runs(root)
    run_names = sorted({n.split("/")[0] for n in names if n.endswith("class_labels.txt")})
    runs = []
    for run in run_names:
        lines = [ln.split() for ln in read(f"{run}/class_labels.txt").decode().splitlines() if ln.strip()]
        test_files = sorted(n for n in names if n.startswith(f"{run}/test/") and n.endswith(".png"))
        train_files = sorted(n for n in names if n.startswith(f"{run}/training/") and n.endswith(".png"))
        position = {name: j for j, name in enumerate(train_files)}
        key = {}
        for parts in lines:
            if len(parts) != 2 or parts[1] not in position:
                raise ValueError(f"Expected lines 'runNN/test/x.png runNN/training/y.png' in {run}, but got {parts}.")
            key[parts[0]] = position[parts[1]]
        if set(key) != set(test_files):
            raise ValueError(f"Expected an answer for each of the {len(test_files)} test images of {run}.")
        runs.append(
            OmniglotRun(
                name=run,
                training=torch.from_numpy(np.stack([_read_png(read(f)) for f in train_files])),
                test=torch.from_numpy(np.stack([_read_png(read(f)) for f in test_files])),
                answers=torch.tensor([key[f] for f in test_files], dtype=torch.long),
            )
        )
    return runs


def omniglot_run_images(images: Tensor, image_size: int = IMAGE_SIZE, invert: bool = True) -> Tensor:
    """Binary ``(B, 105, 105)`` images (True = background) → float ``(B, 1, image_size, image_size)`` in ``[0, 1]``.

    The preprocessing of :class:`~lit_metric.data.OmniglotDataModule`, so that a model trained there sees the
    same pixels here: strokes 1.0 and background 0.0 (``invert=False`` keeps the PNGs' background 1.0), resized
    by area interpolation (``F.interpolate(mode="area")``: the mean of the covered pixels, so thin strokes stay
    visible) and rounded to multiples of 1/255 (the data module stores uint8).
    """
    check_int(image_size, "image_size", 1)
    x = images.float().unsqueeze(1)
    if invert:
        x = 1.0 - x
    if image_size != x.shape[-1] or image_size != x.shape[-2]:
        x = torch.nn.functional.interpolate(x, size=(image_size, image_size), mode="area")
        x = (x * 255).round() / 255
    return x


@torch.no_grad()
def omniglot_one_shot_accuracy(
    embed: Callable[[Tensor], Tensor],
    root: str | Path,
    image_size: int = IMAGE_SIZE,
    invert: bool = True,
    distance: BaseDistance | None = None,
) -> dict[str, object]:
    """The official 20-way one-shot accuracy over the 400 trials of Lake et al.'s 20 runs.

    In each run every test image is embedded and assigned to the nearest of the 20 training images'
    embeddings; it is correct when that is its answer-key image (a tie with a wrong image counts as wrong).

    Args:
        embed: images → ``(B, D)`` embeddings, called once per run with the 20 training and once with the 20
            test images as ``(20, 1, image_size, image_size)`` float CPU tensors prepared by
            :func:`omniglot_run_images`.  An ``nn.Module`` is put in eval mode and its inputs moved to its device.
        root: ``all_runs.zip``, its folder, or an extracted ``all_runs/`` folder.
        image_size: side of the (square) images passed to ``embed`` (105 = original; e.g. 28 for the usual
            few-shot convnets).
        invert: strokes 1.0 / background 0.0 (default, as :class:`~lit_metric.data.OmniglotDataModule` feeds its
            models); False keeps the PNGs' background 1.0.
        distance: the measure (default cosine similarity).

    Returns:
        ``{"accuracy": float, "error_rate": float, "correct": int, "trials": int, "per_run": list[float]}``.

    Example (raw pixels, no learning):
        >>> import torch
        >>> from lit_metric.distances import EuclideanDistance
        >>> out = omniglot_one_shot_accuracy(lambda x: x.flatten(1), "../shared/data/omniglot",
        ...                                  distance=EuclideanDistance(normalize=False))  # doctest: +SKIP
        >>> out["trials"]  # doctest: +SKIP
        400
    """
    measure = distance if distance is not None else CosineSimilarity()
    if not isinstance(measure, BaseDistance):
        raise TypeError(f"Expected argument `distance` to be a lit_metric distance, but got {type(measure).__name__}.")
    module = embed if isinstance(embed, nn.Module) else None
    was_training = module.training if module is not None else False
    device = next(module.parameters()).device if module is not None and any(True for _ in module.parameters()) else None
    if module is not None:
        module.eval()

    def run_embed(images: Tensor) -> Tensor:
        x = omniglot_run_images(images, image_size, invert)
        out = embed(x.to(device) if device is not None else x)
        return out.float().cpu()

    try:
        per_run, correct, trials = [], 0, 0
        for run in read_omniglot_runs(root):
            train_emb, test_emb = run_embed(run.training), run_embed(run.test)
            dis = measure.to_dissimilarity(measure.pairwise(test_emb, train_emb))  # (20 test, 20 training)
            own = dis.gather(1, run.answers.unsqueeze(1)).squeeze(1)
            others = dis.scatter(1, run.answers.unsqueeze(1), float("inf")).amin(1)
            hits = int((own < others).sum())
            per_run.append(hits / run.answers.numel())
            correct += hits
            trials += run.answers.numel()
    finally:
        if module is not None:
            module.train(was_training)
    return {
        "accuracy": correct / trials,
        "error_rate": 1 - correct / trials,
        "correct": correct,
        "trials": trials,
        "per_run": per_run,
    }
