"""Supervised metric losses (one per file) and their contract (:mod:`lit_metric.losses.base`)."""

from lit_metric.losses.angular_loss import AngularLoss
from lit_metric.losses.arcface_loss import ArcFaceLoss
from lit_metric.losses.base import LossInputs, MetricLoss
from lit_metric.losses.center_loss import CenterLoss
from lit_metric.losses.combined_margin_loss import CombinedMarginLoss
from lit_metric.losses.contrastive_loss import ContrastiveLoss
from lit_metric.losses.cosface_loss import CosFaceLoss
from lit_metric.losses.info_nce_loss import InfoNCELoss
from lit_metric.losses.lifted_structure_loss import LiftedStructureLoss
from lit_metric.losses.log_ratio_loss import LogRatioLoss
from lit_metric.losses.memory_bank_nce_loss import MemoryBankNCELoss
from lit_metric.losses.npair_loss import NPairLoss
from lit_metric.losses.quadruplet_loss import QuadrupletLoss
from lit_metric.losses.siamese_bce_loss import SiameseBCELoss
from lit_metric.losses.softmax_loss import SoftmaxLoss
from lit_metric.losses.sphereface_loss import SphereFaceLoss
from lit_metric.losses.supcon_loss import SupConLoss
from lit_metric.losses.triplet_margin_loss import TripletMarginLoss
from lit_metric.losses.weighted_sum import WeightedSum

__all__ = [
    "AngularLoss",
    "ArcFaceLoss",
    "CenterLoss",
    "CombinedMarginLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "InfoNCELoss",
    "LiftedStructureLoss",
    "LogRatioLoss",
    "LossInputs",
    "MemoryBankNCELoss",
    "MetricLoss",
    "NPairLoss",
    "QuadrupletLoss",
    "SiameseBCELoss",
    "SoftmaxLoss",
    "SphereFaceLoss",
    "SupConLoss",
    "TripletMarginLoss",
    "WeightedSum",
]
