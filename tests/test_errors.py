"""Bad configs, bad inputs and broken checkpoints end in clear errors — never a bare traceback, a silent wrong
result or a half-loaded model.

* config files: an unknown ``class_path``, ``init_args`` argument or config key lists the valid choices and the
  close matches;
* mismatches caught up front: the loss's ``embedding_dim`` against the model's, the backbone's output against
  ``backbone_features``, a P×K batch larger than the data set, a Recall@K ``k`` larger than the gallery, labels
  outside ``num_classes`` (margin-softmax, center loss) and dataset indices outside the memory bank;
* checkpoints: empty, truncated, corrupt, non-Lightning and other-model files raise
  :class:`~lit_metric.checkpoint.CheckpointError` naming the file and what is wrong, before any weight is copied.

(Errors of the image-folder data sets — missing root, empty class folder, single-image class, corrupt images —
are tested in ``tests/data/test_image_files.py`` and ``tests/data/test_image_folder.py``.)
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import yaml

from lit_metric import MetricLearningModule, SelfSupervisedModule
from lit_metric.backbones import ConvNet
from lit_metric.checkpoint import CheckedCheckpointIO, CheckpointError, check_state_dict, load_checkpoint
from lit_metric.data import DigitsDataModule, TwoViewDataModule
from lit_metric.losses import ArcFaceLoss, CenterLoss, MemoryBankNCELoss
from lit_metric.metrics import RecallAtK

REPO = Path(__file__).resolve().parents[1]
TRIPLET = REPO / "configs" / "digits_triplet.yaml"


def _trainer(**kwargs: Any) -> L.Trainer:
    defaults: dict[str, Any] = dict(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False
    )
    return L.Trainer(**{**defaults, **kwargs})


def _model(dim: int = 4, **kwargs: Any) -> MetricLearningModule:
    return MetricLearningModule(backbone=ConvNet(1, (4,)), embedding_dim=dim, **kwargs)


def _digits(**kwargs: Any) -> DigitsDataModule:
    return DigitsDataModule(**{"p": 2, "k": 2, "batches_per_epoch": 1, "eval_batch_size": 64, **kwargs})


# --- config files ---------------------------------------------------------------------------------------


def _cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    from lit_metric.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={TRIPLET}", *args])
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def test_unknown_class_path_lists_the_valid_classes(capsys: pytest.CaptureFixture[str]) -> None:
    err = _cli_error(capsys, "--model.init_args.loss.class_path=lit_metric.losses.ArcFaceLos")
    assert "Hint: 'lit_metric.losses.ArcFaceLos' is not a valid class_path here. Did you mean lit_metric.losses.ArcFaceLoss" in err
    assert "Valid MetricLoss classes:" in err and "lit_metric.losses.TripletMarginLoss" in err
    assert err.count("Hint:") == 1  # once, at the end — not repeated inside the nested errors
    err = _cli_error(capsys, "--model.init_args.optimizer.class_path=torch.optim.Adamm")
    assert "Did you mean torch.optim.Adam " in err and "Valid Optimizer classes:" in err


def test_unknown_argument_lists_the_valid_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    err = _cli_error(capsys, "--model.init_args.loss.init_args.margn=0.1")
    assert "'margn' is not an argument of lit_metric.losses.TripletMarginLoss. Did you mean margin?" in err
    assert "Valid arguments: margin, distance" in err


def test_unknown_config_key_lists_the_valid_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"trainer": {"max_epoch": 3}}))
    err = _cli_error(capsys, f"--config={bad}")
    assert "'trainer.max_epoch' is not an option. Did you mean trainer.max_epochs" in err


# --- mismatches caught up front -------------------------------------------------------------------------


def test_loss_embedding_dim_must_match_the_model() -> None:
    with pytest.raises(ValueError, match=r"ArcFaceLoss\(embedding_dim=16\) and embedding_dim=32"):
        _model(32, loss=ArcFaceLoss(num_classes=5, embedding_dim=16))
    with pytest.raises(ValueError, match=r"MemoryBankNCELoss\(embedding_dim=8\) and embedding_dim=16"):
        SelfSupervisedModule(ConvNet(1, (4,)), embedding_dim=16, loss=MemoryBankNCELoss(num_samples=10, embedding_dim=8))


def test_module_type_errors() -> None:
    with pytest.raises(TypeError, match="`backbone` to be an nn.Module or a timm model name, but got int"):
        MetricLearningModule(backbone=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`loss` to be a loss module, but got str"):
        _model(loss="triplet")  # type: ignore[arg-type]


def test_backbone_output_must_match_backbone_features() -> None:
    model = _model(backbone_features=99)  # ConvNet(1, (4,)) puts out 4 features
    with pytest.raises(ValueError, match=r"features of shape \(B, 99\) .* but got \(2, 4\). Check `backbone_features`"):
        model(torch.rand(2, 1, 8, 8))


def test_pk_batch_larger_than_the_data_set() -> None:
    dm = DigitsDataModule(p=5, k=200)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"p × k × world_size = 5 × 200 × 1 = 1000 samples > 901 items.*Lower `p` or `k`"):
        dm.train_dataloader()


def test_recall_k_larger_than_the_gallery() -> None:
    metric = RecallAtK(k=(1, 8))
    metric.update(torch.randn(5, 2), torch.tensor([0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"K=8 with 5 embeddings \(4 neighbours per query\).*Lower `k`"):
        metric.compute()
    # through the module: the sanity check's validation batch (16 digits) is smaller than K = 32, before training
    with pytest.raises(ValueError, match=r"K=32 with 16 embeddings"):
        _trainer(max_steps=1, num_sanity_val_steps=1).fit(_model(recall_k=(1, 32)), _digits(eval_batch_size=16))


def test_labels_outside_num_classes_name_both_numbers() -> None:
    # digits 0-4 are trained with num_classes=4: a ValueError at the first step, not a device-side assert
    model = _model(loss=ArcFaceLoss(num_classes=4, embedding_dim=4))
    with pytest.raises(ValueError, match=r"class ids in \[0, 4\).*values in \[\d, 4\]. Set `num_classes` to at least 5"):
        _trainer(fast_dev_run=True).fit(model, _digits(p=5, k=2))
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\).*values in \[0, 3\]"):
        CenterLoss(num_classes=3, embedding_dim=2)(torch.randn(4, 2), torch.tensor([0, 1, 2, 3]))


def test_dataset_indices_outside_the_memory_bank() -> None:
    model = SelfSupervisedModule(ConvNet(1, (4,)), embedding_dim=8, loss=MemoryBankNCELoss(100, 8, num_negatives=4))
    data = TwoViewDataModule(_digits(), batch_size=64, num_views=1)
    with pytest.raises(ValueError, match=r"dataset indices in \[0, 100\).*Set `num_samples` to the size of the training set"):
        _trainer(fast_dev_run=True).fit(model, data)


# --- checkpoints ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Lightning checkpoint of ``_model(4)`` after one step."""
    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    trainer = _trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(_model(4), _digits())
    trainer.save_checkpoint(path)
    return path


