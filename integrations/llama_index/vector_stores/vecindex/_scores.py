"""vecindex score -> LlamaIndex similarity. Pure.

vecindex scores are "higher is better": cosine similarity for ``cosine``, the inner product
for ``ip``, and the *negated squared* euclidean distance for ``l2``.

LlamaIndex's own similarity function (``llama_index.core.base.embeddings.base.similarity``,
used by ``SimpleVectorStore``) reports cosine similarity by default, the dot product in
``DOT_PRODUCT`` mode and the *negated* euclidean distance in ``EUCLIDEAN`` mode. We report the
same quantity for the same metric:

========  ==========================  =============================
metric    vecindex score              ``VectorStoreQueryResult`` similarity
========  ==========================  =============================
cosine    cos(q, x)                   cos(q, x)   (what SimpleVectorStore reports)
ip        q . x                       q . x
l2        -||q - x||^2                -||q - x||
========  ==========================  =============================

The mapping is monotonic, so the order of hits never changes.
"""

from __future__ import annotations

import math

from vecindex_core import InvalidArgumentError

__all__ = ["to_similarity"]


def to_similarity(score: float, metric: str) -> float:
    """Convert one vecindex score to the similarity LlamaIndex reports for ``metric``.

    Raises
    ------
    vecindex_core.InvalidArgumentError
        ``metric`` is not ``"cosine"``, ``"ip"`` or ``"l2"``.
    """
    if metric in ("cosine", "ip"):
        return float(score)
    if metric == "l2":
        return -math.sqrt(max(-float(score), 0.0))
    raise InvalidArgumentError(f"unknown metric {metric!r}; expected 'cosine', 'ip' or 'l2'")
