"""EmbeddingProjection: PCA / t-SNE projection, the PNG it writes, the loggers it feeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_metric.callbacks import EmbeddingProjection, project_2d
from tests.callbacks._trainer import FigureLogger, ImageLogger, fit_digits


def test_pca_is_an_isometry_of_planar_data() -> None:
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(40, 2)) * [5.0, 1.0]
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))  # orthonormal 2-D subspace of R^6
    points = plane @ basis.T + 3.0
    projected = project_2d(points, "pca")
    dist = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(projected), dist(plane), atol=1e-8)


def test_tsne_keeps_separated_clusters_apart() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:3] * 20
    points = np.concatenate([c + rng.normal(size=(12, 8)) for c in centres])
    labels = np.repeat(np.arange(3), 12)
    projected = project_2d(points, "tsne", seed=0)
    d = np.linalg.norm(projected[:, None] - projected[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).all()


def test_writes_png_each_due_epoch(tmp_path: Path) -> None:
    callback = EmbeddingProjection()
    trainer = fit_digits(tmp_path, [callback], epochs=2)
    # one PNG per validation epoch, none for the sanity check
    assert [Path(p).name for p in callback.saved] == ["epoch=000-step=000003.png", "epoch=001-step=000006.png"]
    for path in callback.saved:
        assert Path(path).parent == Path(trainer.default_root_dir) / "embedding_projection"
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (640, 600)
            pixels = np.asarray(image.convert("RGB"))
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 5  # points in several class colours


def test_loggers_receive_the_image(tmp_path: Path) -> None:
    image_logger, figure_logger = ImageLogger(), FigureLogger()
    callback = EmbeddingProjection(every_n_epochs=2, dirpath=tmp_path / "plots", key="proj")
    fit_digits(tmp_path, [callback], epochs=2, logger=[image_logger, figure_logger])
    assert len(callback.saved) == 1 and Path(callback.saved[0]).parent == tmp_path / "plots"
    assert image_logger.images == [("proj", [callback.saved[0]], 6)]  # W&B style: the PNG file
    ((tag, figure, step),) = figure_logger.experiment.figures  # TensorBoard style: the figure
    assert tag == "proj" and step == 6 and figure.axes


def test_state_dict_round_trip() -> None:
    callback = EmbeddingProjection()
    callback.saved = ["a.png"]
    other = EmbeddingProjection()
    other.load_state_dict(callback.state_dict())
    assert other.saved == ["a.png"]


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"`method` to be one of \['pca', 'tsne'\], but got 'umap'"):
        EmbeddingProjection(method="umap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`every_n_epochs` to be >= 1"):
        EmbeddingProjection(every_n_epochs=0)
    with pytest.raises(ValueError, match="at least 3 embeddings"):
        project_2d(np.zeros((2, 4)))
