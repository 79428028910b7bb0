"""Datasets for tests, examples and benchmarks: the bundled sample and common file formats.

Sources understood by :func:`load_dataset`:

- ``"sample"``: the bundled sample (:func:`load_sample`);
- a directory holding ``base.npy`` and ``queries.npy``, optionally inner-product ground
  truth (``gt_ip_100.npy`` or ``queries_gt_ip_100.npy``) and ``base_texts.jsonl`` /
  ``queries_texts.jsonl``;
- a ``.npy`` or ``.fvecs`` base file, with queries from ``queries=`` or held out from the
  end of the base; an ``.fvecs`` base ``X_base.fvecs`` also uses ``X_groundtruth.ivecs``
  when it sits beside it (TEXMEX layout, L2 ground truth);
- an ANN-benchmarks ``.hdf5`` file (``train``, ``test``, ``neighbors``, ``distance``).

Only numpy is imported here; h5py is imported when an ``.hdf5`` file is read.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from vecindex_core.errors import IndexFormatError, InvalidArgumentError
from vecindex_core.validation import check_metric

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "Dataset",
    "exact_ground_truth",
    "load_dataset",
    "load_sample",
    "read_fvecs",
    "read_ivecs",
]

SAMPLE_NAME = "minilm_wordnet_5k"
_HDF5_METRICS = {"angular": "cosine", "euclidean": "l2", "dot": "ip", "ip": "ip"}
_DIR_GT_FILES = ("gt_ip_100.npy", "queries_gt_ip_100.npy")
_BLOCK_SCORES = 1 << 24  # score-matrix elements per query block in exact_ground_truth


@dataclass(frozen=True)
class Dataset:
    """Base vectors, queries and their exact ground truth.

    Attributes
    ----------
    name : str
        Short name (the sample's name, or the file or directory name).
    base : numpy.ndarray
        float32 (n, d), C-contiguous.
    queries : numpy.ndarray
        float32 (nq, d), C-contiguous.
    metric : {"ip", "l2", "cosine"}
        Metric the ground truth is for.
    gt : numpy.ndarray or None
        int64 (nq, k_gt): row indices into ``base``, best first; None if unknown.
    base_texts, query_texts : list of str or None
        The passages the vectors embed, when the source has them.
    base_ids, query_ids : list of str or None
        The passages' own string ids (``"id"`` in the ``*_texts.jsonl`` files), when present.
    """

    name: str
    base: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    metric: str
    gt: npt.NDArray[np.int64] | None
    base_texts: list[str] | None = None
    query_texts: list[str] | None = None
    base_ids: list[str] | None = None
    query_ids: list[str] | None = None


# ---------------------------------------------------------------------------- helpers


def _check_positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidArgumentError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _matrix(a: object, what: str) -> npt.NDArray[np.float32]:
    """``a`` as a float32 C-contiguous 2-D array, or InvalidArgumentError."""
    arr = np.asarray(a)
    if arr.ndim != 2 or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidArgumentError(
            f"{what} must be a 2-D real array, got shape {arr.shape} dtype {arr.dtype}"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def _texts(
    root: Traversable, name: str, rows: int
) -> tuple[list[str] | None, list[str] | None]:
    """Texts and ids (None where absent) of a ``*_texts.jsonl`` file of ``rows`` lines."""
    path = root / name
    if not path.is_file():
        return None, None
    lines = [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) != rows:
        raise IndexFormatError(f"{str(path)!r} has {len(lines)} lines for {rows} vectors")
    ids = [str(obj["id"]) for obj in lines] if all("id" in obj for obj in lines) else None
    return [str(obj["text"]) for obj in lines], ids


def _npy(path: Traversable) -> np.ndarray:
    with path.open("rb") as f:
        return np.asarray(np.load(f, allow_pickle=False))


# ---------------------------------------------------------------------------- readers


def vecs_rows(path: str | os.PathLike[str], *, mmap: bool = False) -> np.ndarray:
    """The checked ``(n, d + 1)`` little-endian int32 rows of an ``.fvecs``/``.ivecs`` file
    (per row the dimension ``d``, then ``d`` 4-byte values), read whole or memory-mapped.

    Raises
    ------
    IndexFormatError
        The size is not whole rows, or a row states another dimension.
    """
    name = os.fspath(path)
    # np.memmap refuses an empty file; an empty file has no rows either way
    raw = np.memmap(name, dtype=np.uint8, mode="r") if mmap and os.path.getsize(name) \
        else np.fromfile(name, dtype=np.uint8)
    size = raw.size
    if size % 4:
        raise IndexFormatError(f"{name!r} is truncated: {size} bytes, not whole 4-byte words")
    words = raw.view("<i4")
    if words.size == 0:
        return np.empty((0, 1), dtype="<i4")
    d = int(words[0])
    if d <= 0 or words.size % (d + 1):
        raise IndexFormatError(
            f"{name!r} is truncated or corrupt: {size} bytes is not a whole number of "
            f"rows of dimension {d}"
        )
    rows = words.reshape(-1, d + 1)
    bad = np.flatnonzero(rows[:, 0] != d)  # one strided pass over the first column
    if bad.size:
        raise IndexFormatError(
            f"{name!r} is corrupt: row {bad[0]} has dimension {rows[bad[0], 0]}, expected {d}"
        )
    return rows


def _read_vecs(path: str | os.PathLike[str], dtype: type[np.generic]) -> np.ndarray:
    rows = vecs_rows(path)
    if rows.shape[1] == 1:
        return np.empty((0, 0), dtype=dtype)
    little = "<f4" if dtype is np.float32 else "<i4"
    return np.ascontiguousarray(rows[:, 1:]).view(little).astype(dtype, copy=False)


def read_fvecs(path: str | os.PathLike[str]) -> npt.NDArray[np.float32]:
    """Read an ``.fvecs`` file: per row a little-endian int32 dimension, then float32 values.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        float32 (n, d), C-contiguous; (0, 0) for an empty file.

    Raises
    ------
    IndexFormatError
        The file is truncated or its rows do not all have the same dimension.
    """
    return _read_vecs(path, np.float32)


def read_ivecs(path: str | os.PathLike[str]) -> npt.NDArray[np.int32]:
    """Read an ``.ivecs`` file: per row a little-endian int32 dimension, then int32 values.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        int32 (n, d), C-contiguous; (0, 0) for an empty file.

    Raises
    ------
    IndexFormatError
        The file is truncated or its rows do not all have the same dimension.
    """
    return _read_vecs(path, np.int32)


def _read_vectors(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if suffix == ".fvecs":
        return read_fvecs(path)
    raise InvalidArgumentError(
        f"unknown vector file type {str(path)!r}: expected .npy, .fvecs, .hdf5 or a directory"
    )


# ---------------------------------------------------------------------------- ground truth


def _top_k(scores: np.ndarray, k: int) -> npt.NDArray[np.int64]:
    """Columns of the ``k`` highest scores per row, best first, ties by lower column."""
    n = scores.shape[1]
    if k < n:
        cand = np.sort(np.argpartition(-scores, k - 1, axis=1)[:, :k], axis=1)
    else:
        cand = np.broadcast_to(np.arange(n), scores.shape)
    order = np.argsort(-np.take_along_axis(scores, cand, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(cand, order, axis=1).astype(np.int64)
    if k < n:  # argpartition picks arbitrarily among scores tied with the k-th: redo those
        kth = np.take_along_axis(scores, top[:, -1:], axis=1)
        for r in np.flatnonzero((scores >= kth).sum(axis=1) > k):
            top[r] = np.lexsort((np.arange(n), -scores[r]))[:k]
    return top


def exact_ground_truth(
    base: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> npt.NDArray[np.int64]:
    """Exact top-``k`` rows of ``base`` for each query, by brute force in plain numpy.

    Scores are float64 matrix products over blocks of queries, so memory stays bounded;
    ``"cosine"`` normalises both sides, ``"l2"`` ranks by ``2 q.x - ||x||^2``.

    Parameters
    ----------
    base : numpy.ndarray
        (n, d) real vectors.
    queries : numpy.ndarray
        (nq, d) real vectors.
    k : int
        Neighbours per query (>= 1); at most ``n`` are returned.
    metric : {"ip", "l2", "cosine"}
        Similarity to rank by.

    Returns
    -------
    numpy.ndarray
        int64 (nq, min(k, n)): row indices into ``base``, best first, ties by lower index.

    Raises
    ------
    InvalidArgumentError
        Bad ``k`` or ``metric``, arrays that are not 2-D, differing dimensions, or
        non-finite values.
    """
    metric = check_metric(metric)
    k = _check_positive(k, "k")
    x, q = _matrix(base, "base"), _matrix(queries, "queries")
    if x.shape[1] != q.shape[1]:
        raise InvalidArgumentError(
            f"base has dimension {x.shape[1]} but queries have dimension {q.shape[1]}"
        )
    if not (np.isfinite(x).all() and np.isfinite(q).all()):
        raise InvalidArgumentError("base and queries must be finite (found NaN or infinity)")
    n = x.shape[0]
    k = min(k, n)
    out = np.empty((q.shape[0], k), dtype=np.int64)
    if k == 0:
        return out
    # float64, independent of the library's float32 kernels: near-ties rank by true score
    x, q = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    sq_norms = np.einsum("ij,ij->i", x, x) if metric == "l2" else None
    block = max(1, min(1024, _BLOCK_SCORES // n))
    for a in range(0, q.shape[0], block):
        scores = q[a : a + block] @ x.T
        if sq_norms is not None:  # -(||x||^2 - 2 q.x); ||q||^2 does not change the order
            scores *= 2
            scores -= sq_norms
        out[a : a + block] = _top_k(scores, k)
    return out


# ---------------------------------------------------------------------------- loaders


def _load_dir(root: Traversable, name: str) -> Dataset:
    for required in ("base.npy", "queries.npy"):
        if not (root / required).is_file():
            raise InvalidArgumentError(f"dataset directory {str(root)!r} has no {required}")
    base = _matrix(_npy(root / "base.npy"), "base.npy")
    queries = _matrix(_npy(root / "queries.npy"), "queries.npy")
    gt_file = next((root / f for f in _DIR_GT_FILES if (root / f).is_file()), None)
    base_texts, base_ids = _texts(root, "base_texts.jsonl", base.shape[0])
    query_texts, query_ids = _texts(root, "queries_texts.jsonl", queries.shape[0])
    return Dataset(
        name=name,
        base=base,
        queries=queries,
        metric="ip",
        gt=None if gt_file is None else _npy(gt_file).astype(np.int64),
        base_texts=base_texts,
        query_texts=query_texts,
        base_ids=base_ids,
        query_ids=query_ids,
    )


def load_sample() -> Dataset:
    """Load the bundled sample: real MiniLM embeddings of WordNet glosses.

    5,000 base passages and 200 query passages embedded with all-MiniLM-L6-v2 (unit norm,
    stored as float16, returned upcast to float32), with the exact inner-product top-100 of
    every query and the passage texts. Provenance and license: ``data/minilm_wordnet_5k/
    README.md`` in the package.

    Returns
    -------
    Dataset
        Named ``"minilm_wordnet_5k"``, metric ``"ip"``, ``gt`` int64 (200, 100).
    """
    return _load_dir(resources.files("vecindex_core") / "data" / SAMPLE_NAME, SAMPLE_NAME)


def _load_hdf5(path: Path) -> Dataset:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading ANN-benchmarks .hdf5 files needs h5py: pip install h5py") from e
    with h5py.File(path, "r") as f:
        for key in ("train", "test"):
            if key not in f:
                raise IndexFormatError(f"{str(path)!r} has no {key!r} dataset (ANN-benchmarks)")
        dist = f.attrs.get("distance")
        if isinstance(dist, bytes):
            dist = dist.decode()
        if dist not in _HDF5_METRICS:
            raise InvalidArgumentError(
                f"{str(path)!r}: unsupported distance {dist!r}, expected one of "
                f"{', '.join(map(repr, _HDF5_METRICS))}"
            )
        return Dataset(
            name=path.stem,
            base=_matrix(f["train"][()], "train"),
            queries=_matrix(f["test"][()], "test"),
            metric=_HDF5_METRICS[dist],
            gt=np.asarray(f["neighbors"][()], dtype=np.int64) if "neighbors" in f else None,
        )


def _load_vectors(
    path: Path, queries: str | os.PathLike[str] | None, num_queries: int | None
) -> Dataset:
    base = _matrix(_read_vectors(path), str(path))
    gt = None
    if queries is None:
        hold = num_queries or 100
        if hold >= base.shape[0]:
            raise InvalidArgumentError(
                f"cannot hold out {hold} queries from the {base.shape[0]} rows of {str(path)!r}"
            )
        base, q = base[:-hold], base[-hold:]
    else:
        q = _matrix(_read_vectors(Path(queries)), os.fspath(queries))
        gt_path = path.with_name(f"{path.stem.removesuffix('_base')}_groundtruth.ivecs")
        if path.suffix.lower() == ".fvecs" and gt_path.is_file():
            gt = read_ivecs(gt_path).astype(np.int64)
            fits = gt.shape[0] == q.shape[0] and gt.size > 0
            if not (fits and gt.min() >= 0 and gt.max() < base.shape[0]):
                warnings.warn(f"ignoring {str(gt_path)!r}: it does not fit these queries "
                              "and base; computing the ground truth", stacklevel=3)
                gt = None
    # TEXMEX .fvecs sets (SIFT, GIST, Deep) are Euclidean; embeddings in .npy usually IP.
    metric = "l2" if path.suffix.lower() == ".fvecs" else "ip"
    return Dataset(path.stem, base, q, metric, gt)


def load_dataset(
    source: str | os.PathLike[str],
    *,
    queries: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    num_queries: int | None = None,
    gt_k: int = 100,
) -> Dataset:
    """Load base vectors, queries and exact ground truth from a file, directory or the sample.

    Parameters
    ----------
    source : str or os.PathLike
        ``"sample"`` (the bundled sample), a directory (``base.npy``, ``queries.npy``,
        optional ``gt_ip_100.npy`` / ``queries_gt_ip_100.npy`` and ``*_texts.jsonl``), a
        ``.npy`` or ``.fvecs`` base file, or an ANN-benchmarks ``.hdf5`` file.
    queries : str or os.PathLike, optional
        ``.npy`` or ``.fvecs`` query file for a ``.npy`` / ``.fvecs`` base. Without it the
        last ``num_queries or 100`` rows of the base are held out as queries. A base
        ``X_base.fvecs`` with queries also reads ``X_groundtruth.ivecs`` beside it.
    metric : {"ip", "l2", "cosine"}, optional
        Metric of the ground truth. Defaults to the source's own: ``"ip"`` for the sample,
        directories and ``.npy``, ``"l2"`` for ``.fvecs``, the ``distance`` attribute for
        ``.hdf5``. Stored ground truth for another metric is recomputed.
    num_queries : int, optional
        Keep only the first ``num_queries`` queries (and ground-truth rows).
    gt_k : int, default 100
        Depth of ground truth to compute when the source has none, or has less than
        ``min(gt_k, n)`` columns.

    Returns
    -------
    Dataset
        float32 C-contiguous ``base`` and ``queries``, int64 ``gt``.

    Raises
    ------
    InvalidArgumentError
        A missing path, an unknown file type or distance, or a bad argument.
    IndexFormatError
        A truncated or corrupt file.
    """
    if metric is not None:
        metric = check_metric(metric)
    if num_queries is not None:
        num_queries = _check_positive(num_queries, "num_queries")
    gt_k = _check_positive(gt_k, "gt_k")
    if isinstance(source, str) and source == "sample":
        if queries is not None:
            raise InvalidArgumentError("queries= applies only to a .npy or .fvecs base")
        ds = load_sample()
    else:
        path = Path(source)
        if not path.exists():
            raise InvalidArgumentError(f"dataset {str(path)!r} does not exist")
        is_hdf5 = path.suffix.lower() in (".hdf5", ".h5")
        if queries is not None and (path.is_dir() or is_hdf5):
            raise InvalidArgumentError(
                f"queries= applies only to a .npy or .fvecs base, not {str(path)!r}"
            )
        if path.is_dir():
            ds = _load_dir(path, path.resolve().name)
        elif is_hdf5:
            ds = _load_hdf5(path)
        else:
            ds = _load_vectors(path, queries, num_queries)

    if ds.base.shape[1] != ds.queries.shape[1]:
        raise InvalidArgumentError(
            f"{ds.name}: base has dimension {ds.base.shape[1]} but queries have "
            f"dimension {ds.queries.shape[1]}"
        )
    if ds.gt is not None and ds.gt.shape[0] != ds.queries.shape[0]:
        raise IndexFormatError(
            f"{ds.name}: ground truth has {ds.gt.shape[0]} rows for {ds.queries.shape[0]} queries"
        )
    gt = ds.gt
    if metric is not None and metric != ds.metric:
        gt = None
    if gt is not None and gt.shape[1] < min(gt_k, ds.base.shape[0]):
        gt = None
    nq = ds.queries.shape[0] if num_queries is None else min(num_queries, ds.queries.shape[0])
    queries_kept = ds.queries[:nq]
    final_metric = metric or ds.metric
    return replace(
        ds,
        queries=queries_kept,
        metric=final_metric,
        gt=gt[:nq] if gt is not None else exact_ground_truth(
            ds.base, queries_kept, gt_k, final_metric
        ),
        query_texts=ds.query_texts[:nq] if ds.query_texts is not None else None,
    )
