"""HTTP inference service.

    POST /predict   rows of features -> classes and probabilities (micro-batched)
    GET  /livez     the process answers (never touches the model)
    GET  /readyz    the model is loaded and warmed up (503 before, with the reason)
    GET  /metrics   Prometheus metrics

Every 4xx and 503 has one body, ErrorBody, and never repeats the request back. Bodies are
bounded in size and time while they are read; a body that is refused is refused after the first
error found (msgspec), so a bad body never costs more than a good one. Parsing, validation and
inference run off the event loop. The server's own limits (slow headers, too many connections)
are in server.py.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import torch
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from . import logs, server
from .batching import MicroBatcher
from .gpu import Accelerator
from .metrics import MODEL_LABELS, Metrics
from .model import N_FEATURES, CheckpointError, Classifier, load_checkpoint
from .settings import Settings

log = logging.getLogger(__name__)

MAX_ROWS = 1024  # rows in one request
FEATURE_LIMIT = 1e6  # |feature| at most: every accepted row gives finite probabilities
MAX_ERRORS = 10  # validation errors reported, each message cut to MAX_MESSAGE characters
MAX_MESSAGE = 200
RETRY_AFTER_S = "1"
# X-Request-ID values kept as they come: no spaces, brackets or non-ASCII (a log line stays one).
REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# Statuses after which the request body may still be on its way: the connection is closed.
CLOSE = {"Connection": "close"}

Feature = Annotated[float, msgspec.Meta(ge=-FEATURE_LIMIT, le=FEATURE_LIMIT)]
Row = Annotated[list[Feature], msgspec.Meta(min_length=N_FEATURES, max_length=N_FEATURES)]


class PredictRequest(msgspec.Struct, forbid_unknown_fields=True):
    """One row of N_FEATURES numbers per example (JSON numbers only)."""

    features: Annotated[list[Row], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]


REQUEST_DECODER = msgspec.json.Decoder(PredictRequest)


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
    cuda: str | None = Field(description="torch's CUDA build; null for a CPU build")
    driver: str | None = Field(description="the NVIDIA driver; null where there is none")
    gpu: str | None
    checkpoint: str


ERRORS = {
    400: "The body is not JSON, or its Content-Length is not a number",
    408: "The body did not arrive within BODY_TIMEOUT_S",
    413: "The body is larger than MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "The JSON does not match the request schema",
    503: "Not ready (the reason is in detail), or MAX_CONCURRENCY requests are in flight",
}
ERROR_RESPONSES = {code: {"model": ErrorBody, "description": text} for code, text in ERRORS.items()}
NOT_READY = {503: ERROR_RESPONSES[503]}
REQUEST_SCHEMA = msgspec.json.schema_components([PredictRequest])[1]["PredictRequest"]
REQUEST_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_SCHEMA}}}
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


def error_item(error: msgspec.ValidationError) -> dict:
    """msgspec's message ('Expected `float`, got `str` - at `$.features[0][1]`') as an error
    item with the location as a list, like FastAPI's."""
    message, _, at = str(error).partition(" - at `$")
    loc: list[str | int] = ["body"]
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", at.rstrip("`")):
        loc.append(name or int(index))
    return {"loc": loc, "msg": message, "type": "value_error"}


def parse_rows(body: bytes) -> torch.Tensor:
    """Validate a /predict body (in a worker thread) and return its rows as a tensor. Stops at the
    first error, so a refused body costs no more to read than an accepted one."""
    try:
        request = REQUEST_DECODER.decode(body)
    except msgspec.ValidationError as error:
        raise ValidationFailed([error_item(error)]) from None
    except msgspec.DecodeError:
        raise HTTPException(400, "the body is not valid JSON") from None
    return torch.tensor(request.features, dtype=torch.float32)


def answer_json(probabilities: torch.Tensor) -> bytes:
    """The /predict answer as JSON (in a worker thread: 1024 rows take a while to write)."""
    predictions = probabilities.argmax(dim=-1).tolist()
    return msgspec.json.encode(
        {"predictions": predictions, "probabilities": probabilities.tolist()}
    )


class ClientGone(Exception):
    """The client closed the connection before its body arrived."""


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body: 413 as soon as it passes `limit` bytes (declared or not), 408 when it has
    not all arrived `timeout_s` after the request began, ClientGone when the client hangs up."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "Content-Length is not a number", CLOSE)
        if int(declared) > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes", CLOSE)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    chunks, size, stream = [], 0, request.stream()
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(0.0, deadline - loop.time()))
        except StopAsyncIteration:
            return b"".join(chunks)
        except TimeoutError:  # asyncio.TimeoutError is TimeoutError from Python 3.11 on
            raise HTTPException(408, f"the body took longer than {timeout_s:g} s", CLOSE) from None
        except ClientDisconnect:
            raise ClientGone from None
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is larger than {limit} bytes", CLOSE)
        chunks.append(chunk)


def request_id_of(scope) -> str:
    """The client's X-Request-ID when it is a plain token, else a new one."""
    given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class RequestContext:
    """ASGI middleware: X-Request-ID in and out (and in every log line), request metrics."""

    def __init__(self, app, metrics: Metrics, routes: set[str]) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
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


def load_for_serving(checkpoint: Path, device: torch.device | str = "cpu") -> Classifier:
    """The checkpoint's model, refused in one line (CheckpointError) when this service cannot
    answer with it."""
    model, _ = load_checkpoint(checkpoint, device)
    if model.config.n_features != N_FEATURES:
        raise CheckpointError(
            f"{checkpoint} takes rows of {model.config.n_features} features; "
            f"this service takes {N_FEATURES}"
        )
    return model


class Inference:
    """The loaded model behind its batcher, and what readiness reports about it."""

    def __init__(self, settings: Settings, checkpoint: Path, metrics: Metrics, in_flight) -> None:
        self.settings, self.checkpoint, self.metrics, self.in_flight = (
            settings, checkpoint, metrics, in_flight,
        )  # fmt: skip
        self.batcher: MicroBatcher | None = None
        self.readiness: Readiness | None = None
        self.not_ready = "the model is not loaded yet"

    async def start(self, device: str | None) -> None:
        found = Accelerator.detect()
        if device is None and found.problem:
            if self.settings.require_gpu:
                self.not_ready = f"REQUIRE_GPU=1 and no usable GPU: {found.problem}"
                log.error("not ready: %s", self.not_ready)
                return
            if found.cuda_build:  # a CUDA image on the CPU: say so rather than serve slowly
                log.warning("serving on the CPU: %s", found.problem)
        dev = torch.device(device) if device else found.device
        torch.set_num_threads(self.settings.intra_op_threads())
        model = await run_in_threadpool(load_for_serving, self.checkpoint, dev)

        def predict(rows: torch.Tensor) -> torch.Tensor:
            return model.predict_proba(rows.to(dev)).cpu()

        self.batcher = MicroBatcher(
            predict,
            self.settings.max_batch_rows,
            self.settings.max_batch_wait_ms / 1000,
            on_batch=self.metrics.batch_rows.observe,
            on_depth=self.metrics.queue_depth.set,
            in_flight=self.in_flight,
        )
        self.batcher.start()
        await self.batcher(torch.zeros(1, N_FEATURES))  # warm-up: the first pass is the slow one
        self.readiness = Readiness(
            device=str(dev), torch=torch.__version__, cuda=found.cuda_build, driver=found.driver,
            gpu=found.gpu if dev.type == "cuda" else None, checkpoint=str(self.checkpoint),
        )  # fmt: skip
        labels = self.readiness.model_dump(include=set(MODEL_LABELS))
        self.metrics.model.labels(**{k: str(v or "") for k, v in labels.items()}).set(1)
        log.info("ready: %s", self.readiness.model_dump_json())

    async def stop(self) -> None:
        batcher, self.batcher = self.batcher, None
        self.not_ready = "shutting down"
        if batcher:
            await batcher.stop()  # the server has stopped taking requests; finish the queued ones

    def ready_batcher(self) -> MicroBatcher:
        if self.batcher is None:
            raise HTTPException(503, self.not_ready, {"Retry-After": RETRY_AFTER_S})
        return self.batcher


def add_error_handlers(app: FastAPI) -> None:
    """One body for every error; a client that hangs up is a log line, not an error."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "the request does not match the schema", error.errors())

    @app.exception_handler(ValidationFailed)
    async def body_invalid(request: Request, error: ValidationFailed) -> JSONResponse:
        return error_response(422, "the request does not match the schema", error.errors)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone) -> Response:
        log.info("client closed the connection before its body arrived")
        return Response(status_code=499)  # nginx's "client closed request": never sent


def create_app(
    checkpoint: Path | None = None, device: str | None = None, settings: Settings | None = None
) -> FastAPI:
    settings = settings or Settings.from_env()
    metrics = Metrics()
    inference = Inference(
        settings, checkpoint or settings.model_path, metrics, lambda: app.state.in_flight
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.quiet_accept_errors(asyncio.get_running_loop())
        await inference.start(device)
        yield
        await inference.stop()
        metrics.process_exits()

    app = FastAPI(title={{ cookiecutter.project_name | tojson }}, lifespan=lifespan)
    app.state.in_flight = 0
    add_error_handlers(app)

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

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=REQUEST_BODY,
    )
    async def predict(request: Request) -> Response:
        batcher = inference.ready_batcher()
        if app.state.in_flight >= settings.max_concurrency:
            raise HTTPException(
                503, f"{settings.max_concurrency} requests in flight; retry",
                {"Retry-After": RETRY_AFTER_S, **CLOSE},
            )  # fmt: skip
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, "send the features as application/json", CLOSE)
        app.state.in_flight += 1
        metrics.in_flight.inc()
        try:
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout_s)
            rows = await run_in_threadpool(parse_rows, body)
            probabilities = await batcher(rows)
        finally:
            app.state.in_flight -= 1
            metrics.in_flight.dec()
        return Response(
            await run_in_threadpool(answer_json, probabilities), media_type="application/json"
        )

    routes = {route.path for route in app.routes}
    app.add_middleware(RequestContext, metrics=metrics, routes=routes)
    return app


def serve(host: str, port: int, settings: Settings) -> None:
    """Check the checkpoint (one line and exit 1 when it cannot be served), then run the server."""
    load_for_serving(settings.model_path)
    server.run(host, port, settings)
