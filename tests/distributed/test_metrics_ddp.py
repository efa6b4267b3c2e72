"""Metrics under DDP: 2 ranks fed by a padded ``DistributedSampler`` give the single-process value.

37 items on 2 ranks: the sampler pads rank 1 with a duplicate of item 0 so both ranks run 19 items.
Every exported metric whose ``update`` takes dataset ``indices`` syncs its states across ranks and
drops that duplicate by index; its value must equal the one-process value on the 37 items.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.distributed._spawn import rank_results
from tests.distributed._worker import make_metric, metric_classes, metric_values, recall_data


def test_the_dataset_is_padded(ddp_results: dict[str, Any]) -> None:
    ranks = rank_results(ddp_results, "metrics")
    assert [r["n_local"] for r in ranks] == [19, 19]  # 38 > 37: one padding duplicate


@pytest.mark.parametrize("name", sorted(metric_classes()))
def test_metric_two_ranks_equal_one_process(name: str, ddp_results: dict[str, Any]) -> None:
    ranks = rank_results(ddp_results, "metrics")
    for r, res in enumerate(ranks):
        if "__error__" in res[name]:
            pytest.fail(f"{name} raised on rank {r} under DDP:\n{res[name]['__error__']}")
    emb, labels = recall_data()
    metric = make_metric(name)
    metric.update(emb, labels, torch.arange(emb.shape[0]))
    expected = metric_values(metric)
    for r, res in enumerate(ranks):
        assert res[name]["with_index"] == pytest.approx(expected, rel=1e-6, abs=1e-7), f"rank {r}"


def test_recall_without_indices_counts_the_duplicate(ddp_results: dict[str, Any]) -> None:
    """Sanity check of the set-up: without indices the padded duplicate changes Recall@1."""
    ranks = rank_results(ddp_results, "metrics")
    res = ranks[0]["RecallAtK"]
    assert res["without_index"] != res["with_index"]
