"""A streaming :class:`~vecindex_core.io.sources.Source` over Parquet files: :class:`ParquetSource`.

Reads one file or every ``*.parquet`` file of a directory (sorted by name, read as one
sequence of rows) with pyarrow's ``ParquetFile.iter_batches``, decoding only the columns it
needs, one record batch at a time.

Vector columns
--------------
- ``fixed_size_list<float32>`` (what ``pa.FixedSizeListArray.from_arrays`` writes): the
  dimension comes from the schema and a batch's values go to numpy without a copy.
- ``list<float>`` / ``large_list<float>``: the dimension is the length of the first row;
  every row of every batch is checked against it (vectorised) and a row of another length
  raises :class:`~vecindex_core.errors.DimensionMismatchError` naming the row.
- float16 and float64 values are converted to float32. Integer or other value types raise
  :class:`~vecindex_core.errors.InvalidDtypeError`.
- A null vector, or a null inside a vector, raises
  :class:`~vecindex_core.errors.InvalidArgumentError` naming the row. NaN and infinity are
  checked by :func:`~vecindex_core.io.ingest.ingest`, which names the row too.

Positions and resume
--------------------
A batch's position is the global row number after it (rows of earlier files first).
Resuming skips whole row groups using the file metadata (nothing is decoded for them),
then drops the leading rows of the row group the position falls in.

pyarrow is imported on first use; without it constructing a source raises
:class:`~vecindex_core.errors.NotSupportedError` naming the ``parquet`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import (
    DimensionMismatchError,
    InvalidArgumentError,
    InvalidDtypeError,
    NotSupportedError,
)
from ..types import MISSING, IdArray
from ..validation import check_int
from .sources import Batch, JSONValue

__all__ = ["ParquetSource"]

_HINT = "reading Parquet needs pyarrow: pip install 'vecindex[parquet]'"


def _pyarrow() -> tuple[Any, Any, Any]:
    """``(pyarrow, pyarrow.parquet, pyarrow.compute)``, or NotSupportedError naming the extra."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        raise NotSupportedError(_HINT) from e
    return pa, pq, pc


def _list_files(path: Path) -> list[Path]:
    if path.is_dir():
        # like pyarrow.dataset, names starting "." or "_" are not data (".part.crc", "_tmp")
        files = sorted(p for p in path.iterdir() if p.suffix == ".parquet" and p.is_file()
                       and not p.name.startswith((".", "_")))
        if not files:
            raise InvalidArgumentError(f"directory {str(path)!r} holds no *.parquet files")
        return files
    if not path.exists():
        raise FileNotFoundError(f"no such Parquet file or directory: {str(path)!r}")
    return [path]


def _open(pq: Any, pa: Any, f: Path, **kwargs: Any) -> Any:
    """``pq.ParquetFile(f)``; a file that is not Parquet (or a corrupt one) raises our error."""
    try:
        return pq.ParquetFile(f, **kwargs)
    except pa.ArrowException as e:
        if isinstance(e, OSError):
            raise
        raise InvalidArgumentError(f"{str(f)!r} is not a Parquet file or is corrupt: {e}") from e


def _read(pa: Any, f: Path, batches: Iterator[Any]) -> Iterator[Any]:
    """``batches``, with a decoding error (a corrupt page) raised as our error naming ``f``."""
    while True:
        try:
            rb = next(batches)
        except StopIteration:
            return
        except pa.ArrowException as e:
            if isinstance(e, OSError):
                raise
            raise InvalidArgumentError(f"{str(f)!r} could not be decoded: {e}") from e
        yield rb


