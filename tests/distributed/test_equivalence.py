"""2 processes × B == 1 process × 2B for every loss × miner of the catalogue (float64, gloo, CPU).

For each case of :data:`tests.distributed._cases.CASES` one real ``training_step`` runs under
``DistributedDataParallel`` on 2 spawned ranks and, as the reference, on one process with the
concatenated batch.  Checked:

* the logged loss: the mean over ranks of the per-rank returned values (``self.log(sync_dist=True)``)
  equals the single-process loss;
* the DDP-averaged gradients of every parameter (model, head and the loss's own class weights) equal
  the single-process gradients (1e-6 relative), and are identical on both ranks;
* the gradient w.r.t. each rank's embeddings is W × the single-process one (DDP averages only
  parameter gradients);
* the mined tuples, with anchors mapped to global batch positions, are the single-process tuples.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.distributed._cases import CASES, WORLD
from tests.distributed._spawn import rank_results
from tests.distributed._worker import run_step

RTOL = 1e-6


def _close(actual: torch.Tensor, expected: torch.Tensor, scale: float, what: str) -> None:
    """Relative 1e-6; the absolute floor is relative to the magnitude of the whole gradient (or loss)."""
    atol = 1e-10 * max(1.0, scale)
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=atol, msg=lambda m: f"{what}: {m}")


def _params() -> list[Any]:
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=case.known_gap))
        if case.known_gap
        else name
        for name, case in CASES.items()
    ]


@pytest.mark.parametrize("name", _params())
def test_two_ranks_equal_one_process(name: str, ddp_results: dict[str, Any]) -> None:
    case = CASES[name]
    if (why := case.missing()) is not None:
        pytest.skip(why)
    ranks = rank_results(ddp_results, f"case:{name}")
    single = run_step(name)

    logged = torch.stack([r["loss"] for r in ranks]).mean()
    _close(logged, single["loss"], float(single["loss"].abs()), "logged loss")
    assert float(single["loss"]) != 0.0 or "empty" in name, "degenerate case: the loss is 0"

    grads = {k: g for k, g in single["grads"].items() if g is not None}
    scale = max(float(g.abs().max()) for g in grads.values()) if grads else 0.0
    assert scale > 0, "degenerate case: no gradient at all"
    for pname, g in single["grads"].items():
        if g is None:
            assert all(r["grads"][pname] is None for r in ranks), pname
            continue
        for rank, r in enumerate(ranks):
            _close(r["grads"][pname], g, scale, f"grad of {pname} on rank {rank}")

    z_grad = torch.cat([r["z_grad"] for r in ranks]) / WORLD
    _close(z_grad, single["z_grad"], float(single["z_grad"].abs().max()), "embedding gradient")

    if single["tuples"] is None:
        assert all(r["tuples"] is None for r in ranks)
    else:
        for part, expected in enumerate(single["tuples"]):
            mined = sorted(t for r in ranks for t in r["tuples"][part])
            assert mined == expected, f"mined tuples differ (part {part})"
        assert any(single["tuples"]), "degenerate case: the miner found nothing"


def _names(spec: Any) -> set[str]:
    """Class names used by a Spec, nested ones included."""
    from tests.distributed._cases import Spec

    out = {spec.name}
    for value in spec.kwargs.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Spec):
                out |= _names(item)
    return out


def test_catalogue_covers_every_exported_loss_and_miner() -> None:
    """A new loss or miner needs one line in tests/distributed/_cases.py (its DDP equivalence case)."""
    import inspect

    import lit_metric.losses as losses
    import lit_metric.miners as miners
    from tests.distributed._cases import SSL_CASES

    used: set[str] = set()
    for case in CASES.values():
        used |= _names(case.loss) | (_names(case.miner) if case.miner is not None else set())
    for ssl_case in SSL_CASES.values():
        used |= _names(ssl_case.loss)
    bases = {"MetricLoss", "Miner"}
    exported = {
        name
        for module in (losses, miners)
        for name in module.__all__
        if inspect.isclass(getattr(module, name)) and issubclass(getattr(module, name), torch.nn.Module)
    }
    assert exported - bases - used == set(), "add a DDP equivalence case for these"
