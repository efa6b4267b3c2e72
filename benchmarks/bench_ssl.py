"""Self-supervised losses: speed and memory, ours vs the peers, one process, same inputs.

    python benchmarks/bench_ssl.py [--threads 2] [--batch 256] [--dim 128]

1. InfoNCE (NT-Xent), B instances = 2B views, D dims, forward + backward:
   * ours: ``lit_metric.losses.InfoNCELoss(τ)``;
   * the floor: the minimal hand-written computation on the same (2B)×(2B) logits — normalise, one matmul,
     self entries masked, ``F.cross_entropy`` (mask and targets prebuilt, not timed); also ``F.cross_entropy``
     alone on precomputed logits;
   * lightly ``NTXentLoss(τ)`` and PML ``SelfSupervisedLoss(NTXentLoss(τ))`` (PML builds a
     (pos pairs × neg pairs) matrix: O(B³)).
   Memory: bytes of the tensors autograd saves for backward (deduplicated by storage), the memory a
   training step holds between forward and backward; printed for B/2 and B to show the growth
   (×4 = O(B²), ×8 = O(B³)).
2. MemoryBankNCE: one training step (forward, backward, bank update) with a 60,000 × 128 bank and 4,096
   noise samples, NCE and exact (full softmax) modes.

Timings are medians over repeats; on a shared machine they are noisy — compare ratios within one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lit_metric.losses import InfoNCELoss, MemoryBankNCELoss


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def saved_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the distinct storages autograd keeps for backward while building ``fn()``'s graph."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(storages.values())


def info_nce_section(b: int, d: int, tau: float, repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(b, d, generator=g).requires_grad_(True)
    z_b = torch.randn(b, d, generator=g).requires_grad_(True)
    ours = InfoNCELoss(temperature=tau)
    eye = torch.eye(2 * b, dtype=torch.bool)
    target = torch.cat([torch.arange(b) + b, torch.arange(b)])

    def floor_loss(a: torch.Tensor = z_a, c: torch.Tensor = z_b) -> torch.Tensor:
        z = F.normalize(torch.cat([a, c]), dim=1)
        logits = (z @ z.T / tau).masked_fill(eye, float("-inf"))
        return F.cross_entropy(logits, target)

    with torch.no_grad():
        zn = F.normalize(torch.cat([z_a, z_b]), dim=1)
        fixed_logits = (zn @ zn.T / tau).masked_fill(eye, float("-inf"))
    fixed_logits.requires_grad_(True)

    from lightly.loss import NTXentLoss as LightlyNTXent
    from pytorch_metric_learning.losses import NTXentLoss as PMLNTXent
    from pytorch_metric_learning.losses import SelfSupervisedLoss

    lightly_loss = LightlyNTXent(temperature=tau)
    pml_loss = SelfSupervisedLoss(PMLNTXent(temperature=tau))

    candidates: dict[str, Callable[[], torch.Tensor]] = {
        "lit_metric InfoNCELoss": lambda: ours(z_a, z_b),
        "floor: normalise+matmul+mask+CE": floor_loss,
        "F.cross_entropy on given logits": lambda: F.cross_entropy(fixed_logits, target),
        "lightly NTXentLoss": lambda: lightly_loss(z_a, z_b),
        "PML SelfSupervisedLoss(NTXent)": lambda: pml_loss(z_a, z_b),
    }
    values = {name: fn().item() for name, fn in candidates.items() if "given logits" not in name}
    spread = max(values.values()) - min(values.values())
    print(f"\nInfoNCE  B={b} ({2 * b} views), D={d}, tau={tau}: loss values agree to {spread:.1e}")
    print(f"{'implementation':36s} {'fwd+bwd ms':>11s} {'vs floor':>9s} {'saved MB (B/2)':>15s} {'saved MB (B)':>13s}")
    results = {}
    for name, fn in candidates.items():
        slow = name.startswith("PML")

        def step(fn: Callable[[], torch.Tensor] = fn) -> None:
            fn().backward()

        results[name] = median_time(step, 3 if slow else repeats, warmup=1 if slow else 2)
    floor = results["floor: normalise+matmul+mask+CE"]
    h_a, h_b = z_a[: b // 2].detach().requires_grad_(True), z_b[: b // 2].detach().requires_grad_(True)
    mem_fns_half: dict[str, Callable[[], torch.Tensor]] = {
        "lit_metric InfoNCELoss": lambda: ours(h_a, h_b),
        "lightly NTXentLoss": lambda: lightly_loss(h_a, h_b),
        "PML SelfSupervisedLoss(NTXent)": lambda: pml_loss(h_a, h_b),
    }
    for name, fn in candidates.items():
        half = f"{saved_bytes(mem_fns_half[name]) / 2**20:15.1f}" if name in mem_fns_half else f"{'':15s}"
        full = saved_bytes(fn) / 2**20
        print(f"{name:36s} {1e3 * results[name]:11.2f} {results[name] / floor:8.2f}x {half} {full:13.1f}", flush=True)
    pml = results["PML SelfSupervisedLoss(NTXent)"]
    ours_t = results["lit_metric InfoNCELoss"]
    print(f"ours vs PML: {pml / ours_t:.0f}x faster; ours vs floor: {ours_t / floor:.2f}x")


def memory_bank_section(n: int, d: int, b: int, m: int, repeats: int) -> None:
    print(f"\nMemoryBankNCELoss step (forward + backward + bank update): bank {n} x {d}, B={b}, {m} noise samples")
    for exact in (False, True):
        loss_fn = MemoryBankNCELoss(n, d, num_negatives=m, exact=exact)
        x = torch.randn(b, d, requires_grad=True)
        idx = torch.randint(n, (b,))

        def step(loss_fn: MemoryBankNCELoss = loss_fn, x: torch.Tensor = x, idx: torch.Tensor = idx) -> None:
            loss_fn(x, idx).backward()

        t = median_time(step, repeats)
        held = saved_bytes(lambda loss_fn=loss_fn, x=x, idx=idx: loss_fn(x, idx, update=False)) / 2**20
        print(f"  {'exact softmax' if exact else 'NCE':14s} {1e3 * t:8.2f} ms/step  saved MB {held:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="1: a shared CPU oversubscribed by 2+ threads is 10x slower")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--tau", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    info_nce_section(args.batch, args.dim, args.tau, args.repeats)
    memory_bank_section(60_000, 128, args.batch, 4096, max(5, args.repeats // 3))


if __name__ == "__main__":
    main()
