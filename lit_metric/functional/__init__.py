"""Pure tensor math (no nn.Module state): distances, loss kernels, tuple utilities, k-NN."""

from lit_metric.functional.distances import (
    cosine_similarity_matrix,
    dot_product_matrix,
    euclidean_distance_matrix,
    safe_sqrt,
)
from lit_metric.functional.knn import knn, knn_chunks
from lit_metric.functional.retrieval import (
    expand_retrieval_metric_names,
    few_shot_accuracy,
    pair_verification_metrics,
    retrieval_metrics,
    verification_metrics,
)
from lit_metric.functional.triplet import triplet_margin_all_sum
from lit_metric.functional.tuples import (
    check_indices_tuple,
    interval_triplets,
    pair_masks,
    pairs_to_triplets,
    triplets_to_pairs,
)

__all__ = [
    "check_indices_tuple",
    "cosine_similarity_matrix",
    "dot_product_matrix",
    "euclidean_distance_matrix",
    "interval_triplets",
    "expand_retrieval_metric_names",
    "few_shot_accuracy",
    "knn",
    "knn_chunks",
    "pair_verification_metrics",
    "retrieval_metrics",
    "verification_metrics",
    "pair_masks",
    "pairs_to_triplets",
    "safe_sqrt",
    "triplet_margin_all_sum",
    "triplets_to_pairs",
]
