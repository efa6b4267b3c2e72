"""LightningDataModules, samplers and dataset helpers."""

from lit_metric.data.datasets import TensorImageDataset
from lit_metric.data.digits import DigitsDataModule
from lit_metric.data.samplers import PKSampler

__all__ = ["DigitsDataModule", "PKSampler", "TensorImageDataset"]
