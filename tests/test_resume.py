"""Exact resume: a run SIGKILLed mid-epoch and resumed with ``--ckpt_path last`` ends where the uninterrupted run does.

For four recipes (triplet + miner with random-shift augmentation and a step LR schedule, ArcFace with two loader
workers, InfoNCE on two augmented views, the memory-bank NCE loss) on the digits: the uninterrupted run (in process) and a run in
another process that kills itself (``os.kill(os.getpid(), SIGKILL)``: no cleanup, no flush) right after the
checkpoint of step 4 — the middle of epoch 2 — then ``lit-metric fit … --ckpt_path last`` (in process).  Final
weights, buffers (memory bank, NCE ``Z`` and step), optimizer and scheduler states must be bit-for-bit equal,
and so must every logged metric (CSV logs: train losses per step, validation Recall@K / k-NN accuracy per epoch).
The triplet recipe (whose augmentation draws from the global RNG) is also killed after an end-of-epoch checkpoint
(``ModelCheckpoint``'s default), where Lightning restarts on an iterator it made before the epoch was known.

The triplet run is killed as a real ``python -m lit_metric fit`` subprocess; the others are forked from this
process (the same CLI entry point, without paying the imports again) to keep the file fast.  Everything runs
with one intra-op thread so that both processes compute bit-identical floats.  Plus unit tests of the pieces:
sampler fast-forward, per-sample augmentation seeds, RNG state round trip.
"""

from __future__ import annotations

import copy
import csv
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from lit_metric.checkpoint import get_rng_states, set_rng_states
from lit_metric.data import PKSampler, SimCLRAffineTransform, TwoViewCollate, ssl_dataloader
from lit_metric.data.samplers import SeededSampler
from lit_metric.data.two_view import sample_uniforms

REPO = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH, EPOCHS, CKPT_EVERY, KILL_AFTER = 3, 3, 2, 4  # killed after step 4 = 1st batch of epoch 2 (of 3)


