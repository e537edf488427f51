"""HTTP inference service.

    POST /predict   rows of features -> classes and probabilities (micro-batched)
    GET  /livez     the process answers (never touches the model)
    GET  /readyz    the model is loaded and warmed up (503 before); /health is the same
    GET  /metrics   Prometheus metrics

Every 4xx and 503 has one body, ErrorBody, and never repeats the request back. Bodies are
bounded while they are read; parsing, validation and inference run off the event loop.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import torch
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from . import logs
from .batching import MicroBatcher
from .data import N_FEATURES
from .metrics import Metrics
from .model import CheckpointError, load_checkpoint
from .settings import Settings

log = logging.getLogger(__name__)

MAX_ROWS = 1024  # rows in one request
FEATURE_LIMIT = 1e6  # |feature| at most: every accepted row gives finite probabilities
MAX_ERRORS = 10  # validation errors reported, each message cut to MAX_MESSAGE characters
MAX_MESSAGE = 200
RETRY_AFTER_S = "1"

Feature = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-FEATURE_LIMIT, le=FEATURE_LIMIT)
]
Row = Annotated[list[Feature], Field(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    features: list[Row] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description=f"One row of {N_FEATURES} numbers per example (JSON numbers only)",
    )


class PredictResponse(BaseModel):
    predictions: list[int]
    probabilities: list[list[float]]


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list, max_length=MAX_ERRORS)


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    device: str
    torch: str
    cuda: str | None
    checkpoint: str


ERRORS = {
    400: "The body is not JSON, or its Content-Length is not a number",
    413: "The body is larger than MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "The JSON does not match the request schema",
    503: "Not ready yet, or MAX_CONCURRENCY requests are in flight (see Retry-After)",
}
ERROR_RESPONSES = {code: {"model": ErrorBody, "description": text} for code, text in ERRORS.items()}
NOT_READY = {503: ERROR_RESPONSES[503]}
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
    }
}


class ValidationFailed(Exception):
    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors


def error_response(status: int, detail: str, errors=(), headers=None) -> JSONResponse:
    items = [
        ErrorItem(
            loc=[str(p) if not isinstance(p, int) else p for p in e["loc"]],
            msg=e["msg"][:MAX_MESSAGE],
            type=e["type"],
        )
        for e in list(errors)[:MAX_ERRORS]
    ]
    body = ErrorBody(detail=detail, errors=items)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def parse_rows(body: bytes) -> torch.Tensor:
    """Validate a /predict body (in a worker thread) and return its rows as a tensor."""
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as error:
        errors = error.errors(include_input=False, include_url=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise HTTPException(400, "the body is not valid JSON") from None
        raise ValidationFailed(errors) from None
    return torch.tensor(request.features, dtype=torch.float32)


def answer_json(probabilities: torch.Tensor) -> bytes:
    """The /predict answer as JSON (in a worker thread: 1024 rows take a while to write)."""
    answer = PredictResponse(
        predictions=probabilities.argmax(dim=-1).tolist(), probabilities=probabilities.tolist()
    )
    return answer.model_dump_json().encode()


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes, declared or not."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class RequestContext:
    """ASGI middleware: X-Request-ID in and out (and in every log line), request metrics."""

    def __init__(self, app, metrics: Metrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else uuid.uuid4().hex
        token = logs.request_id.set(rid)
        status, started = 500, time.perf_counter()

        async def send_with_id(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route, str(status)).observe(time.perf_counter() - started)
            logs.request_id.reset(token)


def create_app(
    checkpoint: Path | None = None, device: str | None = None, settings: Settings | None = None
) -> FastAPI:
    settings = settings or Settings.from_env()
    checkpoint = checkpoint or settings.model_path
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        torch.set_num_threads(settings.intra_op_threads())
        model, metadata = await run_in_threadpool(load_checkpoint, checkpoint, dev)
        if model.config.n_features != N_FEATURES:
            raise CheckpointError(
                f"{checkpoint} has {model.config.n_features} features; "
                f"the service takes {N_FEATURES}"
            )

        def predict(rows: torch.Tensor) -> torch.Tensor:
            return model.predict_proba(rows.to(dev)).cpu()

        batcher = MicroBatcher(
            predict,
            settings.max_batch_rows,
            settings.max_batch_wait_ms / 1000,
            on_batch=metrics.batch_rows.observe,
            in_flight=lambda: app.state.in_flight,
        )
        batcher.start()
        await batcher(torch.zeros(1, N_FEATURES))  # warm-up: the first pass is the slow one
        metrics.queue_depth.set_function(lambda: batcher.depth)
        metrics.model.info(
            {"torch": torch.__version__, "device": str(dev), "checkpoint": str(checkpoint)}
        )
        app.state.batcher = batcher
        log.info("ready: %s on %s (%s)", checkpoint, dev, metadata)
        yield
        app.state.batcher = None
        await batcher.stop()  # the server has stopped taking requests; finish the queued ones

    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan)
    app.state.batcher = None
    app.state.in_flight = 0
    metrics.in_flight.set_function(lambda: app.state.in_flight)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "the request does not match the schema", error.errors())

    @app.exception_handler(ValidationFailed)
    async def body_invalid(request: Request, error: ValidationFailed) -> JSONResponse:
        return error_response(422, "the request does not match the schema", error.errors)

    def batcher_of(request: Request) -> MicroBatcher:
        batcher = request.app.state.batcher
        if batcher is None:
            raise HTTPException(503, "the model is not loaded yet", {"Retry-After": RETRY_AFTER_S})
        return batcher

    @app.get("/livez", response_model=Liveness)
    async def livez() -> Liveness:
        return Liveness()

    @app.get("/readyz", response_model=Readiness, responses=NOT_READY)
    @app.get("/health", response_model=Readiness, responses=NOT_READY, include_in_schema=False)
    async def readyz(request: Request) -> Readiness:
        batcher_of(request)
        return Readiness(
            device=str(dev), torch=torch.__version__, cuda=torch.version.cuda,
            checkpoint=str(checkpoint),
        )  # fmt: skip

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=REQUEST_BODY,
    )
    async def predict(request: Request) -> Response:
        batcher = batcher_of(request)
        if request.app.state.in_flight >= settings.max_concurrency:
            raise HTTPException(
                503, f"{settings.max_concurrency} requests in flight; retry",
                {"Retry-After": RETRY_AFTER_S},
            )  # fmt: skip
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, "send the features as application/json")
        request.app.state.in_flight += 1
        try:
            body = await read_body(request, settings.max_body_bytes)
            rows = await run_in_threadpool(parse_rows, body)
            probabilities = await batcher(rows)
        finally:
            request.app.state.in_flight -= 1
        return Response(
            await run_in_threadpool(answer_json, probabilities), media_type="application/json"
        )

    routes = {route.path for route in app.routes}
    app.add_middleware(RequestContext, metrics=metrics, routes=routes)
    return app


def check_checkpoint(path: Path) -> None:
    """Fail before the server starts, in one line, when there is no model to serve."""
    load_checkpoint(path)


def serve(host: str, port: int, settings: Settings) -> None:
    import uvicorn

    check_checkpoint(settings.model_path)
    uvicorn.run(
        "{{ cookiecutter.package_name }}.service:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        log_config=logs.config(settings.log_format),
        timeout_keep_alive=5,  # idle keep-alive connections close after 5 s
        timeout_graceful_shutdown=30,  # on SIGTERM: stop accepting, finish in-flight requests
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers at most 16 KiB
    )
