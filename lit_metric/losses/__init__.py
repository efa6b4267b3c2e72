"""Supervised metric losses (one per file) and their contract (:mod:`lit_metric.losses.base`)."""

from lit_metric.losses.base import LossInputs, MetricLoss
from lit_metric.losses.triplet_margin_loss import TripletMarginLoss

__all__ = ["LossInputs", "MetricLoss", "TripletMarginLoss"]
