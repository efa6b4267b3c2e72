"""Margin-based softmax losses, ours vs pytorch-metric-learning 2.9.0: forward+backward time and peak memory.

    OMP_NUM_THREADS=2 python benchmarks/bench_margin_losses.py [--repeats 20] [--classes 1000]
        [--losses ArcFace CosFace SphereFace] [--batch-sizes 256 1024] [--dims 128 512]

For ArcFace, CosFace and SphereFace at B ∈ {256, 1024}, D ∈ {128, 512}, C classes (default 1000), both
implementations get the same float32 inputs (random, not normalised) and the same class weights (PML's
``W`` is ``(D, C)``: our ``weight.T``; PML's ArcFace margin is in degrees).  The script checks that the
loss values agree, then reports:

* **time**: one forward + backward (gradients w.r.t. the embeddings and the class weights), ours and
  PML interleaved after warm-up runs; the best (minimum) of ``--repeats`` runs, as ``timeit``
  recommends, both as wall-clock time and as the process's CPU time (``time.process_time``, summed
  over threads) — on a shared, loaded machine the CPU time is the steadier measure of the work done;
* **peak memory**: ``torch.profiler`` with ``profile_memory=True`` records every CPU-allocator
  allocation and free during one forward + backward; the peak of their running sum is the most memory
  the step held *on top of* what existed before it (inputs and weights are not counted; the gradients it
  creates are).  Deterministic, and independent of the allocator's caching.

It is a comparison script, not a test: nothing is asserted on times.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lit_metric.losses import ArcFaceLoss, CosFaceLoss, SphereFaceLoss


def make_pair(name: str, c: int, d: int) -> tuple[nn.Module, nn.Module]:
    """Ours and PML's loss with the same hyper-parameters and the same class weights."""
    from pytorch_metric_learning import losses as pml

    if name == "ArcFace":
        ours: nn.Module = ArcFaceLoss(c, d, margin=0.5, scale=64.0)
        theirs = pml.ArcFaceLoss(num_classes=c, embedding_size=d, margin=math.degrees(0.5), scale=64.0)
    elif name == "CosFace":
        ours = CosFaceLoss(c, d, margin=0.35, scale=64.0)
        theirs = pml.CosFaceLoss(num_classes=c, embedding_size=d, margin=0.35, scale=64.0)
    elif name == "SphereFace":
        ours = SphereFaceLoss(c, d, margin=4)  # scale=None: ‖x‖ (the paper) == PML scale=1
        theirs = pml.SphereFaceLoss(num_classes=c, embedding_size=d, margin=4, scale=1.0)
    else:
        raise ValueError(name)
    theirs.W.data = ours.weight.detach().T.contiguous()
    return ours, theirs


def clear(loss: nn.Module) -> None:
    for p in loss.parameters():
        p.grad = None


def step(loss: nn.Module, emb: Tensor, labels: Tensor) -> Tensor:
    clear(loss)
    x = emb.detach().requires_grad_()
    out = loss(x, labels)
    out.backward()
    return out.detach()


def peak_bytes(fn: Callable[[], object]) -> int:
    """Peak of the running sum of CPU allocations/frees (profiler events) during ``fn()``."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]  # type: ignore[union-attr]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def bench(name: str, b: int, d: int, c: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    ours, theirs = make_pair(name, c, d)
    emb = torch.randn(b, d) * 3.0
    labels = torch.randint(0, c, (b,))
    v_ours, v_theirs = step(ours, emb, labels), step(theirs, emb, labels)
    rel = abs(v_ours.item() - v_theirs.item()) / max(1e-12, abs(v_theirs.item()))
    for _ in range(2):  # warm-up
        step(ours, emb, labels)
        step(theirs, emb, labels)
    wall: dict[str, list[float]] = {"ours": [], "pml": []}
    cpu: dict[str, list[float]] = {"ours": [], "pml": []}
    for _ in range(repeats):
        for key, loss in (("ours", ours), ("pml", theirs)):
            w0, c0 = time.perf_counter(), time.process_time()
            step(loss, emb, labels)
            wall[key].append(time.perf_counter() - w0)
            cpu[key].append(time.process_time() - c0)
    clear(ours)
    clear(theirs)
    return {
        "ours_ms": 1e3 * min(wall["ours"]),
        "pml_ms": 1e3 * min(wall["pml"]),
        "ours_cpu_ms": 1e3 * min(cpu["ours"]),
        "pml_cpu_ms": 1e3 * min(cpu["pml"]),
        "ours_mb": peak_bytes(lambda: step(ours, emb, labels)) / 2**20,
        "pml_mb": peak_bytes(lambda: step(theirs, emb, labels)) / 2**20,
        "rel_diff": rel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--losses", nargs="+", default=["ArcFace", "CosFace", "SphereFace"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[256, 1024])
    parser.add_argument("--dims", nargs="+", type=int, default=[128, 512])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, C = {args.classes}, float32, CPU")
    print(
        "| loss | B | D | ours wall (ms) | PML wall (ms) | PML / ours | ours CPU (ms) | PML CPU (ms) | PML / ours "
        "| ours peak (MiB) | PML peak (MiB) | rel. loss diff |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.losses:
        for b in args.batch_sizes:
            for d in args.dims:
                r = bench(name, b, d, args.classes, args.repeats)
                print(
                    f"| {name} | {b} | {d} | {r['ours_ms']:.2f} | {r['pml_ms']:.2f} | {r['pml_ms'] / r['ours_ms']:.2f} "
                    f"| {r['ours_cpu_ms']:.2f} | {r['pml_cpu_ms']:.2f} | {r['pml_cpu_ms'] / r['ours_cpu_ms']:.2f} "
                    f"| {r['ours_mb']:.1f} | {r['pml_mb']:.1f} | {r['rel_diff']:.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
