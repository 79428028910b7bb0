"""Streaming, resumable ingestion into an index file, an index or a Collection: :func:`ingest`.

Memory
------
Ingestion holds one batch of the source (plus the index itself) at a time. An index kind
that needs training and is created here is trained first on the source's first
``train_rows`` rows (the only time more than a batch is held), then the source is streamed
again from row 0.

Resume and exactly once
-----------------------
*Index file target.* Every ``checkpoint_rows`` rows (or ``checkpoint_seconds``) the index is
saved atomically (temporary file, fsync, rename) and **then** a sidecar state file
``<path>.ingest.json`` is written atomically the same way. It records the source's identity,
the position of the last saved batch and the rows done. A restart with the same source
resumes after that position. A crash between the two writes leaves the index ahead of the
state: the rows read again are recognised by id (one vectorised hash-table lookup a batch)
and skipped, never added twice. Ids are the source's id column, else the global row
number (uint64). Only the ids of the saved index count, so the same rule makes ingesting a
source into an index that already holds some of its ids idempotent, and a source id that
repeats in a later batch is skipped (and counted in ``rows_skipped``) rather than duplicated.

*Collection target.* Ids are ``str(id)`` and each batch is one ``upsert(...,
on_duplicate="skip")``, which SQLite commits before returning. The state file
``<collection path>.ingest.json`` is rewritten after every committed batch. The state lives
in a sidecar, not in a table of the Collection's SQLite file, because the same code serves
every :class:`~vecindex_core.documents.BaseCollection` (SQLite or Milvus) through its public
API only; "skip" makes the one-batch window between the commit and the state write safe.
A Collection without a local path (in memory, or a server URI) gets no state file unless
``state_path`` is given; rerunning it is still idempotent (every row is skipped).

A state file of another source raises :class:`~vecindex_core.errors.InvalidArgumentError`
telling the user to remove it or pick another target, except a source that only grew at
its end (more files after the old ones of a Parquet directory, more rows in a ``.npy``
file): ingestion then continues after the recorded position. A finished ingestion marks
its state ``done``; running it again with the same source is a no-op that reports 0 rows
added, except for a source that follows appends (a PostgreSQL table read in key order,
:func:`~vecindex_core.io.sources.follows_appends`), whose rerun reads the rows added since.
An explicit ``state_path`` records its target, and naming it for another target
raises.

*One at a time.* While it runs, ingestion holds an exclusive ``flock`` on
``<target path>.ingest.lock`` (removed at the end; the kernel releases it when the process
dies, even by ``kill -9``). A second ingestion into the same target raises
:class:`~vecindex_core.errors.InvalidArgumentError` naming the holder's process id instead
of interleaving index saves and losing rows.

Failures
--------
A bad row (wrong length, null, NaN or infinity) raises the source's or our typed error
naming the global row (and its id). Everything before the failing batch is kept: ingestion
checkpoints the batches it completed (saves the index, writes the state) before raising,
so the state file points at the last committed batch and a rerun continues from there.
A ``kill -9`` loses at most the rows since the last checkpoint, which a rerun reads again.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..documents import BaseCollection
from ..errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    NonFiniteError,
    VecIndexError,
)
from ..idmap import IdMapIndex
from ..registry import format_spec, resolve_spec
from ..types import IdArray, Metric
from ..validation import as_ids, check_int, check_metric
from .format import atomic_write
from .sources import Batch, JSONValue, Source, follows_appends

__all__ = [
    "LOCK_SUFFIX", "STATE_SUFFIX", "IngestResult", "ProgressCallback", "ingest", "state_path_for",
]

#: Suffix of the checkpoint state file written beside the target.
STATE_SUFFIX = ".ingest.json"
_STATE_FORMAT = "vecindex-ingest"
_STATE_VERSION = 1
#: Path suffixes that mean "a Collection (SQLite file)" rather than an index file.
_COLLECTION_SUFFIXES = (".db", ".sqlite", ".sqlite3")
#: Default rows sampled to train an index kind that needs training (at least its minimum).
_DEFAULT_TRAIN_ROWS = 50_000

#: ``callback(rows_done, rows_total)``; ``rows_total`` is None when the source cannot tell.
ProgressCallback = Callable[[int, "int | None"], None]


@dataclass(frozen=True)
class IngestResult:
    """What one :func:`ingest` call did.

    Attributes
    ----------
    target : str
        The index file, Collection path, or a description of an in-memory target.
    rows_added : int
        Rows added by this call.
    rows_skipped : int
        Rows read by this call whose id was already present (not added again).
    rows_read : int
        Rows read by this call (``rows_added + rows_skipped``).
    rows_done : int
        Rows done over every run of this ingestion, this one included.
    elapsed_s : float
        Wall-clock seconds of this call (training and checkpoints included).
    resumed_from : JSON value
        The position this call resumed after; None when it started at the beginning.
    already_done : bool
        The state file said the ingestion had finished: nothing was read.
    """

    target: str
    rows_added: int
    rows_skipped: int
    rows_read: int
    rows_done: int
    elapsed_s: float
    resumed_from: JSONValue = None
    already_done: bool = False

    @property
    def rows_per_s(self) -> float:
        """Rows read per second by this call (0.0 when nothing was read)."""
        return self.rows_read / self.elapsed_s if self.elapsed_s > 0 and self.rows_read else 0.0

    def summary(self) -> str:
        """One line for people: rows added and skipped, rate, and where it resumed."""
        if self.already_done:
            return (
                f"{self.target}: already ingested ({self.rows_done} rows); 0 rows added, "
                "nothing to do"
            )
        line = (
            f"{self.target}: {self.rows_added} rows added, {self.rows_skipped} skipped "
            f"(already present), {self.rows_per_s:,.0f} rows/s, {self.elapsed_s:.1f} s"
        )
        if self.resumed_from is not None:
            line += f", resumed after position {self.resumed_from}"
        return line


def state_path_for(target: str | os.PathLike[str]) -> Path:
    """The checkpoint state file of an index file or Collection path: ``<path>.ingest.json``."""
    return Path(os.fspath(target) + STATE_SUFFIX)


# --------------------------------------------------------------------------- state file
def _canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists...), for comparisons."""
    return json.loads(json.dumps(value, sort_keys=True))


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        data = b""
    try:
        state = json.loads(data.decode("utf-8"))  # bad UTF-8 is a ValueError too
        ok = (
            isinstance(state, dict)
            and state.get("format") == _STATE_FORMAT
            and isinstance(state.get("rows_done"), int)
            and not isinstance(state.get("rows_done"), bool)
            and isinstance(state.get("version", 0), int)
            and "source" in state
        )
    except ValueError:
        ok = False
    if not ok:
        raise InvalidArgumentError(
            f"ingestion state file {str(path)!r} is not a vecindex ingest state (corrupt or "
            "foreign); remove it to start the ingestion over"
        )
    if state.get("version", 0) > _STATE_VERSION:
        raise InvalidArgumentError(
            f"ingestion state file {str(path)!r} has version {state['version']}, newer than "
            f"this library's {_STATE_VERSION}; upgrade vecindex or remove the file"
        )
    return dict(state)


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` atomically: temporary file, fsync, rename, fsync the directory."""
    data = json.dumps({"format": _STATE_FORMAT, "version": _STATE_VERSION, **state},
                      sort_keys=True, indent=1).encode()
    atomic_write(path, lambda f: f.write(data))


# --------------------------------------------------------------------------- targets
class _Target:
    """Where rows go. ``write`` applies one checked batch; ``commit`` makes writes durable."""

    label: str = ""
    state_path: Path | None = None
    commit_each_batch = False

    def write(self, batch: Batch, x: npt.NDArray[np.float32], ids: IdArray) -> tuple[int, int]:
        raise NotImplementedError

    def commit(self) -> None:
        """Make every write so far durable (before the state file names it)."""

    def finish(self) -> None:
        """Called once after the last batch was committed."""

    def close(self) -> None:
        """Release what the target opened."""


class _IndexTarget(_Target):
    """An :class:`IdMapIndex`, saved to ``path`` at each commit when it has one."""

    def __init__(self, idx: IdMapIndex, path: Path | None, label: str) -> None:
        self.idx = idx
        self.path = path
        self.label = label
        self.state_path = None if path is None else state_path_for(path)

    def write(self, batch: Batch, x: npt.NDArray[np.float32], ids: IdArray) -> tuple[int, int]:
        present = self.idx.contains_ids(ids)
        n_present = int(np.count_nonzero(present))
        if n_present == 0:
            self.idx.add(x, ids)
        elif n_present < ids.size:
            keep = ~present
            self.idx.add(x[keep], ids[keep])
        return ids.size - n_present, n_present

    def commit(self) -> None:
        if self.path is not None:
            self.idx.save(self.path)


class _CollectionTarget(_Target):
    """A Collection: one ``upsert(on_duplicate="skip")`` transaction a batch."""

    commit_each_batch = True

    def __init__(self, coll: BaseCollection, owned: bool, state_path: Path | None) -> None:
        self.coll = coll
        self.owned = owned
        self.label = coll.path or f"in-memory {type(coll).__name__}"
        self.state_path = state_path

    def write(self, batch: Batch, x: npt.NDArray[np.float32], ids: IdArray) -> tuple[int, int]:
        written = self.coll.upsert(
            ids=[str(i) for i in ids.tolist()], texts=batch.texts, vectors=x,
            metadatas=batch.metadatas, on_duplicate="skip",
        )
        return len(written), ids.size - len(written)

    def finish(self) -> None:
        self.coll.flush()

    def close(self) -> None:
        if self.owned:
            self.coll.close()


def _canonical_spec(spec: str) -> str:
    kind, params = resolve_spec(spec)
    return format_spec(kind.name, kind.validate_params(params))


def _train_sample(source: Source, rows: int, batch_size: int) -> npt.NDArray[np.float32]:
    """The source's first ``rows`` rows (checked), for training."""
    parts: list[npt.NDArray[np.float32]] = []
    got = 0
    for batch in source.batches(min(batch_size, rows)):
        x, _ = _check_batch(batch, source.dim)
        parts.append(x[: rows - got])
        got += parts[-1].shape[0]
        if got >= rows:
            break
    if not parts:
        return np.empty((0, source.dim), dtype=np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _open_index_file(
    source: Source, path: Path, index: str | None, metric: Metric | None,
    train_rows: int | None, batch_size: int, has_state: bool,
) -> IdMapIndex:
    from ..api import create, load

    if path.exists():
        idx = load(path)
        if idx.dim != source.dim:
            raise DimensionMismatchError(
                f"the source has {source.dim} dimensions, but index file {str(path)!r} holds "
                f"{idx.dim}"
            )
        if metric is not None and metric != idx.metric:
            raise InvalidArgumentError(
                f"metric {metric!r} was asked for, but index file {str(path)!r} uses "
                f"{idx.metric!r}; omit metric or pick another target"
            )
        if index is not None and _canonical_spec(index) != idx.spec:
            raise InvalidArgumentError(
                f"index {index!r} was asked for, but index file {str(path)!r} holds "
                f"{idx.spec!r}; omit index or pick another target"
            )
        return idx
    if has_state:
        raise InvalidArgumentError(
            f"ingestion state file {str(state_path_for(path))!r} records progress into "
            f"{str(path)!r}, which does not exist; remove the state file to start over"
        )
    if index is None:
        raise InvalidArgumentError(
            f"index file {str(path)!r} does not exist: pass index= (a spec such as "
            "'turboquant(bits=4)') to create it"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    idx = create(index, dim=source.dim, metric=metric or "cosine")
    if idx.is_trained:
        return idx
    need = idx.index.min_train_size
    want = max(need, train_rows if train_rows is not None else _DEFAULT_TRAIN_ROWS)
    total = source.count()
    if total is not None and total < need:
        return idx  # too few rows to train: the IdMapIndex stages them (exact search)
    sample = _train_sample(source, want, batch_size)
    if sample.shape[0] < need:
        return idx
    inner = idx.index
    inner.train(sample)
    del sample
    return IdMapIndex(inner)


def _default_state_path(into: object) -> Path | None:
    """``<path>.ingest.json`` for a path or a Collection with a local path; else None."""
    if isinstance(into, (str, os.PathLike)):
        return state_path_for(into)
    if isinstance(into, BaseCollection):
        where = into.path
        if where is not None and "://" not in where and where != ":memory:":
            return state_path_for(where)
    return None


def _resolve_target(
    source: Source, into: object, index: str | None, metric: Metric | None,
    train_rows: int | None, batch_size: int, state_path: Path | None,
) -> _Target:
    if isinstance(into, IdMapIndex):
        if state_path is not None:  # the state would outlive the unsaved rows it counts
            raise InvalidArgumentError(
                "state_path needs a target that ingestion makes durable (an index file or a "
                "Collection); an in-memory IdMapIndex is saved by its caller"
            )
        if into.dim != source.dim:
            raise DimensionMismatchError(
                f"the source has {source.dim} dimensions, but the index holds {into.dim}"
            )
        target: _Target = _IndexTarget(into, None, f"in-memory {into.spec} index")
        target.state_path = state_path
        return target
    if isinstance(into, BaseCollection):
        coll, owned = into, False
    elif isinstance(into, (str, os.PathLike)):
        path = Path(into)
        if path.suffix.lower() not in _COLLECTION_SUFFIXES:
            has_state = state_path is not None and state_path.exists()
            target = _IndexTarget(
                _open_index_file(source, path, index, metric, train_rows, batch_size,
                                 has_state),
                path, str(path),
            )
            target.state_path = state_path
            return target
        from ..collection import Collection

        new_dim = None if path.exists() else source.dim
        coll, owned = Collection(path, index=index, metric=metric, dim=new_dim), True
    else:
        raise InvalidArgumentError(
            "into must be an index file path, a Collection (or a .db/.sqlite path), or an "
            f"IdMapIndex, got {type(into).__name__}"
        )
    if coll.dim is not None and coll.dim != source.dim:
        if owned:
            coll.close()
        raise DimensionMismatchError(
            f"the source has {source.dim} dimensions, but collection {coll.path!r} holds "
            f"{coll.dim}"
        )
    return _CollectionTarget(coll, owned, state_path)


# --------------------------------------------------------------------------- checks
def _where(batch: Batch, i: int) -> str:
    row = f"row {batch.start + i}"
    if batch.ids is not None:
        row += f" (id {int(batch.ids[i])})"
    return row


def _check_batch(batch: Batch, dim: int) -> tuple[npt.NDArray[np.float32], IdArray]:
    """A batch's finite float32 (n, dim) vectors and uint64 ids; typed errors name the row."""
    x = batch.vectors
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise InvalidArgumentError(
            f"the source yielded vectors of type {type(x).__name__} with shape "
            f"{getattr(x, 'shape', None)} for the batch at row {batch.start}, expected a "
            "2-D float32 array"
        )
    n = x.shape[0]
    if x.shape[1] != dim:
        raise DimensionMismatchError(
            f"rows {batch.start}..{batch.start + n - 1} have {x.shape[1]} dimensions, "
            f"expected {dim}"
        )
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        with np.errstate(over="ignore"):
            x = np.ascontiguousarray(x, dtype=np.float32)
    finite = np.isfinite(x)
    if not finite.all():
        r, c = np.argwhere(~finite)[0]
        raise NonFiniteError(
            f"{_where(batch, int(r))} has a non-finite value {x[r, c]} at column {c}"
        )
    if batch.ids is None:
        ids = np.arange(batch.start, batch.start + n, dtype=np.uint64)
    else:
        ids = as_ids(batch.ids, n, name=f"ids of rows {batch.start}..{batch.start + n - 1}")
    for name, col in (("texts", batch.texts), ("metadatas", batch.metadatas)):
        if col is not None and len(col) != n:
            raise InvalidArgumentError(
                f"the batch at row {batch.start} has {len(col)} {name} for {n} vectors"
            )
    return x, ids


def _progress_hook(
    progress: bool | str | ProgressCallback, total: int | None, initial: int
) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """``(update(rows_done, delta), close())`` for a callback, a tqdm bar, or nothing."""
    if callable(progress):
        cb = progress
        return (lambda done, _delta: cb(done, total)), (lambda: None)
    want = progress == "always" or (progress is True and sys.stderr.isatty())
    if want:
        try:
            from tqdm import tqdm
        except ImportError:
            want = False
    if not want:
        return (lambda _done, _delta: None), (lambda: None)
    bar = tqdm(total=total, initial=initial, unit="rows", unit_scale=True, file=sys.stderr,
               desc="ingest", dynamic_ncols=True)
    return (lambda _done, delta: bar.update(delta)), bar.close


# --------------------------------------------------------------------------- lock, target
#: Suffix of the lock file held beside the target while an ingestion runs.
LOCK_SUFFIX = ".ingest.lock"


def _target_key(into: object) -> str | None:
    """The absolute path (or server URI) of a durable target; None for one in memory."""
    if isinstance(into, (str, os.PathLike)):
        return str(Path(into).resolve())
    if isinstance(into, BaseCollection):
        where = into.path
        if where is None or where == ":memory:":
            return None
        return where if "://" in where else str(Path(where).resolve())
    return None


def _lock_path_for(into: object, state: Path | None) -> Path | None:
    """``<target path>.ingest.lock`` for a local target; ``<state>.lock`` else; or None."""
    key = _target_key(into)
    if key is not None and "://" not in key:
        return Path(key + LOCK_SUFFIX)
    return None if state is None else Path(os.fspath(state) + ".lock")


def _acquire_lock(path: Path, into: object) -> int | None:
    """Hold an exclusive ``flock`` on ``path`` (created), or raise if another process does.

    The kernel drops the lock when its holder dies (even by ``kill -9``), so a lock file
    left behind never blocks a rerun. Returns the descriptor, or None where the platform
    has no ``flock``.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no cross-process exclusion
        return None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            target = os.fspath(into) if isinstance(into, (str, os.PathLike)) else str(path)
            raise InvalidArgumentError(
                f"another ingestion into {target!r} is running (process "
                f"{holder or 'unknown'} holds lock file {str(path)!r}); wait for it to "
                "finish or pick another target"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder may have removed the file between our open and our lock
            st, here = os.fstat(fd), os.stat(path)
            same = (st.st_ino, st.st_dev) == (here.st_ino, here.st_dev)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release_lock(path: Path, fd: int | None) -> None:
    """Remove the lock file (while still holding it) and release it."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        path.unlink()
    os.close(fd)


def _grown_from(old: Any, new: Any) -> bool:
    """True when identity ``new`` is ``old`` with rows appended at the end.

    That is: the same keys and values except a ``files`` list that gained files after the
    old ones (each old file unchanged), or a ``shape`` whose first axis grew (and a
    ``size`` that grew with it). The position recorded for ``old`` is then still valid.
    """
    if not isinstance(old, dict) or not isinstance(new, dict) or old.keys() != new.keys():
        return False
    grew = False
    for name, a in old.items():
        b = new[name]
        if a == b:
            continue
        if name == "files" and isinstance(a, list) and isinstance(b, list):
            if len(b) <= len(a) or b[: len(a)] != a:
                return False
            grew = True
        elif name == "shape" and isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b) or not a or a[1:] != b[1:] or not (
                isinstance(a[0], int) and isinstance(b[0], int) and b[0] > a[0]
            ):
                return False
            grew = True
        elif name == "size" and isinstance(a, int) and isinstance(b, int) and b > a:
            continue
        else:
            return False
    return grew


# --------------------------------------------------------------------------- ingest
def ingest(
    source: Source,
    into: str | os.PathLike[str] | BaseCollection | IdMapIndex,
    *,
    index: str | None = None,
    metric: Metric | None = None,
    batch_size: int = 10_000,
    checkpoint_rows: int = 100_000,
    checkpoint_seconds: float | None = None,
    progress: bool | str | ProgressCallback = True,
    train_rows: int | None = None,
    state_path: str | os.PathLike[str] | None = None,
) -> IngestResult:
    """Stream every row of ``source`` into an index file, an index or a Collection.

    Parameters
    ----------
    source : Source
        :class:`~vecindex_core.io.numpy_source.NumpySource`,
        :class:`~vecindex_core.io.parquet.ParquetSource`, ``PostgresSource``, or anything
        that follows :class:`~vecindex_core.io.sources.Source`.
    into : str, path-like, Collection or IdMapIndex
        - a path ending ``.db``, ``.sqlite`` or ``.sqlite3``: a
          :class:`~vecindex_core.Collection` (created with ``index``/``metric`` if missing);
        - any other path: an index file, loaded with ``vecindex_core.load`` or, when
          missing, created from ``index``; saved at every checkpoint;
        - a :class:`~vecindex_core.documents.BaseCollection` (left open);
        - an :class:`~vecindex_core.IdMapIndex` in memory (the caller saves it; no state
          file, so no resume: ids already present are still skipped).
    index : str, optional
        Spec of the index to create (``"turboquant(bits=4)"``); required for a new index
        file; for an existing one it must match the stored spec.
    metric : {"cosine", "ip", "l2"}, optional
        Metric of a new index or Collection (default ``"cosine"``); must match an existing one.
    batch_size : int
        Rows read and added at a time (the memory bound), >= 1.
    checkpoint_rows : int
        Index file targets: save the index and the state after at least this many rows.
    checkpoint_seconds : float, optional
        Index file targets: also checkpoint when this many seconds passed since the last one.
    progress : bool, "always" or callable
        True: a tqdm bar on stderr when tqdm is installed and stderr is a terminal;
        ``"always"``: whenever tqdm is installed; False: none; a callable is called as
        ``progress(rows_done, rows_total_or_None)`` after every batch.
    train_rows : int, optional
        Rows sampled from the start of the source to train a new index of a kind that needs
        training (default ``max(min_train_size, 50000)``; they are held in memory once).
    state_path : str or path-like, optional
        Where the checkpoint state lives (default ``<target path>.ingest.json``); not for
        an in-memory IdMapIndex.

    Returns
    -------
    IngestResult

    Raises
    ------
    InvalidArgumentError
        Bad arguments; the state file belongs to another source (remove it or pick another
        target) or, given as ``state_path``, to another target; another ingestion into the
        same target is running (it holds ``<target>.ingest.lock``); a new index file without
        ``index``; a spec or metric that differs from the existing target's; a null vector;
        a corrupt state file.
    DimensionMismatchError
        The source's dimension differs from the target's, or a row has another length.
    NonFiniteError
        A row holds NaN or infinity (the message names the row).
    DuplicateIdError
        An id repeats inside one batch (nothing of that batch is added).
    FileNotFoundError
        The directory of an index file or Collection path does not exist.
    """
    if not isinstance(source, Source):
        raise InvalidArgumentError(
            f"source must follow the vecindex_core.io.sources.Source protocol (dim, count, "
            f"identity, batches), got {type(source).__name__}"
        )
    bs = check_int(batch_size, "batch_size", 1)
    ck_rows = check_int(checkpoint_rows, "checkpoint_rows", 1)
    if checkpoint_seconds is not None and (
        isinstance(checkpoint_seconds, bool)
        or not isinstance(checkpoint_seconds, (int, float))
        or not checkpoint_seconds > 0
    ):
        raise InvalidArgumentError(
            f"checkpoint_seconds must be a positive number or None, got {checkpoint_seconds!r}"
        )
    if train_rows is not None:
        check_int(train_rows, "train_rows", 1)
    if metric is not None:
        metric = check_metric(metric)
    if index is not None:
        if not isinstance(index, str):
            raise InvalidArgumentError(f"index must be a spec string, got {index!r}")
        _canonical_spec(index)  # unknown kind or parameter: fail before touching anything
    if not (callable(progress) or isinstance(progress, bool) or progress == "always"):
        raise InvalidArgumentError(
            f"progress must be True, False, 'always' or a callable, got {progress!r}"
        )
    identity = _canonical(dict(source.identity()))
    t0 = time.perf_counter()
    if isinstance(into, (str, os.PathLike)) and not Path(into).parent.is_dir():
        raise FileNotFoundError(f"directory {str(Path(into).parent)!r} does not exist")
    sp = _default_state_path(into) if state_path is None else Path(state_path)
    lock_path = _lock_path_for(into, sp)
    lock_fd = None if lock_path is None else _acquire_lock(lock_path, into)
    try:
        return _ingest_locked(
            source, into, identity, t0, sp, state_path is not None, index=index,
            metric=metric, batch_size=bs, checkpoint_rows=ck_rows,
            checkpoint_seconds=checkpoint_seconds, progress=progress, train_rows=train_rows,
        )
    finally:
        if lock_path is not None:
            _release_lock(lock_path, lock_fd)


def _ingest_locked(
    source: Source, into: object, identity: Any, t0: float, sp: Path | None,
    explicit_state: bool, *, index: str | None, metric: Metric | None, batch_size: int,
    checkpoint_rows: int, checkpoint_seconds: float | None,
    progress: bool | str | ProgressCallback, train_rows: int | None,
) -> IngestResult:
    """:func:`ingest` once its arguments are checked and the target's lock is held."""
    bs, ck_rows, dim = batch_size, checkpoint_rows, source.dim
    key = _target_key(into)
    state = None if sp is None else _read_state(sp)
    if (state is not None and explicit_state and key is not None
            and state.get("target_key") not in (None, key)):
        raise InvalidArgumentError(
            f"ingestion state file {str(sp)!r} records progress into "
            f"{state.get('target_key')!r}, not {key!r}; pass that target's state file, or "
            "remove this one to start over"
        )
    grown = state is not None and _grown_from(state["source"], identity)
    if state is not None and state["source"] != identity and not grown:
        raise InvalidArgumentError(
            f"ingestion state file {str(sp)!r} belongs to another source "
            f"({json.dumps(state['source'], sort_keys=True)[:300]}), not "
            f"{json.dumps(identity, sort_keys=True)[:300]}; remove the state file to ingest "
            "this source into the same target, or pick another target"
        )
    if (state is not None and isinstance(into, (str, os.PathLike))
            and not os.path.exists(into)):
        raise InvalidArgumentError(
            f"ingestion state file {str(sp)!r} records progress into {os.fspath(into)!r}, "
            "which does not exist; remove the state file to start over"
        )
    if state is not None and state.get("done") and not grown and not follows_appends(source):
        label = os.fspath(into) if isinstance(into, (str, os.PathLike)) else str(sp)
        return IngestResult(label, 0, 0, 0, int(state["rows_done"]),
                            time.perf_counter() - t0, state.get("position"), True)

    target = _resolve_target(source, into, index, metric, train_rows, bs, sp)
    resume = None if state is None else state.get("position")
    rows_done = 0 if state is None else int(state["rows_done"])
    added_total = 0 if state is None else int(state.get("rows_added", 0))
    skipped_total = 0 if state is None else int(state.get("rows_skipped", 0))
    added = skipped = read = 0
    position: JSONValue = resume
    committed_rows = rows_done
    last_ck_time = time.perf_counter()

    def checkpoint(done: bool) -> None:
        nonlocal last_ck_time, committed_rows
        target.commit()
        if target.state_path is not None:
            _write_state(target.state_path, {
                "source": identity, "target": target.label, "target_key": key,
                "position": position,
                "rows_done": rows_done, "rows_added": added_total + added,
                "rows_skipped": skipped_total + skipped, "done": done,
            })
        committed_rows = rows_done
        last_ck_time = time.perf_counter()

    update, close_bar = _progress_hook(progress, source.count(), rows_done)
    in_write = False
    try:
        for batch in source.batches(bs, resume):
            n = len(batch)
            if n == 0:
                continue
            x, ids = _check_batch(batch, dim)
            in_write = True
            a, s = target.write(batch, x, ids)
            in_write = False
            added, skipped, read = added + a, skipped + s, read + n
            rows_done += n
            position = batch.position
            if (
                target.commit_each_batch
                or rows_done - committed_rows >= ck_rows
                or (checkpoint_seconds is not None
                    and time.perf_counter() - last_ck_time >= checkpoint_seconds)
            ):
                checkpoint(done=False)
            update(rows_done, n)
        checkpoint(done=True)
        target.finish()
    except BaseException as e:
        # keep what was completed: the target holds whole batches only, unless the failure
        # came from inside a write for a reason other than a rejected (untouched) batch
        safe = not in_write or isinstance(e, VecIndexError)
        if safe and rows_done != committed_rows:
            with contextlib.suppress(Exception):  # the original error matters more
                checkpoint(done=False)
        raise
    finally:
        close_bar()
        target.close()
    return IngestResult(
        target.label, added, skipped, read, rows_done, time.perf_counter() - t0, resume
    )
