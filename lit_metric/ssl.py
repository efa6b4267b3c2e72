"""SelfSupervisedModule: instance discrimination (InfoNCE / SimCLR, SupCon, memory-bank NCE) in Lightning."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lit_metric import distributed
from lit_metric._validation import check_choice, check_int
from lit_metric.backbones import backbone_features as infer_backbone_features
from lit_metric.backbones import create_backbone
from lit_metric.checkpoint import ExactResume, check_checkpoint_fits
from lit_metric.distances import BaseDistance
from lit_metric.losses.info_nce_loss import InfoNCELoss
from lit_metric.metrics.knn_accuracy import KNNAccuracy
from lit_metric.metrics.recall_at_k import RecallAtK
from lit_metric.module import unpack_batch

__all__ = ["SSLReferences", "SelfSupervisedModule", "unpack_ssl_batch"]


class SSLReferences(NamedTuple):
    """What :meth:`SelfSupervisedModule.gather` returns under DDP: every rank's views (with gradient)."""

    ref_a: Tensor  # (W·B, D)
    ref_b: Tensor | None  # (W·B, D) or None with one view
    ref_labels: Tensor | None  # (W·B,)
    self_index: Tensor  # (B,) rows of the local instances in ref_a/ref_b


def unpack_ssl_batch(batch: Any) -> tuple[tuple[Tensor, ...], Tensor | None, Tensor | None]:
    """``((v1, v2), index)``, ``((v1, v2), y, index)``, ``(v, index)`` or ``(v, y, index)`` -> ``(views, y, index)``.

    Raises:
        ValueError: for any other structure.
    """
    if isinstance(batch, tuple | list) and len(batch) in (2, 3):
        views = batch[0]
        labels = batch[1] if len(batch) == 3 else None
        index = batch[-1]
        if isinstance(views, Tensor):
            return (views,), labels, index
        if isinstance(views, tuple | list) and len(views) in (1, 2) and all(isinstance(v, Tensor) for v in views):
            return tuple(views), labels, index
    raise ValueError(
        "Expected a self-supervised batch ((view_1, view_2), index), ((view_1, view_2), label, index) or "
        f"(view, index), but got {type(batch).__name__}. Wrap the dataset with lit_metric.data.TwoViewDataset "
        "or use lit_metric.data.ssl_dataloader."
    )