class KillAfterStep(L.Callback):
    """Kills its own process (SIGKILL, no cleanup) when step ``step`` is done, i.e. after its checkpoint is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


_CONVNET = {"class_path": "lit_metric.backbones.ConvNet", "init_args": {"in_chans": 1, "channels": [8, 16]}}
_DIGITS = {"class_path": "lit_metric.data.DigitsDataModule", "init_args": {"p": 4, "k": 8, "eval_batch_size": 512}}
_ADAM = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.003}}

RECIPES: dict[str, dict[str, Any]] = {
    "triplet_miner": {
        "model": {
            "class_path": "lit_metric.MetricLearningModule",
            "init_args": {
                "backbone": _CONVNET,
                "embedding_dim": 16,
                "loss": {"class_path": "lit_metric.losses.TripletMarginLoss", "init_args": {"margin": 0.2}},
                "miner": {"class_path": "lit_metric.miners.TripletMiner", "init_args": {"strategy": "semihard"}},
                "optimizer": _ADAM,
                "lr_scheduler": {"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3}},
                "lr_scheduler_interval": "step",
            },
        },
        # random_shift draws from the global torch RNG per item: exact only because the RNG state is restored
        "data": {**_DIGITS, "init_args": {**_DIGITS["init_args"], "batches_per_epoch": STEPS_PER_EPOCH, "augment": True}},
    },
    "arcface": {
        "model": {
            "class_path": "lit_metric.MetricLearningModule",
            "init_args": {
                "backbone": _CONVNET,
                "embedding_dim": 16,
                "loss": {
                    "class_path": "lit_metric.losses.ArcFaceLoss",
                    "init_args": {"num_classes": 5, "embedding_dim": 16, "margin": 0.3, "scale": 16.0},
                },
                "optimizer": _ADAM,
                "loss_lr": 0.01,
            },
        },
        # with loader workers: Lightning makes (and prefetches) the iterator before the resumed epoch is set
        "data": {**_DIGITS, "init_args": {**_DIGITS["init_args"], "batches_per_epoch": STEPS_PER_EPOCH, "num_workers": 2}},
    },
    "info_nce": {
        "model": {
            "class_path": "lit_metric.SelfSupervisedModule",
            "init_args": {
                "backbone": _CONVNET,
                "embedding_dim": 16,
                "projection_hidden_dim": 16,
                "loss": {"class_path": "lit_metric.losses.InfoNCELoss", "init_args": {"temperature": 0.2}},
                "knn_k": 10,
                "optimizer": _ADAM,
            },
        },
        "data": {
            "class_path": "lit_metric.data.TwoViewDataModule",
            "init_args": {
                "datamodule": _DIGITS,
                "transform": {"class_path": "lit_metric.data.SimCLRAffineTransform", "init_args": {"erase_prob": 0.5}},
                "batch_size": 300,  # 901 training digits: 3 batches per epoch
            },
        },
    },
    "memory_bank": {
        "model": {
            "class_path": "lit_metric.SelfSupervisedModule",
            "init_args": {
                "backbone": _CONVNET,
                "embedding_dim": 16,
                "projection_hidden_dim": 16,
                "loss": {
                    "class_path": "lit_metric.losses.MemoryBankNCELoss",
                    "init_args": {"num_samples": 901, "embedding_dim": 16, "num_negatives": 64},
                },
                "eval_embedding": "projection",
                "knn_k": 10,
                "optimizer": _ADAM,
            },
        },
        "data": {
            "class_path": "lit_metric.data.TwoViewDataModule",
            "init_args": {"datamodule": _DIGITS, "batch_size": 300, "num_views": 1},
        },
    },
}


# where the checkpoints are saved, and after which step the run is killed
SCENARIOS: dict[str, tuple[dict[str, Any], int]] = {
    "mid_epoch": ({"every_n_train_steps": CKPT_EVERY}, KILL_AFTER),
    "epoch_end": ({"every_n_epochs": 1}, STEPS_PER_EPOCH),  # ModelCheckpoint's default: at the end of each epoch
}


def _write_config(root: Path, recipe: str, version: str, kill: bool = False, scenario: str = "mid_epoch") -> Path:
    checkpoint, kill_after = SCENARIOS[scenario]
    callbacks: list[dict[str, Any]] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": str(root / "ckpt"), "save_last": True, **checkpoint},
        }
    ]
    if kill:
        callbacks.append({"class_path": "tests.test_resume.KillAfterStep", "init_args": {"step": kill_after}})
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": EPOCHS,
            "deterministic": True,
            "log_every_n_steps": 1,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(root),
            "logger": {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(root), "name": "logs", "version": version, "flush_logs_every_n_steps": 1},
            },
            "callbacks": callbacks,
        },
        **RECIPES[recipe],
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{version}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _metrics(root: Path, *versions: str) -> dict[tuple[int, str], str]:
    """Every logged value by (step, name), over the CSV logs of ``versions`` (overlaps must agree)."""
    out: dict[tuple[int, str], str] = {}
    for version in versions:
        with open(root / "logs" / version / "metrics.csv") as f:
            for row in csv.DictReader(f):
                for name, value in row.items():
                    if name == "step" or value in ("", None):
                        continue
                    key = (int(row["step"]), name)
                    assert out.setdefault(key, value) == value, (key, out[key], value)
    return out


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One intra-op thread (bit-identical floats in every process; no OpenMP pool in a forked child); the
    process-wide settings a CLI run changes are put back afterwards."""
    deterministic, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    monkeypatch.setenv("PL_GLOBAL_SEED", os.environ.get("PL_GLOBAL_SEED", "0"))  # restored after the test
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8"))
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)


def _fit(config: Path, *extra: str) -> Any:
    from lit_metric.cli import main

    return main(["fit", f"--config={config}", *extra])


def _states(cli: Any) -> dict[str, Any]:
    out: dict[str, Any] = {f"model.{k}": v for k, v in cli.model.state_dict().items()}
    for i, opt in enumerate(cli.trainer.optimizers):
        for pid, state in opt.state_dict()["state"].items():
            out.update({f"opt{i}.{pid}.{k}": v for k, v in state.items()})
    for i, config in enumerate(cli.trainer.lr_scheduler_configs):
        out.update({f"sched{i}.{k}": v for k, v in config.scheduler.state_dict().items()})
    return out


def _start_killed_run(config: Path, log: Path, fork: bool) -> Any:
    """Start the run that SIGKILLs itself: a ``python -m lit_metric`` subprocess, or a fork of this process."""
    if not fork:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        with open(log, "w") as out:
            return subprocess.Popen(
                [sys.executable, "-m", "lit_metric", "fit", f"--config={config}"], cwd=REPO, env=env, stdout=out, stderr=out
            )
    pid = os.fork()
    if pid == 0:  # the child: run the CLI, which kills this process after step KILL_AFTER; never return to pytest
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1), os.dup2(fd, 2)
            _fit(config)
        finally:
            os._exit(3)
    return pid


