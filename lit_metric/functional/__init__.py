"""Pure tensor math (no nn.Module state): distances, loss kernels, tuple utilities, k-NN."""

from lit_metric.functional.angular import angular_pair_terms
from lit_metric.functional.class_means import class_means
from lit_metric.functional.distances import (
    cosine_similarity_matrix,
    dot_product_matrix,
    euclidean_distance_matrix,
    safe_sqrt,
)
from lit_metric.functional.info_nce import contrastive_logits, info_nce_sum, supcon_sum
from lit_metric.functional.knn import knn, knn_chunks
from lit_metric.functional.logsumexp import masked_logsumexp, masked_max, segment_logsumexp, segment_max
from lit_metric.functional.quadruplet import Quadruplets, check_quadruplets, quadruplet_pair_gap_all_sum
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
from lit_metric.functional.weighted_l1 import weighted_l1_matrix, weighted_l1_rowwise

__all__ = [
    "angular_pair_terms",
    "class_means",
    "contrastive_logits",
    "info_nce_sum",
    "supcon_sum",
    "masked_logsumexp",
    "masked_max",
    "segment_logsumexp",
    "segment_max",
    "Quadruplets",
    "check_quadruplets",
    "quadruplet_pair_gap_all_sum",
    "weighted_l1_matrix",
    "weighted_l1_rowwise",
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
