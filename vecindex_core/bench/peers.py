"""Search engines the benchmark runner measures side by side: our indexes and the peers.

Every engine has the same small surface, :class:`Engine`: ``build(base)`` (train if needed,
then add every row), ``search(q, k)`` returning row numbers into ``base`` as an int64
``(nq, k)`` array (``-1`` pads), ``search_one(q, k)`` for the single-query latency loop,
and ``memory_bytes()`` when the engine can report its own memory (``None`` otherwise, in
which case the runner reports the process RSS delta of the build).

The peers are optional imports. :func:`make_peer` imports a peer's library only when it is
asked for, and raises :class:`PeerUnavailable` with the reason (``"faiss is not installed:
..."``) when it cannot be used; the runner turns that into a skipped entry.

Peers
-----
``numpy``
    A plain blocked ``q @ x.T`` in float32 followed by ``argpartition`` and ``argsort``:
    the baseline any user could write in five lines.
``faiss``
    ``faiss.IndexFlatIP`` for ``ip``, ``faiss.IndexFlatL2`` for ``l2``, and for ``cosine``
    ``IndexFlatIP`` over L2-normalised vectors (queries are normalised inside the timed
    search, as ours are).
``hnswlib``
    ``hnswlib.BFIndex`` (its exact brute-force index) in space ``ip``, ``l2`` or
    ``cosine``.

``turbovec.IdMapIndex`` is used only by the id-map micro-benchmark
(:func:`vecindex_core.bench.runner.bench_idmap_ops`), not here.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError
from ..types import FloatMatrix, Metric

__all__ = [
    "PEERS",
    "Engine",
    "NumpyPeer",
    "OurIndex",
    "PeerUnavailable",
    "make_peer",
    "peer_versions",
]

RowArray = npt.NDArray[np.int64]


class PeerUnavailable(Exception):
    """A peer cannot be used here (not installed, or it failed to import); ``str`` says why."""


class Engine(abc.ABC):
    """One thing the runner measures: an index of ours or a peer library's index.

    Attributes
    ----------
    name : str
        Display name used in tables and plots (``"flat"``, ``"faiss.IndexFlatIP"``...).
    key : str
        Short name: the spec for our indexes, the peer name (``"faiss"``) for peers.
    is_peer : bool
        Whether this is a peer library rather than one of our indexes.
    """

    name: str
    key: str
    is_peer: bool = True

    def __init__(self, dim: int, metric: Metric) -> None:
        self.dim = dim
        self.metric = metric

    @abc.abstractmethod
    def build(self, base: FloatMatrix) -> None:
        """Train (when the engine needs it) and add every row of ``base``."""

    @abc.abstractmethod
    def search(self, q: FloatMatrix, k: int) -> RowArray:
        """Top-``k`` rows of ``base`` for every query, int64 ``(nq, k)``, ``-1`` padded."""

    def search_one(self, q: FloatMatrix, k: int) -> object:
        """Search one query given as a ``(1, dim)`` matrix; the result is not inspected."""
        return self.search(q, k)

    def set_threads(self, n: int) -> None:  # noqa: B027 - optional hook
        """Use ``n`` threads for build and search where the library takes a per-call count."""

    def memory_bytes(self) -> int | None:
        """Bytes held by the index as the library reports them, or None if it cannot."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Drop the index so its memory can be reclaimed before the next entry."""


def _normalized(x: FloatMatrix) -> FloatMatrix:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class OurIndex(Engine):
    """A vecindex index created with :func:`vecindex_core.create` from a spec string.

    Rows get the ids ``0..n-1`` (the id counter's default), so the uint64 ids returned by
    search are row numbers; ``MISSING`` becomes ``-1``. ``memory_bytes()`` is the
    :meth:`~vecindex_core.IdMapIndex.memory_bytes` of the whole id map (index, id table and
    slot-ordered ids).
    """

    is_peer = False

    def __init__(self, spec: str, dim: int, metric: Metric) -> None:
        super().__init__(dim, metric)
        from ..api import create

        self.index: Any = create(spec, dim=dim, metric=metric)
        self.name = self.index.spec
        self.key = spec

    def build(self, base: FloatMatrix) -> None:
        self.index.add(base)

    def search(self, q: FloatMatrix, k: int) -> RowArray:
        ids = self.index.search(q, k).ids
        return ids.astype(np.int64)  # MISSING (2**64-1) wraps to -1

    def search_one(self, q: FloatMatrix, k: int) -> object:
        return self.index.search(q[0], k)

    def memory_bytes(self) -> int | None:
        return int(self.index.memory_bytes())

    def close(self) -> None:
        self.index = None


