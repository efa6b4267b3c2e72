"""Views for self-supervised training: dataset wrappers, a two-view collate and SimCLR-style augmentation.

Items for :class:`~lit_metric.SelfSupervisedModule`:

* ``((view_1, view_2), index)`` for InfoNCE (``((v1, v2), label, index)`` with ``keep_labels=True``, SupCon);
* ``(view, index)`` for the memory bank (``num_views=1``).

Two ways to make them from any dataset whose items are ``x``, ``(x, y)`` or ``(x, y, index)``:

* **per item** — :class:`TwoViewDataset` / :class:`SingleViewDataset` apply any callable (e.g. lightly's
  ``lightly.transforms.SimCLRViewTransform`` for PIL/RGB data, or a torchvision pipeline) to each item;
* **per batch** — :class:`TwoViewCollate` stacks the raw images and augments the whole batch at once with a
  transform that accepts ``(N, C, H, W)`` (:class:`SimCLRAffineTransform`).  For small tensor images this is
  the fast path: one ``affine_grid``/``grid_sample`` per view for the batch, about 60× faster on CPU than
  torchvision.transforms.v2 applied item by item (see the README's SSL section).

:func:`ssl_dataloader` picks the batched path when the transform says ``supports_batches = True``.

Deterministic, resumable augmentation: with a ``seed`` (``ssl_dataloader`` always sets one) the views of item
``i`` in epoch ``e`` are a pure function of ``(seed, e, i, view)`` — independent of the batch the item lands in,
of the rank under DDP, of ``num_workers`` and of the global RNG — so a run killed mid-epoch and resumed from its
checkpoint draws exactly the augmentations the uninterrupted run would.  :class:`SimCLRAffineTransform` takes
its per-image random numbers from a counter-based hash of that key (vectorised, no per-image generator); any
other transform runs with the global torch/numpy/``random`` RNGs seeded from the key (and restored after).
The epoch reaches the dataset/collate through :class:`~lit_metric.data.samplers.SeededSampler`'s
``set_epoch``, which Lightning calls every epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_metric._validation import check_choice, check_int
from lit_metric.data.samplers import SeededSampler

__all__ = [
    "SimCLRAffineTransform",
    "SingleViewDataset",
    "TwoViewCollate",
    "TwoViewDataModule",
    "TwoViewDataset",
    "sample_uniforms",
    "ssl_dataloader",
]


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on a uint64 array (Steele, Lea & Flood 2014): a bijective, well-mixing hash."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _sample_keys(seed: int, epoch: int, index: Sequence[int] | Tensor, view: int) -> np.ndarray:
    """``(N,)`` uint64 keys of ``(seed, epoch, index_i, view)``: one random stream per sample and view."""
    h = np.array([int(seed) % 2**64], dtype=np.uint64)
    for part in (int(epoch), int(view)):
        h = _splitmix64(h ^ np.uint64(part % 2**64))
    idx = torch.as_tensor(index).reshape(-1).cpu().numpy().astype(np.int64).astype(np.uint64)
    return _splitmix64(_splitmix64(h ^ idx))


def sample_uniforms(seed: int, epoch: int, index: Sequence[int] | Tensor, view: int, count: int) -> Tensor:
    """``(N, count)`` float32 numbers uniform in ``[0, 1)``, a pure function of ``(seed, epoch, index_i, view)``.

    A counter-based generator: number ``j`` of sample ``i`` is a SplitMix64 hash of the sample's key and ``j``
    (24 bits, exact in float32), so a sample's draws never depend on the other samples of its batch.

    Example:
        >>> u = sample_uniforms(seed=0, epoch=1, index=[5, 9], view=0, count=3)
        >>> u.shape, bool(((u >= 0) & (u < 1)).all())
        (torch.Size([2, 3]), True)
        >>> torch.equal(u[1], sample_uniforms(0, 1, [9], 0, 3)[0])
        True
    """
    keys = _sample_keys(seed, epoch, index, view)
    with np.errstate(over="ignore"):
        counters = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0xD1B54A32D192ED03)
    bits = _splitmix64(keys[:, None] ^ counters[None, :])
    return torch.from_numpy((bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24))


def _sample_seed(seed: int, epoch: int, index: int, view: int) -> int:
    return int(_sample_keys(seed, epoch, [index], view)[0] >> np.uint64(1))


@contextlib.contextmanager
def _seeded_global_rng(seed: int) -> Iterator[None]:
    """Run a block with the CPU torch, numpy and ``random`` global RNGs seeded from ``seed``; restore them after."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)  # CPU only: never touches a CUDA generator
    np.random.seed(seed % 2**32)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def _split_item(item: Any) -> tuple[Any, Any]:
    """``x`` / ``(x,)`` / ``(x, y)`` / ``(x, y, index)`` -> ``(x, y or None)``."""
    if isinstance(item, tuple | list):
        if not item:
            raise ValueError("Expected a dataset item x, (x, y) or (x, y, index), but got an empty sequence.")
        return item[0], item[1] if len(item) > 1 else None
    return item, None


