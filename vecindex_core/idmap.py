"""Stable uint64 ids over any positional index: :class:`IdMapIndex`."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from . import io
from ._kernels.hashmap import ht_delete, ht_get, ht_insert, ht_new, ht_set
from .base import VectorIndex, index_from_file
from .errors import (
    DuplicateIdError,
    IndexFormatError,
    InvalidArgumentError,
    NotSupportedError,
    UnknownIdError,
)
from .flat import FlatIndex
from .types import MISSING, FloatMatrix, IdArray, Metric, SearchResult
from .validation import as_ids, as_mask

__all__ = ["Allow", "IdMapIndex"]

#: An allow-list: uint64 ids, a bool mask aligned with :attr:`IdMapIndex.ids`, or a
#: vectorised predicate ``f(ids: uint64 ndarray) -> bool ndarray``.
Allow = object | Callable[[IdArray], npt.NDArray[np.bool_]]


class _IdTable:
    """uint64 id -> int64 slot map kept at load factor <= 1/2 (16 bytes a table slot)."""

    def __init__(self, capacity: int = 16) -> None:
        self.keys, self.vals = ht_new(capacity)
        self.size = 0

    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.vals.nbytes)

    def get(self, ids: IdArray) -> npt.NDArray[np.int64]:
        out = np.empty(ids.shape[0], dtype=np.int64)
        ht_get(self.keys, self.vals, ids, out)
        return out

    def insert(self, ids: IdArray, slots: npt.NDArray[np.int64]) -> None:
        need = self.size + ids.shape[0]
        if 2 * need > self.keys.shape[0]:
            cap = self.keys.shape[0]
            while 2 * need > cap:
                cap *= 2
            live = self.keys != np.uint64(MISSING)
            old_keys, old_vals = self.keys[live], self.vals[live]
            self.keys, self.vals = ht_new(cap)
            ht_insert(self.keys, self.vals, old_keys, old_vals)
        ht_insert(self.keys, self.vals, ids, slots)
        self.size = need

    def set(self, ids: IdArray, slots: npt.NDArray[np.int64]) -> None:
        ht_set(self.keys, self.vals, ids, slots)

    def delete(self, ids: IdArray) -> None:
        self.size -= ht_delete(self.keys, self.vals, ids)


class IdMapIndex:
    """Caller-owned uint64 ids over any :class:`~vecindex_core.VectorIndex`.

    Ids survive adds, removes and save/load. ``add`` and ``remove`` of one id are O(1): ids
    live in an open-addressing hash table and a slot-ordered array, and removes are
    swap-removes in the inner index. Every batch is validated whole before anything changes.

    An inner index that needs training is trained automatically: until it holds
    ``min_train_size`` vectors they are kept in an exact staging index (so searches are
    exact), then the inner index is trained on them and takes them over.

    Parameters
    ----------
    index : VectorIndex
        The positional index to wrap. If it already holds rows, they get ids ``0..n-1``.
    """

    def __init__(self, index: VectorIndex) -> None:
        if not isinstance(index, VectorIndex):
            raise InvalidArgumentError(
                f"IdMapIndex wraps a VectorIndex, got {type(index).__name__}"
            )
        self.index = index
        self._table = _IdTable()
        self._ids = np.empty(0, dtype=np.uint64)
        self._next_id = 0
        self._staging: FlatIndex | None = None
        n = index.ntotal
        if n:
            self._append_ids(np.arange(n, dtype=np.uint64))
            self._next_id = n
        elif not index.is_trained:
            self._staging = FlatIndex(index.dim, index.metric)

    # ----------------------------------------------------------------- properties
    @property
    def dim(self) -> int:
        """Number of dimensions."""
        return self.index.dim

    @property
    def metric(self) -> Metric:
        """Metric of the inner index."""
        return self.index.metric

    @property
    def spec(self) -> str:
        """Spec string of the inner index."""
        return self.index.spec

    @property
    def is_trained(self) -> bool:
        """Whether the inner index has been trained (searches are exact until then)."""
        return self.index.is_trained

    @property
    def ntotal(self) -> int:
        """Number of ids held."""
        return self._active.ntotal

    @property
    def next_id(self) -> int:
        """The id the next ``add`` without ids starts from (saved with the index)."""
        return self._next_id

    @property
    def ids(self) -> IdArray:
        """Read-only uint64 ids in slot order (the order a bool ``allow`` mask follows)."""
        view = self._ids[: self.ntotal]
        view.flags.writeable = False
        return view

    @property
    def _active(self) -> VectorIndex:
        return self._staging if self._staging is not None else self.index

    def __len__(self) -> int:
        return self.ntotal

    def __contains__(self, id_: object) -> bool:
        return self.contains(id_)

    def __repr__(self) -> str:
        return (
            f"IdMapIndex(spec={self.spec!r}, dim={self.dim}, metric={self.metric!r}, "
            f"ntotal={self.ntotal})"
        )

    def contains(self, id_: object) -> bool:
        """Whether ``id_`` is present; anything that is not a valid id is simply absent."""
        if isinstance(id_, bool) or not isinstance(id_, (int, np.integer)):
            return False
        if not 0 <= int(id_) < MISSING:
            return False
        return bool(self._table.get(np.array([id_], dtype=np.uint64))[0] >= 0)

    def contains_ids(self, ids: object) -> npt.NDArray[np.bool_]:
        """Which of ``ids`` are present, as a bool array aligned with ``ids`` (one vectorised
        hash-table lookup).

        Raises
        ------
        InvalidArgumentError, InvalidDtypeError
            ``ids`` is not a 1-D array_like of uint64 ids.
        """
        return np.asarray(self._table.get(as_ids(ids, name="ids")) >= 0)

    def memory_bytes(self) -> int:
        """Bytes held by the inner index, the staging index and the id map."""
        staged = self._staging.memory_bytes() if self._staging is not None else 0
        return self.index.memory_bytes() + staged + int(self._ids.nbytes) + self._table.nbytes()

    # ----------------------------------------------------------------- mutation
    def add(self, x: object, ids: object = None) -> IdArray:
        """Add vectors with caller ids, or with ids from the saved counter.

        Parameters
        ----------
        x : array_like, shape (n, dim) or (dim,)
        ids : array_like of int, shape (n,), optional
            uint64 ids; ``2**64-1`` is reserved. Without ids, ``next_id..next_id+n-1``.

        Returns
        -------
        ndarray of uint64, shape (n,)
            The ids of the added rows.

        Raises
        ------
        DuplicateIdError
            An id repeats inside the batch or is already present; nothing is added.
        """
        active = self._active
        xv = active.prepare(x)
        n = xv.shape[0]
        if ids is None:
            if self._next_id + n > MISSING:
                raise InvalidArgumentError(
                    f"the id counter is at {self._next_id} and cannot assign {n} more ids"
                )
            new_ids = np.arange(self._next_id, self._next_id + n, dtype=np.uint64)
        else:
            new_ids = as_ids(ids, n)
            if n > 1:
                uniq, counts = np.unique(new_ids, return_counts=True)
                if uniq.size != n:
                    raise DuplicateIdError(
                        f"ids repeats {uniq[counts > 1][:10].tolist()} inside the batch; "
                        "nothing was added"
                    )
            present = self._table.get(new_ids) >= 0
            if present.any():
                raise DuplicateIdError(
                    f"ids {new_ids[present][:10].tolist()} are already in the index; "
                    "nothing was added (remove them first to replace)"
                )
        active._add_prepared(xv)
        self._append_ids(new_ids)
        if new_ids.size:
            self._next_id = max(self._next_id, int(new_ids.max()) + 1)
        self._maybe_train()
        return new_ids

    def remove(self, ids: object) -> int:
        """Remove ids; ids that are not present are ignored. Returns how many were removed."""
        wanted = as_ids(ids)
        if wanted.size > 1:
            wanted = np.unique(wanted)
        slots = self._table.get(wanted)
        found = slots >= 0
        if not found.any():
            return 0
        gone = wanted[found]
        moves = self._active._remove_slots(np.sort(slots[found]))
        moved_ids = self._ids[moves.src]
        self._ids[moves.dst] = moved_ids
        self._table.delete(gone)
        self._table.set(moved_ids, moves.dst)
        return int(gone.size)

    def _append_ids(self, new_ids: IdArray) -> None:
        n0 = self._table.size
        n1 = n0 + new_ids.size
        if n1 > self._ids.shape[0]:
            grown = np.empty(max(n1, 2 * self._ids.shape[0], 64), dtype=np.uint64)
            grown[:n0] = self._ids[:n0]
            self._ids = grown
        self._ids[n0:n1] = new_ids
        self._table.insert(new_ids, np.arange(n0, n1, dtype=np.int64))

    def _maybe_train(self) -> None:
        staging = self._staging
        if staging is None or staging.ntotal < max(self.index.min_train_size, 1):
            return
        vectors = staging.vectors  # already prepared: never normalise twice
        self.index._train(vectors)
        self.index._add_prepared(vectors)
        self._staging = None

    # ----------------------------------------------------------------- search
    def search(
        self, q: object, k: int, *, allow: Allow = None, params: Any = None
    ) -> SearchResult:
        """Top-``k`` ids for each query.

        Parameters
        ----------
        q : array_like, shape (nq, dim) or (dim,)
        k : int
            ``k > ntotal`` pads with ``MISSING`` ids and ``-inf`` scores.
        allow : optional
            Restrict results to these ids (uint64 ids; absent ids are ignored), to rows
            where a bool mask aligned with :attr:`ids` is true, or to ids for which a
            vectorised predicate returns true. Applied inside the scan.
        params : dict or SearchParams, optional
            Search-time knobs of the inner index.

        Returns
        -------
        SearchResult
            ``ids`` are uint64, padded with :data:`~vecindex_core.MISSING`.
        """
        active = self.index
        if self._staging is not None:  # staged: exact search, but reject bad knobs all the same
            active._resolve_params(params)
            active, params = self._staging, None
        elif allow is None:  # the common call: one layer less (same checks, same errors)
            found = active._quick_search(q, k, params)
            if found is not None:
                return SearchResult(found[0], self._slots_to_ids(found[1]), found[2])
        mask = None if allow is None else self._allow_mask(allow)
        scores, slots, counts = active.search(q, k, params=params, mask=mask)
        return SearchResult(scores, self._slots_to_ids(slots), counts)

    def _slots_to_ids(self, slots: npt.NDArray[Any]) -> IdArray:
        """uint64 ids of a result's slots; padding (slot ``-1``) becomes ``MISSING``."""
        # no padding (one row: padding sits at the end of a row): one gather, no mask
        if slots.size and (slots.item(-1) if slots.shape[0] == 1 else slots.min()) >= 0:
            return self._ids.take(slots)
        ids = np.full(slots.shape, MISSING, dtype=np.uint64)
        found = slots >= 0
        ids[found] = self._ids[slots[found]]
        return ids

    def _allow_mask(self, allow: Allow) -> npt.NDArray[np.bool_] | None:
        if allow is None:
            return None
        n = self.ntotal
        if callable(allow):
            return as_mask(allow(self.ids), n, name="allow(ids)")
        arr = np.asarray(allow) if not isinstance(allow, (list, tuple)) else allow
        if getattr(arr, "dtype", None) == np.bool_:
            return as_mask(arr, n, name="allow")
        slots = self._table.get(as_ids(arr, name="allow"))
        mask = np.zeros(n, dtype=np.bool_)
        mask[slots[slots >= 0]] = True
        return mask

    def get_vectors(self, ids: object) -> FloatMatrix:
        """Stored vectors of ``ids`` in the given order, float32 (n, dim).

        Raises
        ------
        UnknownIdError
            An id is not present.
        NotSupportedError
            The inner index does not keep original vectors.
        """
        if not self.index.keeps_vectors:  # even while staged: the answer must not change
            raise NotSupportedError(f"{self.spec} does not keep the original vectors")
        wanted = as_ids(ids)
        slots = self._table.get(wanted)
        if (slots < 0).any():
            raise UnknownIdError(f"ids {wanted[slots < 0][:10].tolist()} are not in the index")
        return self._active.get_vectors(slots)

    # ----------------------------------------------------------------- persistence
    def _to_file(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        header, arrays = self.index._to_file()
        arrays["idmap/ids"] = self._ids[: self.ntotal]
        idmap: dict[str, Any] = {"next_id": str(self._next_id), "staged": False}
        if self._staging is not None:
            idmap["staged"] = True
            arrays["staging/vectors"] = self._staging.vectors
        header["idmap"] = idmap
        return header, arrays

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write index, ids and id counter atomically to ``path``."""
        io.write_index(path, *self._to_file())

    def to_bytes(self) -> bytes:
        """The exact bytes :meth:`save` writes."""
        data = io.write_index(None, *self._to_file())
        assert data is not None
        return data

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IdMapIndex:
        """Load a file written by :meth:`save` (a positional file gets ids ``0..n-1``)."""
        header, arrays = io.read_index(path)
        return cls._from_file(header, arrays, f"index file {os.fspath(path)!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> IdMapIndex:
        """Inverse of :meth:`to_bytes`."""
        header, arrays = io.read_index_bytes(data)
        return cls._from_file(header, arrays, "index bytes")

    @classmethod
    def _from_file(
        cls, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray], where: str
    ) -> IdMapIndex:
        inner = index_from_file(header, arrays, where)
        idmap = header.get("idmap")
        if idmap is None:
            return cls(inner)
        try:
            ids = arrays["idmap/ids"]
            next_id = int(idmap["next_id"])
            staged = bool(idmap["staged"])
        except (KeyError, TypeError, ValueError) as e:
            raise IndexFormatError(f"{where} has a corrupt id map: {e}") from e
        if not 0 <= next_id <= MISSING:
            raise IndexFormatError(f"{where} has an id counter {next_id} outside [0, 2**64-1]")
        self = cls.__new__(cls)
        self.index = inner
        self._table = _IdTable()
        self._ids = np.empty(0, dtype=np.uint64)
        self._next_id = next_id
        self._staging = None
        if staged:
            staging = FlatIndex(inner.dim, inner.metric)
            if "staging/vectors" not in arrays:
                raise IndexFormatError(f"{where} is staged but holds no staging vectors")
            staging._set_state({}, {"vectors": arrays["staging/vectors"]})
            self._staging = staging
        n = self.ntotal
        if ids.dtype != np.uint64 or ids.shape != (n,):
            raise IndexFormatError(
                f"{where} has {ids.shape} {ids.dtype} ids for {n} rows, expected ({n},) uint64"
            )
        if n and int(ids.max()) >= next_id:
            raise IndexFormatError(f"{where} has ids beyond its id counter {next_id}")
        self._append_ids(ids)
        if (self._table.get(ids) != np.arange(n)).any():  # a repeated id maps to its first slot
            raise IndexFormatError(f"{where} has duplicate ids")
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (IdMapIndex.from_bytes, (self.to_bytes(),))

    def __copy__(self) -> IdMapIndex:
        return IdMapIndex.from_bytes(self.to_bytes())

    def __deepcopy__(self, memo: dict[int, Any]) -> IdMapIndex:
        return self.__copy__()
