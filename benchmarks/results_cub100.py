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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results_common import REPO, embed_loader, format_table, train_config  # noqa: E402

from lit_metric.metrics import RetrievalMetrics  # noqa: E402

K = (1, 2, 4, 8)
METRICS = ("recall@k", "r_precision", "map@r")


def retrieval(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    metric = RetrievalMetrics(metrics=METRICS, k=K)
    metric.update(embeddings, labels)
    return {name: 100 * float(v) for name, v in metric.compute().items()}


def row(name: str, r: dict[str, float]) -> tuple[str, ...]:
    return (name, *(f"{r[f'recall@{k}']:.1f}" for k in K), f"{r['r_precision']:.1f}", f"{r['map@r']:.1f}")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "cub100_effnet.yaml"))
    parser.add_argument("--skip-untrained", action="store_true", help="do not embed with the initial weights")
    args, overrides = parser.parse_known_args(argv)

    before: dict[str, float] | None = None
    model, datamodule, wall, steps = train_config(args.config, overrides)
    device = next(model.parameters()).device
    model.eval()  # `embed` below wraps the model in a lambda, which embed_loader cannot switch to eval mode itself
    embed = lambda m: (lambda x: m(x.to(device)).cpu())  # noqa: E731
    ours = retrieval(*embed_loader(embed(model), datamodule.test_dataloader()))
    if not args.skip_untrained:
        # the initial backbone (same offline weights) without the head: the "untrained" baseline
        initial = copy.deepcopy(model.backbone)
        from lit_metric.backbones import create_backbone

        initial.load_state_dict(create_backbone("efficientnet_lite0", pretrained="offline").state_dict())
        before = retrieval(*embed_loader(embed(initial.to(device).eval()), datamodule.test_dataloader()))
    header = ("CUB-100, unseen species 50–99", *(f"R@{k}" for k in K), "R-precision", "MAP@R")
    rows = [
        ("untrained EfficientNet-Lite0 (measured, issue 7)", "86.2", "92.4", "95.9", "97.5", "50.2", "39.8"),
        ("linear head on frozen features, ProxyAnchor (measured, issue 7)", "85.6", "–", "–", "–", "–", "41.1"),
    ]
    if before is not None:
        rows.append(row("untrained EfficientNet-Lite0 (this run)", before))
    rows.append(row(f"**ours** ({Path(args.config).name}, {steps} steps, {wall / 60:.1f} min)", ours))
    print(format_table(header, rows))
    return ours


if __name__ == "__main__":
    main()
