from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lit_metric.data import omniglot_one_shot_accuracy, omniglot_run_images, read_omniglot_runs
from lit_metric.distances import EuclideanDistance
from tests._helpers.retrieval_oracles import lake_points, modified_hausdorff


@pytest.fixture(scope="module")
def runs_zip() -> Path:
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "omniglot" / "all_runs.zip"
    if not path.is_file():
        pytest.skip(f"Lake et al.'s all_runs.zip not found at {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="module")
def runs(runs_zip: Path) -> list:
    return read_omniglot_runs(runs_zip.parent)


def test_reader_shapes_and_answer_key(runs: list) -> None:
    assert [r.name for r in runs] == [f"run{i:02d}" for i in range(1, 21)]
    for run in runs:
        assert run.training.shape == run.test.shape == (20, 105, 105) and run.training.dtype == torch.bool
        assert sorted(run.answers.tolist()) == list(range(20))  # 20 classes, one test drawing each
        assert 0.8 < run.test.float().mean() < 0.98  # True = white background, strokes are the minority
    assert runs[0].answers[:3].tolist() == [7, 8, 1]  # run01: item01 -> class08, item02 -> class09, item03 -> class02


def test_modified_hausdorff_baseline_of_lake_et_al(runs: list) -> None:
    # Lake et al.'s demo_classification (modified Hausdorff distance on centred stroke points) reports 38.8 %
    # error over the 20 runs (our oracle gives 155/400 = 38.75 %; run01 alone: 9 errors).  run01 here (speed).
    run = runs[0]
    train = [lake_points(x.numpy()) for x in run.training]
    test = [lake_points(x.numpy()) for x in run.test]
    cost = np.array([[modified_hausdorff(a, b) for b in train] for a in test])
    assert int((cost.argmin(1) != run.answers.numpy()).sum()) == 9


def test_raw_pixel_accuracy_matches_independent_loop(runs_zip: Path, runs: list) -> None:
    out = omniglot_one_shot_accuracy(lambda x: x.flatten(1), runs_zip, distance=EuclideanDistance(normalize=False))
    assert out["trials"] == 400 and len(out["per_run"]) == 20  # type: ignore[arg-type]
    correct = 0
    for run in runs:
        tr = run.training.reshape(20, -1).double().numpy()
        te = run.test.reshape(20, -1).double().numpy()
        d = np.sqrt(((te[:, None] - tr[None]) ** 2).sum(-1))
        for i in range(20):
            own = d[i, run.answers[i]]
            correct += all(own < d[i, j] for j in range(20) if j != run.answers[i])
    assert out["correct"] == correct
    assert 0.15 < out["accuracy"] < 0.3  # type: ignore[operator]  # far above chance (5 %): the key is right


def test_module_embedder_resized_and_inverted(runs_zip: Path) -> None:
    seen: list[tuple[int, ...]] = []

    class Flatten(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            assert not self.training  # put in eval mode by the evaluator
            assert x.mean() < 0.5  # inverted: strokes 1, background 0
            return x.flatten(1) * self.scale

    model = Flatten()
    out = omniglot_one_shot_accuracy(model, runs_zip, image_size=28)
    assert seen[0] == (20, 1, 28, 28) and model.training
    assert 0.1 < out["accuracy"] < 0.4  # type: ignore[operator]


def test_extracted_folder_and_images(tmp_path: Path, runs_zip: Path) -> None:
    with zipfile.ZipFile(runs_zip) as z:
        z.extractall(tmp_path / "all_runs", members=[n for n in z.namelist() if n.startswith("run01/")])
    (run,) = read_omniglot_runs(tmp_path)
    assert run.name == "run01" and run.answers[0] == 7
    x = omniglot_run_images(run.training[:2])
    assert x.shape == (2, 1, 105, 105) and x.dtype == torch.float32 and set(x.unique().tolist()) == {0.0, 1.0}
    assert x.mean() < 0.2  # default: strokes 1, background 0
    assert torch.equal(omniglot_run_images(run.training[:2], invert=False), 1 - x)
    small = omniglot_run_images(run.training[:2], image_size=28)
    assert small.shape == (2, 1, 28, 28) and 0 <= small.min() and small.max() <= 1


def test_same_pixels_as_the_training_data_module(runs: list) -> None:
    omniglot = pytest.importorskip("lit_metric.data.omniglot")
    if not hasattr(omniglot, "_resize"):
        pytest.skip("OmniglotDataModule's resize helper moved")
    images = runs[0].test[:4]
    for size in (105, 28):
        theirs = omniglot._resize(images.numpy(), size).float() / 255  # what OmniglotDataModule feeds a model
        torch.testing.assert_close(omniglot_run_images(images, size), theirs, atol=1e-6, rtol=0)


def test_missing_runs_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="all_runs.zip"):
        read_omniglot_runs(tmp_path)
    bad = tmp_path / "all_runs" / "run01"
    (bad / "training").mkdir(parents=True)
    (bad / "test").mkdir()
    (bad / "class_labels.txt").write_text("run01/test/item01.png run01/training/class99.png\n")
    with pytest.raises(ValueError, match="Expected lines"):
        read_omniglot_runs(tmp_path)
    with pytest.raises(ValueError, match="Expected argument `image_size`"):
        omniglot_run_images(torch.ones(1, 105, 105, dtype=torch.bool), image_size=0)
    with pytest.raises(TypeError, match="Expected argument `distance`"):
        omniglot_one_shot_accuracy(lambda x: x, tmp_path, distance="l2")  # type: ignore[arg-type]
