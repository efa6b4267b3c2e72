"""MemoryBankNCELoss: exact softmax and NCE against loop oracles, Z estimate, bank update, resume, precision."""

from __future__ import annotations

import io

import pytest
import torch

from lit_metric.losses import MemoryBankNCELoss
from tests._helpers.ssl_oracles import (
    memory_bank_exact_loop,
    memory_bank_nce_loop,
    momentum_update_loop,
    nce_z_loop,
)

N, D = 40, 6


def _inputs(b: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return torch.randn(b, D, generator=g, dtype=torch.float64) * 3, torch.tensor([0, 7, 7, 39, 12])[:b]


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_exact_mode_matches_oracle_and_updates_after(tau: float) -> None:
    loss_fn = MemoryBankNCELoss(N, D, temperature=tau, momentum=0.3, exact=True).double()
    f, idx = _inputs()
    bank_before = loss_fn.memory.bank.clone()
    value = loss_fn(f, idx)
    assert value.item() == pytest.approx(memory_bank_exact_loop(f, idx, bank_before, tau), rel=1e-10)
    torch.testing.assert_close(loss_fn.memory.bank, momentum_update_loop(bank_before, idx, f, 0.3), rtol=1e-12, atol=1e-12)
    assert int(loss_fn.step) == 1


@pytest.mark.parametrize("shared", [True, False])
def test_nce_mode_matches_oracle_with_given_noise(shared: bool) -> None:
    tau, m = 0.2, 7
    loss_fn = MemoryBankNCELoss(N, D, num_negatives=m, temperature=tau).double()
    f, idx = _inputs()
    g = torch.Generator().manual_seed(5)
    noise = torch.randint(N, (m,) if shared else (5, m), generator=g)
    noise_rows = [noise.tolist()] * 5 if shared else noise.tolist()
    bank = loss_fn.memory.bank.clone()
    assert torch.isnan(loss_fn.z) and not bool(loss_fn.z_estimated)
    value = loss_fn(f, idx, noise_indices=noise, update=False)
    z = nce_z_loop(f, bank, noise_rows, tau)
    assert loss_fn.z.item() == pytest.approx(z, rel=1e-10)
    assert value.item() == pytest.approx(memory_bank_nce_loop(f, idx, bank, noise_rows, tau, z), rel=1e-10)
    # Z is a constant from the first batch: a second batch uses it unchanged
    f2 = torch.randn(5, D, dtype=torch.float64)
    value2 = loss_fn(f2, idx, noise_indices=noise, update=False)
    assert loss_fn.z.item() == pytest.approx(z, rel=1e-10)
    assert value2.item() == pytest.approx(memory_bank_nce_loop(f2, idx, bank, noise_rows, tau, z), rel=1e-10)


def test_internal_noise_is_the_drawn_noise_and_advances_with_steps() -> None:
    a = MemoryBankNCELoss(N, D, num_negatives=9, seed=1).double()
    b = MemoryBankNCELoss(N, D, num_negatives=9, seed=1).double()
    f, idx = _inputs()
    noise0 = a.draw_noise()
    assert torch.equal(noise0, a.draw_noise())  # pure function of (seed, step)
    assert a(f, idx).item() == pytest.approx(b(f, idx, noise_indices=noise0).item(), rel=1e-12)
    assert int(a.step) == 1 and not torch.equal(a.draw_noise(), noise0)
    assert not torch.equal(MemoryBankNCELoss(N, D, num_negatives=9, seed=2).draw_noise(), noise0)


def test_eval_mode_and_update_false_leave_state_alone() -> None:
    loss_fn = MemoryBankNCELoss(N, D, num_negatives=5)
    f, idx = _inputs()
    bank = loss_fn.memory.bank.clone()
    loss_fn.eval()
    loss_fn(f.float(), idx)
    loss_fn.train()
    loss_fn(f.float(), idx, update=False)
    assert torch.equal(loss_fn.memory.bank, bank) and int(loss_fn.step) == 0


@pytest.mark.parametrize("exact", [False, True])
def test_gradients_reach_embeddings_not_the_bank(exact: bool) -> None:
    loss_fn = MemoryBankNCELoss(N, D, num_negatives=5, exact=exact).double()
    f, idx = _inputs()
    f.requires_grad_(True)
    loss_fn(f, idx).backward()  # the in-place bank update after the loss must not break backward
    assert f.grad is not None and torch.isfinite(f.grad).all() and f.grad.abs().sum() > 0
    assert not loss_fn.memory.bank.requires_grad


def test_gradcheck_exact() -> None:
    loss_fn = MemoryBankNCELoss(N, D, exact=True, temperature=0.3).double()
    f, idx = _inputs(3)
    f.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss_fn(x, idx, update=False), (f,))


