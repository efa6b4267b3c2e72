"""The catalogue of DDP equivalence cases: name -> (loss, miner or None, input kind).

Each case is run as 2 processes × B and as 1 process × 2B (float64) and must give the same logged
loss, the same DDP-averaged gradients and the same mined tuples.  A new loss is one line here.
Classes are looked up *by name* when the case runs, so a case whose loss or miner does not exist
(yet) is skipped with that reason instead of breaking the whole catalogue.

Input kinds (see :func:`make_batch`):

* ``labels``: class ids drawn at random from a few classes, so positives sit on both ranks;
* ``pk``: a P×K batch whose classes are disjoint across ranks (what :class:`PKSampler` yields);
* ``one_rank_empty``: rank 1's anchors have no positive anywhere, so a miner finds no tuple there
  and the loss takes its early "empty" exit on that rank only;
* ``classes``: class ids in ``[0, NUM_CLASSES)`` for the classifier-style losses;
* ``continuous``: float labels ``(N,)`` for continuous-label losses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "BATCH",
    "CASES",
    "SSL_CASES",
    "SSLCase",
    "EMB_DIM",
    "FEATURES",
    "HIDDEN",
    "NUM_CLASSES",
    "WORLD",
    "Case",
    "Spec",
    "make_batch",
    "make_ssl_batch",
]

InputKind = Literal["labels", "pk", "one_rank_empty", "classes", "continuous"]

FEATURES = 10  # input width of the small model
HIDDEN = 12
EMB_DIM = 6
NUM_CLASSES = 5
BATCH = 8  # per rank
WORLD = 2


@dataclass(frozen=True)
class Spec:
    """A class looked up by name in ``module`` plus its keyword arguments (which may hold Specs)."""

    module: str
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def missing(self) -> str | None:
        """Why this object (or a nested one) cannot be built, or None."""
        if not hasattr(importlib.import_module(self.module), self.name):
            return f"{self.module}.{self.name} does not exist (yet)"
        for value in self.kwargs.values():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, Spec) and (why := item.missing()):
                    return why
        return None

    def build(self) -> Any:
        def resolve(v: Any) -> Any:
            if isinstance(v, Spec):
                return v.build()
            if isinstance(v, list):
                return [resolve(x) for x in v]
            return v

        cls = getattr(importlib.import_module(self.module), self.name)
        return cls(**{k: resolve(v) for k, v in self.kwargs.items()})


def L(name: str, **kwargs: Any) -> Spec:  # noqa: N802 - short catalogue helpers
    return Spec("lit_metric.losses", name, kwargs)


def M(name: str, **kwargs: Any) -> Spec:  # noqa: N802
    return Spec("lit_metric.miners", name, kwargs)


def D(name: str, **kwargs: Any) -> Spec:  # noqa: N802
    return Spec("lit_metric.distances", name, kwargs)


@dataclass(frozen=True)
class Case:
    loss: Spec
    miner: Spec | None
    kind: InputKind = "labels"
    #: a known, documented departure from the single-process computation (the test is a strict xfail)
    known_gap: str | None = None

    def missing(self) -> str | None:
        return self.loss.missing() or (self.miner.missing() if self.miner is not None else None)


_CLS = {"num_classes": NUM_CLASSES, "embedding_dim": EMB_DIM}

CASES: dict[str, Case] = {
    # --- triplet margin loss × every miner ------------------------------------------------------
    "triplet": Case(L("TripletMarginLoss", margin=0.5), None),
    "triplet_pk": Case(L("TripletMarginLoss", margin=0.5), None, "pk"),
    "triplet_nonzero_mean": Case(L("TripletMarginLoss", margin=0.3, reduction="nonzero_mean"), None),
    "triplet_sum": Case(L("TripletMarginLoss", margin=0.3, reduction="sum"), None),
    "triplet_swap": Case(L("TripletMarginLoss", margin=0.5, swap=True), None),
    "triplet_smooth": Case(L("TripletMarginLoss", margin=0.5, smooth=True), None),
    "triplet_cosine": Case(L("TripletMarginLoss", margin=0.2, distance=D("CosineSimilarity")), None),
    "triplet_sq_unnormalized": Case(
        L("TripletMarginLoss", margin=0.5, distance=D("EuclideanDistance", squared=True, normalize=False)),
        None,
    ),
    "triplet+miner_all": Case(L("TripletMarginLoss", margin=0.5), M("TripletMiner", strategy="all")),
    "triplet+miner_hard": Case(L("TripletMarginLoss", margin=0.5), M("TripletMiner", strategy="hard")),
    "triplet+miner_semihard": Case(
        L("TripletMarginLoss", margin=0.5), M("TripletMiner", strategy="semihard", margin=0.5)
    ),
    "triplet+miner_easy": Case(
        L("TripletMarginLoss", margin=0.5), M("TripletMiner", strategy="easy", margin=0.1)
    ),
    "triplet+batch_hard": Case(L("TripletMarginLoss", margin=0.5), M("BatchHardMiner")),
    "triplet+batch_hard_pk": Case(L("TripletMarginLoss", margin=0.5), M("BatchHardMiner"), "pk"),
    "triplet+miner_all_one_rank_empty": Case(
        L("TripletMarginLoss", margin=0.5), M("TripletMiner", strategy="all"), "one_rank_empty"
    ),
    "triplet+pair_margin": Case(
        L("TripletMarginLoss", margin=0.5), M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2)
    ),
    # --- pair / tuple losses ----------------------------------------------------------------------
    "contrastive": Case(L("ContrastiveLoss", pos_margin=0.1, neg_margin=1.0), None),
    "contrastive_one_rank_empty": Case(
        L("ContrastiveLoss"), M("TripletMiner", strategy="all"), "one_rank_empty"
    ),
    "contrastive+pair_margin": Case(
        L("ContrastiveLoss"), M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2)
    ),
    "contrastive+batch_hard": Case(L("ContrastiveLoss"), M("BatchHardMiner")),
    "lifted_structure": Case(L("LiftedStructureLoss"), None),
    "lifted_structure_hinge": Case(L("LiftedStructureLoss", smooth=False, neg_margin=1.5), None),
    "lifted_structure+pair_margin": Case(
        L("LiftedStructureLoss"),
        M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2),
    ),
    "lifted_structure_hinge+pair_margin": Case(
        L("LiftedStructureLoss", smooth=False, neg_margin=1.5),
        M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2),
    ),
    "lifted_structure+semihard": Case(L("LiftedStructureLoss"), M("TripletMiner", strategy="semihard")),
    "npair": Case(L("NPairLoss"), None),
    "npair_pk": Case(L("NPairLoss"), None, "pk"),
    "npair+batch_hard": Case(
        L("NPairLoss"),
        M("BatchHardMiner"),
    ),
    "npair+semihard": Case(L("NPairLoss"), M("TripletMiner", strategy="semihard")),
    "npair+pair_margin_one_rank_empty": Case(
        L("NPairLoss"), M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2), "one_rank_empty"
    ),
    "supcon": Case(L("SupConLoss"), None),
    "supcon_pk": Case(L("SupConLoss", temperature=0.5), None, "pk"),
    "supcon+pair_margin": Case(L("SupConLoss"), M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2)),
    "supcon_one_rank_empty": Case(L("SupConLoss"), M("TripletMiner", strategy="all"), "one_rank_empty"),
    "angular": Case(L("AngularLoss"), None),
    "angular_pk": Case(L("AngularLoss"), None, "pk"),
    "angular+batch_hard": Case(L("AngularLoss"), M("BatchHardMiner")),
    "quadruplet": Case(L("QuadrupletLoss"), None),
    "quadruplet+miner_hard": Case(L("QuadrupletLoss"), M("QuadrupletMiner", strategy="hard")),
    "quadruplet+miner_batch_hard": Case(L("QuadrupletLoss"), M("QuadrupletMiner", strategy="batch_hard")),
    "quadruplet+miner_hard_one_rank_empty": Case(
        L("QuadrupletLoss"), M("QuadrupletMiner", strategy="hard"), "one_rank_empty"
    ),
    "lifted_structure_one_rank_empty": Case(L("LiftedStructureLoss"), None, "one_rank_empty"),
    "angular_one_rank_empty": Case(L("AngularLoss"), None, "one_rank_empty"),
    "npair_one_rank_empty": Case(L("NPairLoss"), None, "one_rank_empty"),
    "siamese_bce": Case(L("SiameseBCELoss", embedding_dim=EMB_DIM), None),
    "siamese_bce_balanced": Case(L("SiameseBCELoss", embedding_dim=EMB_DIM, balanced=True), None),
    "siamese_bce+pair_margin": Case(
        L("SiameseBCELoss", embedding_dim=EMB_DIM), M("PairMarginMiner", pos_margin=0.8, neg_margin=1.2)
    ),
    "log_ratio": Case(L("LogRatioLoss"), None, "continuous"),
    "log_ratio_sum": Case(L("LogRatioLoss", reduction="sum"), None, "continuous"),
    # --- classifier-style losses (class weights are DDP parameters) ----------------------------
    "softmax": Case(L("SoftmaxLoss", **_CLS), None, "classes"),
    "arcface": Case(L("ArcFaceLoss", **_CLS, margin=0.3, scale=8.0), None, "classes"),
    "cosface": Case(L("CosFaceLoss", **_CLS, margin=0.2, scale=8.0), None, "classes"),
    "sphereface": Case(L("SphereFaceLoss", **_CLS, margin=2), None, "classes"),
    "combined_margin": Case(
        L("CombinedMarginLoss", **_CLS, m1=1.0, m2=0.2, m3=0.1, scale=8.0), None, "classes"
    ),
    "center": Case(L("CenterLoss", **_CLS), None, "classes"),
    "softmax+center": Case(
        L("WeightedSum", losses=[L("SoftmaxLoss", **_CLS), L("CenterLoss", **_CLS)], weights=[1.0, 0.1]),
        None,
        "classes",
    ),
    "triplet+center_batch_hard": Case(
        L(
            "WeightedSum",
            losses=[L("TripletMarginLoss", margin=0.5), L("CenterLoss", **_CLS)],
            weights=[1.0, 0.5],
        ),
        M("BatchHardMiner"),
        "classes",
    ),
}


SSLKind = Literal["views", "views_labels", "one_view_labels", "bank"]
BANK_SIZE = 40  # dataset size of the memory-bank cases
SSL_STEPS = 3  # optimizer steps per SSL case (the bank evolves)


@dataclass(frozen=True)
class SSLCase:
    """A self-supervised loss: ``views`` → ``loss(z_a, z_b)``, ``views_labels`` → ``loss(z_a, z_b, labels)``,
    ``one_view_labels`` → ``loss(z, None, labels)``, ``bank`` → ``loss(z, indices)``.

    ``via_module``: run it through ``SelfSupervisedModule.training_step`` (the module gathers)
    instead of calling the loss with ``gather_distributed=True`` (the loss gathers)."""

    loss: Spec
    kind: SSLKind
    via_module: bool = False

    def missing(self) -> str | None:
        if self.via_module and (why := Spec("lit_metric.ssl", "SelfSupervisedModule").missing()):
            return why
        return self.loss.missing()


_BANK = {"num_samples": BANK_SIZE, "embedding_dim": EMB_DIM, "temperature": 0.5, "momentum": 0.5}

SSL_CASES: dict[str, SSLCase] = {
    "info_nce": SSLCase(L("InfoNCELoss", temperature=0.5, gather_distributed=True), "views"),
    "info_nce_one_direction": SSLCase(
        L("InfoNCELoss", temperature=0.5, symmetric=False, gather_distributed=True), "views"
    ),
    "supcon_two_views": SSLCase(L("InfoNCELoss", temperature=0.5, gather_distributed=True), "views_labels"),
    "supcon_one_view": SSLCase(L("InfoNCELoss", temperature=0.5, gather_distributed=True), "one_view_labels"),
    "memory_bank_nce_exact": SSLCase(L("MemoryBankNCELoss", **_BANK, exact=True), "bank"),
    "memory_bank_nce": SSLCase(L("MemoryBankNCELoss", **_BANK, num_negatives=16), "bank"),
    # the same through SelfSupervisedModule.training_step
    "module:info_nce": SSLCase(L("InfoNCELoss", temperature=0.5), "views", via_module=True),
    "module:supcon_two_views": SSLCase(L("InfoNCELoss", temperature=0.5), "views_labels", via_module=True),
    "module:supcon_one_view": SSLCase(L("InfoNCELoss", temperature=0.5), "one_view_labels", via_module=True),
    "module:memory_bank_nce_exact": SSLCase(L("MemoryBankNCELoss", **_BANK, exact=True), "bank", via_module=True),
    "module:memory_bank_nce": SSLCase(L("MemoryBankNCELoss", **_BANK, num_negatives=16), "bank", via_module=True),
}


def make_ssl_batch(step: int, seed: int, world: int = WORLD, batch: int = BATCH) -> dict[str, Tensor]:
    """Global step data: two noisy views of ``x``, class labels and distinct dataset indices."""
    g = torch.Generator().manual_seed(seed * 1000 + step)
    n = world * batch
    x = torch.randn(n, FEATURES, generator=g, dtype=torch.float64) * 2.0
    return {
        "v1": x + 0.3 * torch.randn(n, FEATURES, generator=g, dtype=torch.float64),
        "v2": x + 0.3 * torch.randn(n, FEATURES, generator=g, dtype=torch.float64),
        "labels": torch.randint(0, 3, (n,), generator=g),
        "indices": torch.randperm(BANK_SIZE, generator=g)[:n],
    }


def make_batch(kind: InputKind, seed: int, world: int = WORLD, batch: int = BATCH) -> tuple[Tensor, Tensor]:
    """The *global* batch ``(x (W·B, FEATURES) float64, labels (W·B,))``; rank r holds rows ``[rB, (r+1)B)``."""
    g = torch.Generator().manual_seed(seed)
    n = world * batch
    x = torch.randn(n, FEATURES, generator=g, dtype=torch.float64) * 2.0 + 0.5
    if kind == "labels":
        y = torch.randint(0, 4, (n,), generator=g)
    elif kind == "classes":
        y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    elif kind == "pk":  # 2 classes × K = batch/2 per rank, disjoint across ranks
        k = batch // 2
        y = torch.arange(2 * world).repeat_interleave(k)
    elif kind == "one_rank_empty":  # rank 0: two classes; every other rank: classes seen nowhere else
        y = torch.cat([torch.arange(2).repeat(batch // 2), 100 + torch.arange(n - batch)])
    elif kind == "continuous":
        y = torch.rand(n, generator=g, dtype=torch.float64) * 3.0
    else:  # pragma: no cover
        raise ValueError(kind)
    return x, y
