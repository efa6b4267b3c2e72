"""CUB-100 retrieval results (issue 7): fine-tune a config (default: the offline EfficientNet-Lite0,
``configs/cub100_effnet.yaml``) on species 0–49 of ``../shared/data/cub100`` and report Recall@1/2/4/8,
R-precision and MAP@R (leave-one-out, cosine) on the unseen species 50–99, beside the same network before
fine-tuning (measured in this run) and the issue's measured baselines.

    python benchmarks/results_cub100.py                                # configs/cub100_effnet.yaml
    python benchmarks/results_cub100.py --eval-size 224 256 --flip-tta --whiten 1 --skip-untrained \
        --trainer.limit_val_batches=0                                  # the README's numbers
    python benchmarks/results_cub100.py --trainer.max_epochs=2         # extra --… arguments go to lit-metric fit

Required by issue 7: MAP@R ≥ 50 and Recall@1 ≥ 90.  On 2 CPU cores the recipe trains in ~12 min and the evaluation
above (two sizes, flipped, both splits for the whitening) takes ~20 min; on a GPU add ``--trainer.accelerator=gpu``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results_common import REPO, embed_loader, format_table, mean_direction, train_config  # noqa: E402

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
    parser.add_argument(
        "--eval-size", type=int, nargs="+", default=None,
        help="evaluation image size(s) (default: the config's); several: also report their average (multi-scale)",
    )  # fmt: skip
    parser.add_argument("--flip-tta", action="store_true", help="also report test-time flip averaging")
    parser.add_argument(
        "--whiten", type=float, default=None, metavar="LAMBDA",
        help="also report the embeddings after WithinClassWhitening(regularization=LAMBDA) fitted on species 0-49",
    )  # fmt: skip
    parser.add_argument("--save", default=None, help="write the trained model's state_dict to this file")
    args, overrides = parser.parse_known_args(argv)

    model, datamodule, wall, steps = train_config(args.config, overrides)
    if args.save:
        torch.save(model.state_dict(), args.save)
    device = next(model.parameters()).device
    to_device = lambda m: ToDevice(m, device)  # noqa: E731
    net: torch.nn.Module = to_device(model)
    sizes: list[int | None] = list(args.eval_size) if args.eval_size else [None]
    # embeddings per (split, size): the plain pass, and with --flip-tta the flip average reusing it
    test_by_size, seen_by_size = {}, {}
    for size in sizes:
        seen_loader, test_loader = _loaders(datamodule, size)
        test_by_size[size] = _views(net, test_loader, args.flip_tta)
        if args.whiten is not None:
            seen_by_size[size] = _views(net, seen_loader, args.flip_tta)
    view = "ours + flip averaging" if args.flip_tta else "ours"
    candidates: dict[str, tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]] = {}
    for size in sizes:
        tag = f"{size}×{size}" if size else "config size"
        for name, emb in test_by_size[size].items():
            candidates[f"{name}, {tag}"] = (emb, seen_by_size[size][name] if seen_by_size else None)
    if len(sizes) > 1:
        tag = " + ".join(f"{s}" for s in sizes)
        merge = lambda parts: (mean_direction(*(p[0] for p in parts)), parts[0][1])  # noqa: E731
        candidates[f"{view}, sizes {tag} averaged"] = (
            merge([test_by_size[s][view] for s in sizes]),
            merge([seen_by_size[s][view] for s in sizes]) if seen_by_size else None,
        )
    results = {name: retrieval(*test) for name, (test, _) in candidates.items()}
    final_name = list(candidates)[-1]
    if args.whiten is not None:
        from lit_metric.whitening import WithinClassWhitening

        for name in [n for n in candidates if n.startswith(view)]:
            test, seen = candidates[name]
            assert seen is not None
            whiten = WithinClassWhitening(args.whiten).fit(*seen)  # species 0-49 only
            final_name = f"{name} + within-class whitening (λ={args.whiten:g}, fitted on species 0–49)"
            results[final_name] = retrieval(whiten(test[0]), test[1])
    before: dict[str, float] | None = None
    if not args.skip_untrained:
        # the initial backbone (same offline weights) without the head: the "untrained" baseline
        from lit_metric.backbones import create_backbone

        initial = create_backbone("efficientnet_lite0", pretrained="offline").to(device).eval()
        before = retrieval(*embed_loader(to_device(initial), _loaders(datamodule, sizes[0])[1]))
    header = ("CUB-100, unseen species 50–99", *(f"R@{k}" for k in K), "R-precision", "MAP@R")
    rows = [
        ("untrained EfficientNet-Lite0 (measured, issue 7)", "86.2", "92.4", "95.9", "97.5", "50.2", "39.8"),
        ("linear head on frozen features, ProxyAnchor (measured, issue 7)", "85.6", "–", "–", "–", "–", "41.1"),
    ]
    if before is not None:
        rows.append(row("untrained EfficientNet-Lite0, average pooling (this run)", before))
    print(f"ours = {Path(args.config).name}, {steps} steps, {wall / 60:.1f} min of training")
    for name, result in results.items():
        rows.append(row(f"**{name}**" if name == final_name else name, result))
    print(format_table(header, rows))
    return results[final_name]


def _views(net: torch.nn.Module, loader: torch.utils.data.DataLoader, flip: bool) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"ours": plain}`` and with ``flip`` ``"ours + flip averaging"`` (= ``FlipAverage(net)``, one pass fewer)."""
    plain = embed_loader(net, loader)
    out = {"ours": plain}
    if flip:
        mirrored, labels = embed_loader(Mirrored(net), loader)
        out["ours + flip averaging"] = (mean_direction(plain[0], mirrored), labels)
    return out


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
