"""NATS and the cache in containers (testcontainers), for machines with a Docker engine.

With ``HEDGEBRIDGE_TEST_CONTAINERS=1`` and a Docker engine that answers, the ``nats_server`` and
``cache_server`` fixtures start the official images instead of the pip-installed binaries. The classes here
keep the fixtures' interface (``url``, ``host``, ``port``, ``start``, ``stop``, ``kill``, ``restart``,
``running``), so tests do not know the difference. Without Docker the binaries are used, and
``tests/integration/test_containers.py`` is skipped with the reason.
"""

from __future__ import annotations

import os
from typing import Any

from hedgebridge.cli.stack import DEFAULT_NATS_PORT, DEFAULT_REDIS_PORT
from hedgebridge.common.servers import NatsServer, ServerError, ValkeyServer, wait_for_port

ENV = "HEDGEBRIDGE_TEST_CONTAINERS"
NATS_IMAGE = "nats:2.10.24-alpine"
VALKEY_IMAGE = "valkey/valkey:8-alpine"


def requested() -> bool:
    return os.environ.get(ENV) == "1"


def unavailable() -> str | None:
    """Why containers cannot be used here (None when they can)."""
    try:
        import docker
        from testcontainers.core.container import DockerContainer  # noqa: F401
    except ImportError as exc:
        return f"testcontainers is not installed ({exc.name}): pip install -e '.[dev]'"
    try:
        docker.from_env().ping()
    except Exception as exc:  # the Docker SDK raises its own errors, or OSError, when no engine answers
        return f"no Docker engine answers here ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def use_containers() -> bool:
    return requested() and unavailable() is None


class _Container:
    """A server in a container, publishing one port on a random host port. Listed first among the bases, so
    that its start, stop and kill replace the local process's."""

    image = ""
    container_port = 0
    command: list[str] = []
    host: str
    port: int

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.container: Any = None

    def start(self, timeout_s: float = 60.0) -> None:
        if self.running:
            return
        from testcontainers.core.container import DockerContainer

        container = DockerContainer(self.image).with_exposed_ports(self.container_port)
        if self.command:
            container = container.with_command(self.command)
        container.start()
        self.container = container
        self.host = container.get_container_host_ip()
        self.port = int(container.get_exposed_port(self.container_port))
        if not wait_for_port(self.host, self.port, timeout_s):
            self.stop()
            raise ServerError(f"{self.image} did not listen within {timeout_s}s")

    @property
    def running(self) -> bool:
        return self.container is not None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.container is not None:
            self.container.stop()
        self.container = None

    def kill(self) -> None:
        if self.container is not None:
            self.container.get_wrapped_container().kill()
            self.container.stop()
        self.container = None


class NatsContainer(_Container, NatsServer):
    image = NATS_IMAGE
    container_port = DEFAULT_NATS_PORT  # inside the container
    command = ["-js"]


class ValkeyContainer(_Container, ValkeyServer):
    image = VALKEY_IMAGE
    container_port = DEFAULT_REDIS_PORT  # inside the container
    command = ["valkey-server", "--save", "", "--appendonly", "no"]
