"""OmniglotDataModule: the real npz copies in ../shared/data and tiny generated zips in the official layout.

The download code runs only against a replaced fetch function: no test touches the network.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_metric.data import OmniglotDataModule, load_omniglot
from lit_metric.data import omniglot as omniglot_module

# --- tiny fixture in the official zip layout -------------------------------------------------------------------

ALPHABETS = {"Bravo_script": ["character02", "character01"], "Alpha_script": ["character01"]}
DRAWERS = 3


def _make_split(root: Path, split: str, seed: int) -> np.ndarray:
    """Write images_<split>.zip (alphabet/character/NNNN_MM.png, 105×105 1-bit) and the matching npz.

    Returns the bool array (C, DRAWERS, 105, 105), True = background, in sorted (alphabet, character) order.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    arrays: dict[tuple[str, str], list[np.ndarray]] = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for alphabet, characters in ALPHABETS.items():
            for character in characters:
                for drawer in range(DRAWERS):
                    img = rng.random((105, 105)) > 0.1  # mostly white background, black strokes
                    arrays.setdefault((alphabet, character), []).append(img)
                    png = io.BytesIO()
                    Image.fromarray(img).convert("1").save(png, format="PNG")
                    name = f"images_{split}/{alphabet}/{character}/{1000 + drawer:04d}_{drawer + 1:02d}.png"
                    zf.writestr(name, png.getvalue())
    (root / f"images_{split}.zip").write_bytes(buffer.getvalue())
    ordered = np.stack([np.stack(arrays[key]) for key in sorted(arrays)])
    return ordered


@pytest.fixture
def tiny_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path / "omniglot"
    root.mkdir()
    arrays = {"background": _make_split(root, "background", 0), "evaluation": _make_split(root, "evaluation", 1)}
    return root, arrays


def test_zip_loader_reads_official_layout(tiny_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, arrays = tiny_root
    images, labels = load_omniglot(root, "background", image_size=105, source="zip")
    expected = arrays["background"]  # (3 characters, 3 drawers, 105, 105), sorted alphabet/character order
    assert images.shape == (9, 1, 105, 105) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    inverted = torch.from_numpy(~expected.reshape(9, 105, 105)).to(torch.uint8) * 255  # strokes 255
    assert torch.equal(images[:, 0], inverted)


def test_zip_and_npz_agree(tiny_root: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    root, arrays = tiny_root
    npz_root = tmp_path / "npz"
    npz_root.mkdir()
    for split, arr in arrays.items():
        labels = np.repeat(np.arange(arr.shape[0])[:, None], DRAWERS, axis=1)
        np.savez_compressed(npz_root / f"images_{split}.npz", images=arr, labels=labels)
    for split in ("background", "evaluation"):
        from_zip = load_omniglot(root, split, image_size=28, source="zip")  # type: ignore[arg-type]
        from_npz = load_omniglot(npz_root, split, image_size=28)  # type: ignore[arg-type]
        assert torch.equal(from_zip[0], from_npz[0]) and torch.equal(from_zip[1], from_npz[1])


def test_data_module_on_tiny_zip_both_modes(tiny_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_root
    dm = OmniglotDataModule(str(root), image_size=20, p=2, k=2, batches_per_epoch=3)
    dm.setup("fit")
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 20, 20) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert sorted(torch.bincount(y).tolist())[-2:] == [2, 2] and index.shape == (4,)  # P×K
    ex, ey, eidx = next(iter(dm.val_dataloader()))
    assert ex.shape == (9, 1, 20, 20) and ey.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and eidx.tolist() == list(range(9))
    ssl = OmniglotDataModule(str(root), image_size=20, mode="ssl", batch_size=4)
    ssl.setup("fit")
    (v1, v2), index = next(iter(ssl.train_dataloader()))  # no labels in SSL training items
    assert v1.shape == v2.shape == (4, 1, 20, 20) and index.max() < 9
    single = OmniglotDataModule(str(root), image_size=20, mode="ssl", batch_size=4, num_views=1)
    single.setup("fit")
    view, index = next(iter(single.train_dataloader()))
    assert view.shape == (4, 1, 20, 20)
    assert len(ssl.test_dataloader().dataset) == len(ssl.predict_dataloader().dataset) == 9


class _CountingTransform:
    """A batch-capable transform that records the shapes it was called with and adds 1."""

    supports_batches = True

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        return x + 1


def test_rotation_classes_and_batched_transform(tiny_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = tiny_root
    transform = _CountingTransform()
    dm = OmniglotDataModule(str(root), image_size=20, p=4, k=3, rotations=4, train_transform=transform)
    dm.setup("fit")
    train = dm.train_set
    assert train is not None and len(train) == 4 * 9 and train.labels.tolist() == [c for c in range(12) for _ in range(3)]
    images, _ = load_omniglot(root, "background", image_size=20)
    for r in range(4):  # class c + 3r holds character c rotated by 90°·r (counter-clockwise)
        x, y = train[9 * r + 4][:2]
        assert int(y) == 1 + 3 * r and torch.equal(x, torch.rot90(images[4], r, dims=(1, 2)).float() / 255)
    x, y, _ = next(iter(dm.train_dataloader()))
    assert transform.calls == [(12, 1, 20, 20)]  # one call per P×K batch, not one per item
    assert float(x.min()) >= 1.0  # the transform's output is what the batch holds
    ex, ey, _ = next(iter(dm.val_dataloader()))
    assert ey.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and float(ex.max()) <= 1.0  # evaluation: never rotated
    per_item = OmniglotDataModule(str(root), image_size=20, p=2, k=2, train_transform=lambda t: t * 0)
    per_item.setup("fit")
    assert float(next(iter(per_item.train_dataloader()))[0].abs().sum()) == 0.0  # plain callables: per item


def test_missing_root_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"images_background\.npz or images_background\.zip.*download=True"):
        OmniglotDataModule(str(tmp_path)).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"images_evaluation\.zip"):
        load_omniglot(tmp_path, "evaluation", source="zip")


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="Expected argument `mode` to be one of"):
        OmniglotDataModule(mode="semi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected argument `num_views` to be 1 or 2"):
        OmniglotDataModule(num_views=3)
    with pytest.raises(ValueError, match="Expected argument `source` to be one of"):
        OmniglotDataModule(source="tar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Expected argument `rotations` to be 1, 2 or 4"):
        OmniglotDataModule(rotations=3)
    with pytest.raises(RuntimeError, match="call setup"):
        OmniglotDataModule().train_dataloader()


