"""Real servers for tests and benchmarks, started as child processes on free loopback ports.

Nothing here is mocked: :func:`~vecindex_core.testing.servers.start_milvus` runs the
standalone Milvus shipped by the PyPI package ``milvus``; each server is stopped by its PID.
"""

from .postgres_server import PostgresHandle, postgres_binaries, start_postgres
from .redis_server import (
    ClusterHandle,
    restart_redis,
    start_redis,
    start_redis_cluster,
)
from .servers import ServerProcess, free_port, start_milvus

__all__ = [
    "ClusterHandle",
    "PostgresHandle",
    "ServerProcess",
    "free_port",
    "postgres_binaries",
    "restart_redis",
    "start_milvus",
    "start_postgres",
    "start_redis",
    "start_redis_cluster",
]
