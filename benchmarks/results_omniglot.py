"""Omniglot one-shot results (issue 7): train a config on the 964 background characters, then report

* the official 20-way within-alphabet one-shot accuracy on Lake et al.'s 20 runs (400 trials,
  ``../shared/data/omniglot/all_runs.zip``), nearest training image by cosine similarity;
* Recall@1 and MAP@R (leave-one-out) over the whole evaluation set (659 characters × 20 drawings);

beside raw pixels and the published / measured anchors.

    python benchmarks/results_omniglot.py                                   # configs/omniglot_oneshot.yaml
    python benchmarks/results_omniglot.py --config configs/omniglot_oneshot.yaml --trainer.max_steps=200

Extra ``--…`` arguments go to ``lit-metric fit`` unchanged.  Use ``OMP_NUM_THREADS`` / ``--threads`` to pin
the thread count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results_common import REPO, ViewAverage, embed_loader, format_table, train_config  # noqa: E402

from lit_metric.data import omniglot_one_shot_accuracy  # noqa: E402
from lit_metric.data.omniglot import resolve_root  # noqa: E402
from lit_metric.distances import EuclideanDistance  # noqa: E402
from lit_metric.metrics import RetrievalMetrics  # noqa: E402

ANCHORS = [
    ("Koch et al. 2015, Siamese nets (published)", "92.0", "–", "–"),
    ("PML triplet + semi-hard mining, 28×28 (measured, issue 7)", "92.25", "81.6", "–"),
    ("PML CosFace, 964 classes, 28×28 (measured, issue 7)", "87.25", "82.9", "–"),
]


class ShiftAverage(ViewAverage):
    """Test-time augmentation: the normalised mean embedding of an image and its four one-pixel shifts."""

    def __init__(self, embed: torch.nn.Module) -> None:
        shifts = ((1, 3), (-1, 3), (1, 2), (-1, 2))
        super().__init__(embed, [lambda x, s=s, d=d: torch.roll(x, s, d) for s, d in shifts])


def retrieval(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    metric = RetrievalMetrics(metrics=("recall@k", "map@r"), k=(1,))
    metric.update(embeddings, labels)
    return {name: float(v) for name, v in metric.compute().items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "configs" / "omniglot_oneshot.yaml"))
    parser.add_argument("--runs", default="../shared/data/omniglot", help="folder holding all_runs.zip")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-raw", action="store_true", help="do not compute the raw-pixel baseline")
    parser.add_argument("--shift-tta", action="store_true", help="also report one-pixel-shift test-time averaging")
    args, overrides = parser.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    runs = resolve_root(args.runs)

    model, datamodule, wall, steps = train_config(args.config, overrides)
    size = datamodule.image_size
    # the runs' PNGs have background 1 / strokes 0; the data module feeds strokes 1 / background 0
    one_shot = omniglot_one_shot_accuracy(model, runs, image_size=size, invert=True)
    emb, labels = embed_loader(model, datamodule.val_dataloader())
    ours = retrieval(emb, labels)
    rows = []
    if not args.skip_raw:
        raw_shot = omniglot_one_shot_accuracy(
            lambda x: x.flatten(1), runs, image_size=size, invert=True, distance=EuclideanDistance(normalize=False)
        )
        raw_emb, raw_labels = embed_loader(lambda x: x.flatten(1), datamodule.val_dataloader())
        raw = retrieval(raw_emb, raw_labels)
        rows.append(
            (f"raw {size}×{size} pixels", f"{100 * raw_shot['accuracy']:.2f}", f"{100 * raw['recall@1']:.1f}",
             f"{100 * raw['map@r']:.1f}")
        )  # fmt: skip
    rows += ANCHORS
    rows.append(
        (f"**ours** ({Path(args.config).name}, {steps} steps, {wall / 60:.1f} min)",
         f"**{100 * one_shot['accuracy']:.2f}**", f"{100 * ours['recall@1']:.1f}", f"{100 * ours['map@r']:.1f}")
    )  # fmt: skip
    tta: dict[str, float] = {}
    if args.shift_tta:
        shifted = ShiftAverage(model)
        tta_shot = omniglot_one_shot_accuracy(shifted, runs, image_size=size, invert=True)
        tta = {"one_shot": tta_shot["accuracy"], **retrieval(*embed_loader(shifted, datamodule.val_dataloader()))}
        rows.append(
            ("**ours + shift averaging at test time** (5 views)", f"**{100 * tta['one_shot']:.2f}**",
             f"{100 * tta['recall@1']:.1f}", f"{100 * tta['map@r']:.1f}")
        )  # fmt: skip
    print(format_table(("Omniglot (Lake split)", "20-way 1-shot, 400 trials (%)", "R@1 eval (%)", "MAP@R eval (%)"), rows))
    print(f"one-shot: {one_shot['correct']}/{one_shot['trials']}; training wall time {wall:.0f} s, {steps} steps")
    return {"one_shot": one_shot["accuracy"], **ours, "wall_s": wall, "steps": steps, **{f"tta_{k}": v for k, v in tta.items()}}


if __name__ == "__main__":
    main()
