"""Projections for binary hashing: random hyperplanes, exact PCA, ITQ rotation, thresholds.

Pure numpy; every random step takes a seed, and every result is a deterministic function of
its inputs (eigenvector and singular-vector signs are fixed by a convention, not left to
LAPACK) for a given BLAS thread count: a multi-threaded product rounds differently, so the
indexes train with one BLAS thread.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["itq_rotation", "median_thresholds", "pca", "random_orthogonal", "random_projection"]

Float32 = npt.NDArray[np.float32]


def _fix_signs(vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Flip columns so each one's largest-magnitude entry is positive (a sign convention)."""
    rows = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[rows, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1
    return vectors * signs


def random_orthogonal(size: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A Haar-random orthogonal ``(size, size)`` matrix (QR of a Gaussian, signs fixed)."""
    g = rng.standard_normal((size, size))
    qm, r = np.linalg.qr(g)
    d = np.sign(np.diag(r))
    d[d == 0] = 1
    return np.asarray(qm * d)


def random_projection(dim: int, bits: int, distribution: str, seed: int) -> Float32:
    """Random hyperplane normals, float32 ``(dim, bits)``.

    ``"gaussian"``: Haar-random unit directions, orthogonal within each block of ``dim``
    columns (super-bit LSH, Ji et al. 2012). Each column is uniform on the sphere, so a bit
    still collides with probability ``1 - angle / pi``; orthogonal blocks make the bits less
    redundant. ``"rademacher"``: independent ``+-1`` entries scaled by ``1/sqrt(dim)``.
    """
    rng = np.random.default_rng(seed)
    if distribution == "rademacher":
        signs = rng.integers(0, 2, size=(dim, bits)).astype(np.float32) * 2 - 1
        return np.ascontiguousarray(signs / np.float32(np.sqrt(dim)), dtype=np.float32)
    blocks = []
    for start in range(0, bits, dim):
        width = min(dim, bits - start)
        blocks.append(random_orthogonal(dim, rng)[:, :width])
    return np.ascontiguousarray(np.concatenate(blocks, axis=1), dtype=np.float32)


def pca(x: Float32, components: int) -> tuple[Float32, Float32, Float32]:
    """Exact PCA by ``eigh`` of the float64 covariance.

    Returns
    -------
    mean : float32 (d,)
    vectors : float32 (d, components)
        Principal directions, by decreasing variance, each with its largest-magnitude entry
        positive.
    variances : float32 (components,)
    """
    x64 = np.asarray(x, dtype=np.float64)
    mean = x64.mean(axis=0)
    centred = x64 - mean
    cov = centred.T @ centred / max(x64.shape[0] - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(-vals, kind="stable")[:components]
    top = _fix_signs(vecs[:, order])
    return (
        mean.astype(np.float32),
        np.ascontiguousarray(top, dtype=np.float32),
        np.maximum(vals[order], 0).astype(np.float32),
    )


def itq_rotation(v: Float32, iterations: int, seed: int) -> Float32:
    """Iterative quantization (Gong & Lazebnik, CVPR 2011): the orthogonal ``R`` minimising
    ``||sign(V R) - V R||_F`` by alternating updates.

    Parameters
    ----------
    v : float32 (n, c)
        Centred, PCA-projected training data.
    iterations : int
        Alternations; ``0`` returns the random initial rotation.
    seed : int
        Seed of the random orthogonal initialisation.

    Returns
    -------
    float32 (c, c) orthogonal rotation.
    """
    c = v.shape[1]
    rotation = random_orthogonal(c, np.random.default_rng(seed))
    v32 = np.ascontiguousarray(v, dtype=np.float32)
    for _ in range(iterations):
        b = np.where(v32 @ rotation.astype(np.float32) >= 0, np.float32(1), np.float32(-1))
        # fix B, solve the orthogonal Procrustes problem max tr(R^T V^T B)
        u, _, wt = np.linalg.svd((v32.T @ b).astype(np.float64))
        rotation = u @ wt
    return np.ascontiguousarray(rotation, dtype=np.float32)


def median_thresholds(proj: Float32) -> Float32:
    """Per-column median of projected training data, float32 ``(bits,)``."""
    return np.ascontiguousarray(np.median(proj, axis=0), dtype=np.float32)
