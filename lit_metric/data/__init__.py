"""LightningDataModules, samplers and dataset helpers."""

from lit_metric.data._image_files import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFileDataset,
)
from lit_metric.data.cars196 import Cars196DataModule
from lit_metric.data.cub200 import CUB200DataModule
from lit_metric.data.datasets import TensorImageDataset
from lit_metric.data.digits import DigitsDataModule
from lit_metric.data.image_folder import ImageFolderDataModule
from lit_metric.data.inshop import InShopDataModule
from lit_metric.data.omniglot import OmniglotDataModule, download_omniglot, load_omniglot, rotation_classes
from lit_metric.data.omniglot_runs import (
    OmniglotRun,
    omniglot_one_shot_accuracy,
    omniglot_run_images,
    read_omniglot_runs,
)
from lit_metric.data.orl_faces import ORLFacesDataModule
from lit_metric.data.samplers import (
    PKSampler,
    SeededSampler,
    disable_sampler_injection,
    distributed_eval_sampler,
)
from lit_metric.data.sop import SOPDataModule
from lit_metric.data.two_view import (
    SimCLRAffineTransform,
    SingleViewDataset,
    TwoViewCollate,
    TwoViewDataModule,
    TwoViewDataset,
    sample_uniforms,
    ssl_dataloader,
)

__all__ = [
    "EFFICIENTNET_LITE_MEAN",
    "EFFICIENTNET_LITE_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CUB200DataModule",
    "Cars196DataModule",
    "DigitsDataModule",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "InShopDataModule",
    "ORLFacesDataModule",
    "SOPDataModule",
    "SeededSampler",
    "OmniglotDataModule",
    "OmniglotRun",
    "PKSampler",
    "SimCLRAffineTransform",
    "SingleViewDataset",
    "TensorImageDataset",
    "TwoViewCollate",
    "TwoViewDataModule",
    "TwoViewDataset",
    "disable_sampler_injection",
    "distributed_eval_sampler",
    "download_omniglot",
    "load_omniglot",
    "omniglot_one_shot_accuracy",
    "omniglot_run_images",
    "sample_uniforms",
    "ssl_dataloader",
    "read_omniglot_runs",
    "rotation_classes",
]
