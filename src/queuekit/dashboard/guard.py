"""The dashboard's gatekeeping: where it may listen, who may see it, which POSTs count.

- :func:`check_bind`: a loopback address needs nothing; any other address needs a token,
  or the dashboard refuses to start.
- :class:`Guard` (ASGI middleware): with a token, every request needs it, as
  ``Authorization: Bearer T``, HTTP basic auth with password ``T`` (any user name; what
  a browser prompts for), or the cookie that ``?token=T`` sets. Security headers on every
  response (no framing, same-origin referrers, a content policy with no inline script).
- CSRF: a random per-browser token in a ``SameSite=Strict`` cookie that every form
  echoes (double submit), and a POST from another origin is refused.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from queuekit.errors import ConfigurationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AUTH_COOKIE = "qk_dashboard_auth"
CSRF_COOKIE = "qk_dashboard_csrf"
CSRF_FIELD = "csrf_token"

SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is on this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on a non-loopback ``host`` without a token."""
    if not is_loopback(host) and not token:
        raise ConfigurationError(
            f"the dashboard refuses to listen on {host!r} without a token: it shows job "
            "payloads and can retry, remove and clean jobs. Pass --token (or set "
            "QUEUEKIT_DASHBOARD_TOKEN), or bind 127.0.0.1 and reach it through a tunnel"
        )


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookies(headers: dict[str, str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            found[name] = value
    return found


class Guard:
    """ASGI middleware: the token check and security headers (see the module doc)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        if not self.token:
            return True
        expected = self.token.encode()
        offered: list[bytes] = [_cookies(headers).get(AUTH_COOKIE, "").encode()]
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer":
            offered.append(value.strip().encode())
        elif scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, ValueError):
                offered.append(base64.b64decode(value.strip()).partition(b":")[2])
        return any(hmac.compare_digest(candidate, expected) for candidate in offered)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        query = scope.get("query_string", b"").decode("latin-1")
        offered_token = _query_token(query)
        if (self.token and offered_token is not None
                and hmac.compare_digest(offered_token.encode(), self.token.encode())):
            # ?token=T once: remember it in a cookie, and drop it from the address bar
            location = scope.get("root_path", "") + scope["path"]
            await _respond(send, 303, b"", [
                (b"location", location.encode() or b"/"),
                (b"set-cookie", f"{AUTH_COOKIE}={self.token}; Path=/; HttpOnly; "
                                "SameSite=Strict".encode()),
            ])
            return
        if not self._authorised(scope, headers):
            await _respond(send, 401, b"queuekit dashboard: a token is required\n", [
                (b"www-authenticate", b'Basic realm="queuekit dashboard"'),
                (b"content-type", b"text/plain; charset=utf-8"),
            ])
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _query_token(query: str) -> str | None:
    from urllib.parse import parse_qs

    values = parse_qs(query).get("token")
    return values[0] if values else None


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def new_csrf_token() -> str:
    """A fresh random CSRF token (for the cookie and the forms)."""
    return secrets.token_urlsafe(32)


def csrf_ok(cookie: str | None, submitted: str | None, origin: str | None,
            host: str | None) -> bool:
    """Whether a POST passes CSRF protection: the form echoes the cookie and, when the
    browser names an origin, it is this host."""
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        return False
    if origin and origin != "null" and host:
        return origin.split("://", 1)[-1] == host
    return origin != "null"
