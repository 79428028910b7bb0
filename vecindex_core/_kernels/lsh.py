"""Multi-table LSH buckets as sorted arrays, query-directed multi-probe, fused candidate scan.

Each table ``t`` keeps its bucket keys sorted (``skeys[t, :m]``, uint64) with the slot of each
entry beside it (``sslots[t, :m]``, int32): a bucket is the run of equal keys found by one
binary search (CSR-style, no per-bucket objects). Slots added since the last rebuild are
*pending* (scanned linearly until the next rebuild); removed slots leave a tombstone
(``-1``) until then. The word-major per-slot keys ``keys[t, slot]`` are the source of
truth the sorted arrays are rebuilt from.

Multi-probe follows Lv et al. (VLDB 2007), query-directed probing: a table's bits are sorted
by the query's margin ``|w.x - threshold|`` (least confident first) and perturbation sets
are generated in increasing order of their summed squared margins with the shift/expand
heap, so the first ``num_probes`` extra buckets are the most likely to hold neighbours.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from .hamming import exact_score, popcount64, push

__all__ = ["build_tables", "lsh_scan", "relabel_tables"]


def build_tables(
    keys: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int32]]:
    """Sorted bucket arrays of every table from word-major keys ``(L, n)``.

    Returns ``skeys`` uint64 ``(L, n)`` and ``sslots`` int32 ``(L, n)``; equal keys keep
    slot order.
    """
    tables, n = keys.shape
    skeys = np.empty((tables, n), dtype=np.uint64)
    sslots = np.empty((tables, n), dtype=np.int32)
    for t in range(tables):
        order = np.argsort(keys[t], kind="stable")
        skeys[t] = keys[t, order]
        sslots[t] = order
    return skeys, sslots


@numba.njit(nogil=True, cache=True, inline="always")
def _lower_bound(a: np.ndarray, m: int, key: np.uint64) -> int:
    lo, hi = 0, m
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(nogil=True, cache=True)
def _find_entry(skeys: np.ndarray, sslots: np.ndarray, t: int, m: int, key: np.uint64,
                slot: int) -> int:
    p = _lower_bound(skeys[t], m, key)
    while p < m and skeys[t, p] == key:
        if sslots[t, p] == slot:
            return p
        p += 1
    return -1


@numba.njit(nogil=True, cache=True)
def relabel_tables(
    skeys: np.ndarray, sslots: np.ndarray, m: int, keys: np.ndarray, in_main: np.ndarray,
    removed: np.ndarray, src: np.ndarray, dst: np.ndarray,
) -> int:
    """Apply a swap-remove to the sorted arrays before ``keys`` rows move.

    Entries of ``removed`` slots become tombstones; entries of ``src[i]`` are relabelled
    ``dst[i]``. Returns the number of tombstones made (per table).
    """
    tables = skeys.shape[0]
    made = 0
    for r in removed:
        if in_main[r]:
            made += 1
            for t in range(tables):
                p = _find_entry(skeys, sslots, t, m, keys[t, r], r)
                sslots[t, p] = -1
    for i in range(src.shape[0]):
        s = src[i]
        if in_main[s]:
            for t in range(tables):
                p = _find_entry(skeys, sslots, t, m, keys[t, s], s)
                sslots[t, p] = dst[i]
    return made


@numba.njit(nogil=True, cache=True, inline="always")
def _swap(score: np.ndarray, flip: np.ndarray, last: np.ndarray, i: int, j: int) -> None:
    score[i], score[j] = score[j], score[i]
    flip[i], flip[j] = flip[j], flip[i]
    last[i], last[j] = last[j], last[i]


@numba.njit(nogil=True, cache=True)
def _probe_flips(margins: np.ndarray, num_probes: int, flips: np.ndarray) -> int:
    """Bit flips of the best ``num_probes + 1`` buckets (the first is no flip).

    ``margins`` are the query's confidences for the table's ``b`` bits. Returns how many
    flips were written (fewer when ``2**b`` buckets run out).
    """
    b = margins.shape[0]
    order = np.argsort(margins)
    sq = np.empty(b, dtype=np.float64)
    for i in range(b):
        sq[i] = np.float64(margins[order[i]]) ** 2
    flips[0] = np.uint64(0)
    out = 1
    if num_probes == 0 or b == 0:
        return out
    cap = 2 * num_probes + 2
    hscore = np.empty(cap, dtype=np.float64)
    hflip = np.empty(cap, dtype=np.uint64)
    hlast = np.empty(cap, dtype=np.int64)
    size = 0
    # push {0}
    hscore[0], hflip[0], hlast[0] = sq[0], np.uint64(1) << np.uint64(order[0]), 0
    size = 1
    while out <= num_probes and size > 0:
        # pop the minimum
        score, flip, last = hscore[0], hflip[0], hlast[0]
        size -= 1
        if size > 0:
            hscore[0], hflip[0], hlast[0] = hscore[size], hflip[size], hlast[size]
            pos = 0
            while True:
                c = 2 * pos + 1
                if c >= size:
                    break
                if c + 1 < size and hscore[c + 1] < hscore[c]:
                    c += 1
                if hscore[c] < hscore[pos]:
                    _swap(hscore, hflip, hlast, c, pos)
                    pos = c
                else:
                    break
        flips[out] = flip
        out += 1
        nxt = last + 1
        if nxt < b:
            bit_last = np.uint64(1) << np.uint64(order[last])
            bit_next = np.uint64(1) << np.uint64(order[nxt])
            for which in range(2):  # shift (replace last by next), expand (add next)
                if which == 0:
                    ns, nf = score - sq[last] + sq[nxt], (flip ^ bit_last) | bit_next
                else:
                    ns, nf = score + sq[nxt], flip | bit_next
                pos = size
                size += 1
                hscore[pos], hflip[pos], hlast[pos] = ns, nf, nxt
                while pos > 0:
                    parent = (pos - 1) >> 1
                    if hscore[parent] > hscore[pos]:
                        _swap(hscore, hflip, hlast, parent, pos)
                        pos = parent
                    else:
                        break
    return out


@numba.njit(nogil=True, cache=True)
def lsh_scan(
    q: np.ndarray, x: np.ndarray, keep: bool, l2: bool, qkeys: np.ndarray,
    margins: np.ndarray, num_probes: int, skeys: np.ndarray, sslots: np.ndarray, m: int,
    pending: np.ndarray, keys: np.ndarray, n: int, mask: np.ndarray, use_mask: bool,
    rerank: int, q0: int, q1: int, hs: np.ndarray, hi: np.ndarray, ncand: np.ndarray,
) -> None:
    """Candidates from every table's probed buckets, then scoring, for queries ``q0:q1``.

    A query's candidates are the union (each slot once) of the allowed slots in its
    ``num_probes + 1`` buckets of every table, pending slots included. With ``keep`` they
    are scored exactly (after keeping the ``rerank`` nearest by Hamming distance over the
    concatenated keys when ``rerank > 0``); without, they are ranked by that Hamming
    distance, reported as the score ``-distance``. ``ncand[r]`` gets the number of
    candidates found and the heaps ``(hs, hi)`` the top-k.
    """
    tables = keys.shape[0]
    stamp = np.zeros(n, dtype=np.int32)
    buf = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.uint16)
    flips = np.empty(num_probes + 1, dtype=np.uint64)
    nbits = 64 * tables
    hist = np.empty(nbits + 1, dtype=np.int64)
    for r in range(q0, q1):
        mark = np.int32(r - q0 + 1)
        cnt = 0
        for t in range(tables):
            nf = _probe_flips(margins[r, t], num_probes, flips) if num_probes > 0 else 1
            if num_probes == 0:
                flips[0] = np.uint64(0)
            for p in range(nf):
                key = qkeys[r, t] ^ flips[p]
                e = _lower_bound(skeys[t], m, key)
                while e < m and skeys[t, e] == key:
                    s = sslots[t, e]
                    e += 1
                    if s < 0 or stamp[s] == mark:
                        continue
                    stamp[s] = mark
                    if use_mask and not mask[s]:
                        continue
                    buf[cnt] = s
                    cnt += 1
            for i in range(pending.shape[0]):
                s = pending[i]
                if stamp[s] == mark:
                    continue
                diff = keys[t, s] ^ qkeys[r, t]
                for p in range(nf):
                    if diff == flips[p]:
                        stamp[s] = mark
                        if not use_mask or mask[s]:
                            buf[cnt] = s
                            cnt += 1
                        break
        ncand[r] = cnt
        qr = q[r]
        qn = exact_score(qr, 0.0, qr, False)
        if keep and (rerank == 0 or cnt <= rerank):
            for c in range(cnt):
                j = buf[c]
                push(hs, hi, r, exact_score(qr, qn, x[j], l2), j)
            continue
        for c in range(cnt):
            j = buf[c]
            acc = np.uint64(0)
            for t in range(tables):
                acc += popcount64(qkeys[r, t] ^ keys[t, j])
            dist[c] = acc
        if not keep:
            for c in range(cnt):
                push(hs, hi, r, -float(dist[c]), buf[c])
            continue
        # keep the `rerank` nearest by Hamming distance (ties by the lower slot), then rescore
        hist[:] = 0
        for c in range(cnt):
            hist[dist[c]] += 1
        cut = 0
        below = 0
        while below + hist[cut] < rerank:
            below += hist[cut]
            cut += 1
        # rows exactly at the cut are taken in slot order
        at_cut = rerank - below
        if at_cut < hist[cut]:
            tied = np.empty(hist[cut], dtype=np.int64)
            nt = 0
            for c in range(cnt):
                if dist[c] == cut:
                    tied[nt] = buf[c]
                    nt += 1
            tied.sort()
            limit = tied[at_cut - 1]
        else:
            limit = n
        for c in range(cnt):
            d = dist[c]
            j = buf[c]
            if d < cut or (d == cut and j <= limit):
                push(hs, hi, r, exact_score(qr, qn, x[j], l2), j)
