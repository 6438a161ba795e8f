"""NATS connections with the options every service uses.

A NATS URL may carry credentials (``nats://user:password@host``, ``nats://token@host``): wherever a URL or an
error text goes to a log or an exception message, ``redact`` replaces them with ``***``.

Credentials and TLS may also come from the environment (``NatsSecurity``, read by ``connect`` when the
caller gives none): ``HEDGEBRIDGE_NATS_USER`` / ``_PASSWORD``, ``_TOKEN``, ``_CREDS_FILE`` (a NATS
``.creds`` file: JWT + nkey seed), ``_NKEY_SEED_FILE``, and ``_TLS_CA_FILE`` / ``_TLS_CERT_FILE`` /
``_TLS_KEY_FILE`` (server verification with a private CA, and a client certificate for mutual TLS). A
``tls://`` URL, or a CA file, makes the connection use TLS. A server that refuses the credentials at start
ends ``connect`` at once (``NatsUnreachable``), without waiting for the start-up deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any

import msgspec
import nats
from nats.aio.client import Client
from nats.errors import SlowConsumerError

from . import config, logs
from .faults import Fatal
from .obs import metrics

_log = logs.get("bus")
ERROR_LOG_INTERVAL_S = 5.0
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/\s]+)@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced: ``nats://user:***@host``, ``nats://***@host``."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match["userinfo"].partition(":")
        return f"{match['scheme']}{user}:***@" if colon else f"{match['scheme']}***@"

    return _USERINFO.sub(hide, text)


SECURITY_PREFIX = "HEDGEBRIDGE_NATS_"


class NatsSecurity(msgspec.Struct, frozen=True, kw_only=True):
    """How to authenticate to NATS and whether to use TLS (every field optional)."""

    user: Annotated[str, config.setting("NATS login (with PASSWORD; or nats://user:pass@host in the URL)")] = ""
    password: Annotated[str, config.setting("the login's password")] = ""
    token: Annotated[str, config.setting("or a NATS token")] = ""
    creds_file: Annotated[str, config.setting("or a NATS .creds file (JWT + nkey seed; needs the nkeys package)")] = ""
    nkey_seed_file: Annotated[str, config.setting("or an nkey seed file (needs the nkeys package)")] = ""
    tls_ca_file: Annotated[
        str, config.setting("TLS: the CA that signed the NATS servers' certificates (or use tls:// URLs)")
    ] = ""
    tls_cert_file: Annotated[str, config.setting("mutual TLS: the client certificate (with TLS_KEY_FILE)")] = ""
    tls_key_file: Annotated[str, config.setting("mutual TLS: the client certificate's key")] = ""

    @property
    def configured(self) -> bool:
        return any(msgspec.structs.asdict(self).values())


def security_from_env(environ: Mapping[str, str] | None = None) -> NatsSecurity:
    """The NATS credentials and TLS files from ``HEDGEBRIDGE_NATS_*``; ConfigError when they do not fit."""
    security = config.load(NatsSecurity, SECURITY_PREFIX, environ)
    check_security(security)
    return security


def check_security(security: NatsSecurity) -> None:
    p = SECURITY_PREFIX
    methods = [bool(security.user), bool(security.token), bool(security.creds_file), bool(security.nkey_seed_file)]
    if sum(methods) > 1:
        raise config.ConfigError(f"choose one of {p}USER, {p}TOKEN, {p}CREDS_FILE, {p}NKEY_SEED_FILE")
    if bool(security.user) != bool(security.password):
        raise config.ConfigError(f"{p}USER and {p}PASSWORD go together")
    if bool(security.tls_cert_file) != bool(security.tls_key_file):
        raise config.ConfigError(f"{p}TLS_CERT_FILE and {p}TLS_KEY_FILE go together")
    if (security.creds_file or security.nkey_seed_file) and importlib.util.find_spec("nkeys") is None:
        raise config.ConfigError(
            f"{p}CREDS_FILE / {p}NKEY_SEED_FILE need the 'nkeys' package (pip install nkeys); not installed"
        )


def connect_options(security: NatsSecurity) -> dict[str, Any]:
    """nats-py ``connect`` options for ``security``."""
    options: dict[str, Any] = {}
    if security.user:
        options.update(user=security.user, password=security.password)
    if security.token:
        options["token"] = security.token
    if security.creds_file:
        options["user_credentials"] = security.creds_file
    if security.nkey_seed_file:
        options["nkeys_seed"] = security.nkey_seed_file
    if security.tls_ca_file or security.tls_cert_file:
        context = ssl.create_default_context(cafile=security.tls_ca_file or None)
        if security.tls_cert_file:
            context.load_cert_chain(security.tls_cert_file, security.tls_key_file)
        options["tls"] = context
    return options


def _refused_credentials(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "authorization violation" in text or "authentication" in text or "user authentication" in text


class NatsUnreachable(Fatal):
    """NATS could not be reached within the start-up deadline."""

    code = "NATS_UNREACHABLE"


async def connect(
    url: str,
    name: str,
    *,
    startup_timeout_s: float = 30.0,
    security: NatsSecurity | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    **options: Any,
) -> Client:
    """Connect to NATS (``url`` may be a comma-separated list of servers; credentials and TLS from
    ``security``, or from the environment when it is None).

    The first connection must succeed within ``startup_timeout_s`` (else NatsUnreachable, so that a
    supervisor restarts the service with a clear message); once connected, the client reconnects forever.
    Connection errors are logged at most once every few seconds; ``on_reconnect`` is awaited after each
    reconnect."""
    last_logged = 0.0
    refused: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_disconnect() -> None:
        _log.warning("nats disconnected", client=name)

    async def reconnected() -> None:
        metrics.RECONNECTS.labels("nats").inc()
        _log.info("nats reconnected", client=name)
        if on_reconnect is not None:
            await on_reconnect()

    async def on_error(exc: Exception) -> None:
        nonlocal last_logged
        if isinstance(exc, SlowConsumerError):  # nats-py dropped a message of a subscription that lags
            metrics.NATS_DROPPED.inc()
        if not refused.done() and _refused_credentials(exc):
            refused.set_result(redact(str(exc)))
        now = time.monotonic()
        if now - last_logged >= ERROR_LOG_INTERVAL_S:
            last_logged = now
            _log.warning("nats error", client=name, error=redact(f"{type(exc).__name__}: {exc}"))

    servers = [u.strip() for u in url.split(",") if u.strip()]
    defaults: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.25,
        "connect_timeout": 2,
        "allow_reconnect": True,
        "disconnected_cb": on_disconnect,
        "reconnected_cb": reconnected,
        "error_cb": on_error,
    }
    defaults.update(connect_options(security_from_env() if security is None else security))
    defaults.update(options)
    attempt: asyncio.Future[Any] = asyncio.ensure_future(nats.connect(servers=servers, **defaults))
    racing: list[asyncio.Future[Any]] = [attempt, refused]
    try:
        async with asyncio.timeout(startup_timeout_s):
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        pass
    if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
        client: Client = attempt.result()
        return client
    failed = attempt.exception() if attempt.done() and not attempt.cancelled() else None
    attempt.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await attempt
    if refused.done():
        raise NatsUnreachable(f"NATS at {redact(url)} refused the credentials: {refused.result()}")
    if failed is not None:
        raise NatsUnreachable(f"cannot reach NATS at {redact(url)}: {redact(str(failed) or type(failed).__name__)}")
    raise NatsUnreachable(f"cannot reach NATS at {redact(url)} within {startup_timeout_s:g}s")
