"""Retrieval evaluation at scale: lit_metric's RetrievalMetrics vs PML's AccuracyCalculator vs a bare faiss search.

    python benchmarks/bench_retrieval.py                    # N = 50,000, D = 128, 100 classes (the issue's setting)
    python benchmarks/bench_retrieval.py --n 10000 --repeats 3

Same process, same float32 unit-norm embeddings (100 Gaussian classes of 500, overlapping), one thread
count for everyone (``--threads``, default all cores).  Rows:

* ``ours (torch)``: ``RetrievalMetrics(metrics=("recall@k", "precision@1", "r_precision", "map@r"), k=(1, 2, 4, 8))``,
  ``update`` + ``compute`` — exact k-NN with k = max R = 499, then all metrics.  Leave-one-out on the CPU takes
  the compiled self-retrieval path (``lit_metric/functional/_topk_ext.py``: half the score blocks, a C++
  threshold-buffer selection); it is built before timing (``--cold`` times the first call, build included).
* ``ours (torch, chunked)``: the same with that kernel disabled (``LIT_METRIC_CPU_KERNEL=0``): ``(chunk × N)``
  score matrices and ``torch.topk``, the path on other devices and for query/gallery splits.
* ``ours (faiss)``: the same with ``backend="faiss"``.
* ``PML``: ``AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
  k="max_bin_count")`` (its default faiss ``IndexFlatL2`` k-NN; on unit vectors the same ranking).  PML has no
  Recall@K; it computes three of our seven numbers.
* ``bare faiss``: ``IndexFlatIP`` add + search of k = 500 (499 + the query itself): the floor any exact method
  pays, with no metric computed.

Reported: the best wall-clock time of ``--repeats`` runs, process CPU time, and peak memory = the largest
growth of the process RSS during the call (sampled every 2 ms from /proc/self/statm; Linux), which counts
torch, numpy and faiss allocations alike.  The metric values of ours and PML are printed side by side (they
must agree).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lit_metric.functional import _topk_ext  # noqa: E402
from lit_metric.metrics import RetrievalMetrics  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRSS:
    """Context manager: the largest RSS growth (bytes) seen while the body runs."""

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def make_data(n: int, dim: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n // classes)
    centers = torch.randn(classes, dim, generator=g)
    emb = centers[labels] + 2.2 * torch.randn(labels.numel(), dim, generator=g)  # overlapping: metrics well below 1
    return torch.nn.functional.normalize(emb, dim=1).contiguous(), labels


def ours(emb: torch.Tensor, labels: torch.Tensor, backend: str, chunk_size: int) -> dict[str, float]:
    metric = RetrievalMetrics(
        metrics=("recall@k", "precision@1", "r_precision", "map@r"), k=(1, 2, 4, 8), backend=backend, chunk_size=chunk_size  # type: ignore[arg-type]
    )
    metric.update(emb, labels)
    return {k: float(v) for k, v in metric.compute().items()}


def without_kernel(fn: Callable[..., dict[str, float]], *args: Any) -> dict[str, float]:
    """``fn(*args)`` with the compiled self-retrieval kernel disabled."""
    old = os.environ.get("LIT_METRIC_CPU_KERNEL")
    os.environ["LIT_METRIC_CPU_KERNEL"] = "0"
    _topk_ext.load_extension.cache_clear()
    try:
        return fn(*args)
    finally:
        if old is None:
            del os.environ["LIT_METRIC_CPU_KERNEL"]
        else:
            os.environ["LIT_METRIC_CPU_KERNEL"] = old
        _topk_ext.load_extension.cache_clear()


def pml(emb: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k="max_bin_count", device=torch.device("cpu")
    )
    out = calc.get_accuracy(emb, labels)
    return {"precision@1": out["precision_at_1"], "r_precision": out["r_precision"], "map@r": out["mean_average_precision_at_r"]}


def bare_faiss(emb: torch.Tensor, k: int) -> dict[str, float]:
    import faiss

    x = emb.numpy()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    index.search(x, k)
    return {}


def run(name: str, fn: Callable[[], dict[str, float]], repeats: int) -> dict[str, Any]:
    best_wall, best_cpu, peak, values = float("inf"), float("inf"), 0.0, {}
    for _ in range(repeats):
        with PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            values = fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best_wall, best_cpu, peak = min(best_wall, wall), min(best_cpu, cpu), max(peak, mem.growth_mib)
        print(f"  {name}: {wall:.2f} s wall, {cpu:.2f} s CPU, +{mem.growth_mib:.0f} MiB", flush=True)
    return {"name": name, "wall": best_wall, "cpu": best_cpu, "peak": peak, "values": values}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip", default="", help="comma-separated rows to skip: torch,chunked,faiss,pml,bare")
    parser.add_argument("--cold", action="store_true", help="do not build the C++ kernel before timing")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        skip |= {"faiss", "pml", "bare"}
        print("faiss not installed: `pip install faiss-cpu` for the faiss rows and PML (which uses faiss)")
    emb, labels = make_data(args.n, args.dim, args.classes)
    k = int(torch.bincount(labels).max())  # R_max + 1 (the query itself)
    print(
        f"N={emb.shape[0]:,} D={args.dim} classes={args.classes} k-NN depth {k - 1} (+ self), threads={args.threads}, "
        f"torch {torch.__version__}, chunk {args.chunk_size} queries (≈{args.chunk_size * emb.shape[0] * 4 / 2**20:.0f} MiB of scores)"
    )
    rows = []
    if "bare" not in skip:
        rows.append(run("bare faiss IndexFlatIP", lambda: bare_faiss(emb, k), args.repeats))
    if "torch" not in skip:
        if not args.cold and _topk_ext.load_extension() is None:
            print("the C++ k-NN kernel could not be built: 'ours (torch)' is the chunked path")
        rows.append(run("ours (torch)", lambda: ours(emb, labels, "torch", args.chunk_size), args.repeats))
    if "chunked" not in skip:
        rows.append(run("ours (torch, chunked)", lambda: without_kernel(ours, emb, labels, "torch", args.chunk_size), args.repeats))
    if "faiss" not in skip:
        rows.append(run("ours (faiss)", lambda: ours(emb, labels, "faiss", args.chunk_size), args.repeats))
    if "pml" not in skip:
        rows.append(run("PML AccuracyCalculator", lambda: pml(emb, labels), args.repeats))
    by_name = {r["name"]: r for r in rows}
    print(
        "\n| method | wall s | CPU s | peak MiB | PML ÷ this (wall, CPU) | this ÷ bare faiss (wall, CPU) |"
        "\n|---|---:|---:|---:|---:|---:|"
    )
    pml_row, bare_row = by_name.get("PML AccuracyCalculator"), by_name.get("bare faiss IndexFlatIP")
    for r in rows:
        vs_pml = f"{pml_row['wall'] / r['wall']:.2f}, {pml_row['cpu'] / r['cpu']:.2f}" if pml_row and r is not pml_row else ""
        vs_bare = f"{r['wall'] / bare_row['wall']:.2f}, {r['cpu'] / bare_row['cpu']:.2f}" if bare_row and r is not bare_row else ""
        print(f"| {r['name']} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['peak']:.0f} | {vs_pml} | {vs_bare} |")
    names = ["recall@1", "recall@2", "recall@4", "recall@8", "precision@1", "r_precision", "map@r"]
    print("\n| metric | " + " | ".join(r["name"] for r in rows if r["values"]) + " |")
    print("|---|" + "---:|" * sum(1 for r in rows if r["values"]))
    for name in names:
        cells = [f"{r['values'][name]:.4f}" if name in r["values"] else "–" for r in rows if r["values"]]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
