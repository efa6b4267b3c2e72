"""CUB-100 retrieval results (issue 7): fine-tune a config (default: the offline EfficientNet-Lite0,
``configs/cub100_effnet.yaml``) on species 0–49 of ``../shared/data/cub100`` and report Recall@1/2/4/8,
R-precision and MAP@R (leave-one-out, cosine) on the unseen species 50–99, beside the same network before
fine-tuning (measured in this run) and the issue's measured baselines.

    python benchmarks/results_cub100.py                                # configs/cub100_effnet.yaml
    python benchmarks/results_cub100.py --trainer.max_epochs=2         # extra --… arguments go to lit-metric fit

Required by issue 7: MAP@R ≥ 50 and Recall@1 ≥ 90.  A forward pass costs ~26 ms/image at 224 on one CPU core,
so the fine-tuning takes hours on a CPU; use a GPU (``--trainer.accelerator=gpu``) where there is one.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results_common import REPO, FlipAverage, embed_loader, format_table, train_config  # noqa: E402

from lit_metric.metrics import RetrievalMetrics  # noqa: E402

K = (1, 2, 4, 8)
METRICS = ("recall@k", "r_precision", "map@r")


def retrieval(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    metric = RetrievalMetrics(metrics=METRICS, k=K)
    metric.update(embeddings, labels)
    return {name: 100 * float(v) for name, v in metric.compute().items()}


def row(name: str, r: dict[str, float]) -> tuple[str, ...]:
    return (name, *(f"{r[f'recall@{k}']:.1f}" for k in K), f"{r['r_precision']:.1f}", f"{r['map@r']:.1f}")


def _loaders(datamodule: object, size: int | None) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """Species 0–49 and 50–99 through the evaluation transform, at ``size`` (default: the config's)."""
    from lit_metric.data._image_files import _size_pair, build_eval_transform

    dm: Any = datamodule
    transform = dm.eval_transform
    if size is not None:
        transform = build_eval_transform(_size_pair(size), dm.mean, dm.std, dm.image_mode, dm.eval_crop_pct)
    seen, unseen = copy.copy(dm.train_set), copy.copy(dm.eval_set)
    seen.transform = unseen.transform = transform
    return (torch.utils.data.DataLoader(seen, batch_size=dm.eval_batch_size),
            torch.utils.data.DataLoader(unseen, batch_size=dm.eval_batch_size))  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "cub100_effnet.yaml"))
    parser.add_argument("--skip-untrained", action="store_true", help="do not embed with the initial weights")
    parser.add_argument("--eval-size", type=int, default=None, help="evaluation image size (default: the config's)")
    parser.add_argument("--flip-tta", action="store_true", help="also report test-time flip averaging")
    parser.add_argument(
        "--whiten", type=float, default=None, metavar="LAMBDA",
        help="also report the embeddings after WithinClassWhitening(regularization=LAMBDA) fitted on species 0-49",
    )  # fmt: skip
    args, overrides = parser.parse_known_args(argv)

    model, datamodule, wall, steps = train_config(args.config, overrides)
    device = next(model.parameters()).device
    seen_loader, test_loader = _loaders(datamodule, args.eval_size)
    to_device = lambda m: ToDevice(m, device)  # noqa: E731
    net: torch.nn.Module = to_device(model)
    nets = [("ours", net)] + ([("ours + flip averaging", FlipAverage(net))] if args.flip_tta else [])
    test_embeddings = {"ours": embed_loader(net, test_loader)}
    if args.flip_tta:  # = FlipAverage(net), reusing the unflipped pass
        mirrored, labels = embed_loader(Mirrored(net), test_loader)
        test_embeddings["ours + flip averaging"] = (_mean_direction(test_embeddings["ours"][0], mirrored), labels)
    results = {name: retrieval(*emb) for name, emb in test_embeddings.items()}
    size = f"{args.eval_size}×{args.eval_size}" if args.eval_size else "config size"
    final_name, final = nets[-1][0], results[nets[-1][0]]
    if args.whiten is not None:
        from lit_metric.whitening import WithinClassWhitening

        name, n = nets[-1]
        whiten = WithinClassWhitening(args.whiten).fit(*embed_loader(n, seen_loader))  # species 0-49 only
        test_emb, test_labels = test_embeddings[name]
        final_name = f"{name} + within-class whitening (λ={args.whiten:g}, fitted on species 0–49)"
        final = results[final_name] = retrieval(whiten(test_emb), test_labels)
    before: dict[str, float] | None = None
    if not args.skip_untrained:
        # the initial backbone (same offline weights) without the head: the "untrained" baseline
        from lit_metric.backbones import create_backbone

        initial = create_backbone("efficientnet_lite0", pretrained="offline").to(device).eval()
        before = retrieval(*embed_loader(to_device(initial), test_loader))
    header = ("CUB-100, unseen species 50–99", *(f"R@{k}" for k in K), "R-precision", "MAP@R")
    rows = [
        ("untrained EfficientNet-Lite0 (measured, issue 7)", "86.2", "92.4", "95.9", "97.5", "50.2", "39.8"),
        ("linear head on frozen features, ProxyAnchor (measured, issue 7)", "85.6", "–", "–", "–", "–", "41.1"),
    ]
    if before is not None:
        rows.append(row(f"untrained EfficientNet-Lite0, average pooling (this run, {size})", before))
    for name, result in results.items():
        label = f"{name} ({Path(args.config).name}, {steps} steps, {wall / 60:.1f} min; {size})"
        rows.append(row(f"**{label}**" if name == final_name else label, result))
    print(format_table(header, rows))
    return final


def _mean_direction(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    normalize = torch.nn.functional.normalize
    return normalize(normalize(a, dim=1) + normalize(b, dim=1), dim=1)


class Mirrored(torch.nn.Module):
    """``module`` applied to the mirror image."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.flip(-1))


class ToDevice(torch.nn.Module):
    """Runs ``module`` on ``device`` and returns CPU embeddings (the loaders yield CPU batches)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module, self.device = module, device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.to(self.device)).cpu()


if __name__ == "__main__":
    main()
