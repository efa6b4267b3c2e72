"""Multi-process training with DDP: every rank's embeddings are every other rank's references.

    python examples/ddp.py                              # 2 CPU processes (gloo), a few minutes on 2 cores
    python examples/ddp.py --devices 1 --p 4            # the single-process run it equals
    torchrun --nproc_per_node 2 examples/ddp.py         # same run, processes started by torchrun

With ``--devices W`` each rank draws its own P×K batch (``p`` classes × ``k`` samples, classes
disjoint across ranks), embeds it, and all-gathers the embeddings (with gradient) so that the
miner and the loss of every rank use the whole ``W·p·k`` batch as references.  Reductions divide
by counts summed over the ranks: the run is the same computation as one process with ``W·p``
classes per batch (``--devices 1 --p 4`` here, up to float rounding — and BatchNorm, see below).

Nothing DDP-specific is configured beyond ``devices``/``strategy``: ``DigitsDataModule`` shards
its own loaders (the P×K sampler per rank, a non-shuffling ``DistributedSampler`` for validation
whose padding duplicates ``RecallAtK`` drops by index), so Lightning's ``use_distributed_sampler``
may stay at its default.  BatchNorm layers see per-rank batches unless ``sync_batchnorm=True``
(GPU only: torch's ``SyncBatchNorm`` has no CPU kernel), which this script sets on GPUs.
"""

from __future__ import annotations

import argparse
import os

import lightning as L
import torch

from lit_metric import MetricLearningModule
from lit_metric.backbones import ConvNet
from lit_metric.data import DigitsDataModule
from lit_metric.losses import TripletMarginLoss
from lit_metric.miners import TripletMiner


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # under torchrun / SLURM the launcher's variables give the layout (Lightning checks they agree)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", 2))
    parser.add_argument("--devices", type=int, default=local, help="processes per node")
    parser.add_argument(
        "--num-nodes", type=int, default=max(1, int(os.environ.get("WORLD_SIZE", local)) // local)
    )
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument(
        "--p", type=int, default=2, help="classes per batch *per rank* (5 training digits: p·devices <= 5)"
    )
    parser.add_argument("--k", type=int, default=16, help="samples per class")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    if args.accelerator == "cpu":
        torch.set_num_threads(1)  # one core per process

    L.seed_everything(0)
    model = MetricLearningModule(
        backbone=ConvNet(in_chans=1, channels=(32, 64)),
        embedding_dim=32,
        loss=TripletMarginLoss(margin=0.2),
        miner=TripletMiner("semihard", margin=0.2),
        optimizer=lambda params: torch.optim.Adam(params, lr=3e-3),
    )
    data = DigitsDataModule(p=args.p, k=args.k, batches_per_epoch=20)
    trainer = L.Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy="ddp" if args.devices * args.num_nodes > 1 else "auto",
        sync_batchnorm=args.accelerator != "cpu" and args.devices * args.num_nodes > 1,
        max_epochs=args.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, data)
    if trainer.is_global_zero:
        recall = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        print(
            f"{trainer.world_size} process(es), global batch {trainer.world_size * args.p}×{args.k}: {recall}"
        )


if __name__ == "__main__":
    main()
