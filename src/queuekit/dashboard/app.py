"""The dashboard's Starlette application: pages, actions, static files."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from queuekit.dashboard.guard import CSRF_COOKIE, CSRF_FIELD, Guard, csrf_ok, new_csrf_token
from queuekit.dashboard.views import Reader, when
from queuekit.errors import QueuekitError
from queuekit.jobs import COUNT_STATES, JobState, ms_to_datetime
from queuekit.records import LISTABLE_STATES
from queuekit.service import QueueService

log = logging.getLogger("queuekit.dashboard")

ServiceSource = QueueService | Callable[[], QueueService | Awaitable[QueueService]]
#: The actions, each the service method it calls (an action shows when the method exists).
QUEUE_ACTIONS = {"retry": "retry_jobs", "pause": "pause", "resume": "resume",
                 "clean": "clean"}
JOB_ACTIONS = {"retry": "retry_job", "remove": "remove_job"}
CLEANABLE = ("completed", "failed")


class Dashboard:
    """The state behind the routes: where the service comes from, and the options."""

    def __init__(self, source: ServiceSource, *, read_only: bool, refresh: float,
                 title: str, page_size: int) -> None:
        self._source = source
        self.read_only = read_only
        self.refresh = refresh
        self.title = title
        self.page_size = page_size
        env = Environment(loader=PackageLoader("queuekit.dashboard", "templates"),
                          autoescape=select_autoescape(default=True))
        env.filters["ms_time"] = lambda ms: when(ms_to_datetime(ms))
        env.globals.update(when=when, count_states=COUNT_STATES,
                           listable_states=LISTABLE_STATES, cleanable=CLEANABLE)
        self.templates = Jinja2Templates(env=env)

    async def reader(self) -> Reader:
        source = self._source
        if isinstance(source, QueueService):
            return Reader(source)
        service = source()
        if inspect.isawaitable(service):
            service = await service
        return Reader(service)

    def render(self, request: Request, template: str, reader: Reader, status: int = 200,
               **context: Any) -> Response:
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        response = self.templates.TemplateResponse(request, template, {
            "title": self.title, "read_only": self.read_only, "refresh": self.refresh,
            "csrf_field": CSRF_FIELD, "csrf_token": csrf, "reader": reader,
            "queue_actions": {a for a, m in QUEUE_ACTIONS.items() if reader.supports(m)},
            "job_actions": {a for a, m in JOB_ACTIONS.items() if reader.supports(m)},
            "flash": request.query_params.get("done"), **context,
        }, status_code=status)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                path=request.scope.get("root_path") or "/")
        return response

    # -- pages -------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        reader = await self.reader()
        return self.render(request, "overview.html", reader, queues=await reader.overview())

    async def queue(self, request: Request) -> Response:
        reader = await self.reader()
        name = request.path_params["queue"]
        state = request.query_params.get("state", JobState.FAILED)
        if state not in LISTABLE_STATES:
            raise HTTPException(404, f"no job list for state {state!r}")
        counts = await reader.service.get_job_counts(name)
        return self.render(request, "queue.html", reader, queue=name, state=state,
                           counts=counts, jobs=await reader.jobs(name, state, self.page_size),
                           schedulers=await reader.schedulers(name))

    async def job(self, request: Request) -> Response:
        reader = await self.reader()
        name, job_id = request.path_params["queue"], request.path_params["job_id"]
        view = await reader.job(name, job_id)
        if view is None:
            raise HTTPException(404, f"no job {job_id!r} on queue {name!r}")
        return self.render(request, "job.html", reader, queue=name, job=view)

    # -- actions -----------------------------------------------------------------------

    async def _checked_form(self, request: Request) -> dict[str, str]:
        if self.read_only:
            raise HTTPException(403, "the dashboard is read-only")
        form = {k: str(v) for k, v in (await request.form()).items()}
        if not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD),
                       request.headers.get("origin"), request.headers.get("host")):
            raise HTTPException(403, "CSRF check failed: reload the page and try again")
        return form

    async def queue_action(self, request: Request) -> Response:
        form = await self._checked_form(request)
        reader = await self.reader()
        name, action = request.path_params["queue"], request.path_params["action"]
        method = self._method(reader, QUEUE_ACTIONS, action)
        if action == "clean":
            state = form.get("state", "completed")
            if state not in CLEANABLE:
                raise HTTPException(400, f"cannot clean state {state!r}")
            result = await method(name, state=state, grace_ms=0)
            done = f"cleaned {len(result)} {state} job(s)"
        elif action == "retry":
            done = f"moved {await method(name)} failed job(s) back to waiting"
        else:
            await method(name)
            done = f"{action}d {name}"
        log.info("dashboard: %s on %s", action, name, extra={"queue": name})
        return self._back(request, request.url_for("queue", queue=name).path, done,
                          form.get("next"))

    async def job_action(self, request: Request) -> Response:
        form = await self._checked_form(request)
        reader = await self.reader()
        name, job_id = request.path_params["queue"], request.path_params["job_id"]
        action = request.path_params["action"]
        method = self._method(reader, JOB_ACTIONS, action)
        await method(name, job_id)
        log.info("dashboard: %s job %s on %s", action, job_id, name,
                 extra={"queue": name, "job_id": job_id})
        if action == "remove":
            return self._back(request, request.url_for("queue", queue=name).path,
                              f"removed job {job_id}")
        return self._back(request, request.url_for("job", queue=name, job_id=job_id).path,
                          f"{action} job {job_id}: done", form.get("next"))

    def _method(self, reader: Reader, actions: dict[str, str],
                action: str) -> Callable[..., Awaitable[Any]]:
        if action not in actions:
            raise HTTPException(404, f"no action {action!r}")
        if not reader.supports(actions[action]):
            raise HTTPException(501, f"this queue service has no {actions[action]}()")
        method: Callable[..., Awaitable[Any]] = getattr(reader.service, actions[action])
        return method

    @staticmethod
    def _back(request: Request, target: str, done: str, back: str | None = None) -> Response:
        """Redirect after an action: to the page the form was on when it is one of ours
        (a path under this app, never another host), else to ``target``."""
        root = request.scope.get("root_path", "")
        if back and back.startswith(f"{root}/") and not back.startswith("//") \
                and "\\" not in back:
            target = back
        return RedirectResponse(f"{target}?{urlencode({'done': done})}", status_code=303)


async def _error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    detail = exc.detail if isinstance(exc, HTTPException) else str(exc)
    return Response(f"{status}: {detail}\n", status_code=status,
                    media_type="text/plain; charset=utf-8")


def build_app(source: ServiceSource, *, read_only: bool = False, token: str | None = None,
              refresh: float = 5.0, title: str = "queuekit", page_size: int = 50,
              ) -> Starlette:
    """The dashboard as an ASGI app (see :func:`queuekit.dashboard.create_app`)."""
    dashboard = Dashboard(source, read_only=read_only, refresh=refresh, title=title,
                          page_size=page_size)
    routes = [
        Route("/", dashboard.overview, name="overview"),
        Route("/queues/{queue}", dashboard.queue, name="queue"),
        Route("/queues/{queue}/jobs/{job_id}", dashboard.job, name="job"),
        Route("/queues/{queue}/actions/{action}", dashboard.queue_action,
              methods=["POST"], name="queue_action"),
        Route("/queues/{queue}/jobs/{job_id}/actions/{action}", dashboard.job_action,
              methods=["POST"], name="job_action"),
        Mount("/static", StaticFiles(packages=[("queuekit.dashboard", "static")]),
              name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={
        HTTPException: _error, QueuekitError: _error})
    app.state.dashboard = dashboard
    app.add_middleware(Guard, token=token)
    return app
