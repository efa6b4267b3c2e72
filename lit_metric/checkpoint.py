"""Checkpoints: exact mid-epoch resume, and clear errors for corrupt, truncated or mismatched checkpoint files.

Exact resume (``lit-metric fit --config x.yaml --ckpt_path last``) needs everything that shapes the rest of a
run to come back from the checkpoint.  Lightning restores the weights, buffers (memory banks, queues, the NCE
``Z``), optimizer and LR-scheduler states and the loop counters; :class:`ExactResume` (added by the
lit_metric modules through ``configure_callbacks``) adds the two missing pieces:

* the **data position** — after a mid-epoch restart, the training samplers skip the batches the interrupted run
  had already trained on (:func:`resume_data_position`; :class:`~lit_metric.data.PKSampler` and
  :class:`~lit_metric.data.samplers.SeededSampler` draw each epoch as a pure function of ``(seed, epoch)``, so
  the rest of the epoch is the uninterrupted run's), instead of Lightning's default of starting the epoch over;
* the **global RNG states** (torch CPU/CUDA, numpy, ``random``; per rank under DDP) at the moment of the save,
  restored just before the first resumed batch: per-item augmentations drawing from the global RNG and dropout
  continue the same random stream.

Lightning makes the training iterator while it sets up, before it knows the resumed epoch, and uses it for
the first resumed epoch; with DataLoader workers it has already prefetched from the sampler by then.
:class:`ExactResume` makes it again where that matters (workers mid-epoch; any resume from an end-of-epoch
checkpoint, after restoring the RNG, as the uninterrupted run made it after the save).  Tested: a run
SIGKILLed mid-epoch or after an end-of-epoch checkpoint and resumed ends bit-for-bit equal to the
uninterrupted run (``tests/test_resume.py``).  Not exact: resuming an iteration-based run (``max_steps``) from
an end-of-epoch checkpoint (Lightning's own restart path then departs from the uninterrupted run: its logged
``epoch`` already differs), and per-item
augmentation drawing from the global RNG inside DataLoader workers (seed it per sample instead, as
:func:`~lit_metric.data.ssl_dataloader` does).

Loading is checked: :class:`CheckedCheckpointIO` (installed by the ``lit-metric`` command line) turns a
truncated or corrupt file into a :class:`CheckpointError` naming the file, and :func:`check_state_dict` (run by
the modules' ``on_load_checkpoint``, before any weight is copied) rejects a checkpoint of another model with
the missing/unexpected keys and shape mismatches listed — never a half-loaded model.
"""

from __future__ import annotations

import pickle
import random
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.cloud_io import _load as pl_load
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader

from lit_metric import distributed

__all__ = [
    "CheckedCheckpointIO",
    "CheckpointError",
    "ExactResume",
    "check_checkpoint_fits",
    "check_state_dict",
    "get_rng_states",
    "load_checkpoint",
    "resume_data_position",
    "set_rng_states",
]

# Lightning warns on every mid-epoch resume unless the DataLoader object itself is `_Stateful`; with our
# resumable samplers that warning ("… can cause unreliable results") is wrong, so ExactResume silences it once.
_NOT_RESUMABLE_WARNING = r"You're resuming from a checkpoint that ended before the epoch ended"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: truncated, corrupt, not a Lightning checkpoint, or another model's."""


def _alternatives(path: Path) -> str:
    if not path.parent.is_dir():
        return ""
    others = sorted((p for p in path.parent.glob("*.ckpt") if p.name != path.name), key=lambda p: p.stat().st_mtime)
    if not others:
        return ""
    return f" Other checkpoints in {path.parent}: {', '.join(p.name for p in others[-5:][::-1])}."


