"""One spawn of 2 gloo CPU processes runs every DDP job and equivalence case of this folder (session-scoped)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.distributed._cases import CASES, SSL_CASES, WORLD


@pytest.fixture(scope="session")
def ddp_results() -> dict[str, Any]:
    """``{job or "case:<name>": [rank 0 result, rank 1 result]}`` from a single 2-process run."""
    from tests.distributed._spawn import spawn
    from tests.distributed._worker import JOBS, run_all

    names = [name for name, case in CASES.items() if case.missing() is None]
    ssl_names = [name for name, case in SSL_CASES.items() if case.missing() is None]
    per_rank = spawn(run_all, WORLD, args=(list(JOBS), names, ssl_names), timeout=300)
    return {key: [r[key] for r in per_rank] for key in per_rank[0]}
