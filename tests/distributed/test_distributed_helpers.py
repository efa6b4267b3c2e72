"""lit_metric.distributed: single-process fallbacks, the reduction protocol and size checks on 2 ranks."""

from __future__ import annotations

import doctest
import re
from typing import Any

import pytest
import torch

import lit_metric.distributed as distributed
from tests.distributed._spawn import rank_results


# --- without a process group: every helper is the identity / a local computation -----------------
def test_single_process_fallbacks() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert not distributed.is_distributed()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.global_offset(5) == 0
    assert distributed.all_gather_with_grad(x, check_sizes=True) is x
    assert distributed.all_gather_no_grad(x) is x
    assert distributed.global_sum(torch.tensor(4.0)) == 4.0
    with distributed.global_reduction():
        assert not distributed.global_reduction_active()  # needs more than one rank
        assert distributed.reduce_mean(torch.tensor(6.0), 4) == 1.5
        assert distributed.reduce_sum(torch.tensor(6.0)) == 6.0


def test_reduce_mean_of_an_empty_batch_is_a_zero_with_graph() -> None:
    x = torch.randn(0, 2, requires_grad=True)
    out = distributed.reduce_mean(x.sum(), 0)
    out.backward()
    assert out == 0 and x.grad is not None and not torch.isnan(out)


def test_doctests() -> None:
    import lit_metric.data.samplers as samplers

    for module in (distributed, samplers):
        failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert failed == 0, module.__name__


# --- on 2 ranks (one shared spawn, see conftest.py) ---------------------------------------------
def test_reductions_issued_by_some_ranks_only(ddp_results: dict[str, Any]) -> None:
    """A rank that skips reductions (its loss returned early) contributes a zero count; nothing desyncs."""
    r0, r1 = rank_results(ddp_results, "protocol")
    assert r0["a"] == [6.0 * 2 / 3, 4.0 * 2 / 2]  # only rank 0 had terms: W·total / global count
    assert r0["b"] == pytest.approx([2.0 * 2 / 3])  # counts 2 (rank 0) + 1 (rank 1)
    assert r1["b"] == pytest.approx([3.0 * 2 / 3, 5.0 * 2 / 5])  # the 2nd reduction: 0 (rank 0) + 5
    assert r0["nested"] == [1.0, 2.0, True] and r1["nested"] == [2.0, 2.0, True]
    assert not r0["active_after"] and not r1["active_after"]
    assert r0["aligned"] == r1["aligned"] == 3.0  # later collectives still pair up


def test_unequal_batch_sizes_raise_on_every_rank(ddp_results: dict[str, Any]) -> None:
    for res in rank_results(ddp_results, "uneven"):
        for where in ("module", "gather"):
            assert res["errors"][where] is not None, where
            assert re.search(
                r"Expected every rank to hold the same batch size.*\[4, 5\].*drop_last=True",
                res["errors"][where],
            )
        assert res["aligned"] == 2.0  # no rank was left waiting: the group still works
