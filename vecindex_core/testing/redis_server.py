"""Real ``redis-server`` processes for tests and benchmarks: standalone and a 3-master cluster.

Each server is a child process in its own session on a free loopback port, started from the
``redis-server`` binary on ``PATH`` (Debian: ``apt-get install -y --no-install-recommends
redis-server``; ``scripts/ensure_servers.sh`` installs it when run as root) and stopped by its
PID. Readiness is checked with a raw RESP ``PING`` over a socket, so starting a server needs
no Redis client library.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..errors import BackendError, InvalidArgumentError, NotSupportedError
from .servers import ServerProcess, free_port, spawn

__all__ = [
    "ClusterHandle",
    "redis_call",
    "redis_server_binary",
    "restart_redis",
    "start_redis",
    "start_redis_cluster",
]

_INSTALL_HINT = (
    "install it with `apt-get install -y --no-install-recommends redis-server` (Debian/Ubuntu; "
    "scripts/ensure_servers.sh does this when run as root)"
)


def redis_server_binary(name: str = "redis-server") -> str:
    """Path of ``redis-server`` (or ``redis-cli``) on ``PATH``; raises naming what to install."""
    found = shutil.which(name)
    if not found:
        raise NotSupportedError(f"{name} not found on PATH: {_INSTALL_HINT}")
    return found


def _encode(args: Sequence[str | bytes | int]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        data = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(f: IO[bytes]) -> object:
    line = f.readline()
    if not line:
        raise ConnectionError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise BackendError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = f.read(size + 2)
        return data[:-2]
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read_reply(f) for _ in range(size)]
    raise BackendError(f"unexpected RESP reply {line!r}")


def redis_call(address: tuple[str, int] | str, *args: str | bytes | int,
               timeout: float = 5.0) -> object:
    """Send one command over a fresh connection and return its decoded reply.

    ``address`` is ``(host, port)`` or a Unix socket path. Error replies raise
    :class:`~vecindex_core.errors.BackendError` (``LOADING`` while a restarted server reads
    its append-only file, for example); connection failures raise ``OSError``.
    """
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(_encode(args))
        with s.makefile("rb") as f:
            return _read_reply(f)


def _ping(port: int) -> bool:
    return redis_call(("127.0.0.1", port), "PING", timeout=2.0) == "PONG"


def _redis_cmd(data_dir: Path, port: int, *, appendonly: bool, unixsocket: bool,
               extra: Sequence[str] = ()) -> list[str]:
    cmd = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--daemonize", "no", "--save", "",
        "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec",
        "--logfile", "", "--protected-mode", "yes",
    ]
    if unixsocket:
        cmd += ["--unixsocket", str(data_dir / "redis.sock"), "--unixsocketperm", "700"]
    return cmd + list(extra)


def start_redis(
    data_dir: str | os.PathLike[str],
    *,
    appendonly: bool = True,
    port: int | None = None,
    unixsocket: bool = False,
    timeout: float = 30.0,
    extra_args: Sequence[str] = (),
) -> ServerProcess:
    """Start a standalone ``redis-server`` on 127.0.0.1 and return once it answers ``PING``.

    Parameters
    ----------
    data_dir : path
        Working directory (append-only file, log, Unix socket); created if missing.
    appendonly : bool, default True
        ``--appendonly yes`` with ``appendfsync everysec`` (a clean stop flushes it, so a
        restart loses nothing). RDB snapshots are always off (``--save ""``).
    port : int, optional
        A free loopback port is chosen when omitted.
    unixsocket : bool, default False
        Also listen on ``data_dir/redis.sock`` (``ServerProcess.extra["unix_url"]``).
    timeout : float
        Seconds to wait for ``PING`` (a large append-only file takes a while to load).
    extra_args : sequence of str
        More ``redis-server`` arguments.

    Returns
    -------
    ServerProcess
        ``uri`` is ``redis://127.0.0.1:PORT/0``; ``extra`` holds ``port``, ``dir`` and the
        command line (for :func:`restart_redis`). Stop it with ``stop()`` (SIGTERM to its PID:
        Redis flushes the append-only file and exits).

    Raises
    ------
    NotSupportedError
        ``redis-server`` is not installed (the message says how to install it).
    BackendError
        The server exited or did not answer in time (the message holds its log tail).
    """
    path = Path(data_dir)
    path.mkdir(parents=True, exist_ok=True)
    port = free_port() if port is None else int(port)
    cmd = _redis_cmd(path, port, appendonly=appendonly, unixsocket=unixsocket,
                     extra=extra_args)
    extra: dict[str, object] = {"port": port, "dir": str(path), "cmd": cmd,
                                "timeout": timeout}
    if unixsocket:
        extra["unix_url"] = f"unix://{path / 'redis.sock'}?db=0"
    server = spawn("redis-server", cmd, path / "redis-server.log",
                   f"redis://127.0.0.1:{port}/0", extra=extra)
    server.wait_ready(lambda: _ping(port), timeout)
    return server


def restart_redis(server: ServerProcess, *, down_for: float = 0.0) -> ServerProcess:
    """Stop ``server`` by its PID, wait ``down_for`` seconds, start it again (same port,
    directory and options) and return the new process once it answers ``PING``."""
    cmd = server.extra.get("cmd")
    if not isinstance(cmd, list):
        raise InvalidArgumentError(f"{server.name} was not started by start_redis()")
    server.stop()
    if down_for > 0:
        time.sleep(down_for)
    port = int(server.extra["port"])  # type: ignore[call-overload]
    new = spawn(server.name, cmd, server.log.with_suffix(".restarted.log"), server.uri,
                extra=dict(server.extra))
    new.wait_ready(lambda: _ping(port), float(server.extra.get("timeout", 30.0)))  # type: ignore[arg-type]
    return new


@dataclass
class ClusterHandle:
    """A Redis Cluster of ``len(servers)`` masters (no replicas) on loopback ports.

    Attributes
    ----------
    servers : list of ServerProcess
        One per master.
    url : str
        ``redis://127.0.0.1:PORT`` of the first master (a cluster client discovers the rest).
    ports : list of int
    """

    servers: list[ServerProcess]
    url: str
    ports: list[int] = field(default_factory=list)

    def stop(self) -> None:
        """Stop every node by its PID."""
        for s in self.servers:
            s.stop()

    def log_tails(self) -> str:
        return "\n".join(f"--- {s.log}\n{s.log_tail(15)}" for s in self.servers)


def _cluster_ok(port: int) -> bool:
    info = redis_call(("127.0.0.1", port), "CLUSTER", "INFO", timeout=2.0)
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text


def start_redis_cluster(
    data_dir: str | os.PathLike[str], masters: int = 3, *, timeout: float = 60.0
) -> ClusterHandle:
    """Start ``masters`` ``--cluster-enabled yes`` servers and join them into one cluster.

    Runs ``redis-cli --cluster create HOST:PORT ... --cluster-replicas 0 --cluster-yes`` and
    returns once every node reports ``cluster_state:ok`` (all 16,384 slots served).

    Raises
    ------
    NotSupportedError
        ``redis-server`` or ``redis-cli`` is not installed.
    BackendError
        A node failed to start, or the cluster did not become ready in ``timeout`` s.
    """
    if masters < 3:
        raise InvalidArgumentError(f"a Redis Cluster needs at least 3 masters, got {masters}")
    cli = redis_server_binary("redis-cli")
    root = Path(data_dir)
    servers: list[ServerProcess] = []
    try:
        for i in range(masters):
            node_dir = root / f"node{i}"
            servers.append(start_redis(
                node_dir, appendonly=False, timeout=timeout,
                # the cluster bus gets its own free port (by default it is PORT + 10000)
                extra_args=["--cluster-enabled", "yes", "--cluster-port", str(free_port()),
                            "--cluster-config-file", str(node_dir / "nodes.conf"),
                            "--cluster-node-timeout", "5000"],
            ))
        ports = [int(s.extra["port"]) for s in servers]  # type: ignore[call-overload]
        create = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if create.returncode != 0:
            raise BackendError(
                f"redis-cli --cluster create failed ({create.returncode}):\n"
                f"{create.stdout[-2000:]}\n{create.stderr[-2000:]}"
            )
        deadline = time.monotonic() + timeout
        while not all(_safe(lambda p=p: _cluster_ok(p)) for p in ports):
            if time.monotonic() > deadline:
                handle = ClusterHandle(servers, "", ports)
                raise BackendError(
                    f"the Redis Cluster on ports {ports} did not reach cluster_state:ok in "
                    f"{timeout:.0f} s:\n{handle.log_tails()}"
                )
            time.sleep(0.2)
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return ClusterHandle(servers, f"redis://127.0.0.1:{ports[0]}", ports)


def _safe(check: object) -> bool:
    try:
        return bool(check())  # type: ignore[operator]
    except (OSError, BackendError):
        return False
