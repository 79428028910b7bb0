"""Product quantization: the :class:`ProductQuantizer` codec, the ``pq`` kind and ``ivf_pq``.

A vector is split into ``m`` sub-vectors (``dim`` is zero-padded to a multiple of ``m``);
each is replaced by the index of its nearest centroid in that sub-space's codebook of
``2**nbits`` centroids (k-means, :class:`~vecindex_core.kmeans.KMeans`). Search is
asymmetric: the query stays float32 and one lookup table per query holds its score against
every sub-centroid, so a code is scored by ``m`` table lookups
(:func:`~vecindex_core._kernels.codes.lut_topk`, tables merged per code byte).

Codes of ``nbits`` in {1, 2, 4, 8} are packed ``8 / nbits`` to a byte; other widths
(3, 5, 6, 7) are stored one per byte.

Flat ``pq`` with ``nbits`` in {1, 2, 4} keeps its codes in the fast-scan layout
(:class:`~vecindex_core._kernels.blocked.BlockedCodes`, as flat ``turboquant``) and searches
them with the uint8-table fast scan: a shortlist of ``max(2 k, k + 10)`` rows by the
quantized per sub-code tables (:meth:`ProductQuantizer.nibble_tables`), rescored by the
float tables (:func:`~vecindex_core._kernels.blocked.fast_topk`). Files hold row-major codes
whatever the layout in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._kernels.blocked import BlockedCodes, Tables, fast_topk
from ._kernels.codes import (
    DECODE_BLOCK,
    byte_luts,
    decoded_topk,
    lut_topk,
    pack_codes,
    prefer_decoded,
    unpack_codes,
)
from ._kernels.fastscan import FAST_SCAN_BITS, BooksT, fast_scan_fits, pq_luts, pq_tables
from ._kernels.hamming import rescore_topk
from ._kernels.topk import finalize_heaps, init_heaps, sq_norms
from ._threads import one_blas_thread
from .base import Moves, VectorIndex
from .errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidParameterError,
    NotSupportedError,
)
from .hashing import KEEP_VECTORS, RERANK, SEED, _check_array
from .ivf import (
    BY_RESIDUAL,
    CALIBRATE,
    IVF_PARAMS,
    IVF_SEARCH,
    LUT_BYTES,
    CodedIVFIndex,
    Result,
)
from .registry import Param, register
from .types import FloatMatrix, Metric, SlotArray

__all__ = ["IVFPQIndex", "PQIndex", "ProductQuantizer"]

M = Param("m", int, 0, "sub-quantizers (code bytes at nbits=8); 0: dim / 8", low=0, high=4096)
NBITS = Param("nbits", int, 8, "bits per sub-quantizer code (2**nbits centroids each)",
              low=1, high=8)
PQ_NITER = Param("pq_niter", int, 25, "k-means iterations of each sub-quantizer (faiss: 25)",
                 low=1, high=1000)


def container_bits(nbits: int) -> int:
    """Stored bits per code: ``nbits`` when it divides 8, else 8 (one code per byte)."""
    return nbits if nbits in (1, 2, 4, 8) else 8


class ProductQuantizer:
    """Product quantizer codec (no ids, no storage): train, encode, decode, lookup tables.

    Parameters
    ----------
    dim : int
    m : int
        Number of sub-quantizers, ``1 <= m <= dim``.
    nbits : int
        Bits per code, 1..8.
    niter, seed : int
        k-means iterations and seed (sub-quantizer ``j`` uses ``seed + j``).

    Attributes
    ----------
    codebooks_ : float32 (m, 2**nbits, dsub) or None before :meth:`train`
        ``dsub = ceil(dim / m)``; the zero padding of the last sub-spaces is part of it.
    """

    def __init__(self, dim: int, m: int, nbits: int, *, niter: int = 25, seed: int = 0) -> None:
        if not 1 <= m <= dim:
            raise InvalidParameterError(f"pq: m={m} must be between 1 and dim={dim}")
        self.dim, self.m, self.nbits, self.niter, self.seed = dim, m, nbits, niter, seed
        self.dsub = -(-dim // m)
        self.bits = container_bits(nbits)
        self.code_bytes = -(-m * self.bits // 8)
        self.codebooks_ = None

    @property
    def codebooks_(self) -> npt.NDArray[np.float32] | None:
        """float32 ``(m, ksub, dsub)`` sub-quantizer centroids (None before training).
        Assigning them also keeps the copy the table kernels read, transposed to
        ``(m, dsub, ksub)`` (assign a new array rather than writing into this one)."""
        return self._codebooks

    @codebooks_.setter
    def codebooks_(self, books: npt.NDArray[np.float32] | None) -> None:
        self._codebooks = books
        self._books_t = None if books is None else BooksT(
            np.ascontiguousarray(np.asarray(books).transpose(0, 2, 1), dtype=np.float32))

    @property
    def ksub(self) -> int:
        """Centroids per sub-quantizer."""
        return 1 << self.nbits

    def _split(self, x: FloatMatrix) -> npt.NDArray[np.float32]:
        """``x`` zero-padded and viewed as (n, m, dsub)."""
        pad = self.m * self.dsub - self.dim
        if pad:
            x = np.concatenate([x, np.zeros((x.shape[0], pad), np.float32)], axis=1)
        return np.ascontiguousarray(x, dtype=np.float32).reshape(-1, self.m, self.dsub)

    def train(self, x: FloatMatrix) -> None:
        """Learn the ``m`` codebooks from float32 (n, dim) vectors, ``n >= 2**nbits``."""
        from .kmeans import KMeans

        sub = self._split(x)
        books = np.zeros((self.m, self.ksub, self.dsub), dtype=np.float32)
        with one_blas_thread():
            for j in range(self.m):
                km = KMeans(self.ksub, metric="l2", n_iter=self.niter, seed=self.seed + j,
                            progress=False)
                books[j] = km.fit(np.ascontiguousarray(sub[:, j])).cluster_centers_
        self.codebooks_ = books

    def _books(self) -> npt.NDArray[np.float32]:
        if self.codebooks_ is None:
            raise InvalidArgumentError("the product quantizer is not trained")
        return self.codebooks_

    def _transposed(self) -> BooksT:
        """The codebooks transposed for the table kernels (made when they are assigned: a
        copy a search cost ~2 us)."""
        self._books()  # trained
        assert self._books_t is not None
        return self._books_t

    def encode(self, x: FloatMatrix) -> npt.NDArray[np.uint8]:
        """Packed codes, uint8 (n, code_bytes): the nearest sub-centroid per sub-vector."""
        books = self._books()
        sub = self._split(x)
        codes = np.empty((x.shape[0], self.m), dtype=np.uint8)
        bsq = np.einsum("jcd,jcd->jc", books, books)
        for j in range(self.m):
            # argmin |s - c|^2 = argmax 2 s.c - |c|^2
            codes[:, j] = np.argmax(2 * (sub[:, j] @ books[j].T) - bsq[j], axis=1)
        return pack_codes(codes, self.bits)

    def decode(self, packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """Reconstructions float32 (n, dim) of packed codes."""
        books = self._books()
        codes = unpack_codes(packed, self.bits, self.m)
        rec = books[np.arange(self.m), codes]  # (n, m, dsub)
        return np.ascontiguousarray(rec.reshape(len(packed), -1)[:, : self.dim])

    def _sub_tables(self, q: FloatMatrix, *, l2: bool) -> npt.NDArray[np.float32]:
        """Per sub-quantizer tables float32 (nq, m, 2**nbits).

        ``T[q, j, c] = q_j . c_jc`` (``q_j`` the query's ``j``-th sub-vector, ``c_jc`` the
        ``c``-th centroid of sub-quantizer ``j``) or, with ``l2``, ``-|q_j - c_jc|^2``; a
        code's score is the sum over ``j`` of ``T[q, j, code_j]``. Both public layouts
        (:meth:`tables`, :meth:`nibble_tables`) are sums of these entries, summed in float32
        in coordinate order (:func:`~._kernels.fastscan.pq_tables`). Raises
        :class:`DimensionMismatchError` unless ``q`` is ``(nq, dim)``.
        """
        return pq_tables(self._queries(q), self._books(), l2=l2)

    def tables(self, q: FloatMatrix, *, l2: bool) -> npt.NDArray[np.float32]:
        """Per-query byte tables float32 (nq, code_bytes, 256) for ``lut_topk``.

        Entry sums are ``q . x_hat`` or, with ``l2``, ``-|q - x_hat|^2`` (the asymmetric
        distance, negated).
        """
        t = self._sub_tables(q, l2=l2)
        full = np.zeros((q.shape[0], self.m, 1 << self.bits), dtype=np.float32)
        full[:, :, : self.ksub] = t
        return byte_luts(full, self.bits)

    def nibble_tables(self, q: FloatMatrix, *, l2: bool) -> npt.NDArray[np.float32]:
        """Per sub-code (nibble) tables float32 (nq, 2 * code_bytes, 16) for the fast scan.

        Nibble ``t`` of a packed code (the low half of byte ``t // 2`` for even ``t``, the
        high half for odd ``t``) holds one 4-bit code (sub-quantizer ``t``), two 2-bit codes
        (``2t`` in its bits 0-1, ``2t + 1`` in bits 2-3) or four 1-bit codes (``4t .. 4t + 3``
        in bits 0..3). With ``S`` the per sub-quantizer tables (``S[j, c] = q_j . c_jc`` or
        ``-|q_j - c_jc|^2``, ``q_j`` the query's ``j``-th sub-vector, ``c_jc`` the ``c``-th
        centroid of sub-quantizer ``j``; 0 past ``m``), in float32 and in this order::

            4-bit: T[t, c] = S[t, c]
            2-bit: T[t, c] = S[2t, c & 3] + S[2t + 1, c >> 2]
            1-bit: T[t, c] = ((S[4t, c & 1] + S[4t + 1, (c >> 1) & 1])
                              + S[4t + 2, (c >> 2) & 1]) + S[4t + 3, c >> 3]

        so a code's score is the sum over its nibbles of ``T[t, nibble_t]``: the same
        (up to float rounding) as the sum of its :meth:`tables` entries.

        Parameters
        ----------
        q : float32 (nq, dim)
        l2 : bool
            Entries sum to ``-|q - x_hat|^2`` instead of ``q . x_hat``.

        Raises
        ------
        NotSupportedError
            Container bits (:func:`container_bits`) other than 1, 2 or 4.
        DimensionMismatchError
            ``q`` not of shape (nq, dim).
        InvalidArgumentError
            Before :meth:`train`.
        """
        self._require_nibbles()
        return pq_tables(self._queries(q), self._transposed(), l2=l2, bits=self.bits)

    def nibble_luts(self, q: FloatMatrix, *, l2: bool) -> Tables:
        """:meth:`nibble_tables` and their :func:`~._kernels.fastscan.quantize_luts`,
        ``(tables, luts, bias, delta)``, in one native call when the kernels are built."""
        self._require_nibbles()
        return pq_luts(self._queries(q), self._transposed(), l2=l2, bits=self.bits)

    def _require_nibbles(self) -> None:
        if self.bits not in FAST_SCAN_BITS:
            raise NotSupportedError(
                f"nibble tables need codes of 1, 2 or 4 bits, got nbits={self.nbits}")

    def _queries(self, q: FloatMatrix) -> npt.NDArray[np.float32]:
        """``q`` as float32, checked to be ``(nq, dim)``."""
        q = np.asarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"q must be (nq, {self.dim}) for this product quantizer, got shape {q.shape}")
        return q

    def memory_bytes(self) -> int:
        """Bytes of the codebooks and of their transposed copy."""
        if self.codebooks_ is None or self._books_t is None:
            return 0
        return int(self.codebooks_.nbytes + self._books_t.books_t.nbytes)


def _make_pq(index: VectorIndex) -> ProductQuantizer:
    """The codec an index's ``m``, ``nbits``, ``pq_niter`` and ``seed`` describe."""
    p = index.params
    return ProductQuantizer(index.dim, int(p["m"]) or max(1, index.dim // 8), int(p["nbits"]),
                            niter=int(p["pq_niter"]), seed=int(p["seed"]))


@register(
    "pq",
    params=[M, NBITS, PQ_NITER, SEED, KEEP_VECTORS,
            Param("train_size", int, 0,
                  "vectors gathered before automatic training (and the fewest train() "
                  "accepts); 0: 30 x 2**nbits", low=0, high=1 << 30)],
    search_params=[RERANK],
)
class PQIndex(VectorIndex):
    """Product quantization with asymmetric distance (faiss ``IndexPQ``).

    Every row is scored from its code (``m`` table lookups; tables merged so one lookup
    scores a whole code byte). ``l2`` uses the asymmetric squared distance itself;
    ``cosine``/``ip`` the inner product with the reconstruction. With ``keep_vectors``,
    ``params.rerank = r`` rescores the ``r`` best codes exactly, and a mask allowing few
    rows is searched exactly.

    Routes: ``nbits`` in {1, 2, 4} (:attr:`fast_scan`) keeps the codes in the blocked
    fast-scan layout and searches them with :func:`~vecindex_core._kernels.blocked.fast_topk`
    (uint8 per sub-code tables for a shortlist, rescored with the float tables
    :meth:`ProductQuantizer.nibble_tables`; a mask allowing under 1/8 of the rows gathers
    them first); other widths keep row-major codes, scanned with float byte tables (small
    batches) or BLAS over decoded blocks (:meth:`_float_search`).

    Memory: ``ntotal x code_bytes`` (``code_bytes = ceil(m * bits / 8)``; the blocked
    layout holds whole blocks of 32 rows plus the row-major last ``ntotal % 32``, and spare
    capacity after growth) plus the ``m x 2**nbits x ceil(dim / m)`` float32 codebooks (and
    the originals when kept).
    """

    def __init__(self, dim: int, metric: Metric = "cosine", **params: Any) -> None:
        super().__init__(dim, metric, **params)
        self._check_rerank(self.search_defaults)
        self.pq = _make_pq(self)
        # row-major codes, or (fast scan) the blocked store; the other stays empty
        self._codes = np.empty((0, self.pq.code_bytes), dtype=np.uint8)
        self._store = BlockedCodes(self.pq.code_bytes)
        self._vectors = np.empty((0, self.dim), dtype=np.float32)
        self._n = 0

    @property
    def ntotal(self) -> int:
        return self._n

    @property
    def is_trained(self) -> bool:
        return self.pq.codebooks_ is not None

    @property
    def min_train_size(self) -> int:
        return max(int(self.params["train_size"]) or 30 * self.pq.ksub, self.pq.ksub)

    @property
    def keeps_vectors(self) -> bool:
        return bool(self.params["keep_vectors"])

    @property
    def fast_scan(self) -> bool:
        """Whether codes are kept in the blocked layout and searched by the uint8 fast scan
        (container bits in :data:`FAST_SCAN_BITS`, i.e. ``nbits`` 1, 2 or 4)."""
        return fast_scan_fits(self.pq.bits, self.pq.code_bytes)

    @property
    def codes(self) -> npt.NDArray[np.uint8]:
        """Read-only packed codes, uint8 (ntotal, code_bytes), row-major (a view; a
        converted copy when stored blocked)."""
        view = self._store.to_rows() if self.fast_scan else self._codes[: self._n]
        view.flags.writeable = False
        return view

    def memory_bytes(self) -> int:
        return int(self._codes.nbytes + self._store.memory_bytes() + self._vectors.nbytes
                   + self.pq.memory_bytes())

    def _train(self, x: FloatMatrix) -> None:
        if self._n:
            raise InvalidArgumentError(
                f"{self.spec} holds {self._n} rows encoded with its current model; train an "
                "empty index (or remove the rows first)"
            )
        self.pq.train(x)

    def _add(self, x: FloatMatrix) -> None:
        codes = self.pq.encode(x)
        n0, n1 = self._n, self._n + x.shape[0]
        if self.fast_scan:
            self._store.append(codes)
        else:
            self._codes = _grown(self._codes, n0, n1)
            self._codes[n0:n1] = codes
        if self.keeps_vectors:
            self._vectors = _grown(self._vectors, n0, n1)
            self._vectors[n0:n1] = x
        self._n = n1

    def _remove(self, slots: SlotArray, moves: Moves) -> None:
        if self.fast_scan:
            self._store.compact(moves.src, moves.dst, self._n - slots.size)
        else:
            self._codes[moves.dst] = self._codes[moves.src]
        if self.keeps_vectors:
            self._vectors[moves.dst] = self._vectors[moves.src]
        self._n -= slots.size

    def _get_vectors(self, slots: SlotArray) -> FloatMatrix:
        return self._vectors[slots]

    def _search(
        self, q: FloatMatrix, k: int, params: Mapping[str, Any],
        mask: npt.NDArray[np.bool_] | None,
    ) -> Result:
        rerank = self._check_rerank(params)
        l2 = self.metric == "l2"
        subset = self._exact_route(mask)
        if subset is not None:
            return self._exact_subset(q, k, subset)
        scores, slots, counts = self._code_search(q, max(k, rerank), mask)
        if rerank:
            return rescore_topk(q, self._vectors, slots, k, l2=l2)
        return scores[:, :k], slots[:, :k], np.minimum(counts, k)

    def _code_search(self, q: FloatMatrix, k: int, mask: npt.NDArray[np.bool_] | None) -> Result:
        """Top-``k`` by the asymmetric score: the fast scan of the blocked codes, else
        :meth:`_float_search` of the row-major ones."""
        if not self.fast_scan:
            return self._float_search(q, k, mask, self._codes[: self._n])
        l2 = self.metric == "l2"

        def tables(a: int, b: int) -> Tables:
            return self.pq.nibble_luts(q[a:b], l2=l2)

        return fast_topk(self._store, tables, q.shape[0], k, mask=mask)

    def _float_search(self, q: FloatMatrix, k: int, mask: npt.NDArray[np.bool_] | None,
                      codes: npt.NDArray[np.uint8]) -> Result:
        """Top-``k`` of row-major ``codes`` (uint8 (n, code_bytes)) by the asymmetric score
        in float: byte-table scans for small batches, BLAS over decoded blocks for large
        ones (:func:`~._kernels.codes.prefer_decoded`)."""
        l2, nq, n = self.metric == "l2", q.shape[0], codes.shape[0]
        if prefer_decoded(nq, self.pq.code_bytes, self.dim):
            xn = None
            if l2:  # -|q - x_hat|^2 = -(|q|^2 + |x_hat|^2 - 2 q . x_hat)
                xn = np.concatenate([sq_norms(self.pq.decode(codes[a : a + DECODE_BLOCK]))
                                     for a in range(0, n, DECODE_BLOCK)])
            return decoded_topk(q, lambda a, b: self.pq.decode(codes[a:b]), n, k,
                                sq_norms=xn, q_sq_norms=sq_norms(q) if l2 else None, mask=mask)
        hs, hi = init_heaps(nq, k)
        chunk = max(1, LUT_BYTES // (self.pq.code_bytes * 256 * 4))
        for c0 in range(0, nq, chunk):
            c1 = min(c0 + chunk, nq)
            lut_topk(self.pq.tables(q[c0:c1], l2=l2), codes, hs[c0:c1], hi[c0:c1], mask=mask)
        return finalize_heaps(hs, hi)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {"codes": self.codes}
        if self.pq.codebooks_ is not None:
            arrays["codebooks"] = self.pq.codebooks_
        if self.keeps_vectors:
            arrays["vectors"] = self._vectors[: self._n]
        return {"trained": self.is_trained}, arrays

    def _set_state(self, state: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
        codes = arrays.get("codes")
        _check_array("codes", codes, np.uint8, (None, self.pq.code_bytes))
        assert codes is not None
        n = codes.shape[0]
        if state.get("trained"):
            _set_codebooks(self.pq, arrays)
        elif n:
            from .errors import IndexFormatError

            raise IndexFormatError(f"pq index holds {n} codes but no codebooks")
        if self.keeps_vectors:
            _check_array("vectors", arrays.get("vectors"), np.float32, (n, self.dim))
            self._vectors = np.array(arrays["vectors"])
        if self.fast_scan:
            self._store = BlockedCodes.from_rows(codes)
        else:
            self._codes = np.array(codes)
        self._n = n


def _grown(a: np.ndarray, n0: int, n1: int) -> np.ndarray:
    """``a`` (rows ``:n0`` in use) with room for ``n1`` rows: itself, or a copy of its used
    rows in at least twice the room (64 rows at least)."""
    if n1 <= a.shape[0]:
        return a
    grown = np.empty((max(n1, 2 * a.shape[0], 64), *a.shape[1:]), dtype=a.dtype)
    grown[:n0] = a[:n0]
    return grown


def _set_codebooks(pq: ProductQuantizer, arrays: Mapping[str, np.ndarray]) -> None:
    _check_array("codebooks", arrays.get("codebooks"), np.float32, (pq.m, pq.ksub, pq.dsub))
    pq.codebooks_ = np.array(arrays["codebooks"])


@register(
    "ivf_pq",
    params=[*IVF_PARAMS, M, NBITS, PQ_NITER, BY_RESIDUAL, KEEP_VECTORS, CALIBRATE],
    search_params=[*IVF_SEARCH, RERANK],
)
class IVFPQIndex(CodedIVFIndex):
    """IVF with product-quantized codes in the lists (faiss ``IndexIVFPQ``).

    The codec is a :class:`ProductQuantizer` trained on the residuals (``by_residual``, the
    default) or the vectors; see :class:`~vecindex_core.ivf.CodedIVFIndex` for the scores,
    ``rerank`` and ``calibrate``.

    Memory: ``ntotal x code_bytes`` codes (``l2`` adds a float32 norm), 8 bytes a row of
    list bookkeeping, the centroids and the codebooks.
    """

    def _setup(self) -> None:
        super()._setup()
        self.pq = _make_pq(self)

    @property
    def code_bytes(self) -> int:
        return self.pq.code_bytes

    @property
    def code_bits(self) -> int:
        return self.pq.bits

    def _nibble_luts(self, q: FloatMatrix) -> Tables:
        return self.pq.nibble_luts(q, l2=False)

    @property
    def min_train_size(self) -> int:
        return max(super().min_train_size, self.pq.ksub)

    def _fit_codec(self, r: FloatMatrix) -> None:
        self.pq.train(r)

    def _encode_codes(self, r: FloatMatrix) -> dict[str, np.ndarray]:
        return {"codes": self.pq.encode(r)}

    def _lut_bytes(self) -> int:
        return self.pq.code_bytes * 256 * 4

    def _lut_scan(self, q: FloatMatrix, hs: np.ndarray, hi: np.ndarray, **kw: Any) -> None:
        lut_topk(self.pq.tables(q, l2=False), self._arena["codes"], hs, hi, **kw)

    def _payload_model_bytes(self) -> int:
        return self.pq.memory_bytes()

    def _codec_arrays(self) -> dict[str, np.ndarray]:
        assert self.pq.codebooks_ is not None
        return {"codebooks": self.pq.codebooks_}

    def _set_codec_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        _set_codebooks(self.pq, arrays)
