"""Crash safety: kill -9 a writer in the middle of a stream of acknowledged writes.

Every acknowledged document must be there after reopening, searchable, with the right
metadata; no batch may be half written (each batch is one transaction).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vecindex_core import Collection

sys.path.insert(0, str(Path(__file__).parent))
import crash_child as child

CHILD = Path(__file__).with_name("crash_child.py")


def run_and_kill(mode: str, path: Path, acks: int) -> int:
    """Start the writer, wait for ``acks`` acknowledgements, SIGKILL it; last acked batch."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    last = -1
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = int(line.split()[1])
            if last + 1 >= acks:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert last + 1 >= acks, f"the writer stopped early: {err[-2000:]}"
    return last


def check_reopened(path: Path, last_acked: int) -> None:
    coll = Collection(path)
    stored = coll.find()
    by_batch: dict[int, list] = {}
    for rec in stored:
        by_batch.setdefault(rec.metadata["batch"], []).append(rec)
    # nothing half-written: every batch present is complete
    assert all(len(v) == child.BATCH for v in by_batch.values()), {
        b: len(v) for b, v in by_batch.items() if len(v) != child.BATCH
    }
    # every acknowledged batch is there, with its metadata and text
    for b in range(last_acked + 1):
        assert b in by_batch, f"acknowledged batch {b} is missing"
        got = {r.id: r for r in by_batch[b]}
        for i, meta in zip(child.batch_ids(b), child.batch_meta(b), strict=True):
            assert got[i].metadata == meta
            assert got[i].text == f"text {i}"
    assert coll.index is not None and coll.index.ntotal == len(stored)
    # and searchable: each acknowledged vector finds its document
    for b in range(0, last_acked + 1, 3):
        hits = coll.search_batch(child.batch_vectors(b), 5)
        for i, row in zip(child.batch_ids(b), hits, strict=True):
            assert i in [h.record.id for h in row]
    coll.close()


@pytest.mark.parametrize("acks", [3, 23, 61])
def test_kill9_collection(tmp_path: Path, acks: int) -> None:
    path = tmp_path / "c.db"
    last = run_and_kill("collection", path, acks)
    check_reopened(path, last)
    # a second writer continues where the first died, and is killed too
    last2 = run_and_kill("collection", path, acks + 10)
    assert last2 >= last
    check_reopened(path, last2)


@pytest.mark.parametrize("mode", ["langchain", "haystack"])
def test_kill9_adapters(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.db"
    last = run_and_kill(mode, path, 40)
    check_reopened(path, last)


def test_corrupt_snapshot_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with Collection(path, index="flat") as coll:
        coll.upsert(child.batch_ids(0), None, child.batch_vectors(0), child.batch_meta(0))
    snap = Path(f"{path}.index")
    data = bytearray(snap.read_bytes())
    data[-5] ^= 0xFF
    snap.write_bytes(bytes(data))
    coll = Collection(path)
    assert coll.index is not None and coll.index.ntotal == child.BATCH
    hits = coll.search(child.batch_vectors(0)[2], 1)
    assert hits[0].record.id == child.batch_ids(0)[2]
    np.testing.assert_allclose(hits[0].score, 1.0, rtol=1e-5)
