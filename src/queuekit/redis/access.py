"""Why the start-up check could not use Redis, in words a person can act on.

:func:`unavailable` turns what redis-py raised into a :class:`QueueUnavailableError` that
names what failed (the connection, the TLS certificate, the TLS handshake, the
authentication, a missing permission); :func:`check_key_access` proves the ACL user may
touch the keys under the prefix before a worker meets ``NOPERM`` in a script. Messages
name the server by its masked URL and never carry the password.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError

from queuekit.errors import QueueUnavailableError
from queuekit.redis.keys import access_check_key, cluster_prefix
from queuekit.settings import RedisSettings

_CREDENTIALS_HINT = ("check redis.username / redis.password or the credentials in "
                     "QUEUEKIT_REDIS__URL")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _user(settings: RedisSettings) -> str:
    return urlsplit(settings.effective_url).username or settings.username or "default"


def unavailable(exc: BaseException, settings: RedisSettings, url: str) -> QueueUnavailableError:
    """The error to raise for ``exc`` (from the start-up check of ``settings``)."""
    text = str(exc)
    chain = _chain(exc)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) \
            or "CERTIFICATE_VERIFY_FAILED" in text:
        return QueueUnavailableError(
            f"TLS certificate of Redis at {url} was not accepted ({text}); check "
            "redis.ssl_ca_certs (the CA that signed the server's certificate) and "
            "redis.ssl_cert_reqs")
    if any(isinstance(e, ssl.SSLError) for e in chain) or "SSL" in text:
        return QueueUnavailableError(
            f"TLS handshake with Redis at {url} failed ({text}); check that the port "
            "speaks TLS, and redis.ssl_certfile / redis.ssl_keyfile when the server "
            "requires a client certificate")
    if isinstance(exc, AuthenticationError) or "WRONGPASS" in text or "NOAUTH" in text:
        return QueueUnavailableError(
            f"authentication failed: Redis at {url} refused user {_user(settings)!r} "
            f"({text}); {_CREDENTIALS_HINT}")
    if isinstance(exc, NoPermissionError) or "NOPERM" in text:
        return QueueUnavailableError(
            f"no permission: Redis at {url} does not let user {_user(settings)!r} "
            f"{_what(text, settings)} ({text}); grant the ACL user the key pattern "
            f"{_key_pattern(settings)} and the commands BullMQ needs (see the README)")
    if isinstance(exc, ResponseError):
        return QueueUnavailableError(f"Redis at {url} answered with an error: {text}")
    hint = ""
    if settings.uses_tls:  # TLS 1.3: a refused client certificate shows as a reset
        hint = ("; over TLS: when the server requires a client certificate, set "
                "redis.ssl_certfile and redis.ssl_keyfile")
    return QueueUnavailableError(f"cannot connect to Redis at {url}: {text}{hint}")


def _what(text: str, settings: RedisSettings) -> str:
    if "key" in text.lower():
        return f"access the keys under {settings.prefix!r}"
    return "run a command queuekit needs"


def _key_pattern(settings: RedisSettings) -> str:
    # On Redis Cluster every key starts with the braced prefix ("{queue}" or "{queue:...}").
    return f"~{{{settings.prefix}*" if settings.cluster else f"~{settings.prefix}:*"


async def check_key_access(client: Redis, settings: RedisSettings, url: str) -> None:
    """Read one key under the prefix: an ACL user without the key pattern fails here."""
    prefix = cluster_prefix(settings.prefix, "", "shared") if settings.cluster \
        else settings.prefix
    try:
        await client.exists(access_check_key(prefix))
    except (RedisError, OSError) as exc:
        raise unavailable(exc, settings, url) from None