class ParquetSource:
    """Rows of one Parquet file or a directory of them, in file then row order.

    Parameters
    ----------
    path : str or path-like
        A ``.parquet`` file, or a directory whose ``*.parquet`` files are read in name order
        (names starting ``.`` or ``_`` are skipped; subdirectories are not read).
    vector_column : str
        ``fixed_size_list``, ``list`` or ``large_list`` of float16/float32/float64.
    id_column : str, optional
        An integer column of uint64 ids (non-negative, not ``2**64-1``, no nulls). Without
        it ingestion uses the global row numbers.
    text_column : str, optional
        A string column passed on as document texts (Collection targets).
    metadata_columns : sequence of str, optional
        Columns passed on as one metadata dict per row (Collection targets).

    Raises
    ------
    NotSupportedError
        pyarrow is not installed.
    FileNotFoundError
        ``path`` does not exist.
    InvalidArgumentError
        A named column is missing from a file (the message lists the columns), the
        directory holds no Parquet file, a file is not Parquet or is corrupt, or a list
        column's first row is null or empty.
    InvalidDtypeError
        The vector column is not a list of floats, or the id column is not integer.
    DimensionMismatchError
        Files disagree on the vector dimension.

    Notes
    -----
    The checkpoint identity is the absolute path, the column names, and each file's name,
    row count and size, all read from the file footers.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        vector_column: str,
        id_column: str | None = None,
        text_column: str | None = None,
        metadata_columns: Sequence[str] | None = None,
    ) -> None:
        pa, pq, _ = _pyarrow()
        if not isinstance(vector_column, str) or not vector_column:
            raise InvalidArgumentError(
                f"vector_column must be a column name, got {vector_column!r}"
            )
        if isinstance(metadata_columns, str):
            raise InvalidArgumentError(
                f"metadata_columns must be a list of column names, got {metadata_columns!r}"
            )
        self._root = Path(path).resolve()
        self._files = _list_files(self._root)
        self.vector_column = vector_column
        self.id_column = id_column
        self.text_column = text_column
        self.metadata_columns = list(metadata_columns or [])
        wanted = [vector_column, id_column, text_column, *self.metadata_columns]
        self._columns = list(dict.fromkeys(c for c in wanted if c is not None))
        self._row_groups: list[list[int]] = []  # rows of each row group, per file
        dim: int | None = None
        for f in self._files:
            pf = _open(pq, pa, f)
            schema = pf.schema_arrow
            missing = [c for c in self._columns if schema.get_field_index(c) < 0]
            if missing:
                raise InvalidArgumentError(
                    f"{str(f)!r} has no column {missing[0]!r}; its columns are "
                    f"{', '.join(schema.names)}"
                )
            vtype = schema.field(vector_column).type
            if pa.types.is_fixed_size_list(vtype):
                fdim: int | None = int(vtype.list_size)
            elif pa.types.is_list(vtype) or pa.types.is_large_list(vtype):
                fdim = None
            else:
                raise InvalidDtypeError(
                    f"column {vector_column!r} of {str(f)!r} has type {vtype}, expected "
                    "fixed_size_list<float>, list<float> or large_list<float>"
                )
            if not pa.types.is_floating(vtype.value_type):
                raise InvalidDtypeError(
                    f"column {vector_column!r} of {str(f)!r} holds {vtype.value_type} values, "
                    "expected float16, float32 or float64"
                )
            if id_column is not None and not pa.types.is_integer(schema.field(id_column).type):
                raise InvalidDtypeError(
                    f"id column {id_column!r} of {str(f)!r} has type "
                    f"{schema.field(id_column).type}, expected an integer type (uint64 ids)"
                )
            if fdim is not None:
                if dim is not None and fdim != dim:
                    raise DimensionMismatchError(
                        f"column {vector_column!r} of {str(f)!r} has {fdim} dimensions, but "
                        f"earlier files have {dim}"
                    )
                dim = fdim
            self._row_groups.append(
                [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
            )
        if dim is None:  # list columns only: the first row sets the dimension
            dim = self._first_row_dim()
        self._dim = dim

    def _first_row_dim(self) -> int:
        pa, pq, _ = _pyarrow()
        for f in self._files:
            pf = _open(pq, pa, f)
            batches = pf.iter_batches(batch_size=1, columns=[self.vector_column])
            for rb in _read(pa, f, batches):
                if rb.num_rows == 0:
                    continue
                first = rb.column(0)[0]
                if not first.is_valid:
                    raise InvalidArgumentError(
                        f"row 0 of {str(f)!r} has a null vector in column "
                        f"{self.vector_column!r}"
                    )
                d = len(first)
                if d == 0:
                    raise InvalidArgumentError(
                        f"row 0 of {str(f)!r} has an empty vector in column "
                        f"{self.vector_column!r}"
                    )
                return d
        raise InvalidArgumentError(f"{str(self._root)!r} holds no rows")

    # ----------------------------------------------------------------- Source
    @property
    def dim(self) -> int:
        """Vector length (from the schema, or the first row of a list column)."""
        return self._dim

    @property
    def files(self) -> list[Path]:
        """The files read, in order."""
        return list(self._files)

    def count(self) -> int:
        """Number of rows, from the file footers."""
        return int(sum(sum(groups) for groups in self._row_groups))

    def identity(self) -> Mapping[str, JSONValue]:
        """Path, columns, and each file's name, rows and size."""
        return {
            "kind": "parquet",
            "path": str(self._root),
            "vector_column": self.vector_column,
            "id_column": self.id_column,
            "text_column": self.text_column,
            "metadata_columns": self.metadata_columns,
            "files": [
                {"name": f.name, "rows": int(sum(groups)), "size": f.stat().st_size}
                for f, groups in zip(self._files, self._row_groups, strict=True)
            ],
        }

    def batches(self, batch_size: int, resume: JSONValue = None) -> Iterator[Batch]:
        """Yield batches of at most ``batch_size`` rows after global row ``resume``.

        A batch never spans two files, so batches at file ends may be shorter.

        Raises
        ------
        InvalidArgumentError
            ``resume`` is not a row number in ``[0, count()]``; a null vector (naming the
            file and global row).
        DimensionMismatchError
            A list vector's length differs from :attr:`dim` (naming the row).
        """
        pa, pq, _ = _pyarrow()
        bs = check_int(batch_size, "batch_size", 1)
        start = 0 if resume is None else check_int(resume, "resume position", 0, self.count())
        offset = 0  # global row number of the current file's first row
        for f, groups in zip(self._files, self._row_groups, strict=True):
            file_rows = sum(groups)
            if offset + file_rows <= start:
                offset += file_rows
                continue
            first_rg, rg_offset = 0, offset  # skip whole row groups before `start`
            while rg_offset + groups[first_rg] <= start:
                rg_offset += groups[first_rg]
                first_rg += 1
            drop = max(0, start - rg_offset)
            row = rg_offset
            pf = _open(pq, pa, f, pre_buffer=False)  # buffers one column chunk at a time
            for rb in _read(pa, f, pf.iter_batches(
                batch_size=bs, row_groups=list(range(first_rg, len(groups))),
                columns=self._columns,
            )):
                n = rb.num_rows
                if drop:
                    take = min(drop, n)
                    rb, drop, row = rb.slice(take), drop - take, row + take
                    n = rb.num_rows
                if n == 0:
                    continue
                yield self._to_batch(rb, row, f)
                row += n
            offset += file_rows

    # ----------------------------------------------------------------- conversion
    def _to_batch(self, rb: Any, start: int, file: Path) -> Batch:
        n = rb.num_rows
        vectors = self._vectors(rb.column(self.vector_column), start, file)
        ids = None
        if self.id_column is not None:
            ids = self._ids(rb.column(self.id_column), start, file)
        texts = None
        if self.text_column is not None:
            texts = [None if t is None else str(t) for t in rb.column(self.text_column).to_pylist()]
        metas = None
        if self.metadata_columns:
            metas = rb.select(self.metadata_columns).to_pylist()
        return Batch(start=start, vectors=vectors, ids=ids, texts=texts, metadatas=metas,
                     position=start + n)

    def _where(self, start: int, i: int, file: Path) -> str:
        return f"row {start + i} (row {i} of this batch, file {file.name!r})"

    def _vectors(self, col: Any, start: int, file: Path) -> npt.NDArray[np.float32]:
        pa, _, pc = _pyarrow()
        d, n = self._dim, len(col)
        if col.null_count:
            i = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
            raise InvalidArgumentError(
                f"{self._where(start, i, file)} has a null vector in column "
                f"{self.vector_column!r}"
            )
        if not pa.types.is_fixed_size_list(col.type):
            lengths = np.asarray(pc.list_value_length(col))
            bad = np.flatnonzero(lengths != d)
            if bad.size:
                i = int(bad[0])
                raise DimensionMismatchError(
                    f"{self._where(start, i, file)} has a vector of {lengths[i]} values in "
                    f"column {self.vector_column!r}, expected {d}"
                )
        elif col.type.list_size != d:
            raise DimensionMismatchError(
                f"column {self.vector_column!r} of {file.name!r} has {col.type.list_size} "
                f"dimensions, expected {d}"
            )
        values = col.flatten()  # respects slicing; no copy for float32 without nulls
        if values.null_count:
            j = int(np.flatnonzero(~np.asarray(values.is_valid()))[0])
            raise InvalidArgumentError(
                f"{self._where(start, j // d, file)} has a null at position {j % d} of its "
                f"vector in column {self.vector_column!r}"
            )
        flat = values.to_numpy(zero_copy_only=False)
        if flat.dtype != np.float32:
            with np.errstate(over="ignore"):  # overflow to inf is reported by ingestion
                flat = flat.astype(np.float32)
        return np.ascontiguousarray(flat.reshape(n, d))

    def _ids(self, col: Any, start: int, file: Path) -> IdArray:
        if col.null_count:
            i = int(np.flatnonzero(~np.asarray(col.is_valid()))[0])
            raise InvalidArgumentError(
                f"{self._where(start, i, file)} has a null id in column {self.id_column!r}"
            )
        raw = col.to_numpy(zero_copy_only=False)
        if raw.dtype.kind == "i" and raw.size and raw.min() < 0:
            i = int(np.argmin(raw))
            raise InvalidArgumentError(
                f"{self._where(start, i, file)} has id {raw[i]} in column "
                f"{self.id_column!r}, but ids must be >= 0"
            )
        ids = raw.astype(np.uint64)
        reserved = np.flatnonzero(ids == np.uint64(MISSING))
        if reserved.size:
            raise InvalidArgumentError(
                f"{self._where(start, int(reserved[0]), file)} has id {MISSING} (2**64-1) in "
                f"column {self.id_column!r}, which is reserved"
            )
        return ids
