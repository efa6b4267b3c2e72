"""Non-parametric instance discrimination with a memory bank (Wu et al. 2018): full softmax or NCE."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

from lit_metric import distributed
from lit_metric._validation import check_embeddings, check_int, check_positive
from lit_metric.memory_bank import MemoryBank, check_indices

__all__ = ["MemoryBankNCELoss"]

_SEED_MIX = 0x9E3779B97F4A7C15  # golden-ratio constant: spreads (seed, step) over the 63-bit seed space


class MemoryBankNCELoss(nn.Module):
    r"""Instance discrimination against a memory bank of every training instance's embedding.

    References:
        - Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018.
        - Gutmann & Hyvärinen, "Noise-contrastive estimation: A new estimation principle for unnormalized
          statistical models", AISTATS 2010.

    Each training instance ``i`` is its own class.  With ``f`` the L2-normalised embedding of instance
    ``i`` and ``v_j`` the bank entries (:class:`~lit_metric.memory_bank.MemoryBank`),
    :math:`P(j \mid f) = \exp(v_j^\top f/\tau) / Z`.

    * ``exact=True``: the full softmax over the bank, ``−log P(i|f)`` with
      :math:`Z = \sum_j \exp(v_j^\top f/\tau)` (a ``B × num_samples`` logits matrix).
    * ``exact=False`` (NCE): ``m = num_negatives`` noise indices ``j'`` drawn uniformly from the bank
      (:math:`P_n = 1/n`), :math:`h(j, f) = P(j|f) / (P(j|f) + m P_n)` and the per-anchor loss
      :math:`-\log h(i, f) - \sum_{k=1}^{m} \log(1 - h(j'_k, f))`.  ``Z`` is a constant estimated once,
      from the first batch, as :math:`Z \approx n\,\mathbb{E}_{j'}[\exp(v_{j'}^\top f/\tau)]` over all its
      anchors and noise samples (the paper's Monte-Carlo estimate), then kept in the ``log_z`` buffer
      (``z_estimated`` says whether it has been estimated).
      Computed in log space (``softplus``), so float16/bfloat16 with ``τ = 0.07`` stays finite.

    The loss is the mean over the anchors (global count under
    :func:`~lit_metric.distributed.global_reduction`).  **After** the loss is computed, in training mode,
    the bank rows of ``indices`` are updated: :math:`v_i \leftarrow \mathrm{normalise}(m\,v_i + (1-m) f_i)`.

    One set of ``num_negatives`` noise indices is drawn per step and shared by the step's anchors (each
    anchor still sees ``m`` i.i.d. uniform samples, and the noise logits are one ``B × m`` matmul instead of
    a ``B × m × D`` gather).  The noise comes from a ``torch.Generator`` seeded by ``(seed, step)``, where
    ``step`` is a buffer counting the bank updates: the generator's whole state is in the checkpoint, a
    resumed run draws exactly the noise an uninterrupted one would, and every rank draws the same indices.

    Distributed: with ``gather_distributed=True`` (default) and a process group, the bank is updated from
    the ``(indices, embeddings)`` of **all** ranks (gathered, rank-major), ``Z`` is estimated from all ranks'
    first batches and the mean divides by the global anchor count — so every rank holds the identical bank
    and W ranks × B equal 1 process × W·B.  Every rank must then call the loss (as in a training step).

    Args:
        num_samples: size of the training set (dataset indices are in ``[0, num_samples)``).
        embedding_dim: embedding size D.
        num_negatives: noise samples ``m`` per step (NCE mode).
        temperature: ``τ > 0``.
        momentum: bank momentum in ``[0, 1)``.
        exact: full softmax over the bank instead of NCE.
        seed: seeds the initial bank and the noise generator.
        gather_distributed: under DDP, update the bank and estimate ``Z`` from all ranks (see above).

    Raises:
        ValueError: on a non-positive ``temperature``, ``num_samples``/``embedding_dim``/``num_negatives``
            < 1, or ``momentum`` outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> loss = MemoryBankNCELoss(num_samples=100, embedding_dim=8, num_negatives=16)
        >>> value = loss(torch.randn(4, 8), torch.tensor([0, 5, 7, 99]))
        >>> bool(torch.isfinite(value)), int(loss.step), bool(loss.z_estimated)
        (True, 1, True)
    """

    #: the loss takes ``(embeddings, indices)`` (one view per instance), not two views
    requires_indices: bool = True

    log_z: Tensor
    z_estimated: Tensor
    step: Tensor

    def __init__(
        self,
        num_samples: int,
        embedding_dim: int = 128,
        num_negatives: int = 4096,
        temperature: float = 0.07,
        momentum: float = 0.5,
        exact: bool = False,
        seed: int = 0,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.memory = MemoryBank(num_samples, embedding_dim, momentum=momentum, seed=seed)
        self.num_samples = self.memory.num_samples
        self.embedding_dim = self.memory.embedding_dim
        self.num_negatives = check_int(num_negatives, "num_negatives", 1)
        self.temperature = check_positive(temperature, "temperature")
        self.exact = bool(exact)
        self.seed = int(seed)
        self.gather_distributed = bool(gather_distributed)
        self.register_buffer("log_z", torch.zeros(()))
        self.register_buffer("z_estimated", torch.zeros((), dtype=torch.bool))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._generator = torch.Generator()

    @property
    def z(self) -> Tensor:
        """The NCE normalising constant ``Z`` (NaN until the first NCE forward estimates it)."""
        return self.log_z.exp() if bool(self.z_estimated) else torch.full_like(self.log_z, float("nan"))

    def draw_noise(self) -> Tensor:
        """The ``(num_negatives,)`` noise indices of the current ``step`` (a pure function of ``(seed, step)``)."""
        self._generator.manual_seed((self.seed * _SEED_MIX + int(self.step)) % (2**63))
        noise = torch.randint(self.num_samples, (self.num_negatives,), generator=self._generator)
        return noise.to(self.memory.bank.device)

    def _distributed(self) -> bool:
        return self.gather_distributed and distributed.is_distributed()

    def forward(
        self,
        embeddings: Tensor,
        indices: Tensor,
        *,
        noise_indices: Tensor | None = None,
        update: bool | None = None,
    ) -> Tensor:
        """The scalar loss; then (in training mode) the momentum update of the bank rows ``indices``.

        Args:
            embeddings: ``(B, D)`` embeddings (L2-normalised here).
            indices: ``(B,)`` dataset indices of the instances.
            noise_indices: NCE noise to use instead of drawing it: ``(m,)`` shared by all anchors or
                ``(B, m)`` per anchor.
            update: update the bank (and advance ``step``); default ``self.training``.

        Raises:
            ValueError: on shapes that do not match, indices outside ``[0, num_samples)``, or
                ``noise_indices`` with ``exact=True``.
            TypeError: on non-tensor inputs, non-float embeddings or non-integer indices.
        """
        check_embeddings(embeddings)
        b = embeddings.shape[0]
        if embeddings.shape[1] != self.embedding_dim:
            raise ValueError(
                f"Expected argument `embeddings` to have dimension embedding_dim={self.embedding_dim}, but got "
                f"{embeddings.shape[1]}."
            )
        idx = check_indices(indices, b, self.num_samples).to(self.memory.bank.device)
        if noise_indices is not None:
            if self.exact:
                raise ValueError("Got `noise_indices` with exact=True: the full softmax uses no noise.")
            if noise_indices.ndim not in (1, 2) or (noise_indices.ndim == 2 and noise_indices.shape[0] != b):
                raise ValueError(
                    f"Expected argument `noise_indices` of shape (m,) or ({b}, m), but got {tuple(noise_indices.shape)}."
                )
            check_indices(noise_indices.reshape(-1), None, self.num_samples, "noise_indices")
        do_update = self.training if update is None else bool(update)
        bank = self.memory.bank
        low_precision = embeddings.dtype in (torch.float16, torch.bfloat16)
        f = torch.nn.functional.normalize(embeddings.float() if low_precision else embeddings, dim=1)
        dtype = torch.promote_types(f.dtype, bank.dtype)  # float32 at least; float64 if either is
        f = f.to(dtype)
        context = distributed.global_reduction(True) if self._distributed() else contextlib.nullcontext()
        with context:
            if self.exact:
                # the update below writes the bank in place: the matmul must not save the live buffer
                weights = bank.to(dtype) if bank.dtype != dtype else (bank.clone() if do_update else bank)
                logits = f @ weights.T / self.temperature
                total = torch.nn.functional.cross_entropy(logits, idx, reduction="sum")
            else:
                total = self._nce_total(f, bank, idx, self.draw_noise() if noise_indices is None else noise_indices)
            loss = distributed.reduce_mean(total, b)
        if do_update:
            self._update(idx, f.detach())
        return loss.to(embeddings.dtype)

    def _nce_total(self, f: Tensor, bank: Tensor, idx: Tensor, noise: Tensor) -> Tensor:
        noise = noise.to(bank.device).long()
        m = noise.shape[-1]
        pos = (f * bank[idx].to(f.dtype)).sum(1) / self.temperature  # (B,)
        if noise.ndim == 1:
            neg = f @ bank[noise].to(f.dtype).T / self.temperature  # (B, m)
        else:
            neg = torch.einsum("bd,bmd->bm", f, bank[noise].to(f.dtype)) / self.temperature
        if not bool(self.z_estimated):
            self._estimate_log_z(neg.detach())
        log_z = self.log_z.to(f.dtype)
        log_m_pn = math.log(m / self.num_samples)  # log(m · P_n) with uniform noise P_n = 1/n
        # −log h(i, f) = softplus(log(m·Pn) − log P(i|f));  −log(1 − h(j, f)) = softplus(log P(j|f) − log(m·Pn))
        data_term = torch.nn.functional.softplus(log_m_pn - (pos - log_z))
        noise_term = torch.nn.functional.softplus((neg - log_z) - log_m_pn).sum(1)
        return (data_term + noise_term).sum()

    @torch.no_grad()
    def _estimate_log_z(self, noise_logits: Tensor) -> None:
        """``log Z = log n + log mean exp(noise logits)`` over the first batch (of all ranks under DDP)."""
        lse = torch.logsumexp(noise_logits.reshape(-1).double(), dim=0)
        count = torch.tensor(float(noise_logits.numel()), dtype=torch.float64, device=noise_logits.device)
        if self._distributed():
            lse = torch.logsumexp(distributed.all_gather_no_grad(lse.reshape(1)), dim=0)
            count = distributed.global_sum(count)
        self.log_z.fill_(float(math.log(self.num_samples) + lse - torch.log(count)))
        self.z_estimated.fill_(True)

    @torch.no_grad()
    def _update(self, idx: Tensor, f: Tensor) -> None:
        if self._distributed():
            idx = distributed.all_gather_no_grad(idx)
            f = distributed.all_gather_no_grad(f.contiguous())
        self.memory.update(idx, f)
        self.step += 1

    def extra_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, embedding_dim={self.embedding_dim}, num_negatives={self.num_negatives}, "
            f"temperature={self.temperature}, momentum={self.memory.momentum}, exact={self.exact}"
        )
