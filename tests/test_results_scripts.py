"""The issue-7 results scripts (benchmarks/results_*.py): their evaluation helpers on hand-made embeddings.

The full runs train for minutes and are not part of the suite; the configs they use are covered by
tests/test_cli_configs.py (fast_dev_run).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def test_orl_all_pairs_and_threshold_transfer() -> None:
    orl = _load("results_orl")
    labels = torch.tensor([0, 0, 1, 1, 2])
    emb = torch.randn(5, 3)
    a, b, same = orl.all_pairs(emb, labels)
    assert a.shape == (10, 3) and same.sum() == 2  # C(5, 2) pairs, two of them positive
    # train: separable, positives at cos 0.8, the closest negative at cos(1.356) = 0.21: threshold in between
    angle = lambda t: torch.tensor([[torch.cos(torch.tensor(t)), torch.sin(torch.tensor(t))]])  # noqa: E731
    train_emb = torch.cat([angle(0.0), angle(0.6435), angle(2.0), angle(2.0 + 0.6435), angle(4.2)])
    test_emb = torch.cat([angle(0.0), angle(0.2), angle(1.5), angle(1.5 + 1.2), angle(4.4)])
    out = orl.evaluate((train_emb, labels), (test_emb, labels))
    # test positives: cos(0.2) = 0.98 (accepted) and cos(1.2) = 0.36 (rejected); every negative is below 0.3
    assert 0.36 < out["chosen_threshold"] < 0.8
    assert out["tar_at_chosen"] == pytest.approx(0.5)
    accepted = (torch.nn.functional.cosine_similarity(*orl.all_pairs(test_emb, labels)[:2]) >= out["chosen_threshold"])
    same_test = orl.all_pairs(test_emb, labels)[2]
    assert out["accuracy_at_chosen"] == pytest.approx(float((accepted == same_test).float().mean()))
    assert 0.0 <= out["eer"] <= 1.0 and 0.0 <= out["roc_auc"] <= 1.0
    assert out["test_recall@1"] == pytest.approx(1.0)  # item 4 is alone in its class: left out


def test_omniglot_retrieval_helper() -> None:
    omni = _load("results_omniglot")
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    out = omni.retrieval(emb, torch.tensor([0, 0, 1, 1]))
    assert out == {"recall@1": pytest.approx(1.0), "map@r": pytest.approx(1.0)}


def test_format_table() -> None:
    common = _load("_results_common")
    text = common.format_table(("a", "b"), [(1, 2)])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_omniglot_shift_average_is_invariant_to_view_order() -> None:
    omni = _load("results_omniglot")
    calls: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(x.clone())
            return x.flatten(1)

    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    out = omni.ShiftAverage(Recorder())(x)
    assert len(calls) == 5 and torch.equal(calls[0], x)  # the image and its four one-pixel shifts
    shifted_centres = {tuple(int(v) for v in (c[0, 0] == 1).nonzero()[0]) for c in calls[1:]}
    assert shifted_centres == {(1, 2), (1, 0), (2, 1), (0, 1)}
    torch.testing.assert_close(out.norm(dim=1), torch.ones(1))


def test_flip_average_is_mirror_invariant() -> None:
    common = _load("_results_common")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))  # not mirror-symmetric itself
    x = torch.randn(2, 1, 3, 4)
    flip = common.FlipAverage(net)
    assert not torch.allclose(net(x), net(x.flip(-1)))
    torch.testing.assert_close(flip(x), flip(x.flip(-1)))
    expected = torch.nn.functional.normalize(
        torch.nn.functional.normalize(net(x), dim=1) + torch.nn.functional.normalize(net(x.flip(-1)), dim=1), dim=1
    )
    torch.testing.assert_close(flip(x), expected)


def test_cub_flip_reuse_equals_flip_average() -> None:
    cub, common = _load("results_cub100"), _load("_results_common")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    x = torch.randn(3, 1, 3, 4)
    torch.testing.assert_close(common.mean_direction(net(x), cub.Mirrored(net)(x)), common.FlipAverage(net)(x))
