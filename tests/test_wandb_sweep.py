"""The W&B config and sweep: the sweep file parses, every parameter is a LightningCLI key, and its command,
rendered the way `wandb agent` renders it, runs one tiny trial offline (WANDB_MODE=offline) in a tmp dir."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SWEEP = REPO / "configs" / "sweeps" / "digits_triplet_sweep.yaml"
WANDB_CONFIG = REPO / "configs" / "digits_triplet_wandb.yaml"

wandb = pytest.importorskip("wandb")


def sample(parameters: dict[str, dict[str, Any]], seed: int) -> dict[str, Any]:
    """One parameter set, drawn as W&B's random search would draw it."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, spec in parameters.items():
        if "value" in spec:
            out[name] = spec["value"]
        elif "values" in spec:
            out[name] = spec["values"][int(rng.integers(len(spec["values"])))]
        elif spec.get("distribution") == "uniform":
            out[name] = float(rng.uniform(spec["min"], spec["max"]))
        elif spec.get("distribution") == "log_uniform_values":
            out[name] = float(math.exp(rng.uniform(math.log(spec["min"]), math.log(spec["max"]))))
        elif spec.get("distribution") == "int_uniform":
            out[name] = int(rng.integers(spec["min"], spec["max"] + 1))
        else:
            raise AssertionError(f"unsupported parameter spec for {name}: {spec}")
    return out


def agent_command(sweep: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """The trial command exactly as `wandb agent` builds it (wandb's own macro expansion of ${args})."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    sweep_vars = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    sweep_vars.update(interpreter=["python"], program=[sweep.get("program", "")], env=["/usr/bin/env"])
    command: list[str] = []
    for chunk in sweep_utils.create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            command += sweep_vars.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


@pytest.fixture(scope="module")
def sweep() -> dict[str, Any]:
    from wandb.sdk.launch.sweeps.utils import load_sweep_config

    config = load_sweep_config(str(SWEEP))  # wandb's own loader, as `wandb sweep` uses
    assert config is not None
    return config


def test_sweep_file_structure(sweep: dict[str, Any]) -> None:
    assert sweep["method"] in {"grid", "random", "bayes"}
    assert sweep["metric"] == {"name": "val/recall@1", "goal": "maximize"}  # what MetricLearningModule logs
    assert sweep["command"][:4] == ["lit-metric", "fit", "--config", "configs/digits_triplet_wandb.yaml"]
    assert sweep["command"][-1] == "${args}"
    assert (REPO / sweep["command"][3]).is_file()
    for name, spec in sweep["parameters"].items():
        assert name.split(".")[0] in {"model", "data", "trainer"}, name
        if "min" in spec:
            assert spec["min"] < spec["max"], name


def test_args_render_as_dotted_flags(sweep: dict[str, Any]) -> None:
    params = sample(sweep["parameters"], seed=0)
    command = agent_command(sweep, params)
    flags = command[5:]
    assert flags == [f"--{k}={v}" for k, v in params.items()]
    assert all(re.fullmatch(r"--(model|data|trainer)(\.\w+)+=\S+", f) for f in flags)


def test_every_parameter_is_a_cli_key(sweep: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """LightningCLI reads the `--key=value` form of every swept parameter into the config."""
    import lightning as L

    from lit_metric.cli import MetricCLI

    monkeypatch.chdir(tmp_path)
    for seed in range(2):
        params = sample(sweep["parameters"], seed)
        flags = agent_command(sweep, params)[2:]  # after `lit-metric fit`
        cli = MetricCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=[flags[0], str(REPO / flags[1]), *flags[2:]],
            run=False,
            auto_configure_optimizers=False,
        )
        for key, value in params.items():
            got = cli.config
            for part in key.split("."):
                got = got[part]
            assert got == value, key
        assert cli.config["trainer"]["logger"]["init_args"]["name"] is None  # trials keep W&B's run names
        assert cli.model.loss.margin == params["model.init_args.loss.init_args.margin"]


def test_wandb_config_logger(tmp_path: Path) -> None:
    config = yaml.safe_load(WANDB_CONFIG.read_text())
    logger = config["trainer"]["logger"]
    assert logger["class_path"] == "lightning.pytorch.loggers.WandbLogger"
    assert logger["init_args"]["project"] and logger["init_args"]["name"]
    assert logger["init_args"]["log_model"] is False


def test_import_does_not_import_wandb() -> None:
    code = (
        "import sys, lit_metric, lit_metric.data, lit_metric.callbacks, lit_metric.cli, lit_metric._pretrained; "
        "print('wandb' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.slow
def test_sweep_command_runs_one_trial_offline(sweep: dict[str, Any], tmp_path: Path) -> None:
    """One trial, as the agent would launch it, offline. Not `fast_dev_run`: that swaps the loggers for a
    dummy, so W&B would not be exercised; instead one epoch of 2 batches with a real (offline) WandbLogger."""
    params = sample(sweep["parameters"], seed=1)
    command = agent_command(sweep, params) + [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.limit_val_batches=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
    ]
    (tmp_path / "configs").symlink_to(REPO / "configs")  # the command names configs/… relative to the cwd
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    # an earlier trial's config.yaml in the same folder must not abort this one (it is replaced)
    (tmp_path / "config.yaml").write_text("# from an earlier trial\n")
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]  # exit status 0: the agent counts the trial as a success
    runs = sorted((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    # the full config reached W&B under the sweep's dotted names (not only the command line "--key=value")
    margin = params["model.init_args.loss.init_args.margin"]
    assert re.search(rb"(?<!-)model\.init_args\.loss\.init_args\.margin[^=]{1,8}?" + re.escape(repr(margin).encode()), data)
    assert b"val/recall@1" in data
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["model"]["init_args"]["loss"]["init_args"]["margin"] == margin
