"""End to end: ``lit-metric fit`` with 2 DDP processes on CPU equals the single-process run.

``configs/digits_triplet.yaml`` runs once as ``--trainer.devices=2 --trainer.strategy=ddp`` with
``p`` classes per rank (a subprocess, as a user would start it) and once on one process with ``2p``
classes.  :class:`~lit_metric.data.PKSampler` makes the global batches identical, the module
gathers the embeddings, so every training step — and the validation Recall@K, synced across ranks
with the sampler's padding dropped — must agree.  No Trainer flag beyond devices/strategy is passed:
the DataModule turns off Lightning's sampler injection itself.

Two overrides make the comparison exact rather than approximate: a BatchNorm-free backbone
(per-rank BatchNorm statistics differ from whole-batch ones, and torch's ``SyncBatchNorm`` needs a
GPU) and no random augmentation (its random draws are per process).
"""

from __future__ import annotations

import csv
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "digits_triplet.yaml"
P_PER_RANK = 2


def _common(save_dir: str) -> list[str]:
    from lit_metric.data import DigitsDataModule

    args = [
        "fit",
        f"--config={CONFIG}",
        "--trainer.accelerator=cpu",
        "--trainer.max_epochs=1",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.logger=CSVLogger",
        f"--trainer.logger.init_args.save_dir={save_dir}",
        "--model.init_args.backbone=torch.nn.Flatten",
        "--model.init_args.backbone_features=64",
        "--data.init_args.batches_per_epoch=6",
    ]
    if "augment" in inspect.signature(DigitsDataModule).parameters:
        args.append("--data.init_args.augment=false")
    return args


def _metrics(save_dir: Path) -> tuple[list[float], dict[str, float]]:
    (path,) = save_dir.glob("lightning_logs/version_*/metrics.csv")
    losses, recall = [], {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row.get("train/loss"):
                losses.append(float(row["train/loss"]))
            for key, value in row.items():
                if key.startswith("val/recall@") and value:
                    recall[key] = float(value)
    return losses, recall


@pytest.mark.slow
def test_cli_ddp_two_processes_equal_one_process(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "lit-metric"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    ddp = subprocess.run(
        [
            str(exe),
            *_common("ddp"),
            "--trainer.devices=2",
            "--trainer.strategy=ddp",
            f"--data.init_args.p={P_PER_RANK}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert ddp.returncode == 0, ddp.stderr[-4000:]

    from lit_metric.cli import main

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main([*_common("single"), "--trainer.devices=1", f"--data.init_args.p={2 * P_PER_RANK}"])
    finally:
        os.chdir(cwd)

    ddp_losses, ddp_recall = _metrics(tmp_path / "ddp")
    single_losses, single_recall = _metrics(tmp_path / "single")
    assert len(ddp_losses) == len(single_losses) == 6
    # the logged loss is the mean over ranks (sync_dist): the single-process loss, step after step (float32)
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4, abs=1e-6)
    assert set(ddp_recall) == set(single_recall) and ddp_recall
    assert ddp_recall == pytest.approx(single_recall, abs=1.5 / 896)  # at most one of the 896 queries flips