class SingleViewDataset(Dataset[tuple[Any, ...]]):
    """Any dataset -> ``(transform(x), index)`` (or ``(transform(x), y, index)`` with ``keep_labels``).

    ``index`` is the position in the wrapped dataset (what a memory bank needs).

    Args:
        dataset: items ``x``, ``(x, y)`` or ``(x, y, index)``.
        transform: applied to ``x``; None keeps ``x``.
        keep_labels: also return the label (the dataset must have one).
        seed: None draws the augmentation from the global RNG; an int makes view ``v`` of item ``i`` a pure
            function of ``(seed, epoch, i, v)`` (the global RNGs are seeded from it around the transform), with
            the epoch set by :meth:`set_epoch`.
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Any], Any] | None = None,
        keep_labels: bool = False,
        seed: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.transform = transform
        self.keep_labels = keep_labels
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the per-sample augmentation seeds (called by :class:`~lit_metric.data.samplers.SeededSampler`)."""
        self.epoch = int(epoch)

    def _apply(self, transform: Callable[[Any], Any] | None, x: Any, index: int, view: int) -> Any:
        if transform is None:
            return x
        if self.seed is None:
            return transform(x)
        with _seeded_global_rng(_sample_seed(self.seed, self.epoch, index, view)):
            return transform(x)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def _get(self, index: int) -> tuple[Any, Any]:
        x, y = _split_item(self.dataset[index])
        if self.keep_labels and y is None:
            raise ValueError("Expected labelled items (x, y) for keep_labels=True, but the dataset returned no label.")
        return x, y

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        x, y = self._get(index)
        view = self._apply(self.transform, x, index, 0)
        return (view, y, index) if self.keep_labels else (view, index)


