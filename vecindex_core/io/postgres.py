"""Stream vectors out of PostgreSQL: a server-side cursor, binary transfer, numpy decoding.

:class:`PostgresSource` reads a table (or the result of a user ``SELECT``) with a named,
server-side cursor in binary format, ``batch_size`` rows per round trip, so memory stays
bounded by one batch whatever the size of the table. Vector columns of type ``real[]``
(``float4[]``), ``double precision[]`` (``float8[]``), ``bytea`` (raw little-endian float32)
and pgvector ``vector`` are supported. Their values are never turned into Python floats:
loaders registered on the cursor hand over the raw binary wire value, and a whole batch is
decoded at once with numpy (array wire format: a 20-byte header, then per element a 4-byte
length and the big-endian value; pgvector: ``uint16`` dim, ``uint16`` unused, big-endian
``float4`` values).

Order and resuming
------------------
SQL gives rows in no particular order unless asked. With a ``key_column`` (by default the
``id_column``) the source reads ``ORDER BY key`` and a batch's ``position`` is
``{"key": last key, "row": rows read so far}``; resuming reads ``WHERE key >= last key`` and
drops the one row at the last key (already committed), so each row comes exactly once across
a restart, rows deleted meanwhile are not read and rows added with a larger key are. The key
must be unique and non-NULL: a repeated key raises, also when its two rows straddle the
resume position (that is why the last key is read again), and so does a NULL key, also on a
resume (NULLs sort last and ``key >= last`` leaves them out, so a resumed read checks for
them once its rows run out). Make the key the primary key or give it an index, or
PostgreSQL sorts the whole source on every (re)start. Keys of types other than integer, text
and float (``numeric``, ``uuid``, ``timestamp``...) are kept in the position as their text
form and handed back to the server untyped, which casts them to the key's type.

Without a key the rows are read once in the server's order (one consistent snapshot), and a
``position`` is only ``{"row": n}``: a resume after a committed batch raises
:class:`~vecindex_core.errors.NotSupportedError`, because neither ``OFFSET`` nor ``ctid`` is
a stable order across a restart (``UPDATE``, ``VACUUM FULL`` or a new plan reorder rows).

Prefetch
--------
By default a worker thread fetches the next batch while the caller decodes and uses the
current one (``prefetch=1``), so the server, the network and the caller's own work (adding to
an index) overlap; ``prefetch=0`` reads in the caller's thread. The worker holds the
connection; closing the stream stops it and closes the connection.

Safety
------
Table, schema and column names are quoted with :class:`psycopg.sql.Identifier` (with ``%``
doubled, since every statement carries parameters) and never interpolated; key values
travel as query parameters. The reading transaction turns off
``idle_in_transaction_session_timeout`` (and ``transaction_timeout`` on PostgreSQL 17+) for
itself, as ``pg_dump`` does: it is idle by design while the caller works on a batch. A
``query=`` is the user's own SQL, wrapped as ``SELECT ... FROM (query) AS src``; the
reading transaction is ``READ ONLY``.

psycopg (``pip install 'vecindex[postgres]'``) is imported when a source first connects.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import decimal
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    BackendError,
    DimensionMismatchError,
    EmptyInputError,
    InvalidArgumentError,
    InvalidDtypeError,
    NonFiniteError,
    NotSupportedError,
    ServiceUnavailableError,
)
from .sources import Batch

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresSource"]

JSONValue = Any

# type OIDs fixed by PostgreSQL
_OID_BYTEA = 17
_OID_INT8, _OID_INT2, _OID_INT4 = 20, 21, 23
_OID_FLOAT4, _OID_FLOAT8 = 700, 701
_OID_FLOAT4_ARRAY, _OID_FLOAT8_ARRAY = 1021, 1022
_OID_NUMERIC = 1700
_INT_OIDS = frozenset({_OID_INT2, _OID_INT4, _OID_INT8})
_MISSING_ID = 2**64 - 1
_CURSOR_NAME = "vecindex_source"
_SRC_ALIAS = "_vecindex_src"
_SUPPORTED = "real[] (float4[]), double precision[] (float8[]), bytea (raw float32 LE), vector"


def _ident(*names: str) -> Any:
    """``sql.Identifier`` with ``%`` doubled: every statement is sent with parameters, so
    psycopg reads a ``%`` inside a quoted name as a placeholder (``"t%s"`` would take a
    parameter's place) unless it is written ``%%``."""
    from psycopg import sql

    return sql.Identifier(*(n.replace("%", "%%") for n in names))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise NotSupportedError(
            "reading from PostgreSQL needs psycopg 3: pip install 'vecindex[postgres]' "
            "(installs psycopg[binary]>=3.1)"
        ) from e
    return psycopg


_RAW_LOADER: type | None = None


def _raw_loader() -> type:
    """A binary loader that returns the wire bytes untouched (built on first use)."""
    global _RAW_LOADER
    if _RAW_LOADER is None:
        psycopg = _psycopg()
        from psycopg.adapt import Loader

        class RawBinaryLoader(Loader):
            format = psycopg.pq.Format.BINARY

            def load(self, data: Any) -> bytes:
                return bytes(data)

        _RAW_LOADER = RawBinaryLoader
    return _RAW_LOADER


@dataclass(frozen=True)
class _Plan:
    """What a probe of the source found: column positions and the vector encoding."""

    columns: tuple[str, ...]           # distinct selected columns, in SELECT order
    vector_kind: str                   # "float4[]", "float8[]", "bytea" or "vector"
    vector_oid: int
    id_oid: int | None


def _jsonable_key(value: Any, row: int) -> JSONValue:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, str, float)):
        return value
    if isinstance(value, (decimal.Decimal, uuid.UUID, _dt.date, _dt.time, _dt.timedelta)):
        return str(value)
    raise NotSupportedError(
        f"key value {value!r} of row {row} has type {type(value).__name__}, which cannot be "
        f"stored in a resume position; use an integer, text, numeric, uuid or timestamp key"
    )


