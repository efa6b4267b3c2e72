"""FewShotAccuracy: episodic N-way K-shot classification accuracy of the embeddings."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from lit_metric._validation import check_choice, check_int
from lit_metric.distances import BaseDistance, CosineSimilarity
from lit_metric.functional.retrieval import few_shot_accuracy
from lit_metric.metrics._embedding_states import EmbeddingStateMetric

__all__ = ["FewShotAccuracy"]


class FewShotAccuracy(EmbeddingStateMetric):
    """N-way K-shot accuracy over random episodes (Vinyals et al., NeurIPS 2016; Snell et al., NeurIPS 2017).

    Each of ``episodes`` episodes draws ``n_way`` classes among those with at least ``k_shot + n_query`` items,
    ``k_shot`` support and ``n_query`` query items of each; a query is assigned the class of its nearest support
    item (``method="nn"``, the Siamese-network protocol of Koch et al. 2015) or of the nearest class prototype,
    the mean support embedding (``"prototype"``).  A query tied between its class and another counts as wrong.
    Episodes are drawn from a generator seeded with ``seed`` over the items in dataset-index order, so the value
    is reproducible and identical under DDP.  For Lake et al.'s fixed official Omniglot runs see
    :func:`lit_metric.data.omniglot_one_shot_accuracy`.

    Args:
        n_way: classes per episode.
        k_shot: support items per class.
        n_query: query items per class.
        episodes: number of episodes.
        method: ``"nn"`` or ``"prototype"``.
        distance: the measure (default cosine similarity).
        seed: episode sampling seed.

    Returns (``compute``):
        ``few_shot_accuracy`` (mean over all queries) and ``few_shot_ci95`` (95 % confidence half-width over
        episodes).

    Raises:
        ValueError / TypeError: on bad arguments or inputs; ``compute`` raises ValueError when fewer than
            ``n_way`` classes have ``k_shot + n_query`` items.

    Example:
        >>> import torch
        >>> metric = FewShotAccuracy(n_way=2, k_shot=1, episodes=10)
        >>> emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.1], [-0.9, 0.0]])
        >>> metric.update(emb, torch.tensor([0, 0, 1, 1, 2, 2]))
        >>> metric.compute()["few_shot_accuracy"].item()
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        n_way: int = 20,
        k_shot: int = 1,
        n_query: int = 1,
        episodes: int = 1000,
        method: Literal["nn", "prototype"] = "nn",
        distance: BaseDistance | None = None,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.n_way = check_int(n_way, "n_way", 2)
        self.k_shot = check_int(k_shot, "k_shot", 1)
        self.n_query = check_int(n_query, "n_query", 1)
        self.episodes = check_int(episodes, "episodes", 1)
        self.method = check_choice(method, "method", ("nn", "prototype"))
        self.distance = distance if distance is not None else CosineSimilarity()
        if not isinstance(self.distance, BaseDistance):
            raise TypeError(
                f"Expected argument `distance` to be a lit_metric distance, but got {type(self.distance).__name__}."
            )
        self.seed = check_int(seed, "seed", 0)
        self.add_embedding_states()

    def compute(self) -> dict[str, Tensor]:
        emb, labels = self.ordered()
        acc, ci = few_shot_accuracy(
            emb,
            labels,
            distance=self.distance,
            n_way=self.n_way,
            k_shot=self.k_shot,
            n_query=self.n_query,
            episodes=self.episodes,
            method=self.method,  # type: ignore[arg-type]
            seed=self.seed,
        )
        return {"few_shot_accuracy": acc.float(), "few_shot_ci95": ci.float()}
