"""scikit-learn's bundled 8×8 digits as a class-disjoint metric-learning benchmark (no download)."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from lit_metric.data.datasets import TensorImageDataset
from lit_metric.data.samplers import PKSampler, disable_sampler_injection, distributed_eval_sampler

__all__ = ["DigitsDataModule", "random_shift"]


def random_shift(x: torch.Tensor, max_shift: int = 1) -> torch.Tensor:
    """Translate a ``(C, H, W)`` image by a random integer offset in ``[-max_shift, max_shift]`` (zero fill)."""
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
    m = max_shift
    padded = torch.nn.functional.pad(x, (m, m, m, m))
    h, w = x.shape[-2:]
    return padded[..., m + dy : m + dy + h, m + dx : m + dx + w]


class DigitsDataModule(L.LightningDataModule):
    """1,797 8×8 grey images of digits; train on ``train_classes`` (0–4), validate/test on the rest (5–9).

    Items are ``(x, label, index)`` with ``x`` of shape ``(1, 8, 8)`` scaled to ``[0, 1]``.  Training
    batches are P×K (:class:`~lit_metric.data.PKSampler`), evaluation batches sequential.

    Under DDP no Trainer flag is needed: :meth:`setup` switches off Lightning's sampler injection
    (:func:`~lit_metric.data.samplers.disable_sampler_injection`); each rank then draws its own P×K
    batch (``p`` classes per rank, disjoint across ranks) and the evaluation loaders shard the data with
    a non-shuffling ``DistributedSampler`` (padding duplicates are dropped by the metrics, by index).
    ``W`` ranks with ``p`` classes see exactly the global batches of one process with ``W·p`` classes.

    Args:
        p: classes per training batch.
        k: samples per class in a training batch.
        batches_per_epoch: training batches per epoch (default: one pass worth of samples).
        train_classes: digits used for training; the others are the unseen evaluation classes.
        eval_batch_size: batch size of validation/test/predict loaders.
        seed: sampler seed.
        num_workers: DataLoader workers.
        augment: shift training images by a random -1, 0 or +1 pixel in each direction (zero padding).
    """

    def __init__(
        self,
        p: int = 5,
        k: int = 16,
        batches_per_epoch: int | None = None,
        train_classes: Sequence[int] = (0, 1, 2, 3, 4),
        eval_batch_size: int = 256,
        seed: int = 0,
        num_workers: int = 0,
        augment: bool = False,
    ) -> None:
        super().__init__()
        self.p, self.k = p, k
        self.batches_per_epoch = batches_per_epoch
        self.train_classes = tuple(train_classes)
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.augment = augment
        self.train_set: TensorImageDataset | None = None
        self.eval_set: TensorImageDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        # the P×K batch sampler shards itself across ranks: Lightning must not inject a DistributedSampler
        disable_sampler_injection(self.trainer)
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        is_train = torch.isin(labels, torch.tensor(self.train_classes))
        self.train_set = TensorImageDataset(images[is_train], labels[is_train], random_shift if self.augment else None)
        self.eval_set = TensorImageDataset(images[~is_train], labels[~is_train])

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        sampler = PKSampler(self.train_set.labels, self.p, self.k, self.batches_per_epoch, seed=self.seed)
        return DataLoader(self.train_set, batch_sampler=sampler, num_workers=self.num_workers)

    def _eval_loader(self, unrepeated: bool = False) -> DataLoader:
        assert self.eval_set is not None, "call setup() first"
        sampler = distributed_eval_sampler(self.eval_set, unrepeated=unrepeated)
        return DataLoader(
            self.eval_set, batch_size=self.eval_batch_size, shuffle=False, sampler=sampler, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(unrepeated=True)
