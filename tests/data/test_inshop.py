"""InShopDataModule on a generated DeepFashion In-Shop tree (list_eval_partition.txt, query/gallery flags)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_metric.data import InShopDataModule
from tests.data._image_fixtures import write_image


def _inshop(root: Path, nested: bool = True) -> tuple[Path, list[tuple[str, str, str]]]:
    """Items 1–3 train; items 4–6 have query and gallery images (the official status column)."""
    rows = []
    for item in range(1, 7):
        for view in range(3):
            name = f"img/WOMEN/Dresses/id_{item:08d}/{view + 1:02d}_{view + 1}_front.jpg"
            status = "train" if item <= 3 else ("query" if view == 0 else "gallery")
            rows.append((name, f"id_{item:08d}", status))
            write_image((root / "Img" if nested else root) / name, seed=10 * item + view)
    partition = root / "Eval" / "list_eval_partition.txt" if nested else root / "list_eval_partition.txt"
    partition.parent.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows)), "image_name item_id evaluation_status"] + [f"{n:60s} {i} {s}" for n, i, s in rows]
    partition.write_text("\n".join(lines) + "\n")
    return root, rows


@pytest.mark.parametrize("nested", [True, False])
def test_split_and_query_gallery_flags(tmp_path: Path, nested: bool) -> None:
    root, rows = _inshop(tmp_path, nested)
    dm = InShopDataModule(root, p=3, k=2, image_size=16, eval_batch_size=4)
    dm.setup()
    assert dm.train_set.classes == ["id_00000001", "id_00000002", "id_00000003"]
    assert dm.eval_set.classes == ["id_00000004", "id_00000005", "id_00000006"]
    eval_rows = [r for r in rows if r[2] != "train"]
    assert dm.eval_set.is_query.tolist() == [s == "query" for _, _, s in eval_rows]
    assert dm.eval_set.is_gallery.tolist() == [s == "gallery" for _, _, s in eval_rows]
    x, y, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 3, 16, 16) and torch.bincount(y).tolist() == [2, 2, 2]
    seen_query = []
    for _, _, index in dm.val_dataloader():  # flags per batch, from the dataset indices
        is_query, is_gallery = dm.query_gallery_masks(index)
        assert (is_query ^ is_gallery).all()
        seen_query += is_query.tolist()
    assert seen_query == dm.eval_set.is_query.tolist()
    query_index = torch.cat([b[2] for b in dm.query_dataloader()])
    gallery_index = torch.cat([b[2] for b in dm.gallery_dataloader()])
    assert query_index.tolist() == [0, 3, 6] and len(gallery_index) == 6  # indices still index eval_set
    assert dm.eval_set.is_gallery[gallery_index].all()


def test_feeds_retrieval_metrics_query_gallery(tmp_path: Path) -> None:
    """The flags plug into RetrievalMetrics' query/gallery protocol: a perfect embedding scores 1."""
    from lit_metric.metrics import RetrievalMetrics

    root, _ = _inshop(tmp_path)
    dm = InShopDataModule(root, p=3, k=2, image_size=8)
    dm.setup()
    metric = RetrievalMetrics()
    for _, y, index in dm.val_dataloader():
        is_query, is_gallery = dm.query_gallery_masks(index)
        metric.update(torch.nn.functional.one_hot(y, 3).float(), y, index, is_query=is_query, is_gallery=is_gallery)
    values = metric.compute()
    assert float(values["recall@1"]) == 1.0


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no data set found at .*In-shop Clothes Retrieval Benchmark.*list_eval_partition\.txt"):
        InShopDataModule(tmp_path).setup()
    (tmp_path / "list_eval_partition.txt").write_text("1\nimage_name item_id evaluation_status\nimg/a.jpg id_1 validation\n")
    with pytest.raises(ValueError, match=r"line 3: expected 'image_name item_id evaluation_status' with a status in \['train', 'query', 'gallery'\]"):
        InShopDataModule(tmp_path).setup()
    write_image(tmp_path / "img" / "a.jpg")
    write_image(tmp_path / "img" / "b.jpg")
    (tmp_path / "list_eval_partition.txt").write_text("2\nimage_name item_id evaluation_status\nimg/a.jpg id_1 train\nimg/b.jpg id_2 gallery\n")
    with pytest.raises(ValueError, match="lists no query or no gallery image"):
        InShopDataModule(tmp_path, k=1).setup()