def _wait_killed(handle: Any, log: Path) -> None:
    if isinstance(handle, subprocess.Popen):
        handle.wait(timeout=300)
        killed = handle.returncode == -signal.SIGKILL
    else:
        _, status = os.waitpid(handle, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert killed, log.read_text()[-3000:]


_UNINTERRUPTED: dict[str, tuple[dict[str, Any], dict[tuple[int, str], str]]] = {}


def _uninterrupted(recipe: str, root: Path) -> tuple[dict[str, Any], dict[tuple[int, str], str]]:
    """States and logged metrics of the uninterrupted run (once per recipe: the checkpoint settings of a
    scenario do not change the training)."""
    if recipe not in _UNINTERRUPTED:
        full = _fit(_write_config(root, recipe, "full"))
        assert full.trainer.global_step == STEPS_PER_EPOCH * EPOCHS
        _UNINTERRUPTED[recipe] = copy.deepcopy(_states(full)), _metrics(root, "full")
    return _UNINTERRUPTED[recipe]


@pytest.mark.parametrize(
    ("recipe", "scenario"), [*((r, "mid_epoch") for r in RECIPES), ("triplet_miner", "epoch_end")]
)
@pytest.mark.filterwarnings("error:You're resuming from a checkpoint")  # Lightning's "not resumable" warning
def test_sigkill_then_resume_equals_uninterrupted(recipe: str, scenario: str, tmp_path: Path, one_thread: None) -> None:
    killed_cfg = _write_config(tmp_path / "b", recipe, "killed", kill=True, scenario=scenario)
    # the killed run in another process, while this one runs the uninterrupted run
    handle = _start_killed_run(killed_cfg, tmp_path / "killed.log", fork=(recipe, scenario) != ("triplet_miner", "mid_epoch"))
    try:
        expected, full_metrics = _uninterrupted(recipe, tmp_path / "a")
    finally:
        _wait_killed(handle, tmp_path / "killed.log")
    last = torch.load(tmp_path / "b" / "ckpt" / "last.ckpt", weights_only=False)
    kill_after = SCENARIOS[scenario][1]
    assert last["global_step"] == kill_after  # mid_epoch: 1st batch of epoch 2; epoch_end: saved as epoch 1 ended
    assert last["epoch"] == (1 if scenario == "mid_epoch" else 0)

    resumed = _fit(_write_config(tmp_path / "b", recipe, "resumed", scenario=scenario), "--ckpt_path=last")
    assert resumed.trainer.global_step == STEPS_PER_EPOCH * EPOCHS

    got = _states(resumed)
    assert expected.keys() == got.keys()
    different = [k for k in expected if not torch.equal(torch.as_tensor(expected[k]), torch.as_tensor(got[k]))]
    assert not different, different[:10]
    if recipe == "memory_bank":
        assert int(got["model.loss.step"]) == STEPS_PER_EPOCH * EPOCHS and torch.isfinite(got["model.loss.log_z"])

    assert _metrics(tmp_path / "b", "killed", "resumed") == full_metrics
    assert any(name.startswith("val/") for _, name in full_metrics)  # validation metrics are compared too


# --- the pieces -----------------------------------------------------------------------------------------


def test_pk_sampler_resume_skips_exactly_the_consumed_batches() -> None:
    labels = torch.arange(200) % 10
    sampler = PKSampler(labels, p=3, k=4, num_batches=6, seed=2)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.resume(epoch=4, batches_done=2)
    sampler.set_epoch(3)
    assert list(sampler) != full  # another epoch: the pending resume waits for epoch 4
    sampler.set_epoch(4)
    assert list(sampler) == full[2:]
    assert list(sampler) == full  # once only


def test_seeded_sampler_is_a_function_of_seed_and_epoch_and_shards_like_one_process() -> None:
    data = list(range(23))
    one = SeededSampler(data, seed=5, rank=0, world_size=1)
    ranks = [SeededSampler(data, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in [one, *ranks]:
        s.set_epoch(2)
    order = list(one)
    assert sorted(order) == data and order != data
    b = 3  # per-rank batch: step t of the two ranks together = one process's step t with batch 6
    r0, r1 = list(ranks[0]), list(ranks[1])
    for t in range(len(order) // (2 * b)):
        assert sorted(r0[t * b : (t + 1) * b] + r1[t * b : (t + 1) * b]) == sorted(order[t * 2 * b : (t + 1) * 2 * b])
    listener = TwoViewCollate(seed=0)
    s = SeededSampler(data, seed=5, epoch_listeners=[listener])
    s.set_epoch(7)
    assert listener.epoch == 7
    full = list(s)
    s.resume(epoch=7, items_done=5)
    assert list(s) == full[5:]
    assert list(s) == full  # once only


def test_sample_uniforms_depend_only_on_the_sample_key() -> None:
    a = sample_uniforms(0, 3, torch.tensor([4, 8, 15]), view=0, count=12)
    b = sample_uniforms(0, 3, torch.tensor([15, 4]), view=0, count=12)
    assert torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])  # batch composition does not matter
    for other in (sample_uniforms(1, 3, [4], 0, 12), sample_uniforms(0, 4, [4], 0, 12), sample_uniforms(0, 3, [4], 1, 12)):
        assert not torch.equal(other[0], a[0])  # seed, epoch and view all change the draw
    many = sample_uniforms(0, 0, torch.arange(4000), 0, 12)
    assert 0 <= float(many.min()) and float(many.max()) < 1
    assert abs(float(many.mean()) - 0.5) < 0.01 and abs(float(many.var()) - 1 / 12) < 0.005


def test_seeded_views_ignore_the_global_rng_batching_and_workers() -> None:
    images = torch.rand(12, 1, 10, 10)
    base = TensorDataset(images, torch.arange(12))

    def epoch_views(**kwargs: Any) -> dict[int, torch.Tensor]:
        loader = ssl_dataloader(base, SimCLRAffineTransform(erase_prob=0.5), seed=3, **kwargs)
        loader.sampler.set_epoch(1)  # type: ignore[attr-defined]
        out: dict[int, torch.Tensor] = {}
        for (v1, v2), index in loader:
            for i, x1, x2 in zip(index.tolist(), v1, v2):
                out[i] = torch.stack([x1, x2])
        return out

    torch.manual_seed(0)
    reference = epoch_views(batch_size=4)
    torch.manual_seed(1)  # another global RNG state, other batch sizes, worker processes: same views per item
    for views in (epoch_views(batch_size=3), epoch_views(batch_size=6, batched=True), epoch_views(batch_size=4, num_workers=2)):
        assert views.keys() == reference.keys() and all(torch.equal(views[i], reference[i]) for i in views)
    per_item = epoch_views(batch_size=4, batched=False)
    assert all(not torch.equal(per_item[i][0], per_item[i][1]) for i in per_item)  # two different views
    again = epoch_views(batch_size=4, batched=False)
    assert all(torch.equal(again[i], per_item[i]) for i in per_item)


def test_seeded_per_item_transform_leaves_the_global_rng_alone() -> None:
    loader = ssl_dataloader(TensorDataset(torch.rand(4, 1, 6, 6)), lambda x: x + torch.rand(1), 2, batched=False, seed=0)
    torch.manual_seed(0)
    list(loader)
    after = torch.get_rng_state()
    torch.manual_seed(0)
    torch.empty((), dtype=torch.int64).random_()  # the one base seed a DataLoader iterator draws
    assert torch.equal(after, torch.get_rng_state())


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    import random

    import numpy as np

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    states = get_rng_states()
    path = tmp_path / "rng.pt"
    torch.save(states, path)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_states(torch.load(path, weights_only=True))
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_exact_resume_keeps_every_ranks_rng_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP each rank's states are gathered at the save and each rank restores its own."""
    from lit_metric import distributed
    from lit_metric.checkpoint import ExactResume

    def fake_gather(out: list[Any], obj: Any) -> None:  # rank 1 of 2: rank 0 had other states
        out[:] = [{**obj, "torch": torch.zeros_like(obj["torch"])}, obj]

    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "all_gather_object", fake_gather)
    state = ExactResume().state_dict()
    assert len(state["rng_per_rank"]) == 2
    callback = ExactResume()
    callback.load_state_dict(state)
    assert callback._rng_to_restore is state["rng_per_rank"][1]
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.warns(UserWarning, match="RNG states of 2 ranks, this run has 4"):
        ExactResume().load_state_dict(state)
