"""MetricLearningModule: the supervised LightningModule users subclass or configure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_metric import distributed
from lit_metric._validation import check_choice
from lit_metric.backbones import EmbeddingHead, create_backbone
from lit_metric.backbones import backbone_features as infer_backbone_features
from lit_metric.checkpoint import ExactResume, check_checkpoint_fits
from lit_metric.distances import BaseDistance
from lit_metric.losses.base import MetricLoss
from lit_metric.losses.triplet_margin_loss import TripletMarginLoss
from lit_metric.metrics.recall_at_k import RecallAtK
from lit_metric.miners.base import Miner

__all__ = ["MetricLearningModule", "unpack_batch"]


def unpack_batch(batch: Any) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """``(x,)``, ``(x, y)`` or ``(x, y, index)`` (tuple/list or dict with those keys) -> ``(x, y, index)``."""
    if isinstance(batch, dict):
        return batch["x"] if "x" in batch else batch["image"], batch.get("label"), batch.get("index")
    if isinstance(batch, Tensor):
        return batch, None, None
    if isinstance(batch, tuple | list):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
    raise ValueError(
        "Expected a batch `x`, `(x, y)` or `(x, y, index)` (or a dict with keys x/label/index), but got "
        f"{type(batch).__name__} of length {len(batch) if hasattr(batch, '__len__') else '?'}."
    )


class MetricLearningModule(L.LightningModule):
    """Supervised deep metric learning: backbone → embedding head → (gather) → miner → loss.

    One training step is :meth:`embed` → :meth:`gather` (all ranks' embeddings as references under
    DDP) → :meth:`mine` → :meth:`compute_loss`; each is a hook a subclass can override without
    copying the step.  Validation accumulates :class:`~lit_metric.metrics.RecallAtK` on the
    validation embeddings and logs ``val/recall@k``; ``predict_step`` returns embeddings.

    Args:
        backbone: an ``nn.Module`` returning ``(B, F)`` features, or a timm model name.
        embedding_dim: embedding size D (the head's output); ``None``: no linear projection, the (normalised)
            backbone features are the embeddings (D = F).
        loss: a :class:`~lit_metric.losses.MetricLoss`; default ``TripletMarginLoss(margin=0.2)``.
        miner: a :class:`~lit_metric.miners.Miner` or None (the loss then uses every valid tuple).
        optimizer: optimizer factory (``OptimizerCallable``; in YAML a ``class_path`` + ``init_args``).
        lr_scheduler: optional LR-scheduler factory.
        lr_scheduler_interval: step the scheduler every ``"epoch"`` or ``"step"``.
        loss_lr: learning rate of the loss's own parameters (class weights, centers); default: the
            optimizer's.
        pretrained: with a timm name, load timm's pretrained weights (needs internet); ``"offline"``: weights
            shipped in an installed package (``efficientnet_lite0``), see :func:`~lit_metric.backbones.create_backbone`.
        in_chans: with a timm name, input channels.
        backbone_kwargs: with a timm name, more arguments of :func:`~lit_metric.backbones.create_backbone`
            (e.g. ``{"global_pool": "gem"}`` for GeM pooling, ``{"drop_path_rate": 0.1}``).
        backbone_features: the backbone's output width if it has no ``num_features`` attribute.
        normalize_embeddings: L2-normalise the head's output.
        head_batch_norm: BatchNorm1d in the head.
        gather_distributed: under DDP, use every rank's embeddings as references (exactly the
            single-process computation); False = each rank's loss sees only its own batch.
        recall_k: K values of the validation Recall@K.
        val_distance: retrieval measure of the validation metric (default cosine).
        nonfinite: what to do when the loss or a gradient is NaN/inf: ``"error"`` stops with a message that names
            the step, the loss, the offending parameter and the likely causes; ``"skip"`` drops that optimizer step
            (no parameter or optimizer-state update), counts it and logs ``train/skipped_steps``.  Either way a
            non-finite value never reaches the weights.  The check costs one host sync per step.
        freeze: names of submodules to keep fixed while fine-tuning, as in ``named_modules()`` (e.g.
            ``["backbone.conv_stem", "backbone.bn1", "backbone.blocks.0"]``): their parameters get no gradient and
            are left out of the optimizer, and their BatchNorm layers stay in eval mode (running statistics
            frozen).  Freezing the early, high-resolution stages of a pretrained backbone saves most of the
            backward pass's time and memory.
        freeze_batch_norm: keep every BatchNorm layer of the backbone in eval mode with its affine parameters
            fixed (Proxy-Anchor-style fine-tuning): small P×K batches of few classes give poor batch statistics,
            and a pretrained network's running statistics are better estimates.

    Checkpoints: a run resumed with ``ckpt_path`` continues exactly, also from a mid-epoch checkpoint
    (:class:`~lit_metric.checkpoint.ExactResume`, added through :meth:`configure_callbacks`), and a checkpoint
    that does not fit the model is rejected before any weight is copied (:meth:`on_load_checkpoint`).

    Raises:
        TypeError: if ``backbone`` or ``loss`` are not modules (or a timm name).
        ValueError: if the loss has an ``embedding_dim`` (class weights, centers) other than ``embedding_dim``,
            or ``freeze`` names a submodule the model does not have.
    """

    def __init__(
        self,
        backbone: nn.Module | str = "resnet18",
        embedding_dim: int | None = 128,
        loss: MetricLoss | None = None,
        miner: Miner | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        loss_lr: float | None = None,
        pretrained: bool | Literal["offline"] = False,
        in_chans: int = 3,
        backbone_kwargs: dict[str, Any] | None = None,
        backbone_features: int | None = None,
        normalize_embeddings: bool = True,
        head_batch_norm: bool = False,
        gather_distributed: bool = True,
        recall_k: Sequence[int] = (1, 2, 4, 8),
        val_distance: BaseDistance | None = None,
        nonfinite: Literal["error", "skip"] = "error",
        freeze: Sequence[str] = (),
        freeze_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "loss", "miner", "optimizer", "lr_scheduler", "val_distance"])
        if isinstance(backbone, str):
            backbone = create_backbone(backbone, pretrained=pretrained, in_chans=in_chans, **(backbone_kwargs or {}))
        if not isinstance(backbone, nn.Module):
            raise TypeError(
                f"Expected argument `backbone` to be an nn.Module or a timm model name, but got {type(backbone).__name__}."
            )
        self.backbone = backbone
        features = backbone_features if backbone_features is not None else infer_backbone_features(backbone)
        self.head = EmbeddingHead(features, embedding_dim, normalize=normalize_embeddings, batch_norm=head_batch_norm)
        self.loss = loss if loss is not None else TripletMarginLoss(margin=0.2)
        if not isinstance(self.loss, nn.Module):
            raise TypeError(f"Expected argument `loss` to be a loss module, but got {type(self.loss).__name__}.")
        loss_dim = getattr(self.loss, "embedding_dim", None)
        if isinstance(loss_dim, int) and loss_dim != self.head.embedding_dim:
            given = "" if embedding_dim is not None else f" (embedding_dim=None: the backbone's {features} features)"
            raise ValueError(
                f"Expected the loss's `embedding_dim` to equal the model's, but got {type(self.loss).__name__}("
                f"embedding_dim={loss_dim}) and embedding_dim={self.head.embedding_dim}{given}. Set both to the same value."
            )
        self.miner = miner
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.loss_lr = loss_lr
        self.gather_distributed = gather_distributed
        self.val_metric = RecallAtK(k=tuple(recall_k), distance=val_distance)
        self.nonfinite = check_choice(nonfinite, "nonfinite", ("error", "skip"))
        self.skipped_steps = 0
        self._last_loss: Tensor | None = None
        self.frozen = self._freeze(freeze, freeze_batch_norm)

    def _freeze(self, names: Sequence[str], batch_norm: bool = False) -> tuple[nn.Module, ...]:
        """Fix the named submodules (and with ``batch_norm`` every BatchNorm of the backbone): no gradient, and
        :meth:`train` keeps them in eval mode."""
        if isinstance(names, str):
            names = [names]
        modules = dict(self.named_modules())
        unknown = [n for n in names if n not in modules or not n]
        if unknown:
            tops = sorted(n for n in modules if n.count(".") <= 2 and n.startswith("backbone."))[:12]
            raise ValueError(
                f"Expected argument `freeze` to name submodules of the model (see `named_modules()`), but got "
                f"{unknown}. Some of this model's: {tops}."
            )
        frozen = tuple(modules[n] for n in names)
        if batch_norm:
            frozen += tuple(m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
        for module in frozen:
            module.requires_grad_(False)
        return frozen

    def train(self, mode: bool = True) -> MetricLearningModule:
        """``nn.Module.train``, keeping the ``freeze`` submodules in eval mode (frozen BatchNorm statistics)."""
        super().train(mode)
        for module in getattr(self, "frozen", ()):
            module.eval()
        return self

    # --- hooks a subclass may override ---------------------------------------------------------
    def embed(self, x: Tensor) -> Tensor:
        """Inputs -> ``(B, D)`` embeddings (backbone, then head)."""
        return self.head(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)

    def gather(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """References for the loss: under DDP all ranks' embeddings (with gradient) and labels, plus the
        position of the local anchors among them; ``(None, None, None)`` on one process."""
        if not (self.gather_distributed and distributed.is_distributed()):
            return None, None, None
        # the size check (one tiny all-gather) turns unequal batch sizes into a clear error on every rank
        ref_emb = distributed.all_gather_with_grad(embeddings, check_sizes=True)
        ref_labels = distributed.all_gather_no_grad(labels)
        b = embeddings.shape[0]
        self_index = torch.arange(b, device=embeddings.device) + distributed.global_offset(b)
        return ref_emb, ref_labels, self_index

    def mine(
        self, embeddings: Tensor, labels: Tensor, ref_emb: Tensor | None, ref_labels: Tensor | None, self_index: Tensor | None
    ) -> tuple[Tensor, ...] | None:
        """Index tuples from the miner (None without a miner)."""
        if self.miner is None:
            return None
        return self.miner(embeddings, labels, ref_emb, ref_labels, self_index=self_index)

    def compute_loss(
        self,
        embeddings: Tensor,
        labels: Tensor,
        indices_tuple: tuple[Tensor, ...] | None,
        ref_emb: Tensor | None,
        ref_labels: Tensor | None,
        self_index: Tensor | None,
    ) -> Tensor:
        """The scalar training loss."""
        return self.loss(embeddings, labels, indices_tuple, ref_emb, ref_labels, self_index=self_index)

    # --- Lightning steps ----------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y, _ = unpack_batch(batch)
        if y is None:
            raise ValueError("MetricLearningModule needs labelled batches (x, y) or (x, y, index).")
        z = self.embed(x)
        ref_emb, ref_labels, self_index = self.gather(z, y)
        with distributed.global_reduction(ref_emb is not None):
            indices_tuple = self.mine(z, y, ref_emb, ref_labels, self_index)
            loss = self.compute_loss(z, y, indices_tuple, ref_emb, ref_labels, self_index)
        if ref_emb is not None:
            # every rank must run the all-gather's backward, even when its loss does not touch ref_emb
            loss = loss + 0.0 * ref_emb.sum()
        self._last_loss = loss.detach()
        self.log("train/loss", loss, prog_bar=True, sync_dist=ref_emb is not None, batch_size=z.shape[0])
        if indices_tuple is not None:
            self.log("train/mined_tuples", float(indices_tuple[0].numel()), batch_size=z.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """Accumulate the validation metric; returns ``{"embeddings": z}`` so callbacks (projection, retrieval
        grid) reuse the embeddings instead of running the model a second time."""
        x, y, index = unpack_batch(batch)
        if y is None:
            raise ValueError("Validation batches need labels (x, y) or (x, y, index) for Recall@K.")
        z = self.embed(x)
        self.val_metric.update(z, y, index)
        return {"embeddings": z.detach()}

    def on_validation_epoch_end(self) -> None:
        values = self.val_metric.compute()
        self.log_dict({f"val/{name}": v for name, v in values.items()}, prog_bar=True, sync_dist=True)
        self.val_metric.reset()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        x, _, _ = unpack_batch(batch)
        return self.embed(x)

    # --- optimisation -------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Guard: a non-finite loss or gradient never reaches the weights (see ``nonfinite``).

        Runs after backward (and after DDP's gradient all-reduce, so every rank decides alike) and before
        gradient clipping and the optimizer step.  Skipping sets every gradient to ``None``: torch optimizers then
        leave both the parameters and their state (e.g. Adam's moments) untouched.
        """
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        flags = [torch.stack([g.isfinite().all() for g in grads]).all()] if grads else []
        if self._last_loss is not None:
            flags.append(self._last_loss.isfinite().all())
        if not flags or bool(torch.stack(flags).all()):
            return
        if self.nonfinite == "skip":
            self.skipped_steps += 1
            optimizer.zero_grad(set_to_none=True)
            self.log("train/skipped_steps", float(self.skipped_steps))
            return
        raise FloatingPointError(self._nonfinite_message(optimizer))

    def _nonfinite_message(self, optimizer: torch.optim.Optimizer) -> str:
        names = {id(p): n for n, p in self.named_parameters()}
        bad = [
            names.get(id(p), "<loss parameter>")
            for group in optimizer.param_groups
            for p in group["params"]
            if p.grad is not None and not bool(p.grad.isfinite().all())
        ]
        loss = float(self._last_loss) if self._last_loss is not None else float("nan")
        what = f"non-finite gradients in {bad[:5]}{' …' if len(bad) > 5 else ''}" if bad else "a non-finite loss"
        return (
            f"Step {self.global_step} (epoch {self.current_epoch}): {what}; loss = {loss}. The weights were not "
            "updated. Likely causes: a learning rate too high, a temperature/scale too extreme for the dtype "
            "(e.g. temperature < 0.05 or scale 64 under fp16), fp16 overflow (use bf16 or a GradScaler), or a "
            "non-finite input batch. Set `nonfinite='skip'` to skip such steps and count them instead."
        )

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Backbone + head parameters, then the loss's own parameters (with ``loss_lr`` if set).

        A loss may declare its own groups with a ``param_groups()`` method (e.g. ``CenterLoss``'s
        ``center_lr``); a group without ``"lr"`` gets ``loss_lr``, and loss parameters no declared group
        holds go into one more ``"loss"`` group.
        """
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        loss_ids = {id(p) for p in loss_params}
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.parameters() if p.requires_grad and id(p) not in loss_ids], "name": "model"}
        ]
        declared = getattr(self.loss, "param_groups", None)
        loss_groups = list(declared()) if callable(declared) else []
        covered = {id(p) for g in loss_groups for p in g["params"]}
        loss_groups.append({"params": [p for p in loss_params if id(p) not in covered]})
        for g in loss_groups:
            group: dict[str, Any] = {"name": "loss", **g, "params": [p for p in g["params"] if p.requires_grad]}
            if group["params"]:
                if "lr" not in group and self.loss_lr is not None:
                    group["lr"] = self.loss_lr
                groups.append(group)
        return groups

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_scheduler_interval}}

    # --- checkpoints ----------------------------------------------------------------------------
    def configure_callbacks(self) -> list[L.Callback]:
        """:class:`~lit_metric.checkpoint.ExactResume`: ``ckpt_path`` resumes continue exactly (data position, RNG)."""
        return [ExactResume()]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["lit_metric"] = {"skipped_steps": self.skipped_steps}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Reject a checkpoint that does not fit this model (keys, shapes) before Lightning copies any weight."""
        check_checkpoint_fits(self, checkpoint)
        self.skipped_steps = int(checkpoint.get("lit_metric", {}).get("skipped_steps", 0))