class TwoViewDataset(SingleViewDataset):
    """Any dataset -> ``((t(x), t_b(x)), index)``: two independently augmented views of each item.

    Args:
        dataset: items ``x``, ``(x, y)`` or ``(x, y, index)``; labels are dropped unless ``keep_labels``.
        transform: the random augmentation (called once per view).
        transform_b: a different augmentation for the second view (BYOL-style asymmetric); default ``transform``.
        keep_labels: return ``((v1, v2), y, index)`` (for SupCon).
        seed: per-sample augmentation seeds (see :class:`SingleViewDataset`); None: the global RNG.

    Example:
        >>> import torch
        >>> base = [(torch.ones(1, 4, 4), 3)]
        >>> ds = TwoViewDataset(base, transform=lambda x: x * 2)
        >>> (v1, v2), index = ds[0]
        >>> v1.shape, float(v2.max()), index
        (torch.Size([1, 4, 4]), 2.0, 0)
    """

    def __init__(
        self,
        dataset: Dataset,
        transform: Callable[[Any], Any] | None = None,
        transform_b: Callable[[Any], Any] | None = None,
        keep_labels: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(dataset, transform, keep_labels, seed)
        self.transform_b = transform_b if transform_b is not None else transform

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        x, y = self._get(index)
        v1 = self._apply(self.transform, x, index, 0)
        v2 = self._apply(self.transform_b, x, index, 1)
        return ((v1, v2), y, index) if self.keep_labels else ((v1, v2), index)


class TwoViewCollate:
    """Collate ``(x, [y,] index)`` items into views augmented **per batch**.

    Stacks the ``x`` into ``(N, C, H, W)`` and calls ``transform`` on the whole batch once per view, so
    the transform must accept batches (e.g. :class:`SimCLRAffineTransform`).  Pickleable (DataLoader workers).

    Args:
        transform: batch augmentation ``(N, C, H, W) -> (N, C, H', W')``; None keeps the images.
        num_views: 2 -> ``((v1, v2), index)``; 1 -> ``(v, index)``.
        keep_labels: insert the stacked labels before ``index`` (items must carry them).
        seed: None draws the augmentation from the global RNG.  An int makes view ``v`` of item ``i`` a pure
            function of ``(seed, epoch, i, v)``: a transform with a ``num_random`` attribute
            (:class:`SimCLRAffineTransform`) gets ``uniforms=`` from :func:`sample_uniforms`; any other runs
            with the global RNGs seeded from the batch's keys.  The epoch comes from :meth:`set_epoch`.

    Raises:
        ValueError: if ``num_views`` is not 1 or 2.
    """

    def __init__(
        self,
        transform: Callable[[Tensor], Tensor] | None = None,
        num_views: int = 2,
        keep_labels: bool = False,
        seed: int | None = None,
    ) -> None:
        if num_views not in (1, 2):
            raise ValueError(f"Expected argument `num_views` to be 1 or 2, but got {num_views!r}.")
        self.transform = transform
        self.num_views = num_views
        self.keep_labels = keep_labels
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the per-sample augmentation seeds (called by :class:`~lit_metric.data.samplers.SeededSampler`)."""
        self.epoch = int(epoch)

    def _view(self, x: Tensor, index: Tensor, view: int) -> Tensor:
        if self.transform is None:
            return x
        if self.seed is None:
            return self.transform(x)
        count = getattr(self.transform, "num_random", None)
        if isinstance(count, int):
            return self.transform(x, uniforms=sample_uniforms(self.seed, self.epoch, index, view, count))  # type: ignore[call-arg]
        keys = _sample_keys(self.seed, self.epoch, index, view)
        with np.errstate(over="ignore"):
            batch_key = _splitmix64(np.array([keys.sum(dtype=np.uint64)], dtype=np.uint64))
        with _seeded_global_rng(int(batch_key[0] >> np.uint64(1))):
            return self.transform(x)

    def __call__(self, items: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        index = torch.as_tensor([int(item[-1]) for item in items], dtype=torch.long)
        views = [self._view(x, index, v) for v in range(self.num_views)]
        out: tuple[Any, ...] = (tuple(views),) if self.num_views == 2 else (views[0],)
        if self.keep_labels:
            out += (torch.as_tensor([int(item[1]) for item in items], dtype=torch.long),)
        return out + (index,)


class SimCLRAffineTransform:
    r"""SimCLR-style geometric augmentation of (small, grey) image tensors by one random affine map per image.

    Each image gets an independent random resized crop (area fraction in ``[min_scale, max_scale]``,
    aspect ratio in ``ratio``, position uniform inside the image), rotation, shear and optional
    horizontal flip, composed into **one** affine map and resampled bilinearly (``grid_sample``) to
    ``image_size``; then optional random erasing (a zeroed rectangle).  Accepts one image ``(C, H, W)``
    or a batch ``(N, C, H, W)``; a batch is done in one call (``supports_batches = True``), which is what
    makes it cheap enough for 28×28 Omniglot or 8×8 digits on a CPU.  Each image uses ``num_random`` (12)
    uniform numbers: drawn from torch's global RNG, or given as ``uniforms=`` (``(N, 12)`` in ``[0, 1)``, e.g.
    from :func:`sample_uniforms`) for augmentation that is a pure function of each sample's key.

    Why not lightly's ``SimCLRTransform``: it works on PIL images item by item, its colour jitter, random
    grayscale and ImageNet normalisation are meaningless (or fail) on 1-channel images, and its default
    horizontal flip changes a handwritten character's identity.  Use it (through :class:`TwoViewDataset`)
    for RGB photos.  Areas outside the input are filled with 0 (``padding_mode="zeros"``): the background
    of stroke images whose strokes are 1.

    Args:
        image_size: output side (None: the input's size).
        min_scale: smallest crop area as a fraction of the image.
        max_scale: largest crop area.
        ratio: range of the crop's aspect ratio (width / height).
        rotation_degrees: rotation uniform in ``[-rotation_degrees, +rotation_degrees]`` (degrees).
        shear_degrees: horizontal shear angle uniform in ``[-shear_degrees, +shear_degrees]`` (degrees).
        hflip_prob: probability of a horizontal flip.
        erase_prob: probability of erasing one rectangle.
        erase_scale: range of the erased area as a fraction of the image.
        padding_mode: ``grid_sample``'s padding for samples outside the input.

    Raises:
        ValueError: on scales outside ``(0, 1]``, an empty range, or probabilities outside ``[0, 1]``.

    Example:
        >>> import torch
        >>> t = SimCLRAffineTransform(image_size=28)
        >>> t(torch.rand(16, 1, 105, 105)).shape
        torch.Size([16, 1, 28, 28])
    """

    supports_batches = True
    #: uniform random numbers used per image (crop 4, rotation, shear, flip; erasing 5)
    num_random = 12

    def __init__(
        self,
        image_size: int | None = None,
        min_scale: float = 0.5,
        max_scale: float = 1.0,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        rotation_degrees: float = 15.0,
        shear_degrees: float = 10.0,
        hflip_prob: float = 0.0,
        erase_prob: float = 0.0,
        erase_scale: tuple[float, float] = (0.02, 0.15),
        padding_mode: Literal["zeros", "border", "reflection"] = "zeros",
    ) -> None:
        self.image_size = check_int(image_size, "image_size", 1) if image_size is not None else None
        if not 0 < min_scale <= max_scale <= 1:
            raise ValueError(
                f"Expected 0 < `min_scale` <= `max_scale` <= 1, but got min_scale={min_scale}, max_scale={max_scale}."
            )
        if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"Expected argument `ratio` to be (low, high) with 0 < low <= high, but got {ratio!r}.")
        for name, p in (("hflip_prob", hflip_prob), ("erase_prob", erase_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"Expected argument `{name}` to be in [0, 1], but got {p}.")
        if len(erase_scale) != 2 or not 0 < erase_scale[0] <= erase_scale[1] <= 1:
            raise ValueError(f"Expected argument `erase_scale` to be (low, high) in (0, 1], but got {erase_scale!r}.")
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.rotation = math.radians(rotation_degrees)
        self.shear = math.radians(shear_degrees)
        self.hflip_prob = float(hflip_prob)
        self.erase_prob = float(erase_prob)
        self.erase_scale = (float(erase_scale[0]), float(erase_scale[1]))
        self.padding_mode = check_choice(padding_mode, "padding_mode", ("zeros", "border", "reflection"))

    def __call__(self, x: Tensor, *, uniforms: Tensor | None = None) -> Tensor:
        """Augment ``(C, H, W)`` or ``(N, C, H, W)``; ``uniforms``: ``(N, num_random)`` draws in ``[0, 1)`` to use
        instead of the global RNG (``(num_random,)`` or ``(1, num_random)`` for one image)."""
        if not isinstance(x, Tensor) or x.ndim not in (3, 4):
            raise ValueError(
                "Expected a (C, H, W) image or (N, C, H, W) batch tensor for SimCLRAffineTransform, but got "
                f"{getattr(x, 'shape', type(x).__name__)}. Convert PIL images with torchvision first."
            )
        single = x.ndim == 3
        batch = (x.unsqueeze(0) if single else x).float()
        n = batch.shape[0]
        if uniforms is None:
            u = torch.rand(n, self.num_random, device=batch.device)
        else:
            u = uniforms.reshape(1, -1) if uniforms.ndim == 1 else uniforms
            if u.shape != (n, self.num_random):
                raise ValueError(
                    f"Expected argument `uniforms` to have shape ({n}, {self.num_random}), but got {tuple(uniforms.shape)}."
                )
            u = u.to(device=batch.device, dtype=torch.float32)
        out = self._affine(batch, u)
        if self.erase_prob > 0:
            out = self._erase(out, u[:, 7:])
        return out[0] if single else out

    @staticmethod
    def _scale(u: Tensor, low: float, high: float) -> Tensor:
        return u * (high - low) + low

    def _affine(self, x: Tensor, u: Tensor) -> Tensor:
        n, c, h, w = x.shape
        size = self.image_size
        out_h, out_w = (size, size) if size is not None else (h, w)
        area = self._scale(u[:, 0], self.min_scale, self.max_scale)
        log_r = self._scale(u[:, 1], math.log(self.ratio[0]), math.log(self.ratio[1]))
        aspect = log_r.exp()
        # crop side lengths as fractions of the image (<= 1), then a uniform centre keeping the crop inside
        sx = (area * aspect).sqrt().clamp(max=1.0)
        sy = (area / aspect).sqrt().clamp(max=1.0)
        cx = (u[:, 2] * 2 - 1) * (1 - sx)
        cy = (u[:, 3] * 2 - 1) * (1 - sy)
        angle = self._scale(u[:, 4], -self.rotation, self.rotation)
        shear = self._scale(u[:, 5], -self.shear, self.shear).tan()
        flip = torch.where(u[:, 6] < self.hflip_prob, -1.0, 1.0)
        cos, sin = angle.cos(), angle.sin()
        # input coordinate = centre + Rotation · Shear · diag(flip·sx, sy) · output coordinate (normalised [-1, 1])
        a00, a01 = flip * sx, shear * sy
        a10, a11 = torch.zeros_like(sx), sy
        theta = torch.stack(
            [
                torch.stack([cos * a00 - sin * a10, cos * a01 - sin * a11, cx], dim=1),
                torch.stack([sin * a00 + cos * a10, sin * a01 + cos * a11, cy], dim=1),
            ],
            dim=1,
        )
        grid = torch.nn.functional.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
        return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode, align_corners=False)

    def _erase(self, x: Tensor, u: Tensor) -> Tensor:
        n, _, h, w = x.shape
        dev = x.device
        area = self._scale(u[:, 0], *self.erase_scale)
        aspect = self._scale(u[:, 1], math.log(0.3), math.log(3.3)).exp()
        eh = (area / aspect).sqrt().clamp(max=1.0) * h
        ew = (area * aspect).sqrt().clamp(max=1.0) * w
        top = u[:, 2] * (h - eh)
        left = u[:, 3] * (w - ew)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (rows >= top.view(n, 1, 1))
            & (rows < (top + eh).view(n, 1, 1))
            & (cols >= left.view(n, 1, 1))
            & (cols < (left + ew).view(n, 1, 1))
        )
        box = box & (u[:, 4] < self.erase_prob).view(n, 1, 1)
        return x.masked_fill(box.unsqueeze(1), 0.0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(image_size={self.image_size}, min_scale={self.min_scale}, "
            f"rotation={math.degrees(self.rotation):.1f}°, shear={math.degrees(self.shear):.1f}°, "
            f"hflip_prob={self.hflip_prob}, erase_prob={self.erase_prob})"
        )


def ssl_dataloader(
    dataset: Dataset,
    transform: Callable[[Any], Any] | None,
    batch_size: int,
    num_views: int = 2,
    keep_labels: bool = False,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    batched: bool | None = None,
    seed: int | None = None,
) -> DataLoader:
    """A training loader of views for :class:`~lit_metric.SelfSupervisedModule`.

    Deterministic and resumable: the item order comes from a :class:`~lit_metric.data.samplers.SeededSampler`
    (a pure function of ``(seed, epoch)``, sharded across DDP ranks) and the augmentation of item ``i`` from
    ``(seed, epoch, i, view)`` (see the module doc), so the batches do not depend on the global RNG,
    ``num_workers`` or the number of ranks.  Lightning calls ``set_epoch`` every epoch; in a plain loop call
    ``loader.sampler.set_epoch(epoch)`` yourself.

    Args:
        dataset: items ``x``, ``(x, y)`` or ``(x, y, index)``.
        transform: the augmentation; applied per batch (:class:`TwoViewCollate`) when ``batched`` (default:
            the transform's ``supports_batches`` attribute), else per item (:class:`TwoViewDataset`).
        batch_size: instances per batch (per rank under DDP).
        num_views: 2 (InfoNCE) or 1 (memory bank).
        keep_labels: keep labels (SupCon).
        shuffle: reshuffle every epoch.
        drop_last: drop the last incomplete batch (default: every rank gathers equal-size batches).
        num_workers: DataLoader workers.
        batched: force the per-batch (True) or per-item (False) path.
        seed: seed of the order and the augmentation; default: the ``seed_everything`` seed
            (``PL_GLOBAL_SEED``), else 0.

    Raises:
        ValueError: if ``num_views`` is not 1 or 2.
    """
    if num_views not in (1, 2):
        raise ValueError(f"Expected argument `num_views` to be 1 or 2, but got {num_views!r}.")
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0)) if seed is None else int(seed)
    batched = bool(getattr(transform, "supports_batches", False)) if batched is None else batched
    collate: TwoViewCollate | None = None
    if batched:
        ds: SingleViewDataset = SingleViewDataset(dataset, None, keep_labels=keep_labels)
        collate = TwoViewCollate(transform, num_views=num_views, keep_labels=keep_labels, seed=seed)
    elif num_views == 2:
        ds = TwoViewDataset(dataset, transform, keep_labels=keep_labels, seed=seed)
    else:
        ds = SingleViewDataset(dataset, transform, keep_labels=keep_labels, seed=seed)
    sampler = SeededSampler(ds, shuffle=shuffle, seed=seed, epoch_listeners=[collate if collate is not None else ds])
    return DataLoader(
        ds, batch_size=batch_size, sampler=sampler, drop_last=drop_last, num_workers=num_workers, collate_fn=collate
    )


class TwoViewDataModule(L.LightningDataModule):
    """Self-supervised training on any labelled data module's training set; its evaluation loaders unchanged.

    Training items are views of the wrapped module's training images **without** their labels (unless
    ``keep_labels``); validation/test/predict are the wrapped module's loaders (labelled ``(x, y, index)``,
    for Recall@K and k-NN monitoring).

    Args:
        datamodule: a data module with ``train_dataloader()`` (its ``.dataset`` is used) and eval loaders.
        transform: the augmentation; default :class:`SimCLRAffineTransform` at the input size.
        batch_size: instances per training batch.
        num_views: 2 (InfoNCE) or 1 (memory bank).
        keep_labels: keep labels in training batches (SupCon).
        drop_last: drop the last incomplete training batch.
        num_workers: workers of the training loader.
        seed: seed of the training order and augmentation (see :func:`ssl_dataloader`); default: the
            ``seed_everything`` seed, else 0.

    Raises:
        ValueError: if ``num_views`` is not 1 or 2 or ``batch_size`` < 1.
    """

    def __init__(
        self,
        datamodule: L.LightningDataModule,
        transform: Callable[[Any], Any] | None = None,
        batch_size: int = 256,
        num_views: int = 2,
        keep_labels: bool = False,
        drop_last: bool = True,
        num_workers: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if num_views not in (1, 2):
            raise ValueError(f"Expected argument `num_views` to be 1 or 2, but got {num_views!r}.")
        self.datamodule = datamodule
        self.transform = transform if transform is not None else SimCLRAffineTransform()
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.num_views = num_views
        self.keep_labels = keep_labels
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset | None = None

    def setup(self, stage: str | None = None) -> None:
        self.datamodule.setup(stage if stage is not None else "fit")
        if self.train_set is None:
            self.train_set = self.datamodule.train_dataloader().dataset

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        assert self.train_set is not None
        return ssl_dataloader(
            self.train_set,
            self.transform,
            self.batch_size,
            num_views=self.num_views,
            keep_labels=self.keep_labels,
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            seed=self.seed,
        )

    def val_dataloader(self) -> Any:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.datamodule.test_dataloader()

    def predict_dataloader(self) -> Any:
        return self.datamodule.predict_dataloader()
