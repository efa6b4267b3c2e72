"""Every YAML in configs/ parses and runs one training + validation batch (fast_dev_run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_fast_dev_run(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lit_metric.cli import main

    if not (REPO.parent / "shared" / "data").is_dir() and "shared/data" in config.read_text():
        pytest.skip("needs the real data sets in ../shared/data")
    monkeypatch.chdir(REPO)  # configs name data roots relative to the repository (../shared/data/...)
    main(
        [
            "fit",
            f"--config={config}",
            "--trainer.fast_dev_run=true",
            "--trainer.enable_progress_bar=false",
            "--trainer.accelerator=cpu",
            f"--trainer.default_root_dir={tmp_path}",  # logs and the saved config.yaml go here
        ]
    )


def test_print_config_and_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "lit-metric"
    out = subprocess.run(
        [str(exe), "fit", "--config", str(REPO / "configs" / "digits_triplet.yaml"), "--print_config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert "lit_metric.losses.TripletMarginLoss" in out and "margin: 0.1" in out
    mod = subprocess.run(
        [sys.executable, "-m", "lit_metric", "--help"], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert "fit" in mod.stdout


def test_unknown_class_path_lists_choices(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "lit-metric"
    res = subprocess.run(
        [
            str(exe),
            "fit",
            "--config",
            str(REPO / "configs" / "digits_triplet.yaml"),
            "--model.init_args.miner=lit_metric.miners.TripletMiner",
            "--model.init_args.miner.init_args.strategy=hardest",
            "--trainer.fast_dev_run=true",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert res.returncode != 0
    assert "semihard" in res.stderr  # the valid choices are listed