class SelfSupervisedModule(L.LightningModule):
    """Self-supervised metric learning: backbone → projection head → (gather) → InfoNCE or memory-bank NCE.

    Training batches carry views of unlabelled instances (see :mod:`lit_metric.data.two_view`):

    * ``((v1, v2), index)`` with :class:`~lit_metric.losses.InfoNCELoss` (SimCLR).  Both views go through the
      network in one pass; under DDP both are gathered from all ranks with gradient
      (:meth:`gather`) and the loss runs with local anchors against the gathered references — the same
      computation as one process with the whole global batch.  ``((v1, v2), y, index)`` with
      ``use_labels=True`` is SupCon; with ``use_labels=False`` labels in a training batch are ignored.
    * ``(v, index)`` with :class:`~lit_metric.losses.MemoryBankNCELoss` (``loss(z, index)``); the loss updates
      its bank from all ranks' ``(index, embedding)`` itself.
    * ``((v1, v2), index)`` with any other two-view loss module (e.g. lightly's): ``loss(z1, z2)``.

    Validation uses **labelled** batches ``(x, y, index)`` (e.g. held-out classes): the representation
    (:meth:`represent`) feeds :class:`~lit_metric.metrics.RecallAtK` (``val/recall@k``) and
    :class:`~lit_metric.metrics.KNNAccuracy` (``val/knn_accuracy``).  With ``knn_bank_dataloader_idx`` set,
    that validation loader (e.g. labelled training images) fills the k-NN bank and the others are queries
    (Wu et al.'s protocol); by default the k-NN monitor is leave-one-out on the validation set.  Validation
    batches of views (unlabelled) log ``val/loss`` instead.  ``predict_step`` returns the representation.

    Hooks a subclass may override without copying the step: :meth:`embed`, :meth:`represent`,
    :meth:`gather`, :meth:`compute_loss`.

    Args:
        backbone: an ``nn.Module`` returning ``(B, F)`` features, or a timm model name.
        projection_head: the head trained on top of the backbone; default lightly's
            ``SimCLRProjectionHead(F, projection_hidden_dim, embedding_dim)`` (lightly is imported only then).
        embedding_dim: output size of the default projection head (the loss's D).
        projection_hidden_dim: hidden width of the default head (default: F).
        loss: :class:`~lit_metric.losses.InfoNCELoss` (default ``InfoNCELoss()``),
            :class:`~lit_metric.losses.MemoryBankNCELoss`, or any two-view loss module.
        optimizer: optimizer factory (``OptimizerCallable``).
        lr_scheduler: optional LR-scheduler factory.
        lr_scheduler_interval: step the scheduler every ``"epoch"`` or ``"step"``.
        pretrained: with a timm name, load timm's pretrained weights (needs internet).
        in_chans: with a timm name, input channels.
        backbone_features: the backbone's output width F if it has no ``num_features`` attribute.
        use_labels: use labels present in training batches (SupCon); default: ignore them.
        gather_distributed: under DDP, contrast against every rank's views (exactly the single-process
            computation) and reduce by global counts.
        eval_embedding: what validation/prediction embed: ``"backbone"`` features (SimCLR's practice) or the
            ``"projection"`` output (Wu et al.'s 128-d memory-bank features).
        recall_k: K values of the validation Recall@K.
        knn_k: neighbours of the k-NN monitor.
        knn_temperature: vote temperature of the k-NN monitor.
        knn_bank_dataloader_idx: validation loader whose batches fill the k-NN bank (None: leave-one-out).
        val_distance: retrieval measure of the validation metrics (default cosine).

    Checkpoints: a run resumed with ``ckpt_path`` continues exactly, also from a mid-epoch checkpoint (data
    order, augmentation, memory bank; :class:`~lit_metric.checkpoint.ExactResume`), and a checkpoint that does
    not fit the model is rejected before any weight is copied.

    Raises:
        TypeError: if ``backbone``, ``projection_head`` or ``loss`` are not modules (or a timm name).
        ValueError: on an unknown ``eval_embedding``, or a loss whose ``embedding_dim`` (memory bank) differs from
            the default projection head's ``embedding_dim``.
    """

    def __init__(
        self,
        backbone: nn.Module | str = "resnet18",
        projection_head: nn.Module | None = None,
        embedding_dim: int = 128,
        projection_hidden_dim: int | None = None,
        loss: nn.Module | None = None,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        pretrained: bool = False,
        in_chans: int = 3,
        backbone_features: int | None = None,
        use_labels: bool = False,
        gather_distributed: bool = True,
        eval_embedding: Literal["backbone", "projection"] = "backbone",
        recall_k: Sequence[int] = (1, 2, 4, 8),
        knn_k: int = 200,
        knn_temperature: float = 0.07,
        knn_bank_dataloader_idx: int | None = None,
        val_distance: BaseDistance | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=["backbone", "projection_head", "loss", "optimizer", "lr_scheduler", "val_distance"]
        )
        if isinstance(backbone, str):
            backbone = create_backbone(backbone, pretrained=pretrained, in_chans=in_chans)
        if not isinstance(backbone, nn.Module):
            raise TypeError(
                f"Expected argument `backbone` to be an nn.Module or a timm model name, but got {type(backbone).__name__}."
            )
        self.backbone = backbone
        features = backbone_features if backbone_features is not None else infer_backbone_features(backbone)
        default_head = projection_head is None
        if projection_head is None:
            from lightly.models.modules.heads import SimCLRProjectionHead

            hidden = projection_hidden_dim if projection_hidden_dim is not None else features
            projection_head = SimCLRProjectionHead(
                input_dim=features, hidden_dim=check_int(hidden, "projection_hidden_dim", 1),
                output_dim=check_int(embedding_dim, "embedding_dim", 1),
            )
        if not isinstance(projection_head, nn.Module):
            raise TypeError(f"Expected argument `projection_head` to be an nn.Module, but got {type(projection_head).__name__}.")
        self.projection_head = projection_head
        self.loss = loss if loss is not None else InfoNCELoss()
        if not isinstance(self.loss, nn.Module):
            raise TypeError(f"Expected argument `loss` to be a loss module, but got {type(self.loss).__name__}.")
        loss_dim = getattr(self.loss, "embedding_dim", None)
        if default_head and isinstance(loss_dim, int) and loss_dim != embedding_dim:
            raise ValueError(
                f"Expected the loss's `embedding_dim` to equal the projection head's output, but got "
                f"{type(self.loss).__name__}(embedding_dim={loss_dim}) and embedding_dim={embedding_dim}. "
                "Set both to the same value."
            )
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.use_labels = use_labels
        self.gather_distributed = gather_distributed
        self.eval_embedding = check_choice(eval_embedding, "eval_embedding", ("backbone", "projection"))
        self.knn_bank_dataloader_idx = knn_bank_dataloader_idx
        self.val_recall = RecallAtK(k=tuple(recall_k), distance=val_distance)
        self.val_knn = KNNAccuracy(k=knn_k, temperature=knn_temperature, distance=val_distance)

    # --- hooks a subclass may override ---------------------------------------------------------
    def embed(self, x: Tensor) -> Tensor:
        """Inputs -> ``(B, D)`` training embeddings (backbone, then projection head)."""
        return self.projection_head(self.backbone(x))

    def represent(self, x: Tensor) -> Tensor:
        """Inputs -> the evaluation representation (``eval_embedding``: backbone features or projection)."""
        features = self.backbone(x)
        return features if self.eval_embedding == "backbone" else self.projection_head(features)

    def forward(self, x: Tensor) -> Tensor:
        return self.represent(x)

    def embed_views(self, views: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Embed all views in one pass (one BatchNorm batch over all views, as SimCLR does)."""
        if len(views) == 1:
            return (self.embed(views[0]),)
        z = self.embed(torch.cat(views))
        return tuple(z.chunk(len(views)))

    def _distributed_step(self) -> bool:
        return self.gather_distributed and distributed.is_distributed()

    def gather(self, embeddings: tuple[Tensor, ...], labels: Tensor | None) -> SSLReferences | None:
        """Under DDP (and for InfoNCE): every rank's views with gradient, labels and local rows; else None."""
        if not (self._distributed_step() and isinstance(self.loss, InfoNCELoss)):
            return None
        ref_a = distributed.all_gather_with_grad(embeddings[0], check_sizes=self.global_step == 0)
        ref_b = distributed.all_gather_with_grad(embeddings[1]) if len(embeddings) == 2 else None
        ref_labels = distributed.all_gather_no_grad(labels) if labels is not None else None
        b = embeddings[0].shape[0]
        self_index = torch.arange(b, device=embeddings[0].device) + distributed.rank() * b
        return SSLReferences(ref_a, ref_b, ref_labels, self_index)

    def compute_loss(
        self,
        embeddings: tuple[Tensor, ...],
        labels: Tensor | None,
        index: Tensor | None,
        refs: SSLReferences | None,
    ) -> Tensor:
        """The scalar loss for one batch of embedded views (see the class docstring for the dispatch)."""
        if getattr(self.loss, "requires_indices", False):
            if len(embeddings) != 1:
                raise ValueError(
                    f"{type(self.loss).__name__} takes one view per instance, but the batch has {len(embeddings)}. "
                    "Use `num_views: 1` in the data module (items (view, index))."
                )
            if index is None:
                raise ValueError(f"{type(self.loss).__name__} needs the dataset index of every item: (view, index).")
            return self.loss(embeddings[0], index)
        if isinstance(self.loss, InfoNCELoss):
            z_a = embeddings[0]
            z_b = embeddings[1] if len(embeddings) == 2 else None
            if refs is None:
                return self.loss(z_a, z_b, labels)
            return self.loss(
                z_a, z_b, labels, ref_a=refs.ref_a, ref_b=refs.ref_b, ref_labels=refs.ref_labels, self_index=refs.self_index
            )
        if len(embeddings) != 2:
            raise ValueError(f"{type(self.loss).__name__} is called as loss(z1, z2) and needs two views per item.")
        return self.loss(embeddings[0], embeddings[1])

    # --- Lightning steps ----------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        views, labels, index = unpack_ssl_batch(batch)
        if not self.use_labels:
            labels = None
        z = self.embed_views(views)
        refs = self.gather(z, labels)
        with distributed.global_reduction(self._distributed_step()):
            loss = self.compute_loss(z, labels, index, refs)
        if refs is not None:
            # every rank must run the all-gather's backward, even if its loss does not touch the references
            loss = loss + 0.0 * (refs.ref_a.sum() + (refs.ref_b.sum() if refs.ref_b is not None else 0.0))
        self.log("train/loss", loss, prog_bar=True, sync_dist=self._distributed_step(), batch_size=z[0].shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(batch, tuple | list) and batch and isinstance(batch[0], tuple | list):
            views, labels, index = unpack_ssl_batch(batch)
            z = self.embed_views(views)
            loss = self.compute_loss(z, labels if self.use_labels else None, index, None)
            self.log("val/loss", loss, batch_size=z[0].shape[0], add_dataloader_idx=False)
            return
        x, y, index = unpack_batch(batch)
        if y is None:
            raise ValueError("Validation batches need labels (x, y) or (x, y, index) for Recall@K and k-NN accuracy.")
        rep = self.represent(x)
        if self.knn_bank_dataloader_idx is not None and dataloader_idx == self.knn_bank_dataloader_idx:
            self.val_knn.update(rep, y, index, is_bank=True)
            return
        self.val_recall.update(rep, y, index)
        self.val_knn.update(rep, y, index)

    def on_validation_epoch_end(self) -> None:
        if self.val_recall.update_called:
            values = self.val_recall.compute()
            self.log_dict({f"val/{name}": v for name, v in values.items()}, prog_bar=True, sync_dist=True)
            self.log("val/knn_accuracy", self.val_knn.compute(), prog_bar=True)
        self.val_recall.reset()
        self.val_knn.reset()

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        x, _, _ = unpack_batch(batch)
        return self.represent(x)

    # --- optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.lr_scheduler_interval}}

    # --- checkpoints ----------------------------------------------------------------------------
    def configure_callbacks(self) -> list[L.Callback]:
        """:class:`~lit_metric.checkpoint.ExactResume`: ``ckpt_path`` resumes continue exactly (data position, RNG)."""
        return [ExactResume()]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Reject a checkpoint that does not fit this model (keys, shapes) before Lightning copies any weight."""
        check_checkpoint_fits(self, checkpoint)
