"""Tiny image files for the data-module tests (written with PIL into tmp folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["write_image", "write_corrupt", "write_truncated"]


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (12, 10), mode: str = "RGB") -> Path:
    """A small random image (width, height = ``size``) saved in the format of ``path``'s suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def write_corrupt(path: Path) -> Path:
    """A file with an image suffix that is not an image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not an image at all")
    return path


def write_truncated(path: Path, seed: int = 0) -> Path:
    """A JPEG cut in half (PIL opens it, then fails to decode)."""
    write_image(path, seed, size=(64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
