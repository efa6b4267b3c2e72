"""The compiled CPU selection against the chunked ``torch.topk`` path, on the searches other than the headline one.

    python benchmarks/bench_knn_paths.py            # N = 50,000, D = 128, 100 classes, 2 threads by default

Rows (each timed with the kernel, then with ``LIT_METRIC_CPU_KERNEL=0``, same process, same data as
``bench_retrieval.py``; the results of the two paths are compared):

* query/gallery ``RetrievalMetrics`` (even items query, odd items gallery: 25k × 25k, depth max R);
* ``knn`` of 10,000 queries against all 50,000 references, depth 100 (what ``EmbeddingIndex.search`` runs);
* leave-one-out ``RecallAtK(k=(1, 2, 4, 8))`` over all 50,000.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_retrieval import make_data, without_kernel  # noqa: E402

from lit_metric.distances import CosineSimilarity  # noqa: E402
from lit_metric.functional import _topk_ext, knn  # noqa: E402
from lit_metric.metrics import RecallAtK, RetrievalMetrics  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if _topk_ext.load_extension() is None:
        print("the C++ kernel could not be built: both columns below are the chunked path")
    emb, labels = make_data(args.n, 128, 100)
    is_query = torch.zeros(emb.shape[0], dtype=torch.bool)
    is_query[::2] = True

    def query_gallery() -> Any:
        m = RetrievalMetrics(metrics=("recall@k", "precision@1", "r_precision", "map@r"), k=(1, 2, 4, 8))
        m.update(emb, labels, is_query=is_query, is_gallery=~is_query)
        return {k: float(v) for k, v in m.compute().items()}

    def search() -> Any:
        return knn(emb[: args.n // 5], emb, 100, CosineSimilarity())

    def recall() -> Any:
        m = RecallAtK(k=(1, 2, 4, 8))
        m.update(emb, labels)
        return {k: float(v) for k, v in m.compute().items()}

    cases: list[tuple[str, Callable[[], Any]]] = [
        (f"query/gallery RetrievalMetrics, {args.n // 2:,} × {args.n - args.n // 2:,}", query_gallery),
        (f"knn, {args.n // 5:,} queries × {args.n:,} refs, depth 100", search),
        (f"leave-one-out RecallAtK, N = {args.n:,}", recall),
    ]
    print(f"threads={args.threads}, torch {torch.__version__}\n")
    print("| search | kernel s | chunked s | chunked ÷ kernel | same result |\n|---|---:|---:|---:|---|")
    for name, fn in cases:
        t0 = time.perf_counter()
        fast = fn()
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        slow = without_kernel(fn)
        t_slow = time.perf_counter() - t0
        if isinstance(fast, tuple):  # knn: (scores, ids)
            same = f"{float((fast[1] == slow[1]).float().mean()):.6f} of neighbour ids equal"
        else:
            same = "yes" if fast == slow else f"no: {fast} vs {slow}"
        print(f"| {name} | {t_fast:.2f} | {t_slow:.2f} | {t_slow / t_fast:.2f} | {same} |", flush=True)


if __name__ == "__main__":
    main()
