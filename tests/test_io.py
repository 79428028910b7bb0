"""The index file format: round trips, corruption, atomic writes, golden files."""

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import IndexFormatError
from vecindex_core.io import FORMAT_VERSION

GOLDEN = Path(__file__).resolve().parent / "golden" / "v1"


@pytest.fixture
def saved(tmp_path, rng):
    index = vc.create("flat", dim=8, metric="l2")
    index.add(rng.standard_normal((30, 8)).astype(np.float32), ids=np.arange(30) * 5)
    path = tmp_path / "a.vecidx"
    index.save(path)
    return index, path


@pytest.mark.parametrize("metric", vc.METRICS)
def test_golden_v1_files_load(metric):
    index = vc.load(GOLDEN / f"flat_{metric}.vecidx")
    q = np.load(GOLDEN / "queries.npy")
    res = index.search(q, 8)
    np.testing.assert_array_equal(res.ids, np.load(GOLDEN / f"flat_{metric}_ids.npy"))
    np.testing.assert_array_equal(res.scores, np.load(GOLDEN / f"flat_{metric}_scores.npy"))
    assert 1000 not in index and 1006 in index and index.next_id == 1142
    assert index.add(np.ones(16, np.float32))[0] == 1142


def test_round_trip_is_byte_identical(saved, tmp_path):
    index, path = saved
    again = vc.load(path)
    again.save(tmp_path / "b.vecidx")
    assert (tmp_path / "b.vecidx").read_bytes() == path.read_bytes() == index.to_bytes()


def test_truncation_anywhere_is_detected(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "t.vecidx"
    cuts = list(range(0, 600)) + list(range(600, len(data), 97)) + [len(data) - 1]
    for cut in cuts:
        bad.write_bytes(data[:cut])
        with pytest.raises(IndexFormatError, match="t.vecidx"):
            vc.load(bad)


def test_bit_flips_are_detected(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    bad = tmp_path / "f.vecidx"
    for pos in list(range(0, 32)) + list(range(32, len(data), 13)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x10
        bad.write_bytes(bytes(flipped))
        with pytest.raises(IndexFormatError, match="f.vecidx"):
            vc.load(bad)


def test_wrong_magic_newer_version_trailing_bytes_directory(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cases = {
        "magic": b"NOTANIDX" + data[8:],
        "version": data[:8] + struct.pack("<I", FORMAT_VERSION + 1) + data[12:],
        "trailing": data + b"\0",
    }
    messages = {"magic": "not a vecindex file", "version": "upgrade", "trailing": "after"}
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.vecidx"
        bad.write_bytes(blob)
        with pytest.raises(IndexFormatError, match=messages[name]) as info:
            vc.load(bad)
        assert str(bad) in str(info.value)
    with pytest.raises(IndexFormatError, match="directory"):
        vc.load(tmp_path)
    assert issubclass(IndexFormatError, ValueError)


def test_failed_write_keeps_old_file_and_leaves_no_temp(saved, monkeypatch):
    index, path = saved
    before = path.read_bytes()
    index.add(np.ones(8, np.float32))

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_loading_never_unpickles(saved, monkeypatch):
    _, path = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading")

    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    assert len(vc.load(path)) == 30


def test_positional_file_loads_with_slot_ids(tmp_path, rng):
    flat = vc.FlatIndex(4, "ip")
    flat.add(rng.standard_normal((5, 4)))
    flat.save(tmp_path / "p.vecidx")
    index = vc.load(tmp_path / "p.vecidx")
    np.testing.assert_array_equal(index.ids, np.arange(5, dtype=np.uint64))
    assert isinstance(vc.VectorIndex.load(tmp_path / "p.vecidx"), vc.FlatIndex)