class NumpyPeer(Engine):
    """Plain numpy exact search: blocked ``q @ x.T``, ``argpartition``, then ``argsort``.

    Queries are processed in blocks of ``block`` rows so the score matrix stays bounded
    (``block * n`` float32). ``l2`` scores are ``2 q.x - |x|^2`` (the query norm does not
    change the order).
    """

    key = "numpy"

    def __init__(self, dim: int, metric: Metric, *, block: int = 256) -> None:
        super().__init__(dim, metric)
        self.name = "numpy (q @ x.T)"
        self.block = block
        self._x: FloatMatrix = np.empty((0, dim), dtype=np.float32)
        self._sq: npt.NDArray[np.float32] | None = None

    def build(self, base: FloatMatrix) -> None:
        x = _normalized(base) if self.metric == "cosine" else np.array(base, dtype=np.float32)
        self._x = x
        if self.metric == "l2":
            self._sq = np.einsum("ij,ij->i", x, x)

    def search(self, q: FloatMatrix, k: int) -> RowArray:
        x = self._x
        if self.metric == "cosine":
            q = _normalized(q)
        k = min(k, x.shape[0])
        out = np.empty((q.shape[0], k), dtype=np.int64)
        for s in range(0, q.shape[0], self.block):
            scores = q[s : s + self.block] @ x.T
            if self._sq is not None:
                scores *= 2
                scores -= self._sq
            if k < x.shape[0]:
                part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                part = np.broadcast_to(np.arange(x.shape[0]), scores.shape)
            top = np.take_along_axis(scores, part, axis=1)
            order = np.argsort(-top, axis=1, kind="stable")
            out[s : s + self.block] = np.take_along_axis(part, order, axis=1)
        return out

    def memory_bytes(self) -> int | None:
        return int(self._x.nbytes + (0 if self._sq is None else self._sq.nbytes))

    def close(self) -> None:
        self._x = np.empty((0, self.dim), dtype=np.float32)
        self._sq = None


class FaissPeer(Engine):
    """``faiss.IndexFlatIP`` / ``faiss.IndexFlatL2``; cosine is normalised vectors + IP."""

    key = "faiss"

    def __init__(self, dim: int, metric: Metric) -> None:
        super().__init__(dim, metric)
        try:
            import faiss
        except Exception as e:  # ImportError, or a broken binary wheel
            raise PeerUnavailable(f"faiss is not installed or failed to import: {e}") from e
        self._faiss = faiss
        cls = faiss.IndexFlatL2 if metric == "l2" else faiss.IndexFlatIP
        self.name = f"faiss.{cls.__name__}"
        self.index: Any = cls(dim)

    def build(self, base: FloatMatrix) -> None:
        self.index.add(_normalized(base) if self.metric == "cosine" else base)

    def search(self, q: FloatMatrix, k: int) -> RowArray:
        if self.metric == "cosine":
            q = _normalized(q)
        _, rows = self.index.search(q, k)
        return np.asarray(rows, dtype=np.int64)

    def set_threads(self, n: int) -> None:
        self._faiss.omp_set_num_threads(n)

    def close(self) -> None:
        self.index = None


class HnswlibPeer(Engine):
    """``hnswlib.BFIndex`` (exact brute force) in space ``ip``, ``l2`` or ``cosine``."""

    key = "hnswlib"

    def __init__(self, dim: int, metric: Metric) -> None:
        super().__init__(dim, metric)
        try:
            import hnswlib
        except Exception as e:
            raise PeerUnavailable(f"hnswlib is not installed or failed to import: {e}") from e
        self._hnswlib = hnswlib
        self.name = f"hnswlib.BFIndex({metric})"
        self.index: Any = None
        self._threads = 1

    def build(self, base: FloatMatrix) -> None:
        self.index = self._hnswlib.BFIndex(space=self.metric, dim=self.dim)
        self.index.init_index(max_elements=max(base.shape[0], 1))
        self.index.add_items(base, np.arange(base.shape[0]))

    def search(self, q: FloatMatrix, k: int) -> RowArray:
        k = min(k, self.index.get_current_count())
        rows, _ = self.index.knn_query(q, k=k, num_threads=self._threads)
        return np.asarray(rows, dtype=np.int64)

    def set_threads(self, n: int) -> None:
        self._threads = n

    def close(self) -> None:
        self.index = None


#: Peer name -> engine class. The one list of search peers (CLI choices, errors, docs).
PEERS: dict[str, Callable[[int, Metric], Engine]] = {
    "numpy": NumpyPeer,
    "faiss": FaissPeer,
    "hnswlib": HnswlibPeer,
}


def make_peer(name: str, dim: int, metric: Metric) -> Engine:
    """Create the peer ``name`` for ``dim``-dimensional vectors under ``metric``.

    Raises
    ------
    InvalidArgumentError
        ``name`` is not a known peer; the message lists the valid ones.
    PeerUnavailable
        The peer's library is not installed or fails to import.
    """
    try:
        factory = PEERS[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown peer {name!r}; valid peers: {', '.join(PEERS)}"
        ) from None
    return factory(dim, metric)


def peer_versions() -> dict[str, str | None]:
    """Installed versions of the peer libraries (None when absent), without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("numpy", "faiss-cpu", "faiss-gpu", "faiss", "hnswlib", "turbovec"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out
