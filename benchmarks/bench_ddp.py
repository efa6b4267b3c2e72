"""Step-time overhead of gathering embeddings across DDP ranks (2 CPU processes, gloo).

    python benchmarks/bench_ddp.py                      # 2 ranks × 64 samples, ConvNet on 3×32×32
    python benchmarks/bench_ddp.py --batch 128 --steps 30 --miner none
    python benchmarks/bench_ddp.py --world 4            # needs as many cores to mean anything

Each rank runs the same ``MetricLearningModule`` (ConvNet backbone, 128-d head, triplet loss with
the chosen miner) under ``DistributedDataParallel``, one full training step at a time (forward,
mining, loss, backward with DDP's gradient all-reduce, SGD update), twice: with
``gather_distributed=True`` (every rank's embeddings are references: the single-process
computation on the W·B batch) and ``False`` (each rank's loss sees only its own B samples — cheaper,
but a different, smaller-batch loss).  The two modes alternate in short blocks so that load changes on
a shared machine hit both alike; the table reports the median wall-clock step time of rank 0, the
median process CPU time (steadier when the machine is shared), and the overhead of gathering.

The overhead has two parts: communication (a size check, the embedding and label all-gathers, and
the all-reduce of the references' gradient in backward — the "collectives" line times them alone)
and compute (the loss compares B anchors with W·B references instead of B: W times the pairs).

One process pinned to one thread (``OMP_NUM_THREADS=1``) per rank; on a machine with fewer cores
than ranks the processes share cores and the absolute times mean little.  Not a test: no asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main"]


class _Step(nn.Module):
    """What Lightning's DDP wrapper does: ``forward`` runs ``training_step``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.module.training_step((x, y), 0)  # type: ignore[operator]


def _build(gather: bool, miner: str, seed: int) -> nn.Module:
    from lit_metric import MetricLearningModule
    from lit_metric.backbones import ConvNet
    from lit_metric.losses import TripletMarginLoss
    from lit_metric.miners import BatchHardMiner, TripletMiner

    torch.manual_seed(seed)
    mined = {"none": None, "semihard": TripletMiner("semihard", margin=0.2), "batch_hard": BatchHardMiner()}[
        miner
    ]
    module = MetricLearningModule(
        backbone=ConvNet(3, (32, 64)),
        embedding_dim=128,
        loss=TripletMarginLoss(margin=0.2),
        miner=mined,
        gather_distributed=gather,
    )
    return nn.parallel.DistributedDataParallel(_Step(module))


def _time_collectives(x: Tensor, y: Tensor, repeats: int) -> list[float]:
    """The step's collectives alone: size check + embedding/label gathers + the backward all-reduce."""
    from lit_metric import distributed

    z = torch.randn(x.shape[0], 128, requires_grad=True)
    times = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        ref = distributed.all_gather_with_grad(z, check_sizes=True)
        distributed.all_gather_no_grad(y)
        ref.sum().backward()
        times.append(time.perf_counter() - t0)
    return times


def _worker(rank: int, world: int, store: str, out: str, opts: dict[str, Any]) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    import warnings

    warnings.simplefilter("ignore")  # self.log without a Trainer
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world, timeout=timedelta(seconds=300)
    )
    b, k = opts["batch"], 4
    g = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(b, 3, opts["image"], opts["image"], generator=g)
    y = torch.arange(b // k).repeat_interleave(k) + rank * (b // k)  # P×K, classes disjoint across ranks
    models = {mode: _build(mode == "gather", opts["miner"], seed=0) for mode in ("gather", "local")}
    opt = {mode: torch.optim.SGD(m.parameters(), lr=1e-3) for mode, m in models.items()}
    wall: dict[str, list[float]] = {mode: [] for mode in models}
    cpu: dict[str, list[float]] = {mode: [] for mode in models}

    def step(mode: str) -> None:
        opt[mode].zero_grad()
        models[mode](x, y).backward()
        opt[mode].step()

    for mode in models:  # warm-up
        for _ in range(opts["warmup"]):
            step(mode)
    block = opts["block"]
    for _ in range(max(1, opts["steps"] // block)):
        for mode in models:
            for _ in range(block):
                dist.barrier()
                t0, c0 = time.perf_counter(), time.process_time()
                step(mode)
                wall[mode].append(time.perf_counter() - t0)
                cpu[mode].append(time.process_time() - c0)
    coll = _time_collectives(x, y, opts["steps"])
    torch.save({"wall": wall, "cpu": cpu, "collectives": coll}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", type=int, default=2, help="number of processes (ranks)")
    parser.add_argument("--batch", type=int, default=64, help="samples per rank (P×K with K=4)")
    parser.add_argument("--image", type=int, default=32, help="image side (3×S×S inputs)")
    parser.add_argument("--miner", choices=["none", "semihard", "batch_hard"], default="semihard")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per mode")
    parser.add_argument("--block", type=int, default=5, help="steps per block (the modes alternate by block)")
    parser.add_argument("--warmup", type=int, default=3)
    opts = vars(parser.parse_args(argv))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OMP_NUM_THREADS"] = "1"
        mp.start_processes(
            _worker,
            args=(opts["world"], os.path.join(tmp, "store"), tmp, opts),
            nprocs=opts["world"],
            start_method="spawn",
        )
        res = torch.load(Path(tmp) / "rank0.pt")
    med = {k: {m: statistics.median(v) * 1e3 for m, v in res[k].items()} for k in ("wall", "cpu")}
    coll = statistics.median(res["collectives"]) * 1e3
    print(
        f"DDP on {opts['world']} CPU processes (gloo), {opts['batch']} samples/rank, ConvNet 3×{opts['image']}², "
        f"128-d, triplet + miner={opts['miner']}; torch {torch.__version__}, {os.cpu_count()} cores"
    )
    print(f"{'':32}{'wall ms/step':>14}{'cpu ms/step':>14}")
    print(f"{'gather_distributed=False':32}{med['wall']['local']:14.1f}{med['cpu']['local']:14.1f}")
    print(f"{'gather_distributed=True':32}{med['wall']['gather']:14.1f}{med['cpu']['gather']:14.1f}")
    for key in ("wall", "cpu"):
        over = med[key]["gather"] - med[key]["local"]
        print(f"overhead of gathering ({key}): {over:+.1f} ms/step ({100 * over / med[key]['local']:+.1f} %)")
    print(f"the step's collectives alone (size check + 2 all-gathers + backward all-reduce): {coll:.2f} ms")


if __name__ == "__main__":
    main()
