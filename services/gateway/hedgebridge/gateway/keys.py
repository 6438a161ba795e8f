"""The keys the gateway verifies tokens with, and the revocation list (the I/O around ``auth``).

- ``KeyProvider``: HS256 with ``HEDGEBRIDGE_JWT_SECRET``; RS256/ES256 with a PEM public key file, or with a
  JWKS document fetched from ``HEDGEBRIDGE_GATEWAY_JWT_JWKS_URL`` at start (the gateway does not start
  without it), fetched again every ``jwt_jwks_refresh_s`` and — at most every few seconds — when a token
  names an unknown ``kid`` (key rotation: publish the new key in the JWKS before signing with it). A failed
  refresh keeps the keys it has.
- ``Revocations``: the ``jti`` of revoked tokens, read from the NATS KV bucket ``hb_revoked`` and watched, so
  that a revocation reaches every gateway within a moment; ``on_revoked`` lets the gateway close the live
  sessions of a revoked token (1008 "token revoked").
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from nats.aio.client import Client as NatsClient

from hedgebridge.common import auth, logs, streams
from hedgebridge.common.faults import Fatal
from hedgebridge.common.kv_mirror import KvMirror
from hedgebridge.common.tasks import cancel_and_wait

from .config import GatewayConfig

log = logs.get("gateway")
MAX_JWKS_BYTES = 1_048_576
UNKNOWN_KID_REFRESH_S = 5.0
FETCH_TIMEOUT_S = 5.0


class KeysUnavailable(Fatal):
    """The configured public key or JWKS cannot be read at start."""

    code = "JWT_KEYS_UNAVAILABLE"


def fetch_jwks(url: str, algorithm: auth.Algorithm, timeout_s: float = FETCH_TIMEOUT_S) -> auth.KeySet:
    """GET the JWKS document (blocking; run it in a thread). Raises ValueError or OSError."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "hedgebridge-gateway"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # http(s) only: checked in config
        body = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS document is larger than {MAX_JWKS_BYTES} bytes")
    return auth.keys_from_jwks(algorithm, body)


class KeyProvider:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.algorithm: auth.Algorithm = config.jwt_algorithm  # type: ignore[assignment]
        self._keys: auth.KeySet | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_fetch = 0.0
        self._fetching: asyncio.Task[None] | None = None
        self.fetches = 0

    @property
    def keys(self) -> auth.KeySet:
        assert self._keys is not None, "key provider not started"
        return self._keys

    async def start(self) -> None:
        config = self.config
        try:
            if self.algorithm == "HS256":
                self._keys = auth.hs256(config.jwt_secret)
            elif config.jwt_public_key_file:
                pem = await asyncio.to_thread(Path(config.jwt_public_key_file).read_bytes)
                self._keys = auth.public_key(self.algorithm, pem)
            else:
                self._keys = await asyncio.to_thread(fetch_jwks, config.jwt_jwks_url, self.algorithm)
                self._last_fetch = time.monotonic()
                self.fetches += 1
                self._task = asyncio.create_task(self._refresh_loop())
        except (OSError, ValueError) as exc:
            raise KeysUnavailable(f"cannot load the JWT verification keys: {exc}") from None
        log.info("jwt keys loaded", algorithm=self.algorithm, keys=len(self._keys.keys))

    async def stop(self) -> None:
        for task in (self._task, self._fetching):
            await cancel_and_wait(task)
        self._task = self._fetching = None

    def unknown_kid(self) -> None:
        """A token named a key id we do not hold: fetch the JWKS again soon (at most every few seconds)."""
        if not self.config.jwt_jwks_url or (self._fetching is not None and not self._fetching.done()):
            return
        if time.monotonic() - self._last_fetch < UNKNOWN_KID_REFRESH_S:
            return
        self._fetching = asyncio.create_task(self._refresh())

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.jwt_jwks_refresh_s)
            await self._refresh()

    async def _refresh(self) -> None:
        self._last_fetch = time.monotonic()
        try:
            self._keys = await asyncio.to_thread(fetch_jwks, self.config.jwt_jwks_url, self.algorithm)
            self.fetches += 1
            log.info("jwks refreshed", keys=len(self._keys.keys))
        except (OSError, ValueError) as exc:
            log.warning("jwks refresh failed; keeping the keys held", error=str(exc)[:200])


class Revocations:
    """The revoked token ids, kept in step with the ``hb_revoked`` bucket."""

    def __init__(self, on_revoked: Callable[[str], None]) -> None:
        self.revoked: set[str] = set()
        self._on_revoked = on_revoked
        self._mirror = KvMirror(self._on_entry)

    def __contains__(self, jti: object) -> bool:
        return jti in self.revoked

    async def start(self, nc: NatsClient, replicas: int, timeout_s: float = 10.0) -> None:
        """Open the bucket, read every revocation in it, then follow new ones in the background."""
        bucket = await streams.revocations(nc.jetstream(), replicas)
        try:
            await self._mirror.start(bucket, timeout_s)
        except TimeoutError:
            raise KeysUnavailable(f"cannot read the revocation list within {timeout_s:g}s") from None

    async def stop(self) -> None:
        await self._mirror.stop()

    def _on_entry(self, jti: str, value: bytes | None, initial: bool) -> None:
        if value is None:
            self.revoked.discard(jti)
        elif jti not in self.revoked:
            self.revoked.add(jti)
            if not initial:
                log.info("token revoked", jti=jti)
            self._on_revoked(jti)
