"""RetrievalGrid: neighbours (leave-one-out), query choice, the PNG with right/wrong frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lit_metric.callbacks import RetrievalGrid, nearest_neighbours
from lit_metric.distances import CosineSimilarity, EuclideanDistance
from tests.callbacks._trainer import ImageLogger, fit_digits


@pytest.mark.parametrize("distance", [EuclideanDistance(normalize=False), CosineSimilarity()], ids=["euclidean", "cosine"])
def test_nearest_neighbours_match_a_loop(distance: object) -> None:
    emb = torch.randn(30, 5, dtype=torch.float64)
    queries = torch.tensor([0, 7, 29])
    got = nearest_neighbours(emb[queries], emb, 4, distance, queries)  # type: ignore[arg-type]
    for row, q in enumerate(queries.tolist()):
        scores = []
        for j in range(30):
            if j == q:
                continue
            if isinstance(distance, EuclideanDistance):
                scores.append((float((emb[q] - emb[j]).norm()), j))
            else:
                scores.append((-float(emb[q] @ emb[j] / (emb[q].norm() * emb[j].norm())), j))
        assert got[row].tolist() == [j for _, j in sorted(scores)[:4]]


def test_queries_have_a_positive_and_are_stable() -> None:
    labels = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])
    grid = RetrievalGrid(num_queries=10, seed=5)
    chosen = grid.choose_queries(labels)
    assert sorted(chosen.tolist()) == [1, 2, 4, 5, 6]  # lone classes 0, 2, 4 cannot be answered
    assert torch.equal(RetrievalGrid(num_queries=3, seed=5).choose_queries(labels), RetrievalGrid(num_queries=3, seed=5).choose_queries(labels))


def test_writes_png_with_marked_neighbours(tmp_path: Path) -> None:
    logger = ImageLogger()
    grid = RetrievalGrid(num_queries=4, k=3, every_n_epochs=2)
    fit_digits(tmp_path, [grid], epochs=2, logger=logger)
    assert len(grid.saved) == 1 and Path(grid.saved[0]).name == "epoch=001-step=000006.png"
    assert logger.images == [("val/retrieval_grid", grid.saved, 6)]
    with Image.open(grid.saved[0]) as image:
        assert image.format == "PNG" and image.size == (520, 560)  # 4 rows × (1 + 3) columns of 1.3-inch cells
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    green = ((pixels[:, 1] > 150) & (pixels[:, 0] < 60) & (pixels[:, 2] < 80)).sum()
    red = ((pixels[:, 0] > 180) & (pixels[:, 1] < 60) & (pixels[:, 2] < 60)).sum()
    blue = ((pixels[:, 2] > 180) & (pixels[:, 0] < 60)).sum()
    assert blue > 0 and green + red > 0  # query frames, and right/wrong frames
    assert 0.0 <= grid.recall_at_1[0] <= 1.0
    assert (green > 0) == (grid.recall_at_1[0] > 0)


def test_state_dict_round_trip() -> None:
    grid = RetrievalGrid()
    grid.saved, grid.recall_at_1 = ["g.png"], [0.5]
    other = RetrievalGrid()
    other.load_state_dict(grid.state_dict())
    assert other.saved == ["g.png"] and other.recall_at_1 == [0.5]


def test_errors() -> None:
    with pytest.raises(ValueError, match="`num_queries` to be >= 1"):
        RetrievalGrid(num_queries=0)
    with pytest.raises(ValueError, match="`k` to be >= 1"):
        RetrievalGrid(k=0)
    with pytest.raises(TypeError, match="`thumbnail` to be an int"):
        RetrievalGrid(thumbnail=32.0)  # type: ignore[arg-type]