def load_checkpoint(path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
    """``torch.load`` a Lightning checkpoint, with errors that name the file and say what is wrong.

    Args:
        path: the checkpoint file (local or any fsspec URL).
        map_location: as in ``torch.load``.
        weights_only: as in ``torch.load`` (None: torch's default).

    Returns:
        The checkpoint dictionary.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is empty, truncated or corrupt, or holds no Lightning checkpoint (a dict with
            a ``"state_dict"``).

    Example:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/x.ckpt"
        >>> torch.save({"state_dict": {"w": torch.ones(2)}}, path)
        >>> load_checkpoint(path)["state_dict"]["w"]
        tensor([1., 1.])
        >>> _ = open(path, "wb").write(b"not a checkpoint")
        >>> load_checkpoint(path)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        lit_metric.checkpoint.CheckpointError: Cannot load checkpoint …/x.ckpt …
    """
    fs = get_filesystem(path)
    if not fs.exists(path):
        local = Path(str(path))
        raise FileNotFoundError(f"Checkpoint file {path} does not exist.{_alternatives(local)}")
    size = fs.size(path)
    local = Path(str(path))
    fix = f" Nothing was loaded. Resume from another checkpoint or start over without `ckpt_path`.{_alternatives(local)}"
    if not size:
        raise CheckpointError(f"Cannot load checkpoint {path}: the file is empty (0 bytes), its save never finished.{fix}")
    try:
        checkpoint = pl_load(path, map_location=map_location, weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise  # a complete file with an object weights_only refuses: torch's message says which to allow
        reason = str(err).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].strip()
        raise CheckpointError(
            f"Cannot load checkpoint {path} ({size} bytes): the file is corrupt or not a PyTorch checkpoint "
            f"(UnpicklingError: {reason}).{fix}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as err:
        raise CheckpointError(
            f"Cannot load checkpoint {path} ({size} bytes): the file is truncated or corrupt "
            f"({type(err).__name__}: {err}).{fix}"
        ) from err
    if not isinstance(checkpoint, Mapping) or "state_dict" not in checkpoint:
        got = f"keys {sorted(map(str, checkpoint))[:8]}" if isinstance(checkpoint, Mapping) else type(checkpoint).__name__
        raise CheckpointError(
            f"Cannot load checkpoint {path}: expected a Lightning checkpoint (a dict with a 'state_dict'), but got "
            f"{got}. A bare model state_dict loads with `model.load_state_dict(torch.load(path))` instead."
        )
    return dict(checkpoint)


class CheckedCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` whose loading goes through :func:`load_checkpoint` (clear errors).

    The ``lit-metric`` command line installs it; in Python pass ``Trainer(plugins=[CheckedCheckpointIO()])``.
    """

    def load_checkpoint(
        self, path: Any, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location, weights_only=weights_only)


def check_checkpoint_fits(module: L.LightningModule, checkpoint: Mapping[str, Any]) -> None:
    """For ``on_load_checkpoint``: reject a checkpoint whose ``state_dict`` does not fit ``module`` (keys, shapes)
    before Lightning copies any weight; strict as ``module.strict_loading`` while a trainer loads it."""
    trainer = module._trainer
    check_state_dict(
        module,
        checkpoint.get("state_dict", {}),
        getattr(trainer, "ckpt_path", None),
        strict=module.strict_loading if trainer is not None else False,
    )


def check_state_dict(module: nn.Module, state_dict: Mapping[str, Any], source: Any = None, strict: bool = True) -> None:
    """Check that ``state_dict`` fits ``module`` (keys and shapes) before anything is copied into it.

    ``nn.Module.load_state_dict`` copies every matching tensor before it reports missing or unexpected keys
    and stops at the first shape mismatch, which leaves a half-loaded model behind a caught exception.

    Args:
        module: the model about to be loaded.
        state_dict: the checkpoint's ``"state_dict"``.
        source: where it comes from (the file), for the message.
        strict: also require the same set of keys (shapes are always checked).

    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.

    Example:
        >>> check_state_dict(nn.Linear(2, 3), nn.Linear(2, 3).state_dict())
        >>> check_state_dict(nn.Linear(2, 3), nn.Linear(2, 4).state_dict())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lit_metric.checkpoint.CheckpointError: The checkpoint does not fit Linear: shape mismatches weight: checkpoint (4, 2) vs model (3, 2)...
    """
    own = module.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        for key, value in state_dict.items()
        if key in own and isinstance(value, torch.Tensor) and tuple(value.shape) != tuple(own[key].shape)
    ]
    missing = [key for key in own if key not in state_dict] if strict else []
    unexpected = [key for key in state_dict if key not in own] if strict else []
    if not (mismatched or missing or unexpected):
        return

    def listed(name: str, items: list[str]) -> str:
        return f"{name} {', '.join(items[:6])}{' …' if len(items) > 6 else ''}" if items else ""

    parts = [
        listed("shape mismatches", mismatched),
        listed(f"{len(missing)} missing key(s)", missing),
        listed(f"{len(unexpected)} unexpected key(s)", unexpected),
    ]
    where = f"Checkpoint {source}" if source else "The checkpoint"
    raise CheckpointError(
        f"{where} does not fit {type(module).__name__}: {'; '.join(p for p in parts if p)}. Nothing was loaded. "
        "Build the model with the configuration the checkpoint was trained with (e.g. the run's config.yaml)."
    )


def get_rng_states() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, ``random``), in a form ``weights_only`` loading accepts."""
    state: Any = np.random.get_state(legacy=True)
    _, keys, pos, has_gauss, cached = state
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_states` returned."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _flatten_loaders(loaders: Any) -> Iterator[Any]:
    if isinstance(loaders, Mapping):
        for value in loaders.values():
            yield from _flatten_loaders(value)
    elif isinstance(loaders, list | tuple):
        for value in loaders:
            yield from _flatten_loaders(value)
    elif loaders is not None:
        yield loaders


def _restart_position(trainer: L.Trainer) -> tuple[int, int] | None:
    """``(epoch, batches already trained)`` when the fit loop restarts in the middle of an epoch, else None."""
    fit_loop = trainer.fit_loop
    if not getattr(fit_loop, "restarted_mid_epoch", False):
        return None
    done = int(fit_loop.epoch_loop.batch_progress.current.processed)  # type: ignore[attr-defined]
    total = trainer.num_training_batches
    if done <= 0 or (total != float("inf") and done >= total):
        return None  # nothing trained yet, or the epoch was finished: Lightning moves on to the next one
    return int(fit_loop.epoch_progress.current.processed), done  # type: ignore[attr-defined]


def resume_data_position(trainer: L.Trainer) -> int:
    """After a mid-epoch restart, make the training loaders skip what the interrupted run consumed.

    Call it in ``on_train_start`` (:class:`ExactResume` does): after Lightning restored its loop counters
    and before the first batch is drawn.  Loaders whose batch sampler has ``resume(epoch, batches_done)``
    (:class:`~lit_metric.data.PKSampler`) or whose sampler has ``resume(epoch, items_done)``
    (:class:`~lit_metric.data.samplers.SeededSampler`, under a plain ``BatchSampler``) are fast-forwarded;
    others start the epoch over (Lightning's default; it warns).  With ``num_workers > 0`` the loader's
    iterator, which Lightning created (and prefetched) before the epoch was known, is made again.

    Returns:
        The number of batches skipped (0 when not restarting mid-epoch or no loader can be fast-forwarded).
    """
    position = _restart_position(trainer)
    if position is None:
        return 0
    epoch, done = position
    resumed, workers = 0, False
    for loader in _flatten_loaders(trainer.train_dataloader):
        if not isinstance(loader, DataLoader):
            continue
        batch_sampler, sampler = loader.batch_sampler, loader.sampler
        if callable(getattr(batch_sampler, "resume", None)):
            batch_sampler.resume(epoch, done)  # type: ignore[union-attr]
        elif callable(getattr(sampler, "resume", None)) and loader.batch_size:
            sampler.resume(epoch, done * loader.batch_size)  # type: ignore[attr-defined]
        else:
            continue
        resumed += 1
        workers |= loader.num_workers > 0
    if workers:
        _remake_train_iterators(trainer, epoch)  # worker iterators prefetched before the epoch and position were set
    return done if resumed else 0


def _resumed_epoch_start(trainer: L.Trainer) -> int | None:
    """The epoch a resumed run starts with when its checkpoint was saved at the end of the previous epoch
    (on the epoch's end, or after its last batch); None otherwise."""
    fit_loop, epoch_loop = trainer.fit_loop, trainer.fit_loop.epoch_loop
    if not fit_loop.is_resuming:
        return None
    after_last_batch = (
        getattr(fit_loop, "restarted_mid_epoch", False)
        and getattr(epoch_loop, "restarted_on_train_batch_end", False)
        and epoch_loop.batch_progress.is_last_batch
    )  # Lightning then moves on to the next epoch (FitLoop.reset)
    if getattr(fit_loop, "resumed_on_epoch_end", False) or after_last_batch:
        return int(fit_loop.epoch_progress.current.processed)  # type: ignore[attr-defined]
    return None


def _remake_train_iterators(trainer: L.Trainer, epoch: int) -> None:
    """Set the samplers' epoch and make the training iterators again.

    Lightning makes them while setting up (before the resumed epoch is known; DataLoader workers prefetch from
    the sampler right then) and, on a resume, uses them for the first epoch instead of making new ones.
    """
    for loader in _flatten_loaders(trainer.train_dataloader):
        objects = (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None))
        for obj in {id(o): o for o in objects if o is not None}.values():
            set_epoch = getattr(obj, "set_epoch", None)
            if callable(set_epoch):
                set_epoch(epoch)
    fetcher = getattr(trainer.fit_loop, "_data_fetcher", None)
    if fetcher is not None:
        iter(fetcher)


class ExactResume(L.Callback):
    """Makes ``--ckpt_path`` resumes exact: data position mid-epoch and the global RNG states (see the module doc).

    :class:`~lit_metric.MetricLearningModule` and :class:`~lit_metric.SelfSupervisedModule` add it themselves
    (``configure_callbacks``); add it to ``trainer.callbacks`` for other LightningModules.  Its state (the RNG
    states at the save) is stored under ``checkpoint["callbacks"]["ExactResume"]``; under DDP the states of every
    rank are gathered into the checkpoint (Lightning asks every rank for it) and each rank gets its own back.
    """

    def __init__(self) -> None:
        self._rng_to_restore: Mapping[str, Any] | None = None
        self._silenced: Any = None

    def state_dict(self) -> dict[str, Any]:
        states = get_rng_states()
        if not distributed.is_distributed():
            return {"rng": states}
        per_rank: list[Any] = [None] * distributed.world_size()
        torch.distributed.all_gather_object(per_rank, states)
        return {"rng_per_rank": per_rank}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        per_rank = state_dict.get("rng_per_rank")
        if per_rank is None:
            self._rng_to_restore = state_dict.get("rng")
        elif len(per_rank) == distributed.world_size():
            self._rng_to_restore = per_rank[distributed.rank()]
        else:  # another number of ranks: each rank's random stream cannot continue; the data position still does
            warnings.warn(
                f"ExactResume: the checkpoint holds the RNG states of {len(per_rank)} ranks, this run has "
                f"{distributed.world_size()}; the global RNGs are not restored.",
                stacklevel=2,
            )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if resume_data_position(trainer) and all(
            callable(getattr(getattr(dl, "batch_sampler", None), "resume", None))
            or callable(getattr(getattr(dl, "sampler", None), "resume", None))
            for dl in _flatten_loaders(trainer.train_dataloader)
        ):
            warnings.filterwarnings("ignore", message=_NOT_RESUMABLE_WARNING)
            self._silenced = warnings.filters[0]
        if self._rng_to_restore is not None:
            # after the loaders' iterators were made (each draws a seed from the global RNG): the next draw is
            # the first one of the resumed batch, as in the uninterrupted run
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None
        epoch = _resumed_epoch_start(trainer)
        if epoch is not None:
            # saved at the end of an epoch: the uninterrupted run made the next epoch's iterators after the save
            _remake_train_iterators(trainer, epoch)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self._silenced is not None:
            filters: list[Any] = warnings.filters  # type: ignore[assignment]
            if self._silenced in filters:
                filters.remove(self._silenced)
                mutated = getattr(warnings, "_filters_mutated", None) or getattr(warnings, "_filters_mutated_lock_held", None)
                if callable(mutated):
                    mutated()  # invalidate the warning registries' caches, as warnings.filterwarnings does
            self._silenced = None
