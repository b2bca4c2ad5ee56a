"""Each service's own HTTP port for operators: ``/healthz``, ``/readyz`` and ``/metrics``.

Also the small wrapper that runs a uvicorn server inside the service's event
loop without letting uvicorn take over SIGTERM (the service drains itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def ops_app(
    service: str, readiness: ReadinessCheck, problems: Callable[[], dict[str, str]] | None = None
) -> Starlette:
    """The ops endpoints: liveness, readiness (every dependency answers; ``problems`` says
    why a check fails) and Prometheus text."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"service": service, "status": "ok"})

    async def readyz(_: Request) -> Response:
        checks = await readiness()
        ready = all(checks.values())
        body: dict = {"service": service, "ready": ready, "checks": checks}
        if problems is not None and (found := problems()):
            body["problems"] = found
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the service, not uvicorn, owns SIGTERM
        yield


class HttpServer:
    """An ASGI app served by uvicorn on ``host:port`` (0: any free port) in the running loop."""

    def __init__(self, app, *, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.set_inheritable(True)
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what went wrong
                raise RuntimeError("HTTP server stopped at start-up")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._sock.close()
