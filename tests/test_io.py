"""The index file format: round trips, corruption, crafted headers, atomic writes, goldens."""

import importlib.util
import json
import os
import pickle
import re
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import vecindex_core as vc
from vecindex_core import IndexFormatError
from vecindex_core.io import FORMAT_VERSION, MAGIC
from vecindex_core.io import format as vio

GOLDEN = Path(__file__).resolve().parent / "golden"
V1 = GOLDEN / "v1"


@pytest.fixture
def saved(tmp_path, rng):
    """An l2 IdMapIndex of 30 rows (ids 0, 5, ..., one removed) saved to ``a.vecidx``."""
    index = vc.create("flat", dim=8, metric="l2")
    index.add(rng.standard_normal((30, 8)).astype(np.float32), ids=np.arange(30) * 5)
    index.remove([10])
    path = tmp_path / "a.vecidx"
    index.save(path)
    return index, path


def layout(data):
    """(header length, end of the padded header, header dict) of a file's bytes."""
    _, _, head_len, _, _, _ = vio._PREFIX.unpack(data[: vio._PREFIX.size])
    head = json.loads(data[32 : 32 + head_len])
    end = 32 + head_len + (-(32 + head_len) % 64)
    return head_len, end, head


def rewrite_header(data, mutate):
    """The file with its header JSON replaced by ``mutate(header)``, checksums fixed up, so
    only the loader's validation of the content can catch the change."""
    magic, version, _, _, payload_crc, payload_len = vio._PREFIX.unpack(data[:32])
    _, end, head = layout(data)
    new = mutate(head)
    raw = new if isinstance(new, bytes) else json.dumps(new).encode()
    prefix = vio._PREFIX.pack(magic, version, len(raw), zlib.crc32(raw), payload_crc, payload_len)
    return prefix + raw + bytes(-(32 + len(raw)) % 64) + data[end:]


def load_fails(path, match=None):
    """``vc.load(path)`` raises IndexFormatError naming the path (and matching ``match``)."""
    with pytest.raises(IndexFormatError, match=match) as info:
        vc.load(path)
    assert str(path) in str(info.value), info.value
    return info.value


# --------------------------------------------------------------------------- round trips
def test_round_trip_is_byte_identical(saved, tmp_path):
    index, path = saved
    again = vc.load(path)
    again.save(tmp_path / "b.vecidx")
    assert (tmp_path / "b.vecidx").read_bytes() == path.read_bytes() == index.to_bytes()
    np.testing.assert_array_equal(again.ids, index.ids)
    assert again.next_id == index.next_id == 146


def test_layout_matches_the_documented_format(saved):
    _, path = saved
    data = path.read_bytes()
    magic, version, head_len, head_crc, payload_crc, payload_len = vio._PREFIX.unpack(data[:32])
    assert magic == MAGIC == b"VECINDEX" and version == FORMAT_VERSION == 1
    assert zlib.crc32(data[32 : 32 + head_len]) == head_crc
    _, end, head = layout(data)
    assert end % 64 == 0 and len(data) == end + payload_len
    assert zlib.crc32(data[end:]) == payload_crc
    assert head["kind"] == "flat" and head["spec"] == "flat" and head["dim"] == 8
    assert head["metric"] == "l2" and head["dtype"] == "float32" and head["ntotal"] == 29
    assert head["idmap"] == {"next_id": "146", "staged": False}
    names = [a["name"] for a in head["arrays"]]
    assert names == ["index/vectors", "idmap/ids"]
    for entry in head["arrays"]:
        assert entry["offset"] % 64 == 0
        assert entry["dtype"] in ("<f4", "<u8")


def test_save_overwrites_and_accepts_str_paths(saved, tmp_path):
    index, path = saved
    index.add(np.ones(8, np.float32))
    index.save(str(path))
    assert vc.load(str(path)).to_bytes() == index.to_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.vecidx"]


def test_missing_file_and_missing_directory(tmp_path, saved):
    index, _ = saved
    with pytest.raises(FileNotFoundError):
        vc.load(tmp_path / "nope.vecidx")
    with pytest.raises(FileNotFoundError):
        index.save(tmp_path / "no-such-dir" / "x.vecidx")
    assert not (tmp_path / "no-such-dir").exists()


def test_saved_file_permissions_follow_the_umask(saved, tmp_path):
    # like open(path, "w"): a temp file's private 0600 mode must not leak into the result
    index, _ = saved
    umask = os.umask(0o022)
    try:
        index.save(tmp_path / "perm.vecidx")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "perm.vecidx").stat().st_mode) == 0o644


