"""Self-supervised losses under DDP: 2 processes × B == 1 process × 2B over several SGD steps.

InfoNCE / SupCon gather both views across ranks (``gather_distributed=True``); MemoryBankNCELoss
updates its bank from the gathered (index, embedding) pairs.  Each case runs ``SSL_STEPS`` SGD steps
under ``DistributedDataParallel(broadcast_buffers=False)`` — so nothing copies rank 0's bank to the
others — and on one process with the concatenated batches.  Checked: the logged loss of every step
(mean over ranks), the parameters after the steps, and every buffer (the memory bank, NCE's ``Z`` and
step counter) identical on both ranks and equal to the single process's.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.distributed._cases import SSL_CASES
from tests.distributed._spawn import rank_results
from tests.distributed._worker import run_ssl

RTOL, ATOL = 1e-6, 1e-12


@pytest.mark.parametrize("name", list(SSL_CASES))
def test_ssl_two_ranks_equal_one_process(name: str, ddp_results: dict[str, Any]) -> None:
    if (why := SSL_CASES[name].missing()) is not None:
        pytest.skip(why)
    ranks = rank_results(ddp_results, f"ssl:{name}")
    single = run_ssl(name)
    logged = torch.stack([r["losses"] for r in ranks]).mean(0)
    torch.testing.assert_close(logged, single["losses"], rtol=RTOL, atol=ATOL)
    for pname, p in single["params"].items():
        for rank, r in enumerate(ranks):
            torch.testing.assert_close(
                r["params"][pname], p, rtol=RTOL, atol=ATOL, msg=f"{pname} on rank {rank}"
            )
    for bname, b in single["buffers"].items():
        for rank, r in enumerate(ranks):
            # bit-identical across ranks (no broadcast made them so), equal to the single process to 1e-6
            torch.testing.assert_close(
                r["buffers"][bname],
                ranks[0]["buffers"][bname],
                rtol=0,
                atol=0,
                equal_nan=True,
                msg=f"{bname} on rank {rank}",
            )
            torch.testing.assert_close(
                r["buffers"][bname], b, rtol=RTOL, atol=ATOL, equal_nan=True, msg=f"{bname} on rank {rank}"
            )


def test_memory_bank_and_queue_from_gathered_updates(ddp_results: dict[str, Any]) -> None:
    """``MemoryBank.update`` / ``MemoryQueue.enqueue`` fed with all-gathered (index, embedding) pairs — a padded
    duplicate index included — leave every rank with the bank and queue of one process fed the global batches."""
    from lit_metric.memory_bank import MemoryBank, MemoryQueue
    from tests.distributed._worker import memory_bank_updates

    r0, r1 = rank_results(ddp_results, "memory_bank")
    bank, queue = MemoryBank(num_samples=20, embedding_dim=5, momentum=0.5), MemoryQueue(size=7, embedding_dim=5)
    for idx, emb in memory_bank_updates():
        bank.update(idx, emb)
        queue.enqueue(emb)
    for r in (r0, r1):
        assert torch.equal(r["bank"], bank.bank) and torch.equal(r["queue"], queue.negatives())
