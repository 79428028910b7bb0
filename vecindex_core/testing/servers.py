"""Start and stop real server processes on free loopback ports (tests and benchmarks)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendError, NotSupportedError

__all__ = ["ServerProcess", "free_port", "start_milvus"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A server child process in its own session (so its children stop with it).

    Attributes
    ----------
    name : str
        What it is, for messages.
    proc : subprocess.Popen
    log : Path
        Its stdout and stderr.
    uri : str
        How clients reach it.
    stop_signal : int
        Sent to the process group by :meth:`stop` (SIGKILL after ``stop_timeout`` s).
    """

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    uri: str
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 30.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def wait_ready(self, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready()`` until it is true; raise with the log tail on exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BackendError(
                    f"{self.name} exited with code {self.proc.returncode} while starting; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            try:
                if ready():
                    return
            except Exception:  # not up yet
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise BackendError(
                    f"{self.name} did not become ready in {timeout:.0f} s; "
                    f"log {self.log}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """Signal the process group, wait, and kill it if it does not stop."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, self.stop_signal)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def spawn(
    name: str,
    cmd: Sequence[str],
    log: Path,
    uri: str,
    *,
    env: Mapping[str, str] | None = None,
    **kw: object,
) -> ServerProcess:
    """Start ``cmd`` in a new session with output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=None if env is None else dict(env),
        )
    return ServerProcess(name, proc, log, uri, **kw)  # type: ignore[arg-type]


#: Every port option of ``milvus-server`` (each gets its own free port).
_MILVUS_PORTS = (
    "etcd-port", "root-coord-port", "proxy-port", "proxy-internal-port", "query-coord-port",
    "query-node-port", "index-coord-port", "index-node-port", "data-coord-port",
    "data-node-port",
)
#: Components whose listen address is bound to loopback.
_MILVUS_COMPONENTS = (
    "proxy", "rootCoord", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord",
    "dataNode",
)


def milvus_server_binary() -> str:
    """Path of ``milvus-server`` (PyPI package ``milvus``), beside this Python first."""
    here = Path(sys.executable).with_name("milvus-server")
    found = str(here) if here.exists() else shutil.which("milvus-server")
    if not found:
        raise NotSupportedError(
            "milvus-server not found: pip install 'milvus==2.3.5' (standalone Milvus with "
            "embedded etcd) to run the Milvus server tests"
        )
    return found


def start_milvus(
    data_dir: str | os.PathLike[str],
    timeout: float = 180.0,
    *,
    extra_config: Mapping[str, object] | None = None,
) -> ServerProcess:
    """Start a standalone Milvus 2.3 server on free loopback ports; returns when it answers.

    Every internal component listens on 127.0.0.1; the proxy's URI is
    ``http://127.0.0.1:PORT``. Stop it with :meth:`ServerProcess.stop` (SIGINT, which
    milvus-server handles by shutting down cleanly).

    ``extra_config`` overrides keys of Milvus's ``milvus.yaml`` by dotted path. For example
    ``{"proxy.timeTickInterval": 20}``: a ``Strong`` read waits for the next time tick, so
    the default 200 ms tick makes every such read take about 300 ms on this server (measured:
    20 ms ticks bring it to about 40 ms). The tests use the short tick; benchmarks keep the
    default.
    """
    from pymilvus import MilvusClient

    data = Path(data_dir)
    ports = {name: free_port() for name in _MILVUS_PORTS}
    cmd = [milvus_server_binary(), "--data", str(data)]
    for name, port in ports.items():
        cmd += [f"--{name}", str(port)]
    for comp in _MILVUS_COMPONENTS:
        cmd += ["--extra-config", f"{comp}.ip=127.0.0.1"]
    for key, value in (extra_config or {}).items():
        cmd += ["--extra-config", f"{key}={value}"]
    uri = f"http://127.0.0.1:{ports['proxy-port']}"
    # The embedded etcd's peer port is fixed at 2380 unless an etcd config file says
    # otherwise; Milvus reads ``etcd.config.path`` from the environment (ETCD_CONFIG_PATH).
    peer = free_port()
    data.mkdir(parents=True, exist_ok=True)
    etcd_yaml = data / "embed-etcd.yaml"
    etcd_yaml.write_text(
        f"listen-client-urls: http://127.0.0.1:{ports['etcd-port']}\n"
        f"advertise-client-urls: http://127.0.0.1:{ports['etcd-port']}\n"
        f"listen-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
        f"initial-cluster: default=http://127.0.0.1:{peer}\n"
    )
    server = spawn("milvus-server", cmd, data / "milvus-server.log", uri,
                   env={**os.environ, "ETCD_CONFIG_PATH": str(etcd_yaml)},
                   stop_signal=signal.SIGINT, extra={"ports": ports})

    def ready() -> bool:
        client = MilvusClient(uri=uri, timeout=2)
        try:
            client.list_collections()
        finally:
            client.close()
        return True

    server.wait_ready(ready, timeout)
    return server
