"""Open-addressing hash table from uint64 keys to int64 values, as plain arrays.

Linear probing with backward-shift deletion (no tombstones). The empty key is
``2**64 - 1`` (:data:`~vecindex_core.types.MISSING`), which is never a valid id. Capacity is
a power of two; callers keep the load factor at most 1/2 and rebuild to grow.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["EMPTY", "ht_delete", "ht_get", "ht_insert", "ht_new", "ht_set"]

EMPTY = np.uint64(2**64 - 1)


def ht_new(capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty table with room for ``capacity`` slots (a power of two)."""
    return np.full(capacity, EMPTY, dtype=np.uint64), np.full(capacity, -1, dtype=np.int64)


@numba.njit(nogil=True, cache=True, inline="always")
def _home(key: np.uint64, mask: np.uint64) -> np.uint64:
    # splitmix64 finaliser: consecutive ids spread over the table
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) & mask


@numba.njit(nogil=True, cache=True)
def ht_get(keys: np.ndarray, vals: np.ndarray, query: np.ndarray, out: np.ndarray) -> None:
    """``out[i]`` = value of ``query[i]``, or -1 when absent."""
    mask = np.uint64(keys.shape[0] - 1)
    for i in range(query.shape[0]):
        key = query[i]
        pos = _home(key, mask)
        out[i] = -1
        while keys[pos] != EMPTY:
            if keys[pos] == key:
                out[i] = vals[pos]
                break
            pos = (pos + np.uint64(1)) & mask


@numba.njit(nogil=True, cache=True)
def ht_insert(
    keys: np.ndarray, vals: np.ndarray, new_keys: np.ndarray, new_vals: np.ndarray
) -> None:
    """Insert absent keys (the caller has checked they are absent and unique)."""
    mask = np.uint64(keys.shape[0] - 1)
    for i in range(new_keys.shape[0]):
        pos = _home(new_keys[i], mask)
        while keys[pos] != EMPTY:
            pos = (pos + np.uint64(1)) & mask
        keys[pos] = new_keys[i]
        vals[pos] = new_vals[i]


@numba.njit(nogil=True, cache=True)
def ht_set(keys: np.ndarray, vals: np.ndarray, upd_keys: np.ndarray, upd_vals: np.ndarray) -> None:
    """Overwrite the values of present keys."""
    mask = np.uint64(keys.shape[0] - 1)
    for i in range(upd_keys.shape[0]):
        pos = _home(upd_keys[i], mask)
        while keys[pos] != upd_keys[i]:
            pos = (pos + np.uint64(1)) & mask
        vals[pos] = upd_vals[i]


@numba.njit(nogil=True, cache=True)
def ht_delete(keys: np.ndarray, vals: np.ndarray, del_keys: np.ndarray) -> int:
    """Delete keys (absent ones are ignored); returns how many were deleted."""
    mask = np.uint64(keys.shape[0] - 1)
    deleted = 0
    for i in range(del_keys.shape[0]):
        key = del_keys[i]
        pos = _home(key, mask)
        while keys[pos] != EMPTY and keys[pos] != key:
            pos = (pos + np.uint64(1)) & mask
        if keys[pos] == EMPTY:
            continue
        deleted += 1
        hole = pos
        nxt = (hole + np.uint64(1)) & mask
        while keys[nxt] != EMPTY:
            home = _home(keys[nxt], mask)
            # move keys[nxt] into the hole unless its home lies cyclically in (hole, nxt]
            if (nxt > hole and (home <= hole or home > nxt)) or (
                nxt < hole and home <= hole and home > nxt
            ):
                keys[hole] = keys[nxt]
                vals[hole] = vals[nxt]
                hole = nxt
            nxt = (nxt + np.uint64(1)) & mask
        keys[hole] = EMPTY
        vals[hole] = -1
    return deleted
