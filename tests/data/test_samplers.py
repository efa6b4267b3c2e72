from __future__ import annotations

from collections import Counter

import pytest
import torch

from lit_metric.data import DigitsDataModule, PKSampler


def test_pk_batches_have_p_classes_of_k_samples() -> None:
    labels = torch.arange(200) % 10
    sampler = PKSampler(labels, p=4, k=5, num_batches=30, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 30
    for batch in batches:
        counts = Counter(int(labels[i]) for i in batch)
        assert len(counts) == 4 and set(counts.values()) == {5}
        assert len(set(batch)) == 20  # without replacement inside a class when it has >= k samples


def test_deterministic_per_seed_and_epoch() -> None:
    labels = torch.arange(100) % 5
    a, b = PKSampler(labels, 2, 4, seed=3), PKSampler(labels, 2, 4, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_ranks_are_disjoint_and_together_equal_one_process() -> None:
    labels = torch.arange(300) % 12
    single = list(PKSampler(labels, p=6, k=3, num_batches=5, seed=0, rank=0, world_size=1))
    r0 = list(PKSampler(labels, p=3, k=3, num_batches=5, seed=0, rank=0, world_size=2))
    r1 = list(PKSampler(labels, p=3, k=3, num_batches=5, seed=0, rank=1, world_size=2))
    for s, x, y in zip(single, r0, r1):
        assert {int(labels[i]) for i in x}.isdisjoint({int(labels[i]) for i in y})
        assert s == x + y


def test_small_classes_sampled_with_replacement_and_errors() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2] + [1] * 8)  # classes 0 and 2 are smaller than k
    batch = next(iter(PKSampler(labels, p=3, k=4, num_batches=1)))
    assert len(batch) == 12
    with pytest.raises(ValueError, match="classes"):
        PKSampler(labels, p=4, k=2)
    with pytest.raises(ValueError, match="classes"):
        PKSampler(labels, p=3, k=2, min_class_size=2)
    with pytest.raises(ValueError, match="`k` to be >= 1"):
        PKSampler(labels, p=1, k=0)


def test_digits_split_is_class_disjoint() -> None:
    dm = DigitsDataModule()
    dm.setup("fit")
    assert dm.train_set is not None and dm.eval_set is not None
    assert set(dm.train_set.labels.tolist()) == {0, 1, 2, 3, 4}
    assert set(dm.eval_set.labels.tolist()) == {5, 6, 7, 8, 9}
    x, y, i = dm.eval_set[0]
    assert x.shape == (1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1 and i == 0
