"""A web dashboard for queuekit's queues, to mount in a FastAPI or Starlette app.

``create_app(service)`` returns an ASGI app (Starlette, Jinja2 templates and a small
script shipped in this package: nothing is loaded from a CDN). It reads only through the
``QueueService`` contract, so it shows the in-memory backend as well as Redis (and jobs
that Node BullMQ added)::

    from fastapi import FastAPI
    from queuekit.dashboard import create_app

    app = FastAPI()
    app.mount("/queues", create_app(queue_service, token="s3cret"))

Pages: the queues with their counts per state; each queue's jobs per state (payload,
progress, attempts, timestamps, failed reason); a job's page (stack traces, logs, its
flow); the queue's job schedulers. Actions (POST, CSRF-protected): retry the failed jobs,
and pause, resume, clean, remove and retry one job where the service has those methods.
``read_only=True`` shows no action and refuses every POST with 403. Payload keys that
look like secrets (``security.sensitive_keys``) are masked.

``queuekit dashboard`` serves it on 127.0.0.1:8080; :func:`serve` does it from code.
Needs the ``dashboard`` extra: ``pip install 'queuekit[dashboard]'``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from queuekit.dashboard.guard import check_bind, is_loopback

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from queuekit.dashboard.app import ServiceSource

__all__ = ["check_bind", "create_app", "is_loopback", "serve"]


def _require_extra() -> None:
    try:
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the dev install has both
        raise ImportError(
            f"queuekit.dashboard needs the dashboard extra ({exc.name} is missing): "
            "pip install 'queuekit[dashboard]'"
        ) from exc


def create_app(service: ServiceSource, *, read_only: bool = False, token: str | None = None,
               refresh: float = 5.0, title: str = "queuekit", page_size: int = 50,
               ) -> Starlette:
    """The dashboard as a Starlette ASGI app.

    ``service`` is a started :class:`~queuekit.QueueService`, or a callable returning
    one (awaited when it returns an awaitable: e.g. a container's provider, resolved per
    request). ``token`` requires every request to carry it (bearer header, basic-auth
    password, or a cookie set by visiting ``?token=...`` once). ``read_only`` hides every
    action and refuses POSTs with 403. ``refresh``: seconds between auto-refreshes
    (0: off). ``page_size``: jobs per list.
    """
    _require_extra()
    from queuekit.dashboard.app import build_app

    return build_app(service, read_only=read_only, token=token, refresh=refresh,
                     title=title, page_size=page_size)


async def serve(service: ServiceSource, *, host: str = "127.0.0.1", port: int = 8080,
                token: str | None = None, read_only: bool = False, refresh: float = 5.0,
                on_ready: Callable[[str], Any] | None = None) -> None:
    """Serve the dashboard with uvicorn until cancelled (or SIGINT/SIGTERM).

    Refuses a non-loopback ``host`` without ``token`` (:class:`ConfigurationError`).
    ``on_ready`` receives the address once it listens (``port=0`` picks a free port).
    """
    check_bind(host, token)
    _require_extra()
    import uvicorn

    app = create_app(service, read_only=read_only, token=token, refresh=refresh)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    # Listening before on_ready: a client told the address may connect at once (uvicorn
    # listens again when it serves the socket, which is harmless).
    sock.listen(config.backlog)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(config)
    if on_ready is not None:
        shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
        on_ready(f"http://{shown}:{bound}/")
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
