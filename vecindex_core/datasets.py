"""Datasets for tests, examples and benchmarks: the bundled sample and common file formats.

Formats: the bundled sample (``"sample"``), a directory holding ``base.npy`` and
``queries.npy`` (plus optional ground truth and ``*_texts.jsonl``), a ``.npy`` or ``.fvecs``
base file (queries from ``queries=`` or held out from the end), and ANN-benchmarks HDF5.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import IndexFormatError, InvalidArgumentError
from .validation import check_metric

__all__ = ["Dataset", "exact_ground_truth", "load_dataset", "load_sample", "read_fvecs"]

SAMPLE_NAME = "minilm_wordnet_5k"
_HDF5_METRICS = {"angular": "cosine", "euclidean": "l2", "dot": "ip", "ip": "ip"}


@dataclass(frozen=True)
class Dataset:
    """Vectors, queries and exact ground truth.

    Attributes
    ----------
    name : str
    base : float32 (n, d), C-contiguous
    queries : float32 (nq, d), C-contiguous
    metric : {"cosine", "ip", "l2"}
        Metric the ground truth was computed for.
    gt : int64 (nq, k_gt) or None
        Row indices into ``base``, best first.
    base_texts, query_texts : list of str or None
    """

    name: str
    base: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]
    metric: str
    gt: npt.NDArray[np.int64] | None
    base_texts: list[str] | None = None
    query_texts: list[str] | None = None


def _f32(a: np.ndarray) -> npt.NDArray[np.float32]:
    return np.ascontiguousarray(a, dtype=np.float32)


def _texts(path: Path) -> list[str] | None:
    if not path.exists():
        return None
    return [json.loads(line)["text"] for line in path.read_text().splitlines() if line]


def load_sample() -> Dataset:
    """The bundled sample: 5,000 MiniLM embeddings of WordNet glosses, 200 queries, top-100."""
    root = resources.files("vecindex_core") / "data" / SAMPLE_NAME
    with resources.as_file(root) as path:
        return _load_dir(Path(path), SAMPLE_NAME)


def _load_dir(path: Path, name: str) -> Dataset:
    gt_file = next((path / f for f in ("gt_ip_100.npy", "queries_gt_ip_100.npy")
                    if (path / f).exists()), None)
    return Dataset(
        name=name,
        base=_f32(np.load(path / "base.npy")),
        queries=_f32(np.load(path / "queries.npy")),
        metric="ip",
        gt=None if gt_file is None else np.load(gt_file).astype(np.int64),
        base_texts=_texts(path / "base_texts.jsonl"),
        query_texts=_texts(path / "queries_texts.jsonl"),
    )


def read_fvecs(path: str | os.PathLike[str], dtype: str = "<f4") -> np.ndarray:
    """Read an ``.fvecs`` (or, with ``dtype='<i4'``, ``.ivecs``) file: int32 dim + row."""
    raw = np.fromfile(path, dtype="<i4")
    if raw.size == 0:
        return np.empty((0, 0), dtype=dtype)
    d = int(raw[0])
    if d <= 0 or raw.size % (d + 1):
        raise IndexFormatError(f"vector file {os.fspath(path)!r} is truncated or not d-uniform")
    rows = raw.reshape(-1, d + 1)
    if (rows[:, 0] != d).any():
        raise IndexFormatError(f"vector file {os.fspath(path)!r} has rows of varying dimension")
    return np.ascontiguousarray(rows[:, 1:]).view(dtype)


def _read_vectors(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix in (".fvecs", ".bvecs"):
        return read_fvecs(path)
    raise InvalidArgumentError(f"unknown vector file type {str(path)!r}: expected .npy or .fvecs")


def exact_ground_truth(
    base: np.ndarray, queries: np.ndarray, k: int, metric: str
) -> npt.NDArray[np.int64]:
    """Exact top-``k`` rows of ``base`` for each query (best first, ties by lower row).

    Plain numpy in float64, independent of the library's own kernels, in blocks of 256
    queries so memory stays bounded.
    """
    check_metric(metric)
    x = np.asarray(base, dtype=np.float64)
    q = np.asarray(queries, dtype=np.float64)
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    xn = np.einsum("ij,ij->i", x, x)
    k = min(k, x.shape[0])
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for a in range(0, q.shape[0], 256):
        s = q[a : a + 256] @ x.T
        if metric == "l2":
            s = 2 * s - xn[None, :]
        rows = np.broadcast_to(np.arange(x.shape[0]), s.shape)
        out[a : a + 256] = np.lexsort((rows, -s), axis=-1)[:, :k]
    return out


def load_dataset(
    source: str | os.PathLike[str],
    *,
    queries: str | os.PathLike[str] | None = None,
    metric: str | None = None,
    num_queries: int | None = None,
    gt_k: int = 100,
) -> Dataset:
    """Load vectors, queries and ground truth from ``source``.

    Parameters
    ----------
    source : "sample", a directory, a ``.npy``/``.fvecs`` file, or an ``.hdf5`` file
    queries : path, optional
        Query file for a ``.npy``/``.fvecs`` base; otherwise the last ``num_queries or 100``
        rows of the base are held out as queries.
    metric : {"cosine", "ip", "l2"}, optional
        Metric of the ground truth; defaults to the file's own, else ``"ip"``.
    num_queries : int, optional
        Keep only the first queries.
    gt_k : int
        Depth of ground truth computed when the source has none.
    """
    if os.fspath(source) == "sample":
        ds = load_sample()
    else:
        path = Path(source)
        if not path.exists():
            raise InvalidArgumentError(f"dataset {str(path)!r} does not exist")
        if path.is_dir():
            ds = _load_dir(path, path.name)
        elif path.suffix in (".hdf5", ".h5"):
            import h5py

            with h5py.File(path, "r") as f:
                dist = str(f.attrs.get("distance", "euclidean"))
                ds = Dataset(
                    path.stem, _f32(f["train"][:]), _f32(f["test"][:]),
                    _HDF5_METRICS.get(dist, "l2"),
                    np.asarray(f["neighbors"][:], dtype=np.int64) if "neighbors" in f else None,
                )
        else:
            base = _read_vectors(path)
            if queries is not None:
                q = _read_vectors(Path(queries))
            else:
                hold = num_queries or 100
                base, q = base[:-hold], base[-hold:]
            ds = Dataset(path.stem, _f32(base), _f32(q), metric or "ip", None)
    if metric is not None and check_metric(metric) != ds.metric:
        ds = Dataset(ds.name, ds.base, ds.queries, metric, None, ds.base_texts, ds.query_texts)
    nq = ds.queries.shape[0] if num_queries is None else min(num_queries, ds.queries.shape[0])
    gt = ds.gt[:nq] if ds.gt is not None else None
    if gt is None:
        gt = exact_ground_truth(ds.base, ds.queries[:nq], gt_k, ds.metric)
    qt = ds.query_texts[:nq] if ds.query_texts is not None else None
    return Dataset(ds.name, ds.base, ds.queries[:nq], ds.metric, gt, ds.base_texts, qt)