# --------------------------------------------------------------------------- corruption
def test_truncation_anywhere_is_detected(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    _, end, _ = layout(data)
    bad = tmp_path / "t.vecidx"
    payload_cuts = sorted(set(range(end, len(data), 53)) | {end + 1, len(data) - 1})
    for cut in [*range(end), *payload_cuts]:  # every offset of prefix and header
        bad.write_bytes(data[:cut])
        load_fails(bad)


def test_truncated_bytes_in_memory(saved):
    index, _ = saved
    data = index.to_bytes()
    for cut in (0, 7, 31, 100, len(data) // 2, len(data) - 1):
        with pytest.raises(IndexFormatError, match="index bytes"):
            vc.IdMapIndex.from_bytes(data[:cut])
        with pytest.raises(IndexFormatError, match="index bytes"):
            vc.VectorIndex.from_bytes(data[:cut])


def test_bit_flips_are_detected(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "f.vecidx"
    positions = sorted(set(range(32)) | set(range(32, len(data), 11)) | {len(data) - 1})
    for i, pos in enumerate(positions):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << (i % 8)
        bad.write_bytes(bytes(flipped))
        load_fails(bad)


def test_wrong_magic(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "magic.vecidx"
    bad.write_bytes(b"NOTANIDX" + path.read_bytes()[8:])
    load_fails(bad, "is not a vecindex file: magic b'NOTANIDX', expected b'VECINDEX'")
    bad.write_bytes(b"")
    load_fails(bad, "not a vecindex file")
    bad.write_bytes(b"\x93NUMPY" + bytes(100))  # some other format
    load_fails(bad, "not a vecindex file")


def test_newer_version_says_upgrade(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    bad = tmp_path / "version.vecidx"
    for version in (FORMAT_VERSION + 1, 2**32 - 1):
        bad.write_bytes(data[:8] + struct.pack("<I", version) + data[12:])  # nothing else fixed
        err = load_fails(bad, f"format version {version}")
        assert "upgrade vecindex" in str(err) and f"up to {FORMAT_VERSION}" in str(err)
    bad.write_bytes(data[:8] + struct.pack("<I", 0) + data[12:])
    load_fails(bad, "corrupt: format version 0")


def test_trailing_bytes_and_directories(saved, tmp_path):
    _, path = saved
    bad = tmp_path / "trailing.vecidx"
    for extra in (b"\0", b"junk" * 100):
        bad.write_bytes(path.read_bytes() + extra)
        load_fails(bad, "unexpected bytes after the payload")
    load_fails(tmp_path, "is a directory")


def test_header_checksum_and_payload_checksum(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    _, end, _ = layout(bytes(data))
    bad = tmp_path / "crc.vecidx"
    head = bytearray(data)
    head[40] ^= 0x01
    bad.write_bytes(bytes(head))
    load_fails(bad, "header checksum mismatch")
    payload = bytearray(data)
    payload[end + 5] ^= 0x80
    bad.write_bytes(bytes(payload))
    load_fails(bad, "payload checksum mismatch")
    padding = bytearray(data)
    padding[end - 1] = 1
    bad.write_bytes(bytes(padding))
    load_fails(bad, "non-zero header padding")


def _set_array(array, **changes):
    def mutate(head):
        for entry in head["arrays"]:
            if entry["name"] == array:
                entry.update(changes)
        return head
    return mutate


def _set(path_keys, value):
    def mutate(head):
        node = head
        for key in path_keys[:-1]:
            node = node[key]
        if value is KeyError:
            del node[path_keys[-1]]
        else:
            node[path_keys[-1]] = value
        return head
    return mutate


CRAFTED = {
    # the header is valid JSON with a correct checksum, but its content is wrong
    "not-json": (lambda h: b"{not json", "unreadable header"),
    "not-utf8": (lambda h: b"\xff\xfe", "unreadable header"),
    "a-json-list": (lambda h: [h], None),
    "a-json-string": (lambda h: "flat", None),
    "no-arrays": (_set(["arrays"], KeyError), "unreadable header"),
    "arrays-not-a-list": (_set(["arrays"], 5), "bad array table"),
    "array-entry-not-a-dict": (_set(["arrays"], [[1, 2]]), "bad array table"),
    "unknown-dtype": (_set_array("index/vectors", dtype="<c8"), "bad entry for array"),
    "object-dtype": (_set_array("index/vectors", dtype="|O"), "bad entry for array"),
    "negative-shape": (_set_array("index/vectors", shape=[-1, 8]), "bad entry"),
    "wrong-nbytes": (_set_array("index/vectors", nbytes=5), "size mismatch"),
    "wrong-offset": (_set_array("idmap/ids", offset=64), "bad entry"),
    "float-shape": (_set_array("index/vectors", shape=[2.5, 8]), None),
    "huge-array": (_set_array("index/vectors", shape=[2**31, 1024], nbytes=2**43), None),
    "overflowing-shape": (_set_array("index/vectors", shape=[2**62, 2**62], nbytes=0), None),
    "no-ntotal": (_set(["ntotal"], KeyError), None),
    "wrong-ntotal": (_set(["ntotal"], 3), "header says 3 rows"),
    "unknown-kind": (_set(["kind"], "nope"), "cannot be rebuilt"),
    "no-kind": (_set(["kind"], KeyError), "cannot be rebuilt"),
    "bad-metric": (_set(["metric"], "hamming"), "cannot be rebuilt"),
    "bad-dim": (_set(["dim"], 0), "cannot be rebuilt"),
    "string-dim": (_set(["dim"], "8"), "cannot be rebuilt"),
    "dim-mismatch": (_set(["dim"], 4), None),
    "bad-params": (_set(["params"], {"nlist": 3}), "cannot be rebuilt"),
    "params-a-list": (_set(["params"], [1]), "cannot be rebuilt"),
    "no-state": (_set(["state"], KeyError), "cannot be rebuilt"),
    "no-idmap-ids": (_set_array("idmap/ids", name="idmap/other"), "corrupt id map"),
    "bad-next-id": (_set(["idmap", "next_id"], "many"), "corrupt id map"),
    "next-id-below-ids": (_set(["idmap", "next_id"], "100"), "beyond its id counter"),
    "negative-next-id": (_set(["idmap", "next_id"], "-5"), None),
    "next-id-beyond-uint64": (_set(["idmap", "next_id"], str(2**70)), None),
    "idmap-not-a-dict": (_set(["idmap"], [1]), "corrupt id map"),
    "staged-without-vectors": (_set(["idmap", "staged"], True), "no staging vectors"),
    "ids-wrong-dtype": (_set_array("idmap/ids", dtype="<i8"), "expected \\(29,\\) uint64"),
}


@pytest.mark.parametrize(("mutate", "match"), list(CRAFTED.values()), ids=list(CRAFTED))
def test_crafted_headers_raise_index_format_error(saved, tmp_path, mutate, match):
    _, path = saved
    bad = tmp_path / "crafted.vecidx"
    bad.write_bytes(rewrite_header(path.read_bytes(), mutate))
    load_fails(bad, match)


def test_negative_counter_in_an_empty_file(tmp_path):
    empty = vc.create("flat", dim=2).to_bytes()
    bad = tmp_path / "counter.vecidx"
    bad.write_bytes(rewrite_header(empty, _set(["idmap", "next_id"], "-5")))
    load_fails(bad, "counter")


def test_duplicate_ids_in_a_file(tmp_path):
    index = vc.create("flat", dim=2)
    index.add(np.eye(2), ids=[7, 9])
    data = bytearray(index.to_bytes())
    _, _, head = layout(bytes(data))
    entry = next(a for a in head["arrays"] if a["name"] == "idmap/ids")
    _, end, _ = layout(bytes(data))
    start = end + entry["offset"]
    data[start + 8 : start + 16] = np.array([7], "<u8").tobytes()  # ids [7, 7]
    fixed = bytearray(data)
    crc_payload = zlib.crc32(bytes(fixed[end:]))
    fixed[20:24] = struct.pack("<I", crc_payload)
    bad = tmp_path / "dup.vecidx"
    bad.write_bytes(bytes(fixed))
    load_fails(bad, "duplicate ids")


# --------------------------------------------------------------------------- safety
@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_write_keeps_old_file_and_leaves_no_temp(saved, monkeypatch, failing):
    index, path = saved
    before = path.read_bytes()
    index.add(np.ones(8, np.float32))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if failing == "replace":
        monkeypatch.setattr(os, "replace", boom)
    elif failing == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    else:
        real = vio._write

        def half_then_boom(f, header, arrays):
            real(f, header, arrays)
            f.truncate(100)
            boom()

        monkeypatch.setattr(vio, "_write", half_then_boom)
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert len(vc.load(path)) == 29


def test_interrupted_write_keeps_old_file(saved, monkeypatch):
    index, path = saved
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        index.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_loading_never_unpickles(saved, monkeypatch):
    index, path = saved
    data = index.to_bytes()

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading an index")

    for module, name in ((pickle, "loads"), (pickle, "load"), (pickle, "Unpickler"),
                         (np, "load")):
        monkeypatch.setattr(module, name, forbidden)
    assert len(vc.load(path)) == 29
    assert len(vc.IdMapIndex.from_bytes(data)) == 29
    assert vc.VectorIndex.load(path).ntotal == 29


def test_pickle_and_copy_go_through_the_file_bytes(saved):
    index, _ = saved
    reduced = index.__reduce__()
    assert reduced[0] == vc.IdMapIndex.from_bytes and reduced[1] == (index.to_bytes(),)
    inner = index.index.__reduce__()
    assert inner[1] == (index.index.to_bytes(),)
    assert index.index.to_bytes().startswith(MAGIC)


def test_positional_file_loads_with_slot_ids(tmp_path, rng):
    flat = vc.FlatIndex(4, "ip")
    flat.add(rng.standard_normal((5, 4)))
    flat.save(tmp_path / "p.vecidx")
    index = vc.load(tmp_path / "p.vecidx")
    np.testing.assert_array_equal(index.ids, np.arange(5, dtype=np.uint64))
    assert index.next_id == 5
    assert isinstance(vc.VectorIndex.load(tmp_path / "p.vecidx"), vc.FlatIndex)
    assert vc.VectorIndex.load(tmp_path / "p.vecidx").to_bytes() == flat.to_bytes()


def test_vector_index_load_of_an_idmap_file_gives_the_inner_index(saved):
    index, path = saved
    inner = vc.VectorIndex.load(path)
    assert isinstance(inner, vc.FlatIndex) and inner.ntotal == 29
    assert inner.to_bytes() == index.index.to_bytes()


# --------------------------------------------------------------------------- golden files
def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("metric", vc.METRICS)
def test_golden_v1_idmap_files(metric):
    path = V1 / f"flat_{metric}.vecidx"
    index = vc.load(path)
    assert index.spec == "flat" and index.metric == metric and index.dim == 16
    assert len(index) == 61 and index.next_id == 1142
    assert 1000 not in index and 1003 not in index and 1030 not in index
    assert 1006 in index and 1117 in index and 1141 in index
    q = np.load(V1 / "queries.npy")
    ids, scores = np.load(V1 / f"flat_{metric}_ids.npy"), np.load(V1 / f"flat_{metric}_scores.npy")
    for rows in (slice(None), slice(0, 3), slice(3, 4)):  # batched and small-batch kernels
        res = index.search(q[rows], 8)
        np.testing.assert_array_equal(res.ids, ids[rows])
        np.testing.assert_array_equal(res.scores, scores[rows])
    assert index.to_bytes() == path.read_bytes(), "the writer no longer writes format v1"
    assert index.add(np.ones(16, np.float32)).tolist() == [1142]


def test_golden_v1_positional_file():
    path = V1 / "flat_ip_positional.vecidx"
    flat = vc.VectorIndex.load(path)
    assert isinstance(flat, vc.FlatIndex) and flat.ntotal == 62 and flat.metric == "ip"
    q = np.load(V1 / "queries.npy")
    res = flat.search(q, 8)
    np.testing.assert_array_equal(res.ids, np.load(V1 / "flat_ip_positional_ids.npy"))
    np.testing.assert_array_equal(res.scores, np.load(V1 / "flat_ip_positional_scores.npy"))
    wrapped = vc.load(path)
    np.testing.assert_array_equal(wrapped.search(q, 8).ids, res.ids.astype(np.uint64))
    assert flat.to_bytes() == path.read_bytes()


def test_golden_files_are_what_the_script_writes(tmp_path):
    _make_golden().main(tmp_path)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(p.name for p in V1.iterdir())
    for name in written:
        assert (tmp_path / name).read_bytes() == (V1 / name).read_bytes(), name


def test_golden_files_are_small_and_version_1():
    files = list(V1.iterdir())
    assert sum(p.stat().st_size for p in files) < 100_000
    for p in files:
        if p.suffix == ".vecidx":
            version = struct.unpack("<I", p.read_bytes()[8:12])[0]
            assert version == 1, p.name
            assert re.fullmatch(r"flat_(cosine|ip|l2)(_positional)?\.vecidx", p.name)
