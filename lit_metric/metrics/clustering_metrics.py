"""ClusteringMetrics: NMI and AMI of k-means clusters (k = number of classes) against the labels."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from lit_metric._validation import check_choice, check_int
from lit_metric.metrics._embedding_states import EmbeddingStateMetric

__all__ = ["ClusteringMetrics", "cluster_scores"]

AverageMethod = Literal["arithmetic", "geometric", "min", "max"]


def cluster_scores(
    embeddings: Tensor,
    labels: Tensor,
    n_init: int = 1,
    max_iter: int = 300,
    seed: int = 0,
    average_method: AverageMethod = "arithmetic",
) -> dict[str, Tensor]:
    """k-means (scikit-learn, k-means++ init, ``k`` = number of distinct labels) on the embeddings as given,
    then NMI and AMI (scikit-learn) of the cluster assignment against the labels.

    Raises:
        ValueError: with fewer than two classes, or no more items than classes.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    y = labels.detach().cpu().numpy()
    n_classes = int(torch.unique(labels).numel())
    if n_classes < 2 or embeddings.shape[0] <= n_classes:
        raise ValueError(
            f"Expected at least two classes and more items than classes for clustering metrics, but got "
            f"{embeddings.shape[0]} items in {n_classes} classes."
        )
    x = embeddings.detach().cpu().double().numpy()
    clusters = KMeans(n_clusters=n_classes, n_init=n_init, max_iter=max_iter, random_state=seed).fit_predict(x)
    nmi = normalized_mutual_info_score(y, clusters, average_method=average_method)
    ami = adjusted_mutual_info_score(y, clusters, average_method=average_method)
    return {"nmi": torch.tensor(float(nmi)), "ami": torch.tensor(float(ami))}


class ClusteringMetrics(EmbeddingStateMetric):
    """Normalised and adjusted mutual information (NMI, AMI) between the labels and a k-means clustering of the
    embeddings with k = number of classes — the clustering metrics of Song et al. (CVPR 2016) and Musgrave et al.
    (ECCV 2020).  AMI corrects NMI for chance (Vinh et al., JMLR 2010): ~0 for random clusters, 1 for perfect ones.

    k-means is scikit-learn's (k-means++ init, ``seed``): the values carry k-means noise of a few 0.01 between
    seeds on hard data; raise ``n_init`` to reduce it.  The embeddings are clustered as given (normalise them
    first for a cosine geometry).  Under DDP the states are gathered and padding duplicates dropped by ``indices``.

    Args:
        n_init: k-means restarts (the best inertia wins).
        max_iter: k-means iterations per run.
        seed: k-means random state.
        average_method: NMI/AMI normaliser (scikit-learn's ``average_method``).

    Raises:
        ValueError / TypeError: on bad arguments or inputs; ``compute`` raises ValueError with fewer than two classes.

    Example:
        >>> import torch
        >>> metric = ClusteringMetrics()
        >>> metric.update(torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]), torch.tensor([3, 3, 7, 7]))
        >>> {name: round(v.item(), 3) for name, v in metric.compute().items()}
        {'nmi': 1.0, 'ami': 1.0}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        n_init: int = 1,
        max_iter: int = 300,
        seed: int = 0,
        average_method: AverageMethod = "arithmetic",
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.n_init = check_int(n_init, "n_init", 1)
        self.max_iter = check_int(max_iter, "max_iter", 1)
        self.seed = check_int(seed, "seed", 0)
        self.average_method = check_choice(average_method, "average_method", ("arithmetic", "geometric", "min", "max"))
        self.add_embedding_states()

    def compute(self) -> dict[str, Tensor]:
        emb, labels = self.ordered()
        return cluster_scores(emb, labels, self.n_init, self.max_iter, self.seed, self.average_method)  # type: ignore[arg-type]