def _broken(good: Path, tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.ckpt"
    data = good.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    elif kind == "flipped":  # the zip directory at the end is damaged
        path.write_bytes(data[:-40] + bytes(40))
    else:
        torch.save({"weights": torch.ones(3)}, path)  # a plain torch file, not a Lightning checkpoint
    return path


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("truncated", r"truncated\.ckpt \(\d+ bytes\): the file is truncated or corrupt"),
        ("flipped", r"flipped\.ckpt \(\d+ bytes\): the file is truncated or corrupt"),
        ("empty", r"empty\.ckpt: the file is empty \(0 bytes\)"),
        ("garbage", r"garbage\.ckpt \(\d+ bytes\): the file is corrupt or not a PyTorch checkpoint"),
        ("plain", r"plain\.ckpt: expected a Lightning checkpoint \(a dict with a 'state_dict'\), but got keys \['weights'\]"),
    ],
)
def test_broken_checkpoint_files_name_the_file(good_checkpoint: Path, tmp_path: Path, kind: str, match: str) -> None:
    path = _broken(good_checkpoint, tmp_path, kind)
    (tmp_path / "epoch=0-step=4.ckpt").write_bytes(b"")  # an alternative is listed where there is one
    with pytest.raises(CheckpointError, match=match) as info:
        load_checkpoint(path)
    if kind != "plain":
        assert "Nothing was loaded" in str(info.value) and "epoch=0-step=4.ckpt" in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"Checkpoint file .*missing\.ckpt does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_truncated_checkpoint_through_the_trainer_leaves_the_model_untouched(good_checkpoint: Path, tmp_path: Path) -> None:
    model = _model(4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = _trainer(max_steps=2, limit_val_batches=0, plugins=[CheckedCheckpointIO()])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt .*truncated or corrupt"):
        trainer.fit(model, _digits(), ckpt_path=_broken(good_checkpoint, tmp_path, "truncated"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_of_another_model_is_rejected_before_any_weight_is_copied(good_checkpoint: Path) -> None:
    model = _model(8)  # the checkpoint has embedding_dim 4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"good\.ckpt does not fit MetricLearningModule: shape mismatches head\.linear\.weight: "
                       r"checkpoint \(4, 4\) vs model \(8, 4\).*Nothing was loaded"):
        _trainer(max_steps=2, limit_val_batches=0).fit(model, _digits(), ckpt_path=good_checkpoint)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    other = MetricLearningModule(backbone=ConvNet(1, (4, 4)), embedding_dim=4)  # one more block: missing keys
    with pytest.raises(CheckpointError, match=r"missing key\(s\) backbone\.features\.4\.weight"):
        check_state_dict(other, torch.load(good_checkpoint, weights_only=False)["state_dict"], good_checkpoint)
    check_state_dict(other, {}, strict=False)  # strict=False: only shapes are checked


def test_cli_resume_from_a_truncated_last_checkpoint(good_checkpoint: Path, tmp_path: Path) -> None:
    from lit_metric.cli import main

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    shutil.copy(good_checkpoint, ckpt_dir / "step=1.ckpt")
    (ckpt_dir / "last.ckpt").write_bytes(good_checkpoint.read_bytes()[:1000])  # a copy cut short
    config = {
        "trainer": {
            "max_steps": 2, "limit_val_batches": 0, "logger": False, "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                           "init_args": {"dirpath": str(ckpt_dir), "save_last": True}}],
        },
        "model": {"class_path": "lit_metric.MetricLearningModule",
                  "init_args": {"backbone": {"class_path": "lit_metric.backbones.ConvNet",
                                             "init_args": {"in_chans": 1, "channels": [4]}}, "embedding_dim": 4}},
        "data": {"class_path": "lit_metric.data.DigitsDataModule", "init_args": {"p": 2, "k": 2, "batches_per_epoch": 1}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(CheckpointError, match=r"last\.ckpt \(1000 bytes\): the file is truncated or corrupt.*step=1\.ckpt"):
        main(["fit", f"--config={path}", "--ckpt_path=last"])
