"""Band/row maths of sign-random-projection LSH (pure functions, no I/O).

A random hyperplane through the origin separates two vectors at angle ``theta`` with
probability ``theta / pi`` (Goemans & Williamson 1995; Charikar 2002), so one sign bit of two
vectors with cosine similarity ``s`` collides with probability

    p(s) = 1 - arccos(s) / pi.

This is *not* the MinHash (Jaccard) probability ``p = s``, which is the mistake of curves
copied from MinHash LSH. With signatures cut into ``b`` bands of ``r`` bits, two vectors share
the bucket of one band with probability ``p(s)^r`` and at least one bucket (become candidates)
with probability

    P(s) = 1 - (1 - p(s)^r)^b       (the S-curve).

For a similarity threshold ``t``, the false-positive area is ``integral_{lo}^{t} P(s) ds``
(pairs below the threshold that still become candidates) and the false-negative area is
``integral_{t}^{1} (1 - P(s)) ds`` (pairs above it that are missed);
:func:`optimal_bands_rows` minimises their weighted sum over the ``(b, r)`` a bit budget
allows. Integrals are computed in the angle (``s = cos theta``), where the integrand is smooth,
by Gauss-Legendre quadrature.

The formulas assume independent hyperplanes. ``RedisLSH`` draws them orthogonal within each
block of ``dim`` columns (super-bit LSH): each bit still collides with probability ``p(s)``,
and with ``rows_per_band`` far below ``dim`` the bits of a band are as good as independent
(``tests/test_lsh_tuning.py`` measures the band probability of the index's own hyperplanes
against ``p(s)^r``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from .errors import InvalidArgumentError, InvalidParameterError, NonFiniteError

__all__ = [
    "band_probability",
    "collision_probability",
    "false_negative_area",
    "false_positive_area",
    "optimal_bands_rows",
    "s_curve",
    "similarity_from_collisions",
    "threshold",
]

Floats = npt.NDArray[np.float64]
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(128)


def _similarity(s: npt.ArrayLike, name: str = "s") -> Floats:
    try:
        arr = np.asarray(s, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{name} must be real numbers, got {s!r}") from e
    if not np.isfinite(arr).all():
        raise NonFiniteError(f"{name} must be finite, got {s!r}")
    if ((arr < -1.0) | (arr > 1.0)).any():
        bad = arr[(arr < -1.0) | (arr > 1.0)].ravel()[0]
        raise InvalidArgumentError(f"{name} is a cosine similarity in [-1, 1], got {bad!r}")
    return arr


def _positive_int(value: object, name: str, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    if value < 1 or (high is not None and value > high):
        upper = "" if high is None else f" and <= {high}"
        raise InvalidParameterError(f"{name} must be >= 1{upper}, got {value!r}")
    return int(value)


def collision_probability(s: npt.ArrayLike) -> Floats:
    """Probability ``1 - arccos(s) / pi`` that one random-hyperplane sign bit collides.

    Parameters
    ----------
    s : array_like of float
        Cosine similarities in ``[-1, 1]``.

    Returns
    -------
    ndarray of float64, the shape of ``s``.

    Raises
    ------
    InvalidArgumentError
        A value outside ``[-1, 1]`` (``NonFiniteError`` for NaN or infinity).
    """
    return 1.0 - np.arccos(_similarity(s)) / np.pi


def band_probability(s: npt.ArrayLike, rows: int) -> Floats:
    """Probability ``p(s)^r`` that two vectors share the bucket of one ``rows``-bit band."""
    r = _positive_int(rows, "rows")
    return collision_probability(s) ** r


def s_curve(s: npt.ArrayLike, bands: int, rows: int) -> Floats:
    """Probability ``1 - (1 - p(s)^r)^b`` that two vectors share at least one bucket.

    Parameters
    ----------
    s : array_like of float
        Cosine similarities in ``[-1, 1]``.
    bands, rows : int
        ``b`` bands of ``r`` bits each (``>= 1``).

    Returns
    -------
    ndarray of float64, the shape of ``s``.
    """
    b = _positive_int(bands, "bands")
    return 1.0 - (1.0 - band_probability(s, rows)) ** b


def threshold(bands: int, rows: int) -> float:
    """The similarity where the S-curve crosses 1/2.

    ``P(s) = 1/2`` gives ``p* = (1 - 2^(-1/b))^(1/r)``, and ``s = cos(pi (1 - p*))``.
    """
    b = _positive_int(bands, "bands")
    r = _positive_int(rows, "rows")
    p_star = (1.0 - 0.5 ** (1.0 / b)) ** (1.0 / r)
    return float(math.cos(math.pi * (1.0 - p_star)))


def similarity_from_collisions(count: npt.ArrayLike, bands: int, rows: int) -> Floats:
    """Estimate the cosine similarity from the number of bands two vectors share.

    Each band collides with probability ``p^r``, so ``c`` collisions out of ``b`` bands
    estimate ``p = (c / b)^(1/r)`` and ``s = cos(pi (1 - p))``. Monotone in ``c`` (so it
    ranks exactly as the count does); ``c = 0`` maps to ``-1``.

    Parameters
    ----------
    count : array_like of int
        Collision counts in ``[0, bands]``.
    bands, rows : int
    """
    b = _positive_int(bands, "bands")
    r = _positive_int(rows, "rows")
    c = np.asarray(count, dtype=np.float64)
    if not np.isfinite(c).all() or ((c < 0) | (c > b)).any():
        raise InvalidArgumentError(f"count must lie in [0, {b}], got {count!r}")
    p = (c / b) ** (1.0 / r)
    return np.cos(np.pi * (1.0 - p))


def _check_range(t: float, lo: float) -> tuple[float, float]:
    t = float(_similarity(t, "threshold"))
    lo = float(_similarity(lo, "lo"))
    if lo > t:
        raise InvalidArgumentError(f"lo={lo!r} must not exceed the threshold {t!r}")
    return t, lo


def _integrate(f: object, a: float, b: float) -> float:
    """``integral_a^b f(s) ds`` (``-1 <= a <= b <= 1``), computed over the angle."""
    if b <= a:
        return 0.0
    th_lo, th_hi = math.acos(b), math.acos(a)  # s = cos(theta): s ascends as theta descends
    half = 0.5 * (th_hi - th_lo)
    theta = th_lo + half * (_NODES + 1.0)
    vals = f(np.cos(theta)) * np.sin(theta)  # type: ignore[operator]
    return float(half * np.dot(_WEIGHTS, vals))


def false_positive_area(t: float, bands: int, rows: int, *, lo: float = -1.0) -> float:
    """``integral_{lo}^{t} P(s) ds``: candidates below the threshold ``t``.

    Parameters
    ----------
    t : float
        Similarity threshold in ``[-1, 1]``.
    bands, rows : int
    lo : float, default -1.0
        Lowest similarity considered (``0.0`` to ignore negatively correlated pairs).
    """
    t, lo = _check_range(t, lo)
    b, r = _positive_int(bands, "bands"), _positive_int(rows, "rows")
    return _integrate(lambda s: 1.0 - (1.0 - (1.0 - np.arccos(s) / np.pi) ** r) ** b, lo, t)


def false_negative_area(t: float, bands: int, rows: int) -> float:
    """``integral_{t}^{1} (1 - P(s)) ds``: pairs above the threshold ``t`` that are missed."""
    t = float(_similarity(t, "threshold"))
    b, r = _positive_int(bands, "bands"), _positive_int(rows, "rows")
    return _integrate(lambda s: (1.0 - (1.0 - np.arccos(s) / np.pi) ** r) ** b, t, 1.0)


def optimal_bands_rows(
    num_bits: int,
    threshold: float,
    *,
    fp_weight: float = 0.5,
    fn_weight: float = 0.5,
    lo: float = -1.0,
    exact: bool = False,
    max_rows: int = 32,
) -> tuple[int, int]:
    """The ``(bands, rows)`` minimising ``fp_weight * FP + fn_weight * FN`` for a threshold.

    Every ``rows`` in ``1..min(max_rows, num_bits)`` is tried with
    ``bands = num_bits // rows`` (so ``bands * rows <= num_bits``; with ``exact=True`` only
    divisors of ``num_bits``, so the product is exactly ``num_bits``). Ties go to fewer rows.

    Parameters
    ----------
    num_bits : int
        Signature bits available (``>= 1``).
    threshold : float
        Cosine similarity in ``[-1, 1]`` that should separate candidates from the rest.
    fp_weight, fn_weight : float, default 0.5
        Non-negative weights, not both zero.
    lo : float, default -1.0
        Lowest similarity in the false-positive integral.
    exact : bool, default False
        Require ``bands * rows == num_bits``.
    max_rows : int, default 32
        Largest band width tried (``RedisLSH`` allows up to 32).

    Returns
    -------
    (bands, rows) : tuple of int

    Raises
    ------
    InvalidParameterError
        A bad bit budget or weight; ``InvalidArgumentError`` for a bad threshold.
    """
    n = _positive_int(num_bits, "num_bits")
    top = _positive_int(max_rows, "max_rows")
    t, lo = _check_range(threshold, lo)
    weights = []
    for name, w in (("fp_weight", fp_weight), ("fn_weight", fn_weight)):
        if isinstance(w, bool) or not isinstance(w, (int, float, np.floating, np.integer)):
            raise InvalidParameterError(f"{name} must be a number, got {w!r}")
        if not math.isfinite(w) or w < 0:
            raise InvalidParameterError(f"{name} must be finite and >= 0, got {w!r}")
        weights.append(float(w))
    if weights[0] == weights[1] == 0.0:
        raise InvalidParameterError("fp_weight and fn_weight cannot both be 0")
    best: tuple[float, int, int] | None = None
    for r in range(1, min(top, n) + 1):
        b = n // r
        if exact and b * r != n:
            continue
        err = (weights[0] * false_positive_area(t, b, r, lo=lo)
               + weights[1] * false_negative_area(t, b, r))
        if best is None or err < best[0] - 1e-15:
            best = (err, b, r)
    assert best is not None  # r = 1 always qualifies
    return best[1], best[2]