def test_checkpoint_round_trip_resumes_exactly() -> None:
    f, idx = _inputs()
    a = MemoryBankNCELoss(N, D, num_negatives=8, seed=4)
    for _ in range(3):
        a(torch.randn(5, D), idx)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    b = MemoryBankNCELoss(N, D, num_negatives=8, seed=4)
    b.load_state_dict(torch.load(buffer))
    assert set(a.state_dict()) == {"memory.bank", "log_z", "z_estimated", "step"}
    assert torch.equal(a.memory.bank, b.memory.bank) and torch.equal(a.log_z, b.log_z) and int(b.step) == 3
    assert bool(b.z_estimated) and torch.isfinite(b.z)
    assert torch.equal(a.draw_noise(), b.draw_noise())  # the generator state is (seed, step)
    x = torch.randn(5, D)
    assert torch.equal(a(x, idx), b(x, idx))
    assert torch.equal(a.memory.bank, b.memory.bank)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("exact", [False, True])
def test_low_precision_with_small_temperature_is_finite(dtype: torch.dtype, exact: bool) -> None:
    loss_fn = MemoryBankNCELoss(200, 16, num_negatives=64, temperature=0.07, exact=exact)
    f = torch.randn(8, 16).to(dtype).requires_grad_(True)
    idx = torch.arange(8)
    for _ in range(2):
        loss = loss_fn(f, idx)
        loss.backward()
        assert loss.dtype == dtype and torch.isfinite(loss)
        assert f.grad is not None and torch.isfinite(f.grad).all()
    assert loss_fn.memory.bank.dtype == torch.float32 and torch.isfinite(loss_fn.memory.bank).all()


def test_errors() -> None:
    with pytest.raises(ValueError, match="Expected argument `temperature` to be > 0"):
        MemoryBankNCELoss(10, temperature=0)
    with pytest.raises(ValueError, match="Expected argument `num_negatives` to be >= 1"):
        MemoryBankNCELoss(10, num_negatives=0)
    with pytest.raises(ValueError, match="Expected argument `momentum`"):
        MemoryBankNCELoss(10, momentum=1.5)
    with pytest.raises(ValueError, match="Expected argument `num_samples` to be >= 1"):
        MemoryBankNCELoss(0)
    loss_fn = MemoryBankNCELoss(10, 4, num_negatives=3)
    with pytest.raises(ValueError, match=r"indices in \[0, 10\).*Set `num_samples` to the size of the training set"):
        loss_fn(torch.randn(2, 4), torch.tensor([1, 10]))
    with pytest.raises(ValueError, match="Expected argument `embeddings` to have dimension embedding_dim=4"):
        loss_fn(torch.randn(2, 5), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"Expected argument `noise_indices` of shape \(m,\) or \(2, m\)"):
        loss_fn(torch.randn(2, 4), torch.tensor([1, 2]), noise_indices=torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="noise_indices"):
        loss_fn(torch.randn(2, 4), torch.tensor([1, 2]), noise_indices=torch.tensor([11]))
    with pytest.raises(ValueError, match="Got `noise_indices` with exact=True"):
        MemoryBankNCELoss(10, 4, exact=True)(torch.randn(2, 4), torch.tensor([1, 2]), noise_indices=torch.tensor([1]))
    with pytest.raises(TypeError, match="integer dataset indices"):
        loss_fn(torch.randn(2, 4), torch.tensor([1.0, 2.0]))
