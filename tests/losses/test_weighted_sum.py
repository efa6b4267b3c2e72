from __future__ import annotations

import pytest
import torch

from lit_metric.losses import ArcFaceLoss, CenterLoss, MetricLoss, SoftmaxLoss, TripletMarginLoss, WeightedSum
from lit_metric.miners import TripletMiner


def _batch(n: int = 12, d: int = 6, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(n, d, dtype=torch.float64), torch.arange(n) % c


def test_is_the_weighted_sum_of_its_parts() -> None:
    emb, labels = _batch()
    parts = [SoftmaxLoss(3, 6).double(), CenterLoss(3, 6).double(), TripletMarginLoss(margin=0.3)]
    total = WeightedSum(parts, [1.0, 0.25, 2.0])
    expected = parts[0](emb, labels) + 0.25 * parts[1](emb, labels) + 2.0 * parts[2](emb, labels)
    torch.testing.assert_close(total(emb, labels), expected)
    assert len(total.last_values) == 3 and not total.last_values[0].requires_grad
    assert total.has_class_weights and total.requires_labels
    # default weights are all 1; parameters of the parts are parameters of the sum
    assert WeightedSum(parts)(emb, labels).item() == pytest.approx(sum(p(emb, labels).item() for p in parts))
    assert len(list(total.parameters())) == 3  # softmax weight + bias, centers


def test_passes_indices_tuple_ref_emb_and_self_index_through() -> None:
    emb, labels = _batch()
    ref, ref_labels = torch.randn(8, 6, dtype=torch.float64), torch.arange(8) % 3
    self_index = torch.arange(12) % 8
    triplets = TripletMiner("all")(emb, labels, ref, ref_labels)
    parts = [TripletMarginLoss(margin=0.2), ArcFaceLoss(3, 6, scale=4.0).double()]
    total = WeightedSum(parts, [0.5, 3.0])
    args = (emb, labels, triplets, ref, ref_labels)
    expected = 0.5 * parts[0](*args, self_index=self_index) + 3.0 * parts[1](*args, self_index=self_index)
    torch.testing.assert_close(total(*args, self_index=self_index), expected)


def test_gradients_reach_every_part() -> None:
    emb, labels = _batch()
    emb.requires_grad_()
    total = WeightedSum([SoftmaxLoss(3, 6).double(), CenterLoss(3, 6).double()], [1.0, 0.1])
    total(emb, labels).backward()
    assert emb.grad is not None and all(p.grad is not None for p in total.parameters())


def test_param_groups_dedupe_and_declared_lr() -> None:
    center = CenterLoss(3, 6, center_lr=0.5)
    soft = SoftmaxLoss(3, 6)
    groups = WeightedSum([soft, center, center]).param_groups()
    assert [g.get("lr") for g in groups] == [None, 0.5]
    assert sum(len(g["params"]) for g in groups) == 3


def test_yaml_list_of_class_paths() -> None:
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--loss", type=MetricLoss)
    cfg = parser.parse_string(
        """
loss:
  class_path: lit_metric.losses.WeightedSum
  init_args:
    losses:
      - class_path: lit_metric.losses.SoftmaxLoss
        init_args: {num_classes: 3, embedding_dim: 6}
      - class_path: lit_metric.losses.CenterLoss
        init_args: {num_classes: 3, embedding_dim: 6, center_lr: 0.1}
    weights: [1.0, 0.5]
"""
    )
    loss = parser.instantiate_classes(cfg).loss
    assert isinstance(loss, WeightedSum) and loss.weights == [1.0, 0.5]
    assert isinstance(loss.losses[1], CenterLoss) and loss.losses[1].center_lr == 0.1


def test_errors() -> None:
    with pytest.raises(ValueError, match="at least one loss"):
        WeightedSum([])
    with pytest.raises(TypeError, match=r"`losses\[1\]` to be a lit_metric.losses.MetricLoss, but got Linear"):
        WeightedSum([TripletMarginLoss(), torch.nn.Linear(2, 2)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="`losses` to be a list of MetricLoss"):
        WeightedSum(TripletMarginLoss())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"one entry per loss \(2\), but got 1"):
        WeightedSum([TripletMarginLoss(), CenterLoss(2, 2)], [1.0])
    with pytest.raises(ValueError, match=r"`weights\[0\]` to be >= 0"):
        WeightedSum([TripletMarginLoss()], [-1.0])
    with pytest.raises(TypeError, match=r"`weights\[0\]` to be a number"):
        WeightedSum([TripletMarginLoss()], ["1"])  # type: ignore[list-item]
