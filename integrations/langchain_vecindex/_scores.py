"""vecindex scores -> LangChain relevance scores in [0, 1].

vecindex reports one score rule everywhere, higher is better: cosine similarity for
``"cosine"``, the inner product for ``"ip"``, the *negated squared* euclidean distance for
``"l2"``. LangChain's ``similarity_search_with_relevance_scores`` wants 0 (dissimilar) to 1
(most similar). Each function below is LangChain's own rule for that metric
(``VectorStore._cosine_relevance_score_fn`` / ``_max_inner_product_relevance_score_fn`` /
``_euclidean_relevance_score_fn``, written for unit-norm embeddings), fed with the distance
those functions expect and clipped to [0, 1]:

========  =====================  ==========================================================
metric    vecindex score ``s``   relevance
========  =====================  ==========================================================
cosine    cos(q, x) in [-1, 1]   ``1 - (1 - s)`` = ``s`` (cosine distance ``1 - s``)
ip        q . x                  ``s``, as for cosine (for unit vectors ``q . x = cos``)
l2        -||q - x||^2           ``1 - d / sqrt(2)`` with the distance ``d = sqrt(-s)``
========  =====================  ==========================================================

Clipping only touches what LangChain's functions would send outside [0, 1] (and make
``similarity_search_with_relevance_scores`` warn): anti-correlated vectors (cos < 0, or
``d > sqrt(2)`` for unit vectors) get 0, and approximate scores that overshoot 1 get 1. The
three rules agree on unit vectors at the ends: identical -> 1, orthogonal -> 0. For ``ip`` we
do not copy LangChain's ``_max_inner_product_relevance_score_fn`` branch for inner products
above 1 (it maps them to ``ip - 1``, which is not monotone); they clip to 1 instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from vecindex_core import InvalidArgumentError

__all__ = [
    "RELEVANCE_FUNCTIONS",
    "cosine_relevance",
    "inner_product_relevance",
    "l2_relevance",
    "relevance_function",
]


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


def cosine_relevance(score: float) -> float:
    """Relevance of a cosine-similarity score: the similarity itself, clipped to [0, 1].

    LangChain's rule is ``1 - cosine_distance`` with ``cosine_distance = 1 - s``.
    """
    return _clip01(float(score))


def inner_product_relevance(score: float) -> float:
    """Relevance of an inner-product score: the product clipped to [0, 1] (cosine for unit
    vectors)."""
    return _clip01(float(score))


def l2_relevance(score: float) -> float:
    """Relevance of a negated squared l2 distance: ``1 - d / sqrt(2)`` clipped to [0, 1]."""
    distance = math.sqrt(max(0.0, -float(score)))
    return _clip01(1.0 - distance / math.sqrt(2.0))


RELEVANCE_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "cosine": cosine_relevance,
    "ip": inner_product_relevance,
    "l2": l2_relevance,
}


def relevance_function(metric: str) -> Callable[[float], float]:
    """The relevance function of ``metric`` (``"cosine"``, ``"ip"`` or ``"l2"``)."""
    try:
        return RELEVANCE_FUNCTIONS[metric]
    except KeyError:
        raise InvalidArgumentError(
            f"no relevance function for metric {metric!r}; valid metrics are "
            f"{', '.join(RELEVANCE_FUNCTIONS)}"
        ) from None
