"""Where a running ``hedgebridge up`` stack is, so that other commands find it.

``up`` writes ``<home>/stack.json`` (addresses, pids, each process's state and restarts; rewritten at every
change) and keeps the JWT key in ``<home>/jwt-secret`` and the password of the NATS server it starts (user
``hedgebridge``) in ``<home>/nats-password`` (both mode 0600).
Commands that find NATS through the state file log in with that password. ``<home>`` is ``$HEDGEBRIDGE_HOME``
or ``~/.hedgebridge``. Flags and environment variables always win over what the state file says.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from urllib.parse import quote

import msgspec

from hedgebridge.common import auth


class ServiceState(msgspec.Struct, kw_only=True):
    """One process ``up`` supervises: its state (starting, running, restarting, given up, stopped), its pid
    (0 when not running), how often it was restarted, when last (ISO 8601, UTC) and how it last ended."""

    state: str
    pid: int = 0
    restarts: int = 0
    last_restart: str = ""
    last_exit: str = ""


class StackState(msgspec.Struct, kw_only=True):
    nats_url: str
    redis_url: str
    gateway_url: str
    supervisor_pid: int
    pids: dict[str, int] = {}  # the processes running now
    accounts: list[str] = []
    nats_auth: bool = False  # the NATS server up started requires the password in <home>/nats-password
    services: dict[str, ServiceState] = {}  # every process up supervises, in start order


class CliError(Exception):
    """A command cannot proceed; the message tells the user what to do. ``exit_code`` is the process's."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def home(explicit: str | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HEDGEBRIDGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".hedgebridge"


def state_path(base: Path) -> Path:
    return base / "stack.json"


def secret_path(base: Path) -> Path:
    return base / "jwt-secret"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_state(base: Path) -> StackState | None:
    """The state of a stack that is running now, or None."""
    try:
        state = msgspec.json.decode(state_path(base).read_bytes(), type=StackState)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return state if pid_alive(state.supervisor_pid) else None


def write_state(base: Path, state: StackState) -> None:
    path = state_path(base)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(msgspec.json.encode(state))
    tmp.replace(path)


def clear_state(base: Path) -> None:
    with contextlib.suppress(OSError):
        state_path(base).unlink()


NATS_USER = "hedgebridge"


def nats_password_path(base: Path) -> Path:
    return base / "nats-password"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    path.chmod(0o600)


def load_or_create_secret(base: Path) -> str:
    path = secret_path(base)
    with contextlib.suppress(OSError):
        secret = path.read_text().strip()
        auth.check_secret(secret)
        return secret
    secret = auth.new_secret()
    _write_private(path, secret)
    return secret


def load_or_create_nats_password(base: Path) -> str:
    """The password ``up`` gives its NATS server (generated once, kept with mode 0600)."""
    path = nats_password_path(base)
    with contextlib.suppress(OSError):
        password = path.read_text().strip()
        if len(password) >= 24:
            path.chmod(0o600)
            return password
    password = auth.new_secret()
    _write_private(path, password)
    return password


def with_credentials(url: str, user: str, password: str) -> str:
    """``url`` (a comma-separated list) with ``user:password@`` in each server address."""
    quoted = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return ",".join(part.strip().replace("://", "://" + quoted, 1) for part in url.split(",") if part.strip())


def resolve_secret(flag: str | None, base: Path) -> str:
    """The JWT key from --secret, $HEDGEBRIDGE_JWT_SECRET, or the running local stack; never invented."""
    secret = flag or os.environ.get("HEDGEBRIDGE_JWT_SECRET")
    if not secret and read_state(base) is not None:
        with contextlib.suppress(OSError):
            secret = secret_path(base).read_text().strip()
    if not secret:
        raise CliError(
            "no JWT key: pass --secret, set HEDGEBRIDGE_JWT_SECRET, or start the local stack with 'hedgebridge up'"
        )
    try:
        auth.check_secret(secret)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    return secret


def _resolve(flag: str | None, variable: str, base: Path, field: str, what: str, option: str) -> str:
    value = flag or os.environ.get(variable)
    if not value:
        state = read_state(base)
        value = getattr(state, field) if state else None
    if not value:
        raise CliError(f"no {what}: pass {option}, set {variable}, or start the local stack with 'hedgebridge up'")
    return str(value)


def resolve_nats_url(flag: str | None, base: Path) -> str:
    """The NATS URL from the flag, $HEDGEBRIDGE_NATS_URL, or the running local stack — with the local stack's
    credentials when it is its server (never print this URL: ``bus.redact`` it)."""
    url = _resolve(flag, "HEDGEBRIDGE_NATS_URL", base, "nats_url", "NATS server", "--nats-url")
    state = read_state(base)
    if state is not None and url == state.nats_url and state.nats_auth and "@" not in url:
        with contextlib.suppress(OSError):
            return with_credentials(url, NATS_USER, nats_password_path(base).read_text().strip())
    return url


def resolve_gateway_url(flag: str | None, base: Path) -> str:
    return _resolve(flag, "HEDGEBRIDGE_GATEWAY_URL", base, "gateway_url", "gateway", "--url")
