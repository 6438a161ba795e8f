"""The admin dashboard at ``/admin``: static files served on the gateway's port (plain HTTP GET, answered from
``process_request`` before any WebSocket handshake decision).

The page (``static/``) asks for an admin token in a form (never in the URL), connects to ``/client`` like any
browser client (subprotocol ``hedgebridge.v1``, an ``AUTH`` frame first) and renders the live events. The
files are read once; responses forbid caching, framing and inline scripts.
"""

from __future__ import annotations

import re
from functools import cache
from http import HTTPStatus
from importlib import resources

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

PREFIX = "/admin"
FILES: dict[str, tuple[str, str]] = {
    "/admin": ("index.html", "text/html; charset=utf-8"),
    "/admin/": ("index.html", "text/html; charset=utf-8"),
    "/admin/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/admin/chart.js": ("chart.js", "text/javascript; charset=utf-8"),
    "/admin/history.js": ("history.js", "text/javascript; charset=utf-8"),
    "/admin/app.css": ("app.css", "text/css; charset=utf-8"),
}
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def is_admin_path(path: str) -> bool:
    route = path.split("?", 1)[0]
    return route == PREFIX or route.startswith(PREFIX + "/")


@cache
def _read(name: str) -> bytes:
    return resources.files("hedgebridge.gateway").joinpath("static", name).read_bytes()


def _policy(host: str | None) -> str:
    connect = "'self'"
    if host and _HOST.match(host):  # the WebSocket back to this gateway, for browsers where 'self' omits ws:
        connect += f" ws://{host} wss://{host}"
    return (
        f"default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def respond(connection: ServerConnection, request: Request) -> Response | None:
    """The answer to a request for the dashboard, or None when the path is not the dashboard's."""
    if not is_admin_path(request.path):
        return None
    entry = FILES.get(request.path.split("?", 1)[0])
    if entry is None:
        return connection.respond(HTTPStatus.NOT_FOUND, "no such page\n")
    name, content_type = entry
    body = _read(name)
    headers = Headers(
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy", _policy(request.headers.get("Host"))),
            ("Connection", "close"),
        ]
    )
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)
