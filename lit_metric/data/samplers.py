"""Training samplers: P×K batches (P classes × K samples per batch) and seeded item order; DDP-aware, resumable."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from lit_metric import distributed
from lit_metric._validation import check_int

__all__ = ["PKSampler", "SeededSampler", "disable_sampler_injection", "distributed_eval_sampler"]


class PKSampler(Sampler[list[int]]):
    """A batch sampler: each batch holds ``p`` distinct classes × ``k`` samples of each.

    Samples of a class are drawn without replacement while the class has at least ``k`` of them,
    otherwise with replacement (a class with fewer than ``k`` samples is still usable unless
    ``min_class_size`` forbids it).  Deterministic per ``(seed, epoch)``; call :meth:`set_epoch`
    for a new draw each epoch.  Lightning does, through the :attr:`sampler` attribute (it calls
    ``set_epoch`` on ``loader.sampler`` and ``loader.batch_sampler.sampler``, never on the batch sampler).

    Under DDP (or with explicit ``rank``/``world_size``) each step draws ``world_size·p`` distinct
    classes with the shared seed and rank r takes its own ``p``: ranks never share a class within a
    step, and together they form exactly the batch one process with ``p·world_size`` classes would
    draw.  Every rank yields the same number of full batches (no uneven last batch, no hang).

    Exact resume: a run restarted from a mid-epoch checkpoint calls :meth:`resume` (the modules do it
    through :func:`lit_metric.checkpoint.resume_data_position`); the sampler then replays the epoch's draw
    and yields only the batches the interrupted run had not trained on.

    Args:
        labels: class id of every dataset item.
        p: classes per batch (per rank).
        k: samples per class.
        num_batches: batches per epoch; default ``len(labels) // (p·k·world_size)``.
        seed: base seed.
        rank, world_size: default to the running process group (0 and 1 without one).

    Raises:
        ValueError: if fewer than ``p·world_size`` classes have at least ``min_class_size`` samples, or if one
            global batch (``p·k·world_size``) holds more samples than the data set.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        p: int,
        k: int,
        num_batches: int | None = None,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        min_class_size: int = 1,
    ) -> None:
        self.labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
        self.p = check_int(p, "p", 1)
        self.k = check_int(k, "k", 1)
        self.seed = int(seed)
        self.rank = distributed.rank() if rank is None else rank
        self.world_size = distributed.world_size() if world_size is None else world_size
        self.epoch = 0
        self._resume: tuple[int, int] | None = None
        classes, counts = np.unique(self.labels, return_counts=True)
        keep = counts >= min_class_size
        self.classes = classes[keep]
        self._members = {int(c): np.flatnonzero(self.labels == c) for c in self.classes}
        needed = self.p * self.world_size
        if len(self.classes) < needed:
            raise ValueError(
                f"PKSampler needs p × world_size = {needed} classes with >= {min_class_size} samples each, but the "
                f"data has {len(self.classes)}. Lower `p` (or the number of devices)."
            )
        batch = self.p * self.k * self.world_size
        if batch > len(self.labels):
            raise ValueError(
                f"Expected a P×K batch no larger than the data set, but p × k × world_size = {self.p} × {self.k} × "
                f"{self.world_size} = {batch} samples > {len(self.labels)} items: every batch would repeat items. "
                "Lower `p` or `k`."
            )
        default = len(self.labels) // batch
        self.num_batches = max(1, default) if num_batches is None else check_int(num_batches, "num_batches", 1)

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of epoch ``epoch`` (the same on every rank)."""
        self.epoch = int(epoch)

    def resume(self, epoch: int, batches_done: int) -> None:
        """Skip the first ``batches_done`` batches the next time epoch ``epoch`` is iterated (once).

        The skipped batches are still drawn (and dropped), so the rest of the epoch is exactly the
        uninterrupted run's.
        """
        self._resume = (int(epoch), int(batches_done))

    @property
    def sampler(self) -> PKSampler:
        """This sampler itself: Lightning's per-epoch ``set_epoch`` call looks for ``batch_sampler.sampler``."""
        return self

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip, self._resume = self._resume[1], None
        rng = np.random.default_rng([self.seed, self.epoch])
        # per-class shuffled queues, consumed without replacement and refilled when exhausted
        queues: dict[int, list[int]] = {}
        for step in range(self.num_batches):
            chosen = rng.choice(self.classes, size=self.p * self.world_size, replace=False)
            batch: list[int] = []
            for j, c in enumerate(chosen):
                members = self._members[int(c)]
                if len(members) >= self.k:
                    q = queues.get(int(c), [])
                    if len(q) < self.k:
                        q = q + rng.permutation(members).tolist()
                    picked, queues[int(c)] = q[: self.k], q[self.k :]
                    if len(set(picked)) < self.k:  # refill boundary produced a duplicate: draw fresh
                        picked = rng.choice(members, size=self.k, replace=False).tolist()
                else:
                    picked = rng.choice(members, size=self.k, replace=True).tolist()
                if j // self.p == self.rank:
                    batch.extend(int(i) for i in picked)
            if step >= skip:
                yield batch


