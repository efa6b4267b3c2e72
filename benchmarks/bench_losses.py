"""Speed and memory of lit_metric's losses next to PyTorch Metric Learning's, same process, same inputs.

    python benchmarks/bench_losses.py                 # every case, both tables
    python benchmarks/bench_losses.py --quick         # smallest sizes, fewer repeats
    python benchmarks/bench_losses.py --only lifted,angular --no-memory

Every case times one *forward + backward* (mining included where a miner is part of the case) on
the CPU, ours and the peer's on the very same tensors, and prints the best wall-clock time of the
runs (as ``timeit`` advises: slower runs measure interference, not the code), the ratio (peer / ours:
> 1 means ours is faster), the best process CPU time and its ratio, and both loss values (they
should agree: the parameter mapping of each case is written beside it).  On a machine shared with
other work, prefer the CPU-time columns with ``OMP_NUM_THREADS=1``: with several threads on
oversubscribed cores, OpenMP barriers wait for descheduled threads (and spin), so both wall and CPU
time then measure the neighbours.  Batches are P×K: K = 4 samples per class, B/4 classes,
standard-normal embeddings (unit-norm for the angular loss, whose PML version assumes it).

Peak memory ("peak MiB") is the largest total of live tensor bytes *allocated during* the
forward + backward, as tracked by torch.profiler's memory profiler (the timeline behind
``profile.export_memory_timeline``; inputs allocated beforehand are not counted).  It counts what
torch allocates, not the process RSS (which the allocator's caching and the Python heap blur), and
it is measured in a separate, untimed run because profiling slows the code down.  When the peer's
path is known to need more than ``--max-gib`` (PML's lifted structure loss builds a
``|P| × |N|`` tensor: O(B³)), the peer is not run and the table says so, with the analytic estimate.

Cases live in a registry: ``register(Case(...))`` adds one (the margin-softmax losses add theirs the
same way); ``--only`` filters by name.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lit_metric.losses as ours  # noqa: E402
import lit_metric.miners as our_miners  # noqa: E402

try:
    import pytorch_metric_learning.distances as pml_distances
    import pytorch_metric_learning.losses as pml_losses
    import pytorch_metric_learning.miners as pml_miners
except ImportError:  # pragma: no cover - the peer is a dev dependency
    pml_losses = pml_miners = pml_distances = None  # type: ignore[assignment]

__all__ = ["CASES", "Case", "main", "register"]

#: a "step" maps (embeddings requiring grad, labels) to the scalar loss (mining included)
Step = Callable[[Tensor, Tensor], Tensor]
K_PER_CLASS = 4


@dataclass
class Case:
    """One benchmark row family.

    Args:
        name: unique name (``--only`` matches substrings of it).
        table: which table it belongs to (``"issue 2"``, ``"issue 3"``, …).
        ours: factory of our step (called once per size, so stateful losses start fresh).
        theirs: factory of the peer's step (None: no peer).
        sizes: ``(B, D)`` pairs to run; ``quick_sizes`` in ``--quick`` mode.
        unit_norm: feed L2-normalised embeddings.
        peer_bytes: analytic estimate of the peer's largest allocation for ``(B, D)`` (to skip it).
        mapping: the parameter mapping, printed under the table.
    """

    name: str
    table: str
    ours: Callable[[], Step]
    theirs: Callable[[], Step] | None
    sizes: list[tuple[int, int]]
    quick_sizes: list[tuple[int, int]] = field(default_factory=list)
    unit_norm: bool = False
    peer_bytes: Callable[[int, int], float] | None = None
    mapping: str = ""


CASES: list[Case] = []


def register(case: Case) -> Case:
    if any(c.name == case.name for c in CASES):
        raise ValueError(f"Expected a new case name, but {case.name!r} is already registered.")
    CASES.append(case)
    return case


def _loss_step(loss: Callable[..., Tensor]) -> Step:
    return lambda emb, labels: loss(emb, labels)


def _mined_step(miner: Callable[..., tuple[Tensor, ...]], loss: Callable[..., Tensor]) -> Step:
    return lambda emb, labels: loss(emb, labels, miner(emb, labels))


# --- issue 2: the triplet loss -------------------------------------------------------------------
ISSUE2 = [(128, 128), (256, 128), (512, 128)]
register(
    Case(
        "triplet/all",
        "issue 2",
        lambda: _loss_step(ours.TripletMarginLoss(margin=0.2, reduction="nonzero_mean")),
        lambda: _loss_step(pml_losses.TripletMarginLoss(margin=0.2)),
        ISSUE2,
        [(256, 128)],
        mapping='ours TripletMarginLoss(0.2, reduction="nonzero_mean") = PML TripletMarginLoss(margin=0.2)',
    )
)
register(
    Case(
        "triplet/semihard",
        "issue 2",
        lambda: _mined_step(
            our_miners.TripletMiner("semihard", margin=0.2),
            ours.TripletMarginLoss(margin=0.2, reduction="nonzero_mean"),
        ),
        lambda: _mined_step(
            pml_miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard"),
            pml_losses.TripletMarginLoss(margin=0.2),
        ),
        ISSUE2,
        [(256, 128)],
        mapping='ours TripletMiner("semihard", 0.2) + the loss above = PML TripletMarginMiner(0.2, "semihard") + loss',
    )
)

# --- issue 3: pair, tuple and structured losses that PML also has --------------------------------
ISSUE3 = [(256, 128), (256, 512), (1024, 128), (1024, 512)]


def _lifted_pml_bytes(b: int, d: int) -> float:
    # PML: per ordered positive pair, a mask and masked copies over *every* negative pair: |P|·|N| elements,
    # |P| = B(K−1), |N| = B(B−K); ~4 float32 tensors and 2 bool tensors of that size are alive together
    return b * (K_PER_CLASS - 1) * b * (b - K_PER_CLASS) * (4 * 4 + 2)


register(
    Case(
        "contrastive",
        "issue 3",
        lambda: _loss_step(ours.ContrastiveLoss(0.0, 1.0, reduction="nonzero_mean")),
        lambda: _loss_step(pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0)),
        ISSUE3,
        [(256, 128)],
        mapping='ours ContrastiveLoss(0, 1, reduction="nonzero_mean") = PML ContrastiveLoss(0, 1) (AvgNonZero per part)',
    )
)
register(
    Case(
        "contrastive+pair-miner",
        "issue 3",
        lambda: _mined_step(our_miners.PairMarginMiner(0.2, 0.8), ours.ContrastiveLoss(0.0, 1.0, reduction="nonzero_mean")),
        lambda: _mined_step(
            pml_miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8),
            pml_losses.ContrastiveLoss(pos_margin=0.0, neg_margin=1.0),
        ),
        ISSUE3,
        [(256, 128)],
        mapping="ours PairMarginMiner(0.2, 0.8) = PML PairMarginMiner(pos_margin=0.2, neg_margin=0.8)",
    )
)
register(
    Case(
        "lifted",
        "issue 3",
        lambda: _loss_step(ours.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0)),
        lambda: _loss_step(pml_losses.LiftedStructureLoss(neg_margin=1.0, pos_margin=0.0)),
        ISSUE3,
        [(256, 128)],
        peer_bytes=_lifted_pml_bytes,
        mapping="ours LiftedStructureLoss(1, 0) = PML LiftedStructureLoss(neg_margin=1, pos_margin=0)",
    )
)
register(
    Case(
        "npair",
        "issue 3",
        lambda: _loss_step(ours.NPairLoss(l2_reg=0.0)),
        lambda: _loss_step(
            pml_losses.NPairsLoss(distance=pml_distances.DotProductSimilarity(normalize_embeddings=False))
        ),
        ISSUE3,
        [(256, 128)],
        mapping="ours NPairLoss(l2_reg=0) = PML NPairsLoss(distance=DotProductSimilarity(normalize_embeddings=False))",
    )
)
register(
    Case(
        "angular",
        "issue 3",
        lambda: _loss_step(ours.AngularLoss(alpha=math.radians(45))),
        lambda: _loss_step(pml_losses.AngularLoss(alpha=45)),
        ISSUE3,
        [(256, 128)],
        unit_norm=True,
        mapping="ours AngularLoss(alpha=math.radians(45)) = PML AngularLoss(alpha=45) on unit-norm inputs",
    )
)
register(
    Case(
        "supcon",
        "issue 3",
        lambda: _loss_step(ours.SupConLoss(temperature=0.1)),
        lambda: _loss_step(pml_losses.SupConLoss(temperature=0.1)),
        ISSUE3,
        [(256, 128)],
        mapping="ours SupConLoss(temperature=0.1) = PML SupConLoss(temperature=0.1) (cosine similarity)",
    )
)

# --- issue 3: losses PML does not have (ours alone: time and memory scaling) ---------------------
NO_PEER = [(256, 128), (1024, 128)]
register(
    Case(
        "quadruplet (all)",
        "issue 3, no PML peer",
        lambda: _loss_step(ours.QuadrupletLoss()),
        None,
        NO_PEER,
        mapping="every valid quadruplet of the batch, by sorting (never enumerated)",
    )
)
register(
    Case(
        "quadruplet+miner",
        "issue 3, no PML peer",
        lambda: _mined_step(our_miners.QuadrupletMiner(), ours.QuadrupletLoss()),
        None,
        NO_PEER,
    )
)
register(
    Case(
        "siamese_bce",
        "issue 3, no PML peer",
        lambda: _loss_step(ours.SiameseBCELoss(embedding_dim=128)),
        None,
        NO_PEER,
        mapping="all B×N pairs; the weighted |x − y| is never a (B, N, D) tensor",
    )
)
register(
    Case(
        "log_ratio",
        "issue 3, no PML peer",
        lambda: (lambda emb, labels: ours.LogRatioLoss()(emb, labels.float())),
        None,
        NO_PEER,
        mapping="dense triplets (every anchor × unordered pair) in closed form; labels = class ids as numbers",
    )
)


# --- measurement -----------------------------------------------------------------------------------
def make_inputs(b: int, d: int, unit_norm: bool, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g)
    if unit_norm:
        emb = torch.nn.functional.normalize(emb, dim=1)
    labels = torch.arange(b) // K_PER_CLASS
    return emb, labels


def run_once(step: Step, emb: Tensor, labels: Tensor) -> float:
    x = emb.clone().requires_grad_()
    loss = step(x, labels)
    loss.backward()
    return float(loss.detach())


def time_step(step: Step, emb: Tensor, labels: Tensor, repeats: int) -> tuple[float, float, float]:
    """Forward + backward: the fastest wall-clock time and the fastest process CPU time over ``repeats`` runs
    (after one warm-up; a case slower than 2 s gets at most 2 runs), and the loss value."""
    start = time.perf_counter()
    value = run_once(step, emb, labels)
    if time.perf_counter() - start > 2.0:
        repeats = min(repeats, 2)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run_once(step, emb, labels)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), value


def peak_bytes(step: Step, emb: Tensor, labels: Tensor) -> float | None:
    """Peak of the live tensor bytes allocated during one forward + backward (torch.profiler memory timeline)."""
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        x = emb.clone().requires_grad_()
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            step(x, labels).backward()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
        return float(max((sum(s) for s in sizes), default=0))
    except Exception as err:  # a private API: report n/a rather than fail the benchmark
        print(f"  (peak memory unavailable: {type(err).__name__}: {err})", file=sys.stderr)
        return None


def _fmt_ms(s: float | None) -> str:
    return "—" if s is None else f"{1000 * s:.1f}"


def _fmt_mib(b: float | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.1f}"


def _fmt_val(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


def run_case(case: Case, args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    for b, d in (case.quick_sizes or case.sizes[:1]) if args.quick else case.sizes:
        emb, labels = make_inputs(b, d, case.unit_norm)
        row: dict[str, object] = {"case": case.name, "B": b, "D": d}
        step = case.ours()
        row["ours_s"], row["ours_cpu"], row["ours_val"] = time_step(step, emb, labels, args.repeats)
        row["ours_peak"] = None if args.no_memory else peak_bytes(case.ours(), emb, labels)
        row["theirs_s"] = row["theirs_cpu"] = row["theirs_val"] = row["theirs_peak"] = None
        row["note"] = ""
        if case.theirs is not None and pml_losses is not None:
            estimate = case.peer_bytes(b, d) if case.peer_bytes else 0.0
            if estimate > args.max_gib * 2**30:
                row["note"] = f"PML skipped: needs ~{estimate / 2**30:.0f} GiB"
            else:
                row["theirs_s"], row["theirs_cpu"], row["theirs_val"] = time_step(
                    case.theirs(), emb, labels, args.repeats
                )
                row["theirs_peak"] = None if args.no_memory else peak_bytes(case.theirs(), emb, labels)
        rows.append(row)
        print(
            f"  {case.name:<24} B={b:<5} D={d:<4} ours {_fmt_ms(row['ours_s'])} ms"  # type: ignore[arg-type]
            f"  PML {_fmt_ms(row['theirs_s'])} ms {row['note']}",  # type: ignore[arg-type]
            file=sys.stderr,
            flush=True,
        )
    return rows


def _ratio(theirs: object, mine: object) -> str:
    return f"{theirs / mine:.1f}×" if theirs is not None and mine else "—"  # type: ignore[operator]


def print_table(title: str, rows: list[dict[str, object]], cases: list[Case], memory: bool) -> None:
    print(f"\n### {title}  (CPU, {torch.get_num_threads()} thread(s), forward + backward, best of the runs)\n")
    head = "| case | B | D | ours ms | PML ms | PML / ours | ours CPU ms | PML CPU ms | PML / ours (CPU) |"
    sep = "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    if memory:
        head += " ours peak MiB | PML peak MiB |"
        sep += "---:|---:|"
    print(head + " ours loss | PML loss |")
    print(sep + "---:|---:|")
    for r in rows:
        note = str(r["note"])
        line = (
            f"| {r['case']} | {r['B']} | {r['D']} | {_fmt_ms(r['ours_s'])} | {_fmt_ms(r['theirs_s'])} "  # type: ignore[arg-type]
            f"| {note or _ratio(r['theirs_s'], r['ours_s'])} | {_fmt_ms(r['ours_cpu'])} | {_fmt_ms(r['theirs_cpu'])} "  # type: ignore[arg-type]
            f"| {'—' if note else _ratio(r['theirs_cpu'], r['ours_cpu'])} |"
        )
        if memory:
            line += f" {_fmt_mib(r['ours_peak'])} | {_fmt_mib(r['theirs_peak'])} |"  # type: ignore[arg-type]
        print(line + f" {_fmt_val(r['ours_val'])} | {_fmt_val(r['theirs_val'])} |")  # type: ignore[arg-type]
    print()
    print("CPU ms = process CPU time (all threads): what the code costs, little disturbed by other processes.")
    for c in cases:
        if c.mapping:
            print(f"- {c.name}: {c.mapping}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    parser.add_argument("--quick", action="store_true", help="one small size per case, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per measurement (default 7)")
    parser.add_argument("--no-memory", action="store_true", help="skip the (slow) profiler memory runs")
    parser.add_argument("--max-gib", type=float, default=4.0, help="skip a peer path estimated above this")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 7)
    if pml_losses is None:
        print("pytorch-metric-learning is not installed: only our timings are shown.", file=sys.stderr)
    wanted = [s for s in args.only.split(",") if s]
    cases = [c for c in CASES if not wanted or any(w in c.name for w in wanted)]
    if not cases:
        raise SystemExit(f"No case matches --only {args.only!r}; cases: {[c.name for c in CASES]}")
    print(
        f"torch {torch.__version__}, threads={torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})",
        file=sys.stderr,
    )
    torch.manual_seed(0)
    for table in dict.fromkeys(c.table for c in cases):
        in_table = [c for c in cases if c.table == table]
        rows = [row for c in in_table for row in run_case(c, args)]
        print_table(table, rows, in_table, memory=not args.no_memory)


if __name__ == "__main__":
    main()
