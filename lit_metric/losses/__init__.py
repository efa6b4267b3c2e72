"""Supervised metric losses (one per file) and their contract (:mod:`lit_metric.losses.base`)."""

from lit_metric.losses.arcface_loss import ArcFaceLoss
from lit_metric.losses.base import LossInputs, MetricLoss
from lit_metric.losses.center_loss import CenterLoss
from lit_metric.losses.combined_margin_loss import CombinedMarginLoss
from lit_metric.losses.cosface_loss import CosFaceLoss
from lit_metric.losses.softmax_loss import SoftmaxLoss
from lit_metric.losses.sphereface_loss import SphereFaceLoss
from lit_metric.losses.triplet_margin_loss import TripletMarginLoss
from lit_metric.losses.weighted_sum import WeightedSum

__all__ = [
    "ArcFaceLoss",
    "CenterLoss",
    "CombinedMarginLoss",
    "CosFaceLoss",
    "LossInputs",
    "MetricLoss",
    "SoftmaxLoss",
    "SphereFaceLoss",
    "TripletMarginLoss",
    "WeightedSum",
]
