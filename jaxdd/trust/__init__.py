"""TAD's trust machinery (docs/algorithms.md §4): mixtures, outer partition, inner recall."""

from jaxdd.trust.gmm import GMM, fit_gmm, log_likelihood, posterior
from jaxdd.trust.partition import (
    class_table,
    make_partition,
    normalise_per_class,
    partition,
    per_class_table,
    small_loss_selection,
    threshold_schedule,
    trust_scores,
)
from jaxdd.trust.recalibrate import (
    Recalibration,
    class_anchors,
    cosine,
    mahalanobis,
    recalibrate,
    shared_precision,
)

__all__ = [
    "GMM",
    "Recalibration",
    "class_anchors",
    "class_table",
    "cosine",
    "fit_gmm",
    "log_likelihood",
    "mahalanobis",
    "make_partition",
    "normalise_per_class",
    "partition",
    "per_class_table",
    "posterior",
    "recalibrate",
    "shared_precision",
    "small_loss_selection",
    "threshold_schedule",
    "trust_scores",
]