def _jsonable_meta(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    if isinstance(value, list):
        return [_jsonable_meta(v) for v in value]
    return value


class PostgresSource:
    """Read vectors (and ids, texts, metadata) from a PostgreSQL table or query in batches.

    Parameters
    ----------
    dsn_or_connection_factory : str or callable
        A libpq connection string or URI (``"postgresql://user@host:5432/db"``), or a
        zero-argument callable returning a new :class:`psycopg.Connection`. Each call of
        :meth:`batches` (and of :attr:`dim`, :meth:`count`) opens its own connection and
        closes it when done, also when it came from the factory.
    table : str or (str, str), optional
        The table (or view) to read. A string is one identifier, dots and quotes included
        (``"my.table"`` is a table whose name has a dot); qualify with ``schema=`` or a
        ``(schema, table)`` pair. Exactly one of ``table`` and ``query`` is given.
    query : str, optional
        A ``SELECT`` (or ``WITH ... SELECT``, ``VALUES``) whose output columns include
        ``vector_column``; it is run as a subquery, ``SELECT cols FROM (query) AS src``.
    vector_column : str
        Column of type ``real[]``, ``double precision[]``, ``bytea`` holding little-endian
        float32, or pgvector ``vector``. ``double precision`` values are rounded to float32.
    id_column : str, optional
        Integer column giving each row's uint64 id (``Batch.ids``); values must be in
        ``0 .. 2**64 - 2``. Without it the ids are row numbers.
    key_column : str, optional
        Unique, non-NULL column that orders the rows and makes the source resumable (see
        the module notes). Defaults to ``id_column``.
    text_column : str, optional
        Text column for ``Batch.texts``.
    metadata_columns : sequence of str, optional
        Columns gathered into one dict per row (``Batch.metadatas``); ``numeric`` becomes
        int or float, dates and times ISO strings, ``uuid`` a string, ``bytea`` hex.
    schema : str, optional
        Schema of ``table``.
    connect_timeout : float, default 10
        Seconds to wait for a connection (DSN sources only).
    prefetch : int, default 1
        Batches a worker thread fetches ahead while the caller decodes and uses the current
        one (so the server and the client work at the same time); memory holds up to
        ``prefetch + 2`` batches of raw rows. 0 fetches in the caller's thread.

    Raises
    ------
    InvalidArgumentError
        Neither or both of ``table`` and ``query``, or a name that is not a non-empty string.

    Notes
    -----
    :meth:`identity` holds the table or query and the column names but not the DSN (it may
    hold a password, and a server's port may change between runs).
    """

    def __init__(
        self,
        dsn_or_connection_factory: str | Callable[[], psycopg.Connection[Any]],
        *,
        table: str | tuple[str, str] | None = None,
        query: str | None = None,
        vector_column: str,
        id_column: str | None = None,
        key_column: str | None = None,
        text_column: str | None = None,
        metadata_columns: Sequence[str] | None = None,
        schema: str | None = None,
        connect_timeout: float = 10.0,
        prefetch: int = 1,
    ) -> None:
        if isinstance(dsn_or_connection_factory, str):
            if not dsn_or_connection_factory.strip():
                raise InvalidArgumentError("the PostgreSQL DSN is an empty string")
        elif not callable(dsn_or_connection_factory):
            raise InvalidArgumentError(
                "dsn_or_connection_factory must be a DSN string or a callable returning a "
                f"psycopg connection, got {type(dsn_or_connection_factory).__name__}")
        self._connect_arg = dsn_or_connection_factory
        if (table is None) == (query is None):
            raise InvalidArgumentError(
                f"give exactly one of table= and query=, got table={table!r}, query={query!r}")
        if isinstance(table, tuple):
            if len(table) != 2 or schema is not None:
                raise InvalidArgumentError(
                    f"table as a tuple must be (schema, table) with no schema=, got {table!r}")
            schema, table = table
        self._table = None if table is None else _name("table", table)
        self._schema = None if schema is None else _name("schema", schema)
        if self._schema is not None and self._table is None:
            raise InvalidArgumentError("schema= only applies to table= sources")
        if query is not None:
            if not isinstance(query, str):
                raise InvalidArgumentError(f"query must be a string, got {type(query).__name__}")
            stripped = query.strip()
            while stripped.endswith(";"):
                stripped = stripped[:-1].rstrip()
            if not stripped:
                raise InvalidArgumentError(f"query is empty: {query!r}")
            query = stripped
        self._query = query
        self.vector_column = _name("vector_column", vector_column)
        self.id_column = None if id_column is None else _name("id_column", id_column)
        if key_column is None:
            key_column = self.id_column
        self.key_column = None if key_column is None else _name("key_column", key_column)
        self.text_column = None if text_column is None else _name("text_column", text_column)
        if metadata_columns is None:
            self.metadata_columns: tuple[str, ...] | None = None
        else:
            if isinstance(metadata_columns, str):
                raise InvalidArgumentError(
                    f"metadata_columns must be a sequence of names, got the string "
                    f"{metadata_columns!r}")
            names = tuple(_name("metadata column", c) for c in metadata_columns)
            if len(set(names)) != len(names):
                raise InvalidArgumentError(f"metadata_columns repeat a name: {list(names)}")
            self.metadata_columns = names
        if not isinstance(connect_timeout, (int, float)) or not connect_timeout > 0:
            raise InvalidArgumentError(f"connect_timeout must be > 0, got {connect_timeout!r}")
        self._connect_timeout = float(connect_timeout)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
            raise InvalidArgumentError(f"prefetch must be an integer >= 0, got {prefetch!r}")
        self._prefetch = prefetch
        self._dim: int | None = None

    # ------------------------------------------------------------------ description
    @property
    def table(self) -> str | None:
        return self._table

    @property
    def schema(self) -> str | None:
        return self._schema

    @property
    def query(self) -> str | None:
        return self._query

    @property
    def follows_appends(self) -> bool:
        """True with a key column: rows are read in key order, so a rerun of a finished
        ingestion reads the rows whose key is above the last one ingested (rows inserted
        later with a smaller key are not seen)."""
        return self.key_column is not None

    def identity(self) -> Mapping[str, JSONValue]:
        """``{"kind": "postgres", "schema", "table", "query", ...columns}`` (no DSN)."""
        return {
            "kind": "postgres",
            "schema": self._schema,
            "table": self._table,
            "query": self._query,
            "vector_column": self.vector_column,
            "id_column": self.id_column,
            "key_column": self.key_column,
            "text_column": self.text_column,
            "metadata_columns": None if self.metadata_columns is None
            else list(self.metadata_columns),
        }

    def _describe(self) -> str:
        if self._table is not None:
            return f"table {self._qualified_name()}"
        assert self._query is not None
        q = self._query if len(self._query) <= 80 else self._query[:77] + "..."
        return f"query {q!r}"

    def _qualified_name(self) -> str:
        parts = [self._schema, self._table] if self._schema else [self._table]
        return ".".join('"' + str(p).replace('"', '""') + '"' for p in parts)

    def __repr__(self) -> str:
        return (f"PostgresSource({self._describe()}, vector_column={self.vector_column!r}, "
                f"key_column={self.key_column!r})")

    # ------------------------------------------------------------------ SQL pieces
    def _columns(self) -> tuple[str, ...]:
        cols: list[str] = []
        for c in (self.key_column, self.vector_column, self.id_column, self.text_column,
                  *(self.metadata_columns or ())):
            if c is not None and c not in cols:
                cols.append(c)
        return tuple(cols)

    def _from(self) -> Any:
        from psycopg import sql

        if self._table is not None:
            if self._schema is not None:
                return _ident(self._schema, self._table)
            return _ident(self._table)
        assert self._query is not None
        # every statement is sent with parameters, so a literal % must be doubled
        return sql.SQL("({}) AS {}").format(sql.SQL(self._query.replace("%", "%%")),
                                            sql.Identifier(_SRC_ALIAS))

    def _select(self, columns: Sequence[str], *, after_key: bool, limit: int | None = None
                ) -> Any:
        """``SELECT columns FROM source [ORDER BY key]``.

        With ``after_key`` it reads ``WHERE key >= %s`` and adds a last column
        ``key = %s`` (two parameters, both the resume key): the row at the resume key is
        read again and dropped by :meth:`_fetch`, so a second row with that key (a
        duplicate straddling the last committed batch) is seen and raises instead of being
        skipped by ``key > last``.
        """
        from psycopg import sql

        key = None if self.key_column is None else _ident(self.key_column)
        select = [_ident(c) for c in columns]
        if after_key:
            assert key is not None
            select.append(sql.SQL("({} = %s)").format(key))
        parts = [sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(select), self._from())]
        if after_key:
            parts.append(sql.SQL("WHERE {} >= %s").format(key))
        if key is not None:
            parts.append(sql.SQL("ORDER BY {}").format(key))
        if limit is not None:
            parts.append(sql.SQL("LIMIT {}").format(sql.Literal(int(limit))))
        return sql.SQL(" ").join(parts)

    # ------------------------------------------------------------------ connections
    def _connect(self) -> psycopg.Connection[Any]:
        psycopg = _psycopg()
        try:
            if isinstance(self._connect_arg, str):
                conn = psycopg.connect(self._connect_arg,
                                       connect_timeout=max(1, round(self._connect_timeout)))
            else:
                conn = self._connect_arg()
        except psycopg.OperationalError as e:
            raise ServiceUnavailableError(f"cannot connect to PostgreSQL: {e}") from e
        except psycopg.Error as e:
            raise BackendError(f"cannot connect to PostgreSQL: {e}") from e
        if not isinstance(conn, psycopg.Connection):
            raise InvalidArgumentError(
                f"the connection factory returned {type(conn).__name__}, not a "
                f"psycopg.Connection")
        if conn.closed:
            raise ServiceUnavailableError("the connection factory returned a closed connection")
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            conn.read_only = True
        return conn

    @contextlib.contextmanager
    def _errors(self, conn: psycopg.Connection[Any] | None = None) -> Iterator[None]:
        """Turn psycopg errors into ours, naming the source and the missing object."""
        psycopg = _psycopg()
        errors = psycopg.errors
        try:
            yield
        except psycopg.OperationalError as e:
            raise ServiceUnavailableError(
                f"PostgreSQL failed while reading {self._describe()}: {e}") from e
        except (errors.UndefinedTable, errors.InvalidSchemaName) as e:
            raise InvalidArgumentError(
                f"cannot read {self._describe()}: {str(e).splitlines()[0]}") from e
        except errors.UndefinedColumn as e:
            missing = self._missing_columns(conn)
            detail = (f"it has no column {', '.join(repr(c) for c in missing)}"
                      if missing else str(e).splitlines()[0])
            raise InvalidArgumentError(f"cannot read {self._describe()}: {detail}") from e
        except (errors.SyntaxError, errors.UndefinedFunction, errors.DatatypeMismatch,
                errors.InvalidTextRepresentation, errors.WrongObjectType,
                errors.FeatureNotSupported, errors.ReadOnlySqlTransaction) as e:
            raise InvalidArgumentError(
                f"cannot read {self._describe()}: {str(e).splitlines()[0]}") from e
        except psycopg.Error as e:
            if conn is not None and (conn.closed or conn.broken):
                raise ServiceUnavailableError(
                    f"lost the PostgreSQL connection while reading {self._describe()}: {e}"
                ) from e
            raise BackendError(f"PostgreSQL error reading {self._describe()}: {e}") from e

    def _missing_columns(self, conn: psycopg.Connection[Any] | None) -> list[str]:
        """Which requested columns the source lacks (empty when that cannot be told)."""
        if conn is None or conn.closed or conn.broken:
            return []
        from psycopg import sql

        try:
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(self._from()), ())
                have = {d.name for d in cur.description or ()}
            conn.rollback()
        except Exception:
            return []
        return [c for c in self._columns() if c not in have]

    def _probe(self, conn: psycopg.Connection[Any]) -> _Plan:
        """Check the columns exist and find the vector encoding (``LIMIT 0``, no rows read)."""
        columns = self._columns()
        with self._errors(conn), conn.cursor(binary=True) as cur:
            cur.execute(self._select(columns, after_key=False, limit=0), ())
            desc = cur.description or ()
            oids = {d.name: int(d.type_code) for d in desc}
            voids = oids[self.vector_column]
            if voids == _OID_FLOAT4_ARRAY:
                kind = "float4[]"
            elif voids == _OID_FLOAT8_ARRAY:
                kind = "float8[]"
            elif voids == _OID_BYTEA:
                kind = "bytea"
            else:
                row = cur.execute("SELECT typname::text, format_type(oid, NULL) FROM pg_type "
                                  "WHERE oid = %s", (voids,)).fetchone()
                typname, shown = (row[0], row[1]) if row else ("?", f"oid {voids}")
                if typname != "vector":
                    raise InvalidDtypeError(
                        f"column {self.vector_column!r} of {self._describe()} has type "
                        f"{shown}; supported vector types: {_SUPPORTED} (cast it in a query=, "
                        f"e.g. SELECT ..., col::real[] AS col)")
                kind = "vector"
            id_oid = None
            if self.id_column is not None:
                id_oid = oids[self.id_column]
                if id_oid not in _INT_OIDS and id_oid != _OID_NUMERIC:
                    row = cur.execute("SELECT format_type(%s, NULL)", (id_oid,)).fetchone()
                    raise InvalidDtypeError(
                        f"id column {self.id_column!r} of {self._describe()} has type "
                        f"{row[0] if row else id_oid}; ids must be an integer column")
        conn.rollback()
        return _Plan(columns, kind, voids, id_oid)

    # ------------------------------------------------------------------ Source protocol
    @property
    def dim(self) -> int:
        """Vector length, read from the first row (in key order).

        Raises
        ------
        EmptyInputError
            The source has no rows.
        """
        if self._dim is None:
            conn = self._connect()
            try:
                plan = self._probe(conn)
                with self._errors(conn), conn.transaction(), conn.cursor(binary=True) as cur:
                    self._register(cur, plan)
                    cur.execute(self._select([self.vector_column], after_key=False, limit=1),
                                ())
                    row = cur.fetchone()
                if row is None:
                    raise EmptyInputError(f"{self._describe()} has no rows, so its vector "
                                          f"dimension is unknown")
                self._dim = _row_dim(row[0], plan.vector_kind, self.vector_column, 0)
            finally:
                conn.close()
        return self._dim

    def count(self) -> int | None:
        """Rows in the source, when cheap: for a table, PostgreSQL's planner estimate.

        ``pg_class.reltuples`` is what the last ``ANALYZE`` (or autovacuum) counted, so it
        can be off; it is meant for a progress bar. A table never analysed is counted with
        ``SELECT count(*)`` when it is under 256 MiB, else None. A ``query=`` source gives
        None (counting would run the query).
        """
        if self._table is None:
            return None
        from psycopg import sql

        conn = self._connect()
        try:
            with self._errors(conn), conn.cursor() as cur:
                row = cur.execute(
                    "SELECT c.reltuples, pg_relation_size(c.oid), c.relkind::text FROM pg_class c"
                    " WHERE c.oid = to_regclass(%s)", (self._qualified_name(),)).fetchone()
                if row is None:
                    raise InvalidArgumentError(f"cannot read {self._describe()}: it does not "
                                               f"exist")
                reltuples, size, relkind = float(row[0]), int(row[1]), row[2]
                if relkind not in ("r", "m"):  # a view, partitioned or foreign table
                    return None
                if reltuples >= 0:
                    return round(reltuples)
                if size >= 256 << 20:
                    return None
                got = cur.execute(sql.SQL("SELECT count(*) FROM {}").format(self._from()),
                                  ()).fetchone()
                return int(got[0]) if got else None
        finally:
            conn.close()

    def batches(self, batch_size: int, resume: JSONValue = None) -> Iterator[Batch]:
        """Yield batches of at most ``batch_size`` rows, after ``resume`` if given.

        Parameters
        ----------
        batch_size : int
            Rows per batch (and per round trip of the server-side cursor), >= 1.
        resume : dict, optional
            A ``Batch.position`` from an earlier run: ``{"key": ..., "row": n}``.

        Yields
        ------
        Batch
            ``vectors`` float32 ``(n, dim)``; ``ids`` uint64 when ``id_column`` was given;
            ``texts`` / ``metadatas`` when their columns were given; ``position`` as above.

        Raises
        ------
        InvalidArgumentError
            A missing table, schema or column; a NULL or repeated key.
        InvalidArgumentError
            A NULL vector or a NULL element; a multi-dimensional array (the message names
            the row number and its key).
        DimensionMismatchError
            A vector whose length differs from :attr:`dim`.
        NonFiniteError
            A NaN or infinite value.
        NotSupportedError
            ``resume`` after the first row of a source without ``key_column``.
        ServiceUnavailableError
            The server cannot be reached, or dropped the connection.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        batch_size = int(batch_size)
        after_key, row = self._parse_resume(resume)
        return self._iter(batch_size, after_key, row)

    def _parse_resume(self, resume: JSONValue) -> tuple[tuple[Any] | None, int]:
        if resume is None:
            return None, 0
        if not isinstance(resume, Mapping) or "row" not in resume:
            raise InvalidArgumentError(
                f"resume must be a Batch.position of a PostgresSource ({{'key': ..., "
                f"'row': n}}), got {resume!r}")
        row = resume["row"]
        if isinstance(row, bool) or not isinstance(row, int) or row < 0:
            raise InvalidArgumentError(f"resume['row'] must be an integer >= 0, got {row!r}")
        if self.key_column is None:
            if row == 0:
                return None, 0
            raise NotSupportedError(
                f"{self._describe()} has no key_column, so a read cannot resume after row "
                f"{row}: SQL rows have no stable order without one; give key_column= (a "
                f"unique, indexed column such as the primary key)")
        if "key" not in resume:
            raise InvalidArgumentError(f"resume lacks the 'key' of the last row read: {resume!r}")
        key = resume["key"]
        if not isinstance(key, (bool, int, float, str)):  # None would read `key > NULL`: nothing
            raise InvalidArgumentError(
                f"resume['key'] must be the key of the last row read (an integer, float, "
                f"string or boolean, as Batch.position holds it), got {key!r}")
        return (key,), row

    def _register(self, cur: Any, plan: _Plan) -> None:
        if plan.vector_kind != "bytea":  # bytea's own binary loader already gives bytes
            cur.adapters.register_loader(plan.vector_oid, _raw_loader())

    def _fetch(self, conn: psycopg.Connection[Any], plan: _Plan, batch_size: int,
               after_key: tuple[Any] | None, start: int) -> Iterator[list[Any]]:
        """Yield raw row lists from the server-side cursor; closes ``conn`` when done.

        A resumed read (``after_key``) selects ``key >= last`` plus a last column
        ``key = last``: the one row at the resume key was committed by the earlier run and
        is dropped here; a second one means the key repeats across the resume point and
        raises, as does, once the rows run out, a row with a NULL key (``key >= last``
        leaves such rows out, so a resume would otherwise finish without them).
        """
        try:
            with self._errors(conn), conn.transaction():
                _lift_idle_timeouts(conn)
                cur = conn.cursor(name=_CURSOR_NAME, binary=True)
                try:
                    self._register(cur, plan)
                    cur.itersize = batch_size
                    params = [] if after_key is None else [after_key[0], after_key[0]]
                    cur.execute(self._select(plan.columns, after_key=after_key is not None),
                                params)
                    rows = cur.fetchmany(batch_size)
                    if after_key is not None and rows and rows[0][-1]:
                        rows = rows[1:] + cur.fetchmany(1)  # keep batches batch_size long
                        if rows and rows[0][-1]:
                            raise InvalidArgumentError(
                                f"key {self.key_column!r} of {self._describe()} repeats the "
                                f"value {after_key[0]!r} of the resume position (row {start}); "
                                f"the key must be unique, or a resume would skip rows")
                    read = 0
                    while rows:
                        read += len(rows)
                        yield rows
                        rows = cur.fetchmany(batch_size)
                    if after_key is not None:
                        self._check_no_null_key(conn, start + read)
                finally:
                    with contextlib.suppress(Exception):
                        if not conn.closed and not conn.broken:
                            cur.close()
        finally:
            conn.close()

    def _iter(self, batch_size: int, after_key: tuple[Any] | None, start: int
              ) -> Iterator[Batch]:
        conn = self._connect()
        try:
            plan = self._probe(conn)
        except BaseException:
            conn.close()
            raise
        fetched = self._fetch(conn, plan, batch_size, after_key, start)
        chunks = fetched if self._prefetch == 0 else _prefetched(fetched, self._prefetch)
        try:
            dim = self._dim
            cols = {c: i for i, c in enumerate(plan.columns)}
            last_key: Any = None if after_key is None else after_key[0]
            have_last = after_key is not None
            for rows in chunks:
                keys = None
                if self.key_column is not None:
                    keys = [r[cols[self.key_column]] for r in rows]
                    self._check_keys(keys, start, last_key if have_last else None)
                    last_key, have_last = keys[-1], True
                vals = [r[cols[self.vector_column]] for r in rows]
                if dim is None:
                    dim = self._dim = _row_dim(vals[0], plan.vector_kind, self.vector_column,
                                               start, _key_note(keys, 0))
                vectors = _decode(vals, plan.vector_kind, dim, self.vector_column, start, keys)
                batch = Batch(
                    start=start,
                    vectors=vectors,
                    ids=None if self.id_column is None else _ids(
                        [r[cols[self.id_column]] for r in rows], plan.id_oid, self.id_column,
                        start, keys),
                    texts=None if self.text_column is None else _texts(
                        [r[cols[self.text_column]] for r in rows], self.text_column, start,
                        keys),
                    metadatas=None if self.metadata_columns is None else [
                        {c: _jsonable_meta(r[cols[c]]) for c in self.metadata_columns}
                        for r in rows],
                    position=self._position(keys, start + len(rows)),
                )
                del rows, vals
                start += len(batch)
                yield batch
        finally:
            chunks.close()  # type: ignore[attr-defined]  # joins the worker, if any
            fetched.close()  # type: ignore[attr-defined]
            conn.close()  # in case the stream never started

    def _check_no_null_key(self, conn: psycopg.Connection[Any], row: int) -> None:
        from psycopg import sql

        assert self.key_column is not None
        found = conn.execute(sql.SQL("SELECT 1 FROM {} WHERE {} IS NULL LIMIT 1").format(
            self._from(), _ident(self.key_column)), ()).fetchone()
        if found is not None:
            raise InvalidArgumentError(
                f"row {row} or a later one of {self._describe()} has a NULL key "
                f"({self.key_column!r}); the key column must be non-NULL and unique (NULL "
                f"keys sort last, and a resume, reading key > last, would skip them)")

    def _position(self, keys: list[Any] | None, row: int) -> JSONValue:
        if keys is None:
            return {"row": row}
        return {"key": _jsonable_key(keys[-1], row - 1), "row": row}

    def _check_keys(self, keys: list[Any], start: int, previous: Any) -> None:
        prev = previous
        for i, k in enumerate(keys):
            if k is None:
                raise InvalidArgumentError(
                    f"row {start + i} of {self._describe()} has a NULL key "
                    f"({self.key_column!r}); the key column must be non-NULL and unique")
            if prev is not None and k == prev:
                raise InvalidArgumentError(
                    f"key {self.key_column!r} of {self._describe()} repeats the value {k!r} "
                    f"(row {start + i}); the key must be unique, or a resume would skip rows")
            prev = k


def _prefetched(source: Iterator[list[Any]], depth: int) -> Iterator[list[Any]]:
    """Run ``source`` in a worker thread, ``depth`` items ahead of the consumer.

    The server produces the next batch (the worker waits on the socket without the GIL)
    while this thread decodes the current one. Closing this generator stops the worker at
    its next item and closes ``source`` in the worker, which closes the connection; an
    exception in ``source`` is re-raised here.
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for chunk in source:
                if not put(("rows", chunk)):
                    break
            else:
                put(("end", None))
        except BaseException as e:  # handed to the consumer
            put(("error", e))
        finally:
            source.close()  # type: ignore[attr-defined]

    worker = threading.Thread(target=work, name="vecindex-postgres-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, payload = items.get()
            if kind == "rows":
                yield payload
            elif kind == "error":
                raise payload
            else:
                return
    finally:
        stop.set()
        worker.join()


def _lift_idle_timeouts(conn: psycopg.Connection[Any]) -> None:
    """Turn off, for the reading transaction only, the server's timeouts that a streaming
    read trips by design: the transaction stays open, idle, while the caller works on a
    batch (``idle_in_transaction_session_timeout``; ``transaction_timeout`` from
    PostgreSQL 17). ``pg_dump`` does the same. ``statement_timeout`` (one fetch) is kept."""
    conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
    if conn.info.server_version >= 170000:
        conn.execute("SET LOCAL transaction_timeout = 0")


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise InvalidArgumentError(f"{what} contains a NUL character: {value!r}")
    return value


def _key_note(keys: list[Any] | None, i: int) -> str:
    return "" if keys is None else f" (key {keys[i]!r})"


def _row_dim(value: bytes | None, kind: str, column: str, row: int, note: str = "") -> int:
    """Decode one row's header to find its vector length (and reject malformed rows)."""
    return int(_decode_one(value, kind, None, column, row, note).shape[0])


def _decode_one(value: bytes | None, kind: str, dim: int | None, column: str, row: int,
                note: str) -> np.ndarray:
    """Decode one value with full checks; raise the precise error for a bad row."""
    where = f"row {row}{note}"
    if value is None:
        raise InvalidArgumentError(f"{where} has a NULL {column!r} vector")
    data = bytes(value)
    if kind == "bytea":
        if len(data) % 4:
            raise InvalidArgumentError(
                f"{where}: bytea {column!r} has {len(data)} bytes, not a whole number of "
                f"float32 values")
        out = np.frombuffer(data, dtype="<f4")
    elif kind == "vector":
        if len(data) < 4:
            raise InvalidArgumentError(f"{where}: malformed vector value ({len(data)} bytes)")
        n = int.from_bytes(data[:2], "big")
        if len(data) != 4 + 4 * n:
            raise InvalidArgumentError(f"{where}: malformed vector value of dim {n} "
                                       f"({len(data)} bytes)")
        out = np.frombuffer(data, dtype=">f4", offset=4)
    else:
        size = 4 if kind == "float4[]" else 8
        if len(data) < 12:
            raise InvalidArgumentError(f"{where}: malformed array value ({len(data)} bytes)")
        ndim = int.from_bytes(data[0:4], "big", signed=True)
        has_null = int.from_bytes(data[4:8], "big", signed=True)
        if ndim == 0:
            out = np.zeros(0, dtype=np.float32)
        elif ndim != 1:
            shape = [int.from_bytes(data[12 + 8 * j:16 + 8 * j], "big", signed=True)
                     for j in range(ndim)]
            raise InvalidArgumentError(
                f"{where}: {column!r} is a {ndim}-dimensional array {shape}; vectors must be "
                f"one-dimensional")
        else:
            if has_null:
                raise InvalidArgumentError(f"{where}: {column!r} contains NULL elements")
            n = int.from_bytes(data[12:16], "big", signed=True)
            if len(data) != 20 + n * (4 + size):
                raise InvalidArgumentError(f"{where}: malformed array value")
            body: Any = np.frombuffer(data, dtype=np.dtype([("len", ">i4"), ("v", f">f{size}")]),
                                 offset=20)
            out = body["v"]
    if dim is not None and out.shape[0] != dim:
        raise DimensionMismatchError(
            f"{where}: {column!r} has {out.shape[0]} values, but the source's vectors have "
            f"{dim} (from its first row)")
    if out.shape[0] == 0:
        raise InvalidArgumentError(f"{where}: {column!r} is an empty vector")
    with np.errstate(over="ignore"):
        return out.astype(np.float32)


def _decode(vals: list[Any], kind: str, dim: int, column: str, start: int,
            keys: list[Any] | None) -> np.ndarray:
    """Decode a batch of wire values into a C-contiguous float32 ``(n, dim)`` array."""
    n = len(vals)
    dtype: np.dtype[Any]
    if kind == "bytea":
        row_len, dtype = 4 * dim, np.dtype("<f4")
    elif kind == "vector":
        row_len = 4 + 4 * dim
        dtype = np.dtype([("dim", ">u2"), ("unused", ">u2"), ("v", ">f4", (dim,))])
    else:
        size = 4 if kind == "float4[]" else 8
        row_len = 20 + dim * (4 + size)
        dtype = np.dtype([("ndim", ">i4"), ("has_null", ">i4"), ("elem", ">i4"),
                          ("n", ">i4"), ("lb", ">i4"),
                          ("el", [("len", ">i4"), ("v", f">f{size}")], (dim,))])
    lens = np.fromiter((-1 if v is None else len(v) for v in vals), dtype=np.int64, count=n)
    bad = np.flatnonzero(lens != row_len)
    if bad.size:
        i = int(bad[0])
        _decode_one(vals[i], kind, dim, column, start + i, _key_note(keys, i))
        raise InvalidArgumentError(f"row {start + i}{_key_note(keys, i)}: malformed "
                                   f"{column!r} value")  # pragma: no cover - decode_one raised
    rec: Any = np.frombuffer(b"".join(vals), dtype=dtype)
    if kind == "bytea":
        out = rec.reshape(n, dim).copy()
    elif kind == "vector":
        wrong = np.flatnonzero(rec["dim"] != dim)
        if wrong.size:
            i = int(wrong[0])
            _decode_one(vals[i], kind, dim, column, start + i, _key_note(keys, i))
        out = np.array(rec["v"], dtype=np.float32, order="C")
    else:
        ok = (rec["ndim"] == 1) & (rec["has_null"] == 0) & (rec["n"] == dim)
        wrong = np.flatnonzero(~ok)
        if wrong.size:
            i = int(wrong[0])
            _decode_one(vals[i], kind, dim, column, start + i, _key_note(keys, i))
            raise InvalidArgumentError(f"row {start + i}{_key_note(keys, i)}: malformed "
                                       f"{column!r} array")  # pragma: no cover
        with np.errstate(over="ignore"):  # float8 beyond float32's range: inf, caught below
            out = np.array(rec["el"]["v"], dtype=np.float32, order="C")
    finite = np.isfinite(out)
    if not finite.all():
        i = int(np.flatnonzero(~finite.all(axis=1))[0])
        raise NonFiniteError(
            f"row {start + i}{_key_note(keys, i)}: {column!r} has a NaN or infinite value "
            f"(after conversion to float32)")
    return out


def _ids(vals: list[Any], oid: int | None, column: str, start: int,
         keys: list[Any] | None) -> np.ndarray:
    if oid in _INT_OIDS:
        try:
            arr = np.array(vals, dtype=np.int64)
        except (TypeError, ValueError):
            arr = None
        if arr is not None:
            neg = np.flatnonzero(arr < 0)
            if neg.size:
                i = int(neg[0])
                raise InvalidArgumentError(
                    f"row {start + i}{_key_note(keys, i)}: id {column!r} is {int(arr[i])}; "
                    f"ids must be in 0 .. 2**64 - 2")
            return arr.astype(np.uint64)
    out = np.empty(len(vals), dtype=np.uint64)
    for i, v in enumerate(vals):
        where = f"row {start + i}{_key_note(keys, i)}"
        if v is None:
            raise InvalidArgumentError(f"{where} has a NULL id ({column!r})")
        if isinstance(v, decimal.Decimal):
            if not v.is_finite() or v != v.to_integral_value():
                raise InvalidArgumentError(f"{where}: id {column!r} is {v}, not an integer")
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _MISSING_ID:
            raise InvalidArgumentError(
                f"{where}: id {column!r} is {v!r}; ids must be integers in 0 .. 2**64 - 2")
        out[i] = v
    return out


def _texts(vals: list[Any], column: str, start: int, keys: list[Any] | None
           ) -> list[str | None]:
    for i, v in enumerate(vals):
        if v is not None and not isinstance(v, str):
            raise InvalidDtypeError(
                f"row {start + i}{_key_note(keys, i)}: text column {column!r} holds a "
                f"{type(v).__name__}, not text")
    return vals
