"""Streaming ingestion: NumpySource, ParquetSource, ingest() and ``vecindex ingest``.

Everything runs on real files in ``tmp_path``; the kill tests SIGKILL a real child process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecindex_core as vc
from vecindex_core.cli import main
from vecindex_core.datasets import load_sample
from vecindex_core.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    InvalidArgumentError,
    InvalidDtypeError,
    InvalidParameterError,
    NonFiniteError,
)
from vecindex_core.idmap import IdMapIndex
from vecindex_core.io.ingest import IngestResult, ingest, state_path_for
from vecindex_core.io.numpy_source import NumpySource
from vecindex_core.io.parquet import ParquetSource
from vecindex_core.io.sources import Batch, Source
from vecindex_core.types import Metric

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    """The bundled sample's 5,000 x 384 MiniLM vectors (float32)."""
    return np.ascontiguousarray(load_sample().base[:5000], dtype=np.float32)


def gen(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def write_parquet(
    path: Path, x: np.ndarray, *, fixed: bool = True, ids: np.ndarray | None = None,
    row_group_size: int | None = None, value_type: Any = None, extra: dict | None = None,
) -> None:
    vt = value_type or pa.float32()
    flat = pa.array(x.reshape(-1).astype(vt.to_pandas_dtype()), type=vt)
    if fixed:
        col = pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
    else:
        offsets = pa.array(np.arange(0, x.size + 1, x.shape[1], dtype=np.int32))
        col = pa.ListArray.from_arrays(offsets, flat)
    cols: dict[str, Any] = {"embedding": col}
    if ids is not None:
        cols["id"] = pa.array(ids)
    cols.update(extra or {})
    pq.write_table(pa.table(cols), path, row_group_size=row_group_size)


def direct(spec: str, x: np.ndarray, ids: np.ndarray | None = None, metric: Metric = "ip",
           train: np.ndarray | None = None) -> IdMapIndex:
    idx = vc.create(spec, dim=x.shape[1], metric=metric)
    if train is not None:
        inner = idx.index
        inner.train(train)
        idx = IdMapIndex(inner)
    idx.add(x, np.arange(len(x), dtype=np.uint64) if ids is None else ids)
    return idx


def same_results(a: IdMapIndex, b: IdMapIndex, q: np.ndarray, k: int = 10) -> None:
    assert a.ntotal == b.ntotal
    ra, rb = a.search(q, k), b.search(q, k)
    np.testing.assert_array_equal(ra.ids, rb.ids)
    np.testing.assert_allclose(ra.scores, rb.scores, rtol=1e-5, atol=1e-6)


def state_of(path: Path) -> dict[str, Any]:
    return json.loads(state_path_for(path).read_text())


class FailingSource:
    """A real source that raises (like a dropped connection) after ``fail_after`` batches."""

    def __init__(self, inner: Source, fail_after: int) -> None:
        self.inner = inner
        self.fail_after = fail_after

    @property
    def dim(self) -> int:
        return self.inner.dim

    def count(self) -> int | None:
        return self.inner.count()

    def identity(self) -> dict[str, Any]:
        return dict(self.inner.identity())

    def batches(self, batch_size: int, resume: Any = None) -> Iterator[Batch]:
        for i, b in enumerate(self.inner.batches(batch_size, resume)):
            if i == self.fail_after:
                raise ConnectionResetError("source went away")
            yield b


# --------------------------------------------------------------------------- sources
def test_numpy_source_batches_and_resume(tmp_path: Path) -> None:
    x = gen(1003, 8).astype(np.float64)
    np.save(tmp_path / "x.npy", x)
    src = NumpySource(tmp_path / "x.npy")
    assert isinstance(src, Source)
    assert (src.dim, src.count()) == (8, 1003)
    for resume in (None, 0, 100, 999, 1003):
        got = list(src.batches(100, resume))
        start = resume or 0
        assert all(b.vectors.dtype == np.float32 and b.vectors.flags.c_contiguous for b in got)
        assert all(len(b) <= 100 for b in got)
        cat = np.concatenate([b.vectors for b in got]) if got else np.empty((0, 8))
        np.testing.assert_array_equal(cat, x[start:].astype(np.float32))
        if got:
            assert got[0].start == start and got[-1].position == 1003
    with pytest.raises(InvalidParameterError, match="1004"):
        list(src.batches(100, 1004))
    ident = src.identity()
    assert ident["shape"] == [1003, 8] and ident["path"] == str((tmp_path / "x.npy").resolve())


def test_numpy_source_fvecs_array_and_errors(tmp_path: Path) -> None:
    x = gen(50, 6)
    rows = np.hstack([np.full((50, 1), 6, dtype="<i4"), x.view("<i4")])
    (tmp_path / "x.fvecs").write_bytes(rows.tobytes())
    got = np.concatenate([b.vectors for b in NumpySource(tmp_path / "x.fvecs").batches(7)])
    np.testing.assert_array_equal(got, x)
    arr_src = NumpySource(x, ids=np.arange(50) * 2)
    b = next(iter(arr_src.batches(10, 10)))
    np.testing.assert_array_equal(b.ids, np.arange(10, 20) * 2)
    assert "digest" in arr_src.identity()
    with pytest.raises(InvalidArgumentError, match="repeat"):
        NumpySource(x, ids=np.zeros(50, dtype=np.int64))
    with pytest.raises(InvalidArgumentError, match="expected a .npy or .fvecs"):
        NumpySource(tmp_path / "x.csv")
    with pytest.raises(InvalidDtypeError, match="dtype"):
        NumpySource(np.array([["a", "b"]]))
    with pytest.raises(InvalidArgumentError, match="2-D"):
        NumpySource(np.zeros(5, dtype=np.float32))


@pytest.mark.parametrize("fixed", [True, False])
def test_parquet_source_row_groups_and_resume(tmp_path: Path, fixed: bool) -> None:
    x = gen(2500, 12)
    write_parquet(tmp_path / "a.parquet", x, fixed=fixed, ids=np.arange(2500) * 5,
                  row_group_size=300, extra={"t": [f"doc {i}" for i in range(2500)]})
    src = ParquetSource(tmp_path / "a.parquet", "embedding", id_column="id", text_column="t")
    assert (src.dim, src.count()) == (12, 2500)
    for resume in (None, 1, 299, 300, 1234, 2499, 2500):
        got = list(src.batches(256, resume))
        start = resume or 0
        cat = np.concatenate([b.vectors for b in got]) if got else np.empty((0, 12))
        np.testing.assert_array_equal(cat, x[start:])
        if got:
            assert got[0].start == start and got[-1].position == 2500
            ids = np.concatenate([b.ids for b in got])
            np.testing.assert_array_equal(ids, np.arange(start, 2500, dtype=np.uint64) * 5)
            assert got[0].texts is not None and got[0].texts[0] == f"doc {start}"
            for b in got:
                assert b.position == b.start + len(b) and len(b) <= 256


def test_parquet_directory_and_dtypes(tmp_path: Path) -> None:
    d = tmp_path / "parts"
    d.mkdir()
    x = gen(900, 10)
    # written out of name order on purpose: files are read sorted by name
    write_parquet(d / "part-2.parquet", x[600:], value_type=pa.float64(), row_group_size=100)
    write_parquet(d / "part-0.parquet", x[:250], value_type=pa.float16(), fixed=False)
    write_parquet(d / "part-1.parquet", x[250:600], row_group_size=64)
    (d / "notes.txt").write_text("not parquet")
    src = ParquetSource(d, "embedding")
    assert src.count() == 900 and [f.name for f in src.files] == [
        "part-0.parquet", "part-1.parquet", "part-2.parquet"]
    want = np.concatenate([x[:250].astype(np.float16).astype(np.float32), x[250:]])
    for resume in (None, 249, 250, 251, 600, 777):
        got = list(src.batches(128, resume))
        np.testing.assert_array_equal(np.concatenate([b.vectors for b in got]),
                                      want[resume or 0:])
        assert all(b.vectors.dtype == np.float32 for b in got)
    # a file of another dimension is rejected up front
    write_parquet(d / "part-3.parquet", gen(5, 11))
    with pytest.raises(DimensionMismatchError, match="11"):
        ParquetSource(d, "embedding")


def test_parquet_schema_errors(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"v": pa.array([[1, 2], [3, 4]], type=pa.list_(pa.int32())),
                             "s": ["a", "b"]}), p)
    with pytest.raises(InvalidArgumentError, match="no column 'embedding'.*v, s"):
        ParquetSource(p, "embedding")
    with pytest.raises(InvalidDtypeError, match="int32"):
        ParquetSource(p, "v")
    with pytest.raises(InvalidDtypeError, match="expected fixed_size_list"):
        ParquetSource(p, "s")
    write_parquet(tmp_path / "b.parquet", gen(3, 4), extra={"sid": ["x", "y", "z"]})
    with pytest.raises(InvalidDtypeError, match="id column 'sid'"):
        ParquetSource(tmp_path / "b.parquet", "embedding", id_column="sid")
    with pytest.raises(FileNotFoundError):
        ParquetSource(tmp_path / "missing.parquet", "embedding")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgumentError, match="no \\*.parquet"):
        ParquetSource(tmp_path / "empty", "embedding")


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    write_parquet(tmp_path / "a.parquet", gen(3, 4))
    code = textwrap.dedent(f"""
        import sys
        sys.modules["pyarrow"] = None
        from vecindex_core.errors import NotSupportedError
        from vecindex_core.io.parquet import ParquetSource
        try:
            ParquetSource({str(tmp_path / "a.parquet")!r}, "embedding")
        except NotSupportedError as e:
            print("ERR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert "ERR" in out.stdout and "vecindex[parquet]" in out.stdout


# --------------------------------------------------------------------------- bad rows
def test_bad_rows_are_typed_and_named(tmp_path: Path) -> None:
    x = gen(40, 4)
    # a list row of the wrong length
    rows = [list(map(float, r)) for r in x]
    rows[27] = rows[27][:3]
    pq.write_table(pa.table({"embedding": pa.array(rows, type=pa.list_(pa.float32()))}),
                   tmp_path / "len.parquet", row_group_size=10)
    src = ParquetSource(tmp_path / "len.parquet", "embedding")
    with pytest.raises(DimensionMismatchError, match="row 27 .*3 values.*expected 4"):
        ingest(src, tmp_path / "len.vi", index="flat", batch_size=8, progress=False)
    # a null vector
    rows = [list(map(float, r)) for r in x]
    rows[13] = None  # type: ignore[call-overload]
    pq.write_table(pa.table({"embedding": pa.array(rows, type=pa.list_(pa.float32()))}),
                   tmp_path / "null.parquet")
    with pytest.raises(InvalidArgumentError, match="row 13 .*null vector"):
        ingest(ParquetSource(tmp_path / "null.parquet", "embedding"), tmp_path / "null.vi",
               index="flat", batch_size=8, progress=False)
    # a null inside a fixed-size vector
    flat = pa.array([None if i == 4 * 21 + 2 else float(v) for i, v in enumerate(x.ravel())],
                    type=pa.float32())
    pq.write_table(pa.table({"embedding": pa.FixedSizeListArray.from_arrays(flat, 4)}),
                   tmp_path / "inner.parquet")
    with pytest.raises(InvalidArgumentError, match="row 21 .*null at position 2"):
        ingest(ParquetSource(tmp_path / "inner.parquet", "embedding"), tmp_path / "inner.vi",
               index="flat", progress=False)
    # NaN, named with its id
    y = x.copy()
    y[33, 1] = np.nan
    write_parquet(tmp_path / "nan.parquet", y, ids=np.arange(40) + 1000)
    with pytest.raises(NonFiniteError, match=r"row 33 \(id 1033\).*nan.*column 1"):
        ingest(ParquetSource(tmp_path / "nan.parquet", "embedding", id_column="id"),
               tmp_path / "nan.vi", index="flat", batch_size=8, progress=False)
    # what came before the failing batch is committed, and the state points at it
    idx = vc.load(tmp_path / "nan.vi")
    assert idx.ntotal == 32 and state_of(tmp_path / "nan.vi")["position"] == 32
    # ids repeating inside one batch
    write_parquet(tmp_path / "dup.parquet", x, ids=np.r_[np.arange(20), 25, np.arange(21, 40)])
    with pytest.raises(DuplicateIdError, match="25"):
        ingest(ParquetSource(tmp_path / "dup.parquet", "embedding", id_column="id"),
               vc.create("flat", dim=4), batch_size=30, progress=False)
    src_dup = NumpySource(x, ids=np.arange(40))
    idx2 = vc.create("flat", dim=4)
    idx2.add(x[:5], np.arange(5))
    r = ingest(src_dup, idx2, progress=False)  # present ids are skipped, never duplicated
    assert (r.rows_added, r.rows_skipped, idx2.ntotal) == (35, 5, 40)


def test_nan_then_fix_in_place_resumes(tmp_path: Path) -> None:
    x = gen(5000, 8)
    bad = x.copy()
    bad[2500, 3] = np.inf
    np.save(tmp_path / "x.npy", bad)
    target = tmp_path / "x.vi"
    with pytest.raises(NonFiniteError, match="row 2500 has a non-finite value inf at column 3"):
        ingest(NumpySource(tmp_path / "x.npy"), target, index="flat", metric="l2",
               batch_size=1000, checkpoint_rows=10_000, progress=False)
    assert vc.load(target).ntotal == 2000
    assert state_of(target)["position"] == 2000 and not state_of(target)["done"]
    np.save(tmp_path / "x.npy", x)  # fixed in place: same path, shape, dtype and size
    r = ingest(NumpySource(tmp_path / "x.npy"), target, batch_size=1000, progress=False)
    assert r.resumed_from == 2000 and (r.rows_added, r.rows_skipped, r.rows_done) == (
        3000, 0, 5000)
    same_results(vc.load(target), direct("flat", x, metric="l2"), x[:20])


# --------------------------------------------------------------------------- targets
@pytest.mark.parametrize("spec", ["flat", "turboquant(bits=4)"])
@pytest.mark.parametrize("kind", ["npy", "parquet-fixed", "parquet-list", "parquet-dir"])
def test_ingest_equals_direct_add(tmp_path: Path, sample: np.ndarray, spec: str,
                                  kind: str) -> None:
    x = sample[:3000]
    if kind == "npy":
        np.save(tmp_path / "x.npy", x)
        src: Source = NumpySource(tmp_path / "x.npy")
    elif kind == "parquet-dir":
        (tmp_path / "d").mkdir()
        for i, s in enumerate(range(0, 3000, 1100)):
            write_parquet(tmp_path / "d" / f"p{i}.parquet", x[s:s + 1100], row_group_size=250)
        src = ParquetSource(tmp_path / "d", "embedding")
    else:
        write_parquet(tmp_path / "x.parquet", x, fixed=kind == "parquet-fixed",
                      row_group_size=700)
        src = ParquetSource(tmp_path / "x.parquet", "embedding")
    seen: list[tuple[int, int | None]] = []
    r = ingest(src, tmp_path / "out.vi", index=spec, metric="ip", batch_size=512,
               checkpoint_rows=1000, progress=lambda done, total: seen.append((done, total)))
    assert isinstance(r, IngestResult)
    assert (r.rows_added, r.rows_skipped, r.rows_read, r.resumed_from) == (3000, 0, 3000, None)
    assert seen[-1] == (3000, 3000) and all(t == 3000 for _, t in seen)
    assert state_of(tmp_path / "out.vi")["done"] is True
    got = vc.load(tmp_path / "out.vi")
    assert got.spec == vc.create(spec, dim=384).spec
    same_results(got, direct(spec, x), sample[4000:4050])
    again = ingest(src, tmp_path / "out.vi", progress=False)  # finished: a no-op
    assert again.already_done and again.rows_added == 0 and "0 rows added" in again.summary()


def test_ingest_trains_a_kind_that_needs_training(tmp_path: Path, sample: np.ndarray) -> None:
    x = sample[:4000]
    np.save(tmp_path / "x.npy", x)
    spec = "ivf_flat(nlist=16)"
    r = ingest(NumpySource(tmp_path / "x.npy"), tmp_path / "ivf.vi", index=spec,
               metric="ip", batch_size=700, train_rows=1500, progress=False)
    assert r.rows_added == 4000
    got = vc.load(tmp_path / "ivf.vi")
    assert got.is_trained
    want = direct(spec, x, train=x[:1500])
    same_results(got, want, sample[4500:4550])


def test_ingest_into_collection(tmp_path: Path, sample: np.ndarray) -> None:
    x = sample[:1200]
    write_parquet(
        tmp_path / "docs.parquet", x, fixed=False, ids=np.arange(1200) + 7, row_group_size=500,
        extra={"text": [f"passage {i}" for i in range(1200)], "lang": ["en", "fr"] * 600},
    )
    src = ParquetSource(tmp_path / "docs.parquet", "embedding", id_column="id",
                        text_column="text", metadata_columns=["lang"])
    db = tmp_path / "docs.db"
    r = ingest(src, db, index="turboquant(bits=4)", metric="ip", batch_size=250,
               progress=False)
    assert (r.rows_added, r.rows_skipped) == (1200, 0)
    assert state_of(db)["done"] and state_of(db)["position"] == 1200
    with vc.Collection(db) as coll:
        assert coll.count() == 1200 and coll.index_spec == "turboquant"
        rec = coll.get(["10"], include_vectors=True)[0]
        assert rec.text == "passage 3" and rec.metadata == {"lang": "fr"}
        assert rec.vector is not None
        np.testing.assert_allclose(rec.vector, x[3], rtol=1e-6)
        assert coll.count({"field": "lang", "operator": "==", "value": "en"}) == 600
        hits = coll.search(x[5], k=1)
        assert hits[0].record.id == "12"
        # an open Collection object: rerun with the state removed is idempotent (skip)
        state_path_for(db).unlink()
        r2 = ingest(src, coll, batch_size=400, progress=False)
        assert (r2.rows_added, r2.rows_skipped) == (0, 1200) and coll.count() == 1200
    # an in-memory Collection: no state file, still exactly once
    mem = vc.Collection(index="flat", metric="ip")
    assert ingest(NumpySource(x[:300]), mem, progress=False).rows_added == 300
    assert ingest(NumpySource(x[:300]), mem, progress=False).rows_skipped == 300
    assert mem.count() == 300


# --------------------------------------------------------------------------- resume
def test_resume_after_a_failed_batch(tmp_path: Path, sample: np.ndarray) -> None:
    x = sample[:3000]
    np.save(tmp_path / "x.npy", x)
    target = tmp_path / "r.vi"
    src = NumpySource(tmp_path / "x.npy")
    with pytest.raises(ConnectionResetError):
        ingest(FailingSource(src, fail_after=3), target, index="turboquant(bits=4)",
               metric="ip", batch_size=400, checkpoint_rows=100_000, progress=False)
    # the three completed batches were checkpointed before the error propagated
    assert state_of(target)["position"] == 1200 and vc.load(target).ntotal == 1200
    r = ingest(src, target, batch_size=400, progress=False)
    assert r.resumed_from == 1200 and (r.rows_added, r.rows_skipped, r.rows_done) == (
        1800, 0, 3000)
    same_results(vc.load(target), direct("turboquant(bits=4)", x), sample[4000:4040])


def test_index_ahead_of_state_is_skipped_not_duplicated(tmp_path: Path) -> None:
    """The crash window: index saved, state file not yet written."""
    x = gen(6000, 16)
    np.save(tmp_path / "x.npy", x)
    target = tmp_path / "w.vi"
    early: list[str] = []

    def keep_early_state(done: int, total: int | None) -> None:
        if done == 2000:
            early.append(state_path_for(target).read_text())

    ingest(NumpySource(tmp_path / "x.npy"), target, index="flat", metric="l2",
           batch_size=500, checkpoint_rows=1000, progress=keep_early_state)
    assert json.loads(early[0])["position"] == 2000
    state_path_for(target).write_text(early[0])  # the state is behind the saved index
    r = ingest(NumpySource(tmp_path / "x.npy"), target, batch_size=500, progress=False)
    assert (r.resumed_from, r.rows_added, r.rows_skipped) == (2000, 0, 4000)
    idx = vc.load(target)
    assert idx.ntotal == 6000
    np.testing.assert_array_equal(np.sort(idx.ids), np.arange(6000, dtype=np.uint64))


def test_identity_mismatch_and_target_checks(tmp_path: Path) -> None:
    x = gen(1000, 8)
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", x[:900])
    target = tmp_path / "t.vi"
    with pytest.raises(ConnectionResetError):
        ingest(FailingSource(NumpySource(tmp_path / "a.npy"), 1), target, index="flat",
               batch_size=100, progress=False)
    with pytest.raises(InvalidArgumentError, match="another source.*remove the state file"):
        ingest(NumpySource(tmp_path / "b.npy"), target, progress=False)
    with pytest.raises(InvalidArgumentError, match="holds 'flat'"):
        ingest(NumpySource(tmp_path / "a.npy"), target, index="turboquant", progress=False)
    with pytest.raises(InvalidArgumentError, match="uses 'cosine'"):
        ingest(NumpySource(tmp_path / "a.npy"), target, metric="ip", progress=False)
    with pytest.raises(DimensionMismatchError, match="4 dimensions.*holds 8"):
        ingest(NumpySource(gen(10, 4)), target, state_path=tmp_path / "u.state",
               progress=False)
    with pytest.raises(InvalidArgumentError, match="pass index="):
        ingest(NumpySource(x), tmp_path / "new.vi", progress=False)
    with pytest.raises(InvalidArgumentError, match="unknown metric"):
        ingest(NumpySource(x), tmp_path / "new.vi", index="flat", metric="dot",  # type: ignore[arg-type]
               progress=False)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        ingest(NumpySource(x), tmp_path / "new.vi", index="flat", batch_size=0, progress=False)
    with pytest.raises(InvalidArgumentError, match="Source protocol"):
        ingest(x, tmp_path / "new.vi", index="flat", progress=False)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="state_path needs"):
        ingest(NumpySource(x), vc.create("flat", dim=8), state_path=tmp_path / "s.json",
               progress=False)
    ingest(NumpySource(x), tmp_path / "gone.vi", index="flat", progress=False)
    (tmp_path / "gone.vi").unlink()  # a finished state whose index was deleted
    with pytest.raises(InvalidArgumentError, match="does not exist; remove the state file"):
        ingest(NumpySource(x), tmp_path / "gone.vi", index="flat", progress=False)
    state_path_for(tmp_path / "c.vi").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="not a vecindex ingest state"):
        ingest(NumpySource(x), tmp_path / "c.vi", index="flat", progress=False)
    assert not (tmp_path / "new.vi").exists()


# --------------------------------------------------------------------------- kill -9
CHILD = textwrap.dedent("""
    import sys, time
    from vecindex_core.io.ingest import ingest
    from vecindex_core.io.numpy_source import NumpySource
    src, into, spec = sys.argv[1:4]
    # a short pause a batch keeps the child alive long enough to be killed mid-stream
    ingest(NumpySource(src), into, index=spec, metric="l2", batch_size=2000,
           checkpoint_rows=10_000, progress=lambda done, total: time.sleep(0.02))
""")


@pytest.mark.parametrize("target_name,n", [("k.vi", 200_000), ("k.db", 30_000)])
def test_kill_mid_ingest_then_rerun_is_exactly_once(
    tmp_path: Path, target_name: str, n: int
) -> None:
    x = gen(n, 16, seed=3)
    np.save(tmp_path / "x.npy", x)
    target = tmp_path / target_name
    spec = "flat"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "x.npy"),
                             str(target), spec], cwd=ROOT, stderr=subprocess.PIPE)
    sp = state_path_for(target)
    try:
        while proc.poll() is None:
            if sp.exists():
                try:
                    st = json.loads(sp.read_text())
                except ValueError:  # never torn (atomic rename), but be strict about it
                    raise AssertionError("torn state file") from None
                if st["rows_done"] >= n // 5:
                    break
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    st = json.loads(sp.read_text())
    assert not st["done"] and 0 < st["rows_done"] < n
    r = ingest(NumpySource(tmp_path / "x.npy"), target, batch_size=5000, progress=False)
    assert r.resumed_from == st["position"] and r.rows_done == n
    pick = np.random.default_rng(0).choice(n, 50, replace=False)
    if target_name.endswith(".vi"):
        idx = vc.load(target)
        assert idx.ntotal == n
        np.testing.assert_array_equal(np.sort(idx.ids), np.arange(n, dtype=np.uint64))
        np.testing.assert_array_equal(idx.get_vectors(pick), x[pick])
    else:
        with vc.Collection(target) as coll:
            assert coll.count() == n
            recs = coll.get([str(i) for i in pick], include_vectors=True)
            assert [r.id for r in recs] == [str(i) for i in pick]
            vecs = [r.vector for r in recs if r.vector is not None]
            np.testing.assert_array_equal(np.stack(vecs), x[pick])
            assert sorted(int(r.id) for r in coll.find()) == list(range(n))


# --------------------------------------------------------------------------- CLI
def test_cli_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = gen(2000, 8)
    np.save(tmp_path / "x.npy", x)
    write_parquet(tmp_path / "x.parquet", x, ids=np.arange(2000) + 1, row_group_size=300)
    out = tmp_path / "cli.vi"
    rc = main(["ingest", str(tmp_path / "x.npy"), "--into", str(out), "--index", "flat",
               "--metric", "l2", "--batch-size", "300", "--no-progress"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert "2000 rows added, 0 skipped" in line and "rows/s" in line and "\n" not in line
    assert vc.load(out).ntotal == 2000
    assert main(["ingest", str(tmp_path / "x.npy"), "--into", str(out), "--no-progress"]) == 0
    assert "0 rows added" in capsys.readouterr().out
    rc = main(["ingest", str(tmp_path / "x.parquet"), "--into", str(tmp_path / "p.db"),
               "--id-column", "id", "--index", "flat", "--no-progress"])
    assert rc == 0 and "2000 rows added" in capsys.readouterr().out
    with vc.Collection(tmp_path / "p.db") as coll:
        assert coll.count() == 2000 and coll.get(["2000"])[0].id == "2000"

    def fails(argv: list[str], match: str) -> None:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("vecindex: error:") and err.count("\n") == 1 and match in err, err

    fails(["ingest", str(tmp_path / "x.npy"), "--into", str(tmp_path / "n.vi")], "pass index=")
    fails(["ingest", str(tmp_path / "x.csv"), "--into", str(out)], "unknown source")
    fails(["ingest", str(tmp_path / "x.npy"), "--into", str(tmp_path / "n.vi"),
           "--index", "nope"], "nope")
    fails(["ingest", str(tmp_path / "x.npy"), "--into", str(tmp_path / "n.vi"),
           "--index", "flat", "--id-column", "id"], "--id-column does not apply")
    fails(["ingest", str(tmp_path / "x.parquet"), "--into", str(tmp_path / "n.vi"),
           "--index", "flat", "--vector-column", "vec"], "no column 'vec'")
    fails(["ingest", "postgresql://u@127.0.0.1:1/db", "--into", str(tmp_path / "n.vi")],
          "--table or --query")
    fails(["ingest", str(tmp_path / "missing.npy"), "--into", str(tmp_path / "n.vi"),
           "--index", "flat"], "missing.npy")
    fails(["ingest", str(tmp_path / "x.npy"), "--into", str(tmp_path / "n.vi"),
           "--batch-size", "0"], "batch-size")
    bad = x.copy()
    bad[1234, 0] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    fails(["ingest", str(tmp_path / "bad.npy"), "--into", str(tmp_path / "bad.vi"),
           "--index", "flat", "--no-progress"], "row 1234")
    assert not (tmp_path / "n.vi").exists()


def test_cli_subprocess_exit_codes(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", gen(100, 4))
    exe = [sys.executable, "-m", "vecindex_core.cli", "ingest"]
    ok = subprocess.run([*exe, str(tmp_path / "x.npy"), "--into", str(tmp_path / "x.vi"),
                         "--index", "flat"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0 and "100 rows added" in ok.stdout, ok.stderr
    bad = subprocess.run([*exe, str(tmp_path / "x.npy")], capture_output=True, text=True,
                         cwd=ROOT)
    assert bad.returncode == 2 and "--into" in bad.stderr


def test_progress_bar_and_checkpoint_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = gen(900, 4)
    r = ingest(NumpySource(x), tmp_path / "p.vi", index="flat", batch_size=300,
               checkpoint_rows=10_000, checkpoint_seconds=1e-9, progress="always")
    assert r.rows_added == 900
    assert "900/900" in capsys.readouterr().err  # the tqdm bar, on stderr
    with pytest.raises(InvalidArgumentError, match="checkpoint_seconds"):
        ingest(NumpySource(x), tmp_path / "q.vi", index="flat", checkpoint_seconds=0,
               progress=False)
    with pytest.raises(InvalidArgumentError, match="progress"):
        ingest(NumpySource(x), tmp_path / "q.vi", index="flat", progress="sometimes")


def test_cli_ingest_from_postgres(postgres_dsn: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import psycopg

    x = gen(700, 8)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id bigint PRIMARY KEY, emb real[], body text)")
        with conn.cursor().copy("COPY items (id, emb, body) FROM STDIN") as cp:
            for i, row in enumerate(x):
                cp.write_row((i * 2, row.tolist(), f"text {i}"))
    out = tmp_path / "pg.vi"
    argv = ["ingest", postgres_dsn, "--table", "items", "--vector-column", "emb",
            "--id-column", "id", "--into", str(out), "--index", "flat", "--metric", "l2",
            "--batch-size", "128", "--no-progress"]
    assert main(argv) == 0
    assert "700 rows added" in capsys.readouterr().out
    idx = vc.load(out)
    np.testing.assert_array_equal(np.sort(idx.ids), np.arange(700, dtype=np.uint64) * 2)
    np.testing.assert_array_equal(idx.get_vectors([10]), x[5:6])
    assert main(argv) == 0 and "0 rows added" in capsys.readouterr().out
    db = tmp_path / "pg.db"
    assert main([*argv[:8], "--text-column", "body", "--into", str(db), "--no-progress"]) == 0
    with vc.Collection(db) as coll:
        assert coll.count() == 700 and coll.get(["10"])[0].text == "text 5"
    capsys.readouterr()
    assert main(["ingest", postgres_dsn, "--table", "no_such_table", "--vector-column", "emb",
                 "--into", str(tmp_path / "x.vi"), "--index", "flat"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vecindex: error:") and err.count("\n") == 1


# --------------------------------------------------------------------------- review fixes
def test_second_ingest_into_the_same_target_is_refused(tmp_path: Path) -> None:
    """Two ingestions into one target would interleave index saves and lose rows: a lock."""
    x = gen(1000, 8)
    target = tmp_path / "l.vi"
    errors: list[str] = []

    def meanwhile(done: int, total: int | None) -> None:
        if done == 200:  # a second ingestion starts while the first holds the target
            with pytest.raises(InvalidArgumentError, match="another ingestion into") as e:
                ingest(NumpySource(x[:10] + 1), target, index="flat", progress=False,
                       state_path=tmp_path / "other.json")
            errors.append(str(e.value))

    r = ingest(NumpySource(x), target, index="flat", batch_size=100, checkpoint_rows=100,
               progress=meanwhile)
    assert r.rows_added == 1000 and len(errors) == 1 and str(os.getpid()) in errors[0]
    assert vc.load(target).ntotal == 1000 and not (tmp_path / "other.json").exists()
    assert not Path(str(target) + ".ingest.lock").exists()  # removed when done
    # a lock file left by a dead process (kill -9) does not block: flock died with it
    Path(str(target) + ".ingest.lock").write_text("999999\n")
    assert ingest(NumpySource(x), target, progress=False).already_done


def test_corrupt_state_files_raise_typed_errors(tmp_path: Path) -> None:
    x = gen(20, 4)
    for name, data in (("bin", b"\xff\xfe\x00\x81garbage"), ("trunc", b'{"format": "vecin'),
                       ("version", json.dumps({"format": "vecindex-ingest", "rows_done": 1,
                                               "source": {}, "version": "x"}).encode())):
        state_path_for(tmp_path / f"{name}.vi").write_bytes(data)
        with pytest.raises(InvalidArgumentError, match="not a vecindex ingest state"):
            ingest(NumpySource(x), tmp_path / f"{name}.vi", index="flat", progress=False)


def test_explicit_state_path_of_another_target_raises(tmp_path: Path) -> None:
    """Resuming target B from target A's state would silently skip rows B never got."""
    x = gen(300, 4)
    np.save(tmp_path / "x.npy", x)
    shared = tmp_path / "shared.json"
    ingest(NumpySource(tmp_path / "x.npy"), tmp_path / "a.vi", index="flat",
           state_path=shared, progress=False)
    vc.create("flat", dim=4).save(tmp_path / "b.vi")  # an existing, empty target
    with pytest.raises(InvalidArgumentError, match="records progress into.*a.vi.*not.*b.vi"):
        ingest(NumpySource(tmp_path / "x.npy"), tmp_path / "b.vi", state_path=shared,
               progress=False)
    assert vc.load(tmp_path / "b.vi").ntotal == 0
    # the same target by another spelling of its path is the same target
    os.chdir(tmp_path)
    try:
        assert ingest(NumpySource("x.npy"), "a.vi", state_path="shared.json",
                      progress=False).already_done
    finally:
        os.chdir(ROOT)


def test_rerun_after_done_with_appended_rows_adds_only_them(tmp_path: Path) -> None:
    x = gen(700, 6)
    np.save(tmp_path / "x.npy", x[:400])
    target = tmp_path / "g.vi"
    ingest(NumpySource(tmp_path / "x.npy"), target, index="flat", metric="l2", progress=False)
    np.save(tmp_path / "x.npy", x)  # more rows appended to the same file
    r = ingest(NumpySource(tmp_path / "x.npy"), target, batch_size=128, progress=False)
    assert (r.resumed_from, r.rows_added, r.rows_skipped, r.rows_done) == (400, 300, 0, 700)
    same_results(vc.load(target), direct("flat", x, metric="l2"), x[:10])
    assert ingest(NumpySource(tmp_path / "x.npy"), target, progress=False).already_done
    # a Parquet directory that gained a file after the old ones
    d = tmp_path / "parts"
    d.mkdir()
    write_parquet(d / "p0.parquet", x[:250], row_group_size=100)
    write_parquet(d / "p1.parquet", x[250:500], row_group_size=100)
    pt = tmp_path / "p.vi"
    ingest(ParquetSource(d, "embedding"), pt, index="flat", metric="l2", progress=False)
    write_parquet(d / "p2.parquet", x[500:], row_group_size=100)
    r = ingest(ParquetSource(d, "embedding"), pt, progress=False)
    assert (r.resumed_from, r.rows_added, r.rows_skipped) == (500, 200, 0)
    same_results(vc.load(pt), direct("flat", x, metric="l2"), x[:10])
    # a file that sorts before the old ones changes row numbers: not a mere extension
    write_parquet(d / "a.parquet", x[:5])
    with pytest.raises(InvalidArgumentError, match="another source"):
        ingest(ParquetSource(d, "embedding"), pt, progress=False)


def test_parquet_corrupt_and_hidden_files(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "parts"
    d.mkdir()
    x = gen(50, 4)
    write_parquet(d / "p0.parquet", x)
    (d / "_tmp.parquet").write_bytes(b"half-written")  # writers' temporaries are skipped
    (d / ".p0.parquet.crc").write_bytes(b"crc")
    (d / ".hidden.parquet").write_bytes(b"")
    src = ParquetSource(d, "embedding")
    assert [f.name for f in src.files] == ["p0.parquet"] and src.count() == 50
    (d / "p1.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InvalidArgumentError, match="p1.parquet.*not a Parquet file"):
        ParquetSource(d, "embedding")
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(InvalidArgumentError, match="x.npy.*not a Parquet file"):
        ParquetSource(tmp_path / "x.npy", "embedding")
    assert main(["ingest", str(d), "--into", str(tmp_path / "c.vi"), "--index", "flat",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vecindex: error:") and "not a Parquet file" in err
    assert err.count("\n") == 1


def test_cli_metadata_schema_training_and_time_checkpoints(
    postgres_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    x = gen(600, 8)
    write_parquet(tmp_path / "m.parquet", x, ids=np.arange(600),
                  extra={"tag": pa.array([f"t{i % 3}" for i in range(600)])})
    db = tmp_path / "m.db"
    assert main(["ingest", str(tmp_path / "m.parquet"), "--into", str(db), "--id-column", "id",
                 "--metadata-columns", "tag", "--index", "flat", "--checkpoint-seconds",
                 "0.001", "--no-progress"]) == 0
    with vc.Collection(db) as coll:
        assert coll.get(["4"])[0].metadata == {"tag": "t1"}
        assert coll.count({"field": "meta.tag", "operator": "==", "value": "t0"}) == 200
    # a kind that needs training trains on --train-rows rows first
    out = tmp_path / "ivf.vi"
    assert main(["ingest", str(tmp_path / "m.parquet"), "--into", str(out), "--id-column",
                 "id", "--index", "ivf_flat(nlist=4)", "--train-rows", "400",
                 "--no-progress"]) == 0
    assert vc.load(out).ntotal == 600
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "My Schema"')
        conn.execute('CREATE TABLE "My Schema".items (id bigint PRIMARY KEY, emb real[], '
                     "tag text)")
        with conn.cursor().copy('COPY "My Schema".items (id, emb, tag) FROM STDIN') as cp:
            for i, row in enumerate(x[:50]):
                cp.write_row((i, row.tolist(), f"t{i % 2}"))
    capsys.readouterr()
    assert main(["ingest", postgres_dsn, "--table", "items", "--schema", "My Schema",
                 "--vector-column", "emb", "--id-column", "id", "--metadata-columns", "tag",
                 "--into", str(tmp_path / "pg.db"), "--index", "flat", "--no-progress"]) == 0
    assert "50 rows added" in capsys.readouterr().out
    with vc.Collection(tmp_path / "pg.db") as coll:
        assert coll.get(["3"])[0].metadata == {"tag": "t1"}
    for argv, match in (
        (["--schema", "s"], "--schema is for postgresql://"),
        (["--metadata-columns", "a,,b"], "empty name"),
        (["--checkpoint-seconds", "0"], "checkpoint-seconds"),
    ):
        assert main(["ingest", str(tmp_path / "m.parquet"), "--into",
                     str(tmp_path / "z.vi"), "--index", "flat", *argv]) == 2
        assert match in capsys.readouterr().err