def test_download_checks_md5_and_never_needs_the_network(
    tiny_root: tuple[Path, dict[str, np.ndarray]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source_root, _ = tiny_root
    payload = {s: (source_root / f"images_{s}.zip").read_bytes() for s in ("background", "evaluation")}
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path) -> None:
        split = "background" if "background" in url else "evaluation"
        fetched.append(url)
        Path(dest).write_bytes(payload[split])

    monkeypatch.setattr(omniglot_module, "_fetch", fake_fetch)
    target = tmp_path / "download"
    with pytest.raises(RuntimeError, match="Checksum mismatch"):
        omniglot_module.download_omniglot(target, ("background",))  # the real MD5 cannot match the fixture
    assert not any(target.iterdir())  # the bad file was removed
    md5 = {s: hashlib.md5(b).hexdigest() for s, b in payload.items()}
    monkeypatch.setattr(omniglot_module, "OMNIGLOT_MD5", md5)
    dm = OmniglotDataModule(str(target), image_size=16, download=True)
    dm.prepare_data()
    dm.setup("fit")
    assert {Path(u).name for u in fetched} >= {"images_background.zip", "images_evaluation.zip"}
    n_before = len(fetched)
    dm.prepare_data()  # files present: nothing fetched again
    assert len(fetched) == n_before and len(dm.train_set) == 9  # type: ignore[arg-type]
    assert all(u.startswith("https://raw.githubusercontent.com/brendenlake/omniglot/") for u in fetched)


# --- the real data ----------------------------------------------------------------------------------------------


def test_real_npz_split_sizes(shared_data: Path) -> None:
    root = shared_data / "omniglot"
    images, labels = load_omniglot(root, "background", 28)
    assert images.shape == (19280, 1, 28, 28) and labels.max() == 963
    assert torch.equal(torch.bincount(labels), torch.full((964,), 20))
    stroke_share = images.float().mean() / 255
    assert 0.02 < float(stroke_share) < 0.3  # inverted: strokes (1) are the minority
    eval_images, eval_labels = load_omniglot(root, "evaluation", 28)
    assert eval_images.shape == (13180, 1, 28, 28) and eval_labels.max() == 658


def test_real_data_module_relative_root_from_any_cwd(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the configs' ../shared/data/omniglot is found from the project checkout
    dm = OmniglotDataModule("../shared/data/omniglot", image_size=28, p=8, k=4, mode="supervised")
    dm.setup("fit")
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and torch.bincount(y).max() == 4 and len(torch.unique(y)) == 8
    ssl = OmniglotDataModule("../shared/data/omniglot", image_size=28, mode="ssl", batch_size=16)
    ssl.setup("fit")
    (v1, v2), index = next(iter(ssl.train_dataloader()))
    assert v1.shape == (16, 1, 28, 28) and int(index.max()) < 19280
