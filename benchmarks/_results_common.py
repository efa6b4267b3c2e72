"""Shared helpers of the ``results_*.py`` scripts: train a config through the ``lit-metric`` CLI, embed a loader."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

__all__ = ["REPO", "FlipAverage", "ViewAverage", "embed_loader", "format_table", "mean_direction", "train_config"]


def train_config(config: str | Path, overrides: Sequence[str] = ()) -> tuple[nn.Module, object, float, int]:
    """``lit-metric fit --config <config> <overrides>`` in this process; returns (model, datamodule, wall seconds,
    optimizer steps) and prints the training's wall and process CPU time (the CPU time is what the run costs on
    dedicated cores; on a shared machine the wall time is longer)."""
    from lit_metric.cli import main

    sys.argv = sys.argv[:1]  # the CLI gets its arguments from `args` only
    start, cpu = time.perf_counter(), time.process_time()
    cli = main(["fit", f"--config={config}", *overrides])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    steps = int(cli.trainer.global_step)
    print(f"training: {steps} steps, wall {wall:.0f} s, process CPU {cpu:.0f} s ({torch.get_num_threads()} threads)")
    return cli.model, cli.datamodule, wall, steps


@torch.no_grad()
def embed_loader(embed: nn.Module | object, loader: object) -> tuple[Tensor, Tensor]:
    """``(embeddings, labels)`` of every batch ``(x, y[, index])`` of ``loader`` (model in eval mode)."""
    module = embed if isinstance(embed, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    out, labels = [], []
    try:
        for batch in loader:  # type: ignore[attr-defined]
            out.append(embed(batch[0]).float())  # type: ignore[operator]
            labels.append(batch[1])
    finally:
        if module is not None:
            module.train(was_training)
    return torch.cat(out), torch.cat(labels)


class ViewAverage(nn.Module):
    """Test-time augmentation: the normalised mean of the L2-normalised embeddings of the input and of each view
    ``view(x)``."""

    def __init__(self, embed: nn.Module, views: Sequence[Callable[[Tensor], Tensor]]) -> None:
        super().__init__()
        self.embed = embed
        self.views = list(views)

    def forward(self, x: Tensor) -> Tensor:
        return mean_direction(*(self.embed(v) for v in [x, *(view(x) for view in self.views)]))


def mean_direction(*parts: Tensor) -> Tensor:
    """The normalised sum of the L2-normalised embeddings (their mean direction)."""
    normalize = torch.nn.functional.normalize
    return normalize(sum(normalize(p, dim=1) for p in parts), dim=1)  # type: ignore[arg-type]


class FlipAverage(ViewAverage):
    """Test-time flip: the normalised mean of the embeddings of an image and of its mirror image."""

    def __init__(self, embed: nn.Module) -> None:
        super().__init__(embed, [lambda x: x.flip(-1)])


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
