"""HTTP inference service: the parts put together.

    POST /predict   the model's inputs as JSON -> its outputs (predict_api.py; micro-batched)
    /v2/...         the Open Inference Protocol v2, JSON and binary tensors (oip.py)
    GET  /livez     the process answers (never touches the model)
    GET  /readyz    the model is loaded and warmed up (503 before, with the reason)
    GET  /metrics   Prometheus metrics

The model's inputs and outputs are declared in model.py; errors and bodies are in
http_errors.py, the model's start-up and admission in inference.py, the server's own limits
(slow headers, too many connections) in server.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from . import logs, model_uri, oip, server
from .checkpoint import load_for_serving
from .http_errors import NOT_READY, add_error_handlers
from .inference import Inference, Readiness, check_compiler
from .metrics import Metrics
from .predict_api import add_predict_route
from .settings import Settings

# X-Request-ID values kept as they come: no spaces, brackets or non-ASCII (a log line stays one).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


def request_id_of(scope) -> str:
    """The client's X-Request-ID when it is a plain token, else a new one."""
    given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def smuggling(scope) -> bool:
    """Content-Length and Transfer-Encoding together: two servers may read two different
    requests in these bytes (request smuggling, RFC 9112 6.3)."""
    names = {name for name, _ in scope["headers"]}
    return b"content-length" in names and b"transfer-encoding" in names


async def refuse_smuggling(send, rid: str) -> None:
    """400, and the connection closed: what follows the body is never read as a request."""
    body = json.dumps({"detail": "Content-Length and Transfer-Encoding together", "errors": []})
    await send({"type": "http.response.start", "status": 400, "headers": [
        (b"content-type", b"application/json"), (b"connection", b"close"),
        (b"x-request-id", rid.encode()),
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": body.encode()})


class RequestContext:
    """ASGI middleware: X-Request-ID in and out (and in every log line), request metrics."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        if smuggling(scope):
            await refuse_smuggling(send, rid)
            return
        token = logs.request_id.set(rid)
        status, started, counted = 500, time.perf_counter(), False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                # The route's template (/v2/models/{name}/infer), never the client's path: no
                # client can grow the series.
                route = getattr(scope.get("route"), "path", "other")
                self.metrics.requests.labels(route, str(status)).inc()
                elapsed = time.perf_counter() - started
                self.metrics.latency.labels(route, str(status)).observe(elapsed)

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                count()  # before the last byte leaves: a client holding its answer sees it counted
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            count()  # a request that ended without an answer (a client that went, an error)
            logs.request_id.reset(token)


def add_health_routes(app: FastAPI, inference: Inference, metrics: Metrics) -> None:
    @app.get("/livez", response_model=Liveness)
    async def livez() -> Liveness:
        return Liveness()

    @app.get("/readyz", response_model=Readiness, responses=NOT_READY)
    async def readyz() -> Readiness:
        inference.ready_batcher()
        return inference.readiness

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    checkpoint: Path | None = None, device: str | None = None, settings: Settings | None = None
) -> FastAPI:
    settings = settings or Settings.from_env()
    metrics = Metrics()
    inference = Inference(settings, checkpoint or settings.model_path, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.quiet_accept_errors(asyncio.get_running_loop())
        await inference.start(device)
        yield
        await inference.stop()
        metrics.process_exits()

    docs = {} if settings.api_docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}
    # No redirect from /predict/ to /predict: uvicorn builds its Location from the client's Host.
    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan,
                  redirect_slashes=False, **docs)  # fmt: skip
    app.state.inference = inference
    add_error_handlers(app)
    add_health_routes(app, inference, metrics)
    add_predict_route(app, inference)
    oip.add_routes(app, inference)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


def serve(host: str, port: int, settings: Settings) -> None:
    """Check the settings and the checkpoint (one line and exit 1 when they cannot serve), then
    run the server."""
    check_compiler(settings)
    if settings.model_uri:  # fetched once, here, before any worker starts
        path = model_uri.fetch(settings.model_uri, settings.model_cache_dir)
        os.environ["MODEL_PATH"] = str(path)  # the workers read their settings from it
        settings = replace(settings, model_path=path)
    load_for_serving(settings.model_path)
    server.run(host, port, settings)
