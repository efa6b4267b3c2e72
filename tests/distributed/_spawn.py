"""Run a function on W spawned CPU processes joined by a gloo process group (not by re-running pytest).

The children rendezvous through a file store in a temporary directory (no port to race for), use one
thread each (``OMP_NUM_THREADS=1``) and write what the function returns to ``rank{r}.pt``; the parent
loads those.  A child that raises records the traceback instead of a result.  A rank stuck in a
collective fails after the gloo timeout, and the parent kills everything after ``timeout`` seconds:
a broken protocol fails the test, never hangs the suite.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["rank_results", "spawn"]


def _entry(
    rank: int,
    world_size: int,
    store: str,
    out: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    gloo_timeout: float,
) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("WANDB_MODE", "disabled")
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{store}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=gloo_timeout),
    )
    try:
        result: Any = fn(rank, world_size, *args)
    except BaseException:  # noqa: BLE001 - report any failure to the parent
        result = {"__error__": traceback.format_exc()}
    torch.save(result, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def spawn(
    fn: Callable[..., Any],
    world_size: int = 2,
    args: tuple[Any, ...] = (),
    timeout: float = 240.0,
    gloo_timeout: float = 60.0,
) -> list[Any]:
    """``[fn(rank, world_size, *args) for rank in range(world_size)]``, each in its own process.

    ``fn`` must be importable by name (defined at module level) and return something ``torch.save``
    can write.

    Raises:
        RuntimeError: when a rank raised (its traceback in the message) or the processes outlived ``timeout``.
    """
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        old = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"  # children inherit it before torch starts its thread pool
        try:
            procs = [
                ctx.Process(
                    target=_entry, args=(r, world_size, store, tmp, fn, args, gloo_timeout), daemon=True
                )
                for r in range(world_size)
            ]
            for p in procs:
                p.start()
        finally:
            if old is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = old
        deadline = time.monotonic() + timeout
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        if any(p.is_alive() for p in procs):
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join()
            raise RuntimeError(f"spawned ranks did not finish within {timeout:.0f} s (a collective hung?)")
        results = []
        for r, p in enumerate(procs):
            path = Path(tmp) / f"rank{r}.pt"
            if not path.exists():
                raise RuntimeError(f"rank {r} exited with code {p.exitcode} without writing a result")
            res = torch.load(path, weights_only=False)
            if isinstance(res, dict) and "__error__" in res:
                raise RuntimeError(f"rank {r} raised:\n{res['__error__']}")
            results.append(res)
        return results


def rank_results(results: dict[str, Any], key: str) -> list[Any]:
    """The per-rank results of one job of a spawned run, failing the test with a rank's traceback if it raised."""
    import pytest

    if key not in results:
        pytest.fail(f"{key} did not run in the 2-process session")
    per_rank = results[key]
    for r, res in enumerate(per_rank):
        if isinstance(res, dict) and "__error__" in res:
            pytest.fail(f"rank {r} raised in {key}:\n{res['__error__']}")
    return per_rank
