"""Every exported loss and miner through the same contract (DESIGN.md): finite scalar, gradients reach the
embeddings, dtype kept, no-positive and single-class batches give a zero that backpropagates zeros, never NaN.

A new loss or miner must be added to the factory tables below (the first test fails otherwise).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import nn

import lit_metric.losses as losses
import lit_metric.miners as miners

D, C = 8, 6  # embedding dim, number of classes for class-weight losses

SUPERVISED: dict[str, Callable[[], nn.Module]] = {
    "AngularLoss": lambda: losses.AngularLoss(),
    "ArcFaceLoss": lambda: losses.ArcFaceLoss(C, D),
    "CenterLoss": lambda: losses.CenterLoss(C, D),
    "CombinedMarginLoss": lambda: losses.CombinedMarginLoss(C, D, m1=1.0, m2=0.3, m3=0.1),
    "ContrastiveLoss": lambda: losses.ContrastiveLoss(),
    "CosFaceLoss": lambda: losses.CosFaceLoss(C, D),
    "LiftedStructureLoss": lambda: losses.LiftedStructureLoss(),
    "NPairLoss": lambda: losses.NPairLoss(),
    "QuadrupletLoss": lambda: losses.QuadrupletLoss(),
    "SiameseBCELoss": lambda: losses.SiameseBCELoss(D),
    "SoftmaxLoss": lambda: losses.SoftmaxLoss(C, D),
    "SphereFaceLoss": lambda: losses.SphereFaceLoss(C, D),
    "SupConLoss": lambda: losses.SupConLoss(),
    "TripletMarginLoss": lambda: losses.TripletMarginLoss(),
    "WeightedSum": lambda: losses.WeightedSum([losses.SoftmaxLoss(C, D), losses.CenterLoss(C, D)], [1.0, 0.1]),
}
# classification-style losses: a "no positive pair" batch is still a valid batch for them
CLASS_WEIGHT_LOSSES = {"ArcFaceLoss", "CenterLoss", "CombinedMarginLoss", "CosFaceLoss", "SoftmaxLoss", "SphereFaceLoss", "WeightedSum"}
NEEDS_POS_AND_NEG = {"AngularLoss", "LiftedStructureLoss", "QuadrupletLoss", "TripletMarginLoss"}
# losses with a non-pair signature, covered by their own tests and listed here so the catalogue stays complete
OTHER = {"InfoNCELoss", "MemoryBankNCELoss", "LogRatioLoss", "MetricLoss", "LossInputs"}

MINERS: dict[str, Callable[[], nn.Module]] = {
    "BatchHardMiner": lambda: miners.BatchHardMiner(),
    "PairMarginMiner": lambda: miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8),
    "QuadrupletMiner": lambda: miners.QuadrupletMiner(),
    "TripletMiner": lambda: miners.TripletMiner("all"),
}


def test_catalogue_is_complete() -> None:
    exported = set(losses.__all__)
    assert exported - set(SUPERVISED) - OTHER == set(), "add new losses to the catalogue"
    exported_miners = {n for n in miners.__all__ if inspect.isclass(getattr(miners, n)) and n not in ("Miner", "MinerInputs")}
    assert exported_miners - set(MINERS) == set(), "add new miners to the catalogue"


def _batch(labels: list[int], dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    emb = torch.randn(len(labels), D, dtype=dtype, requires_grad=True)
    return emb, torch.tensor(labels)


@pytest.mark.parametrize("name", sorted(SUPERVISED))
def test_contract_on_a_normal_batch(name: str) -> None:
    loss = SUPERVISED[name]().double()
    emb, labels = _batch([0, 0, 1, 1, 2, 2, 3, 3])
    out = loss(emb, labels)
    assert out.ndim == 0 and out.dtype == torch.float64 and torch.isfinite(out)
    out.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(SUPERVISED))
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [1, 1, 1, 1]], ids=["no-positive", "single-class"])
def test_degenerate_batches(name: str, labels: list[int]) -> None:
    loss = SUPERVISED[name]().double()
    emb, y = _batch(labels)
    out = loss(emb, y)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(emb.grad).all()
    # losses built on (anchor, positive, negative) structure have no valid tuple in either batch; pair losses
    # (contrastive, Siamese BCE) still have valid negative-only or positive-only pairs
    if name in NEEDS_POS_AND_NEG or (name == "NPairLoss" and labels == [0, 1, 2, 3]):
        assert out.item() == 0.0 and torch.all(emb.grad == 0)


@pytest.mark.parametrize("name", sorted(SUPERVISED))
def test_float32_kept_and_all_equal_embeddings_finite(name: str) -> None:
    loss = SUPERVISED[name]()
    emb = torch.ones(6, D, requires_grad=True)
    out = loss(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
    out.backward()
    assert out.dtype == torch.float32 and torch.isfinite(out) and torch.isfinite(emb.grad).all()


@pytest.mark.parametrize("name", sorted(MINERS))
def test_miner_contract(name: str) -> None:
    miner = MINERS[name]()
    emb, labels = _batch([0, 0, 1, 1, 2, 2, 3, 3], torch.float32)
    out = miner(emb, labels)
    assert isinstance(out, tuple) and len(out) in (3, 4)
    assert all(t.dtype == torch.long and t.ndim == 1 and not t.requires_grad for t in out)
    for degenerate in ([0, 1, 2, 3], [1, 1, 1, 1]):
        e, y = _batch(degenerate, torch.float32)
        mined = miner(e, y)
        if len(mined) == 4 and name == "PairMarginMiner":  # pairs: only the missing side is empty
            a1, p, a2, n = mined
            assert (a1.numel() == 0) if degenerate == [0, 1, 2, 3] else (a2.numel() == 0)
        else:
            assert all(t.numel() == 0 for t in mined)
    with pytest.raises(TypeError, match="integer class ids"):
        miner(emb, labels.float())
