"""vecindex score -> Haystack ``Document.score``: one pure function per metric.

vecindex scores are always "higher is better" (see DESIGN §3):

- ``cosine``: the cosine similarity, in ``[-1, 1]``;
- ``ip``: the inner product, unbounded;
- ``l2``: the *negated squared* euclidean distance, in ``(-inf, 0]``.

Unscaled, Haystack gets that number as is (as ``InMemoryDocumentStore`` returns its raw
similarity). With ``scale_score=True`` it is mapped into ``[0, 1]``, 1 being most relevant,
the way ``InMemoryDocumentStore`` does for the metrics it has:

- ``cosine``: ``(s + 1) / 2`` (clipped to ``[0, 1]``, since an approximate index may report a
  cosine a hair outside ``[-1, 1]``);
- ``ip``: ``expit(s / 100)``, Haystack's ``DOT_PRODUCT_SCALING_FACTOR`` sigmoid;
- ``l2``: ``2 * expit(s / 100)``, the same sigmoid stretched so that a distance of 0 (``s = 0``)
  scores 1 and a growing distance decays towards 0. (Plain ``expit`` would top out at 0.5,
  because ``s`` is never positive.)
"""

from __future__ import annotations

import math

from vecindex_core.errors import InvalidArgumentError

__all__ = ["SCALING_FACTOR", "expit", "scale_score", "to_haystack_score"]

SCALING_FACTOR = 100.0
"""Divides ``ip`` and ``l2`` scores before the sigmoid (Haystack's DOT_PRODUCT_SCALING_FACTOR)."""

_METRICS = ("cosine", "ip", "l2")


def expit(x: float) -> float:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, without overflow for large ``|x|``."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def scale_score(score: float, metric: str) -> float:
    """Map a vecindex score of ``metric`` into ``[0, 1]`` (monotonic, 1 = most relevant).

    Raises
    ------
    InvalidArgumentError
        ``metric`` is not one of ``"cosine"``, ``"ip"``, ``"l2"``.
    """
    s = float(score)
    if metric == "cosine":
        return min(1.0, max(0.0, (s + 1.0) / 2.0))
    if metric == "ip":
        return expit(s / SCALING_FACTOR)
    if metric == "l2":
        return min(1.0, 2.0 * expit(s / SCALING_FACTOR))
    raise InvalidArgumentError(f"metric must be one of {_METRICS}, got {metric!r}")


def to_haystack_score(score: float, metric: str, *, scale: bool) -> float:
    """The ``Document.score`` for a vecindex hit: raw when ``scale`` is False, else scaled."""
    if metric not in _METRICS:
        raise InvalidArgumentError(f"metric must be one of {_METRICS}, got {metric!r}")
    return scale_score(score, metric) if scale else float(score)
