"""MemoryBank (momentum update, determinism, buffers) and MemoryQueue (FIFO)."""

from __future__ import annotations

import pytest
import torch

from lit_metric.memory_bank import MemoryBank, MemoryQueue, first_occurrence
from tests._helpers.ssl_oracles import momentum_update_loop


def test_initial_bank_is_unit_norm_and_seeded() -> None:
    a, b, c = MemoryBank(50, 8, seed=3), MemoryBank(50, 8, seed=3), MemoryBank(50, 8, seed=4)
    torch.testing.assert_close(a.bank.norm(dim=1), torch.ones(50))
    assert torch.equal(a.bank, b.bank) and not torch.equal(a.bank, c.bank)


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.9])
def test_momentum_update_matches_oracle(momentum: float) -> None:
    bank = MemoryBank(20, 6, momentum=momentum).double()
    old = bank.bank.clone()
    idx = torch.tensor([3, 7, 3, 19, 0])  # 3 twice: the first occurrence wins
    f = torch.randn(5, 6, dtype=torch.float64) * 4
    bank.update(idx, f)
    torch.testing.assert_close(bank.bank, momentum_update_loop(old, idx, f, momentum), rtol=1e-12, atol=1e-12)
    untouched = torch.ones(20, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(bank.bank[untouched], old[untouched])


def test_forward_reads_rows_and_bank_is_a_persistent_buffer() -> None:
    bank = MemoryBank(10, 4)
    assert torch.equal(bank(torch.tensor([2, 5])), bank.bank[[2, 5]])
    assert "bank" in bank.state_dict() and not any(True for _ in bank.parameters())
    assert bank.double().bank.dtype == torch.float64


def test_first_occurrence() -> None:
    assert first_occurrence(torch.tensor([5, 2, 5, 9, 2])).tolist() == [0, 1, 3]


def test_bank_errors() -> None:
    with pytest.raises(ValueError, match="Expected argument `num_samples` to be >= 1"):
        MemoryBank(0)
    with pytest.raises(ValueError, match="Expected argument `momentum` to be a number in"):
        MemoryBank(5, momentum=1.0)
    bank = MemoryBank(5, 3)
    with pytest.raises(ValueError, match=r"dataset indices in \[0, 5\).*num_samples"):
        bank.update(torch.tensor([5]), torch.randn(1, 3))
    with pytest.raises(TypeError, match="integer dataset indices"):
        bank.update(torch.tensor([1.0]), torch.randn(1, 3))
    with pytest.raises(ValueError, match="Expected argument `embeddings` to have dimension 3"):
        bank.update(torch.tensor([1]), torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"Expected argument `indices` to have shape \(2,\)"):
        bank.update(torch.tensor([1]), torch.randn(2, 3))
    with pytest.raises(TypeError, match="Expected argument `indices` to be a torch.Tensor"):
        bank([1])  # type: ignore[arg-type]


def test_queue_is_fifo_and_wraps() -> None:
    q = MemoryQueue(size=4, embedding_dim=2)
    assert q.negatives().shape == (0, 2)
    q.enqueue(torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]]))
    assert int(q.filled) == 3 and int(q.ptr) == 3
    q.enqueue(torch.tensor([[0.0, -2.0], [-1.0, 0.0]]))  # the 5th entry overwrites the oldest (row 0)
    assert int(q.filled) == 4 and int(q.ptr) == 1
    expected = torch.tensor([[-1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [0.0, -1.0]])
    torch.testing.assert_close(q.negatives(), expected)
    q.enqueue(torch.randn(9, 2))  # more than the queue holds: the last 4 are kept
    assert int(q.filled) == 4 and set(q.state_dict()) == {"queue", "ptr", "filled"}


def test_queue_errors() -> None:
    with pytest.raises(ValueError, match="Expected argument `size` to be >= 1"):
        MemoryQueue(0)
    with pytest.raises(ValueError, match="Expected argument `embeddings` to have dimension 2"):
        MemoryQueue(3, 2).enqueue(torch.randn(1, 3))


def test_queue_feeds_info_nce_negatives() -> None:
    from lit_metric.losses import InfoNCELoss

    q = MemoryQueue(8, 4)
    q.enqueue(torch.randn(8, 4))
    z_a, z_b = torch.randn(3, 4), torch.randn(3, 4)
    loss = InfoNCELoss(0.1, symmetric=False)(z_a, z_b, negatives=q.negatives())
    assert torch.isfinite(loss)
