"""Real servers for tests and benchmarks, started as child processes on free loopback ports.

Nothing here is mocked: :func:`~vecindex_core.testing.servers.start_milvus` runs the
standalone Milvus shipped by the PyPI package ``milvus``; each server is stopped by its PID.
"""

from .servers import ServerProcess, free_port, start_milvus

__all__ = ["ServerProcess", "free_port", "start_milvus"]