class SeededSampler(DistributedSampler):
    """Item order of a shuffled training loader as a pure function of ``(seed, epoch)``; DDP-sharded; resumable.

    A :class:`~torch.utils.data.DistributedSampler` that also runs without a process group (rank 0 of 1), so
    Lightning keeps it (it injects its own sampler only where there is none of this type).  Each epoch is
    ``randperm(len(dataset))`` from a generator seeded with ``seed + epoch`` (``shuffle=False``: the dataset
    order); rank ``r`` of ``W`` takes positions ``r, r + W, …``, so with batches of ``B`` per rank the ranks'
    batches of step ``t`` together are positions ``t·W·B … (t+1)·W·B − 1``: one process's batch of ``W·B``.

    Because the order never depends on the global RNG, a run killed mid-epoch and resumed from its checkpoint
    sees the same remaining items (:meth:`resume`, called by :func:`lit_metric.checkpoint.resume_data_position`).
    ``epoch_listeners`` (e.g. a :class:`~lit_metric.data.TwoViewCollate` with a ``seed``) get every
    :meth:`set_epoch` too, so per-epoch augmentation seeds follow the epoch Lightning sets.  In a plain PyTorch
    loop call ``sampler.set_epoch(epoch)`` before each epoch, as with any ``DistributedSampler``.

    Args:
        dataset: the dataset (only its length is used).
        shuffle: a new permutation every epoch; False keeps the dataset order.
        seed: base seed (identical on every rank).
        drop_last: under DDP, drop the tail that does not split evenly across ranks instead of padding it with
            repeated items.
        rank, world_size: default to the running process group (0 and 1 without one).
        epoch_listeners: objects whose ``set_epoch`` is called with this sampler's.

    Example:
        >>> s = SeededSampler(list(range(6)), seed=1)
        >>> s.set_epoch(3)
        >>> first = list(s)
        >>> s.resume(epoch=3, items_done=4)
        >>> list(s) == first[4:]
        True
    """

    def __init__(
        self,
        dataset: Sized,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
        epoch_listeners: Sequence[Any] = (),
    ) -> None:
        super().__init__(
            dataset,  # type: ignore[arg-type]
            num_replicas=distributed.world_size() if world_size is None else world_size,
            rank=distributed.rank() if rank is None else rank,
            shuffle=shuffle,
            seed=int(seed),
            drop_last=drop_last,
        )
        self.epoch_listeners = list(epoch_listeners)
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of epoch ``epoch`` and tell the ``epoch_listeners``."""
        super().set_epoch(int(epoch))
        for listener in self.epoch_listeners:
            listener.set_epoch(int(epoch))

    def resume(self, epoch: int, items_done: int) -> None:
        """Skip this rank's first ``items_done`` items the next time epoch ``epoch`` is iterated (once)."""
        self._resume = (int(epoch), int(items_done))

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip, self._resume = self._resume[1], None
        yield from itertools.islice(super().__iter__(), skip, None)


def disable_sampler_injection(trainer: Any) -> None:
    """Keep Lightning from swapping a ``DistributedSampler`` into this trainer's dataloaders.

    Equivalent to ``Trainer(use_distributed_sampler=False)``, set from a DataModule's ``setup`` so
    that users need no Trainer flag: under DDP Lightning would otherwise try to inject a
    ``DistributedSampler`` into the :class:`PKSampler` loader (a ``TypeError``: a custom batch
    sampler) — and the P×K sampler already shards itself.  A DataModule that calls this must shard
    its other loaders itself (:func:`distributed_eval_sampler`).  No-op for ``trainer=None``.

    Raises:
        RuntimeError: under DDP, if this Lightning version has no such switch (then pass
            ``use_distributed_sampler=False`` to the Trainer).
    """
    if trainer is None:
        return
    connector = getattr(trainer, "_accelerator_connector", None)
    if connector is not None and hasattr(connector, "use_distributed_sampler"):
        connector.use_distributed_sampler = False
    elif getattr(trainer, "world_size", 1) > 1:
        raise RuntimeError(
            "Could not switch off Lightning's distributed-sampler injection on this Lightning version: pass "
            "`Trainer(use_distributed_sampler=False)` (CLI: --trainer.use_distributed_sampler=false)."
        )


def distributed_eval_sampler(dataset: Dataset[Any], *, unrepeated: bool = False) -> Sampler[int] | None:
    """The sampler of an evaluation loader under DDP (``None`` on one process: plain sequential order).

    Args:
        dataset: the evaluation dataset.
        unrepeated: ``False`` (validation/test): a ``DistributedSampler`` without shuffling, which pads
            the last ranks with duplicates so that every rank runs the same number of batches — the
            metrics drop them by dataset index.  ``True`` (predict): no padding, uneven shards
            (Lightning's ``UnrepeatedDistributedSampler``).
    """
    if not distributed.is_distributed():
        return None
    if unrepeated:
        from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

        return UnrepeatedDistributedSampler(dataset, shuffle=False)
    return DistributedSampler(dataset, shuffle=False, drop_last=False)
