"""Errors and request bodies, shared by both protocols.

Every refusal has one body and never repeats the request back: ErrorBody on the service's own
routes, {"error": "..."} on the Open Inference Protocol's (/v2). A body is read with a size and
a time limit; after a refusal that may leave body bytes on their way, the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from . import logs

log = logging.getLogger(__name__)

MAX_ERRORS = 10  # validation errors reported, each message cut to MAX_MESSAGE characters
MAX_MESSAGE = 200
RETRY_AFTER_S = "1"
# Statuses after which the request body may still be on its way: the connection is closed.
CLOSE = {"Connection": "close"}
OIP_PREFIX = "/v2"


def inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """A JSON schema with its references replaced by what they name (request types do not
    refer to themselves), so that it can sit in the OpenAPI document as it is."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return inlined(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {key: inlined(value, definitions) for key, value in schema.items()}
    if isinstance(schema, list):
        return [inlined(item, definitions) for item in schema]
    return schema


def request_schema(struct: type) -> dict[str, Any]:
    """A msgspec type's JSON schema, whole, for the OpenAPI document's request bodies."""
    (schema,), definitions = msgspec.json.schema_components([struct])
    return inlined(schema, definitions)


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: str
    errors: list[ErrorItem] = Field(default_factory=list, max_length=MAX_ERRORS)


class OipError(BaseModel):
    error: str


ERRORS = {
    400: "The body is not JSON, or its Content-Length is not a number",
    408: "The body did not arrive within BODY_TIMEOUT_S",
    413: "The body is larger than MAX_BODY_BYTES",
    415: "The body is not application/json",
    422: "The JSON does not match the request schema",
    500: "The model failed on this request's batch (the server's log has the traceback)",
    503: "Not ready (the reason is in detail), or MAX_CONCURRENCY requests are in flight",
}
ERROR_RESPONSES = {code: {"model": ErrorBody, "description": text} for code, text in ERRORS.items()}
NOT_READY = {503: ERROR_RESPONSES[503]}


class ValidationFailed(Exception):
    def __init__(self, errors: list[dict]) -> None:
        self.errors = errors


class ClientGone(Exception):
    """The client closed the connection before its body arrived, or before its answer."""


class ModelFailed(Exception):
    """The model's predict() raised, or answered other than it declares, on a pass holding this
    request (the traceback is logged once per pass, where it happened)."""


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


def oip_error(status: int, message: str, headers=None) -> JSONResponse:
    return JSONResponse({"error": message[: MAX_MESSAGE * 2]}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body: 413 as soon as it passes `limit` bytes (declared or not), 408 when it has
    not all arrived `timeout_s` after the request began, ClientGone when the client hangs up."""
    too_large = f"the body is larger than {limit} bytes (MAX_BODY_BYTES)"
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, "Content-Length is not a number", CLOSE)
        if int(declared) > limit:
            raise HTTPException(413, too_large, CLOSE)
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
            raise ClientGone("before its body arrived") from None
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large, CLOSE)
        chunks.append(chunk)


async def unless_gone(request: Request, work: Awaitable[Any]) -> Any:
    """`work`'s result, once the body has been read; if the client hangs up first, `work` is
    cancelled (a request nobody waits for leaves the batcher's queue uncomputed) and ClientGone
    raised."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(request.receive())  # after the body: only a disconnect comes
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        task.cancel()
        raise ClientGone("before its answer")
    return task.result()


def add_error_handlers(app: FastAPI) -> None:
    """One body for every error; a client that hangs up is a log line, not an error."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        if request.url.path.startswith(OIP_PREFIX):
            return oip_error(error.status_code, str(error.detail), error.headers)
        return error_response(error.status_code, str(error.detail), headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        if request.url.path.startswith(OIP_PREFIX):
            return oip_error(400, "the request does not match the protocol")
        return error_response(422, "the request does not match the schema", error.errors())

    @app.exception_handler(ValidationFailed)
    async def body_invalid(request: Request, error: ValidationFailed) -> JSONResponse:
        return error_response(422, "the request does not match the schema", error.errors)

    @app.exception_handler(ModelFailed)
    async def model_failed(request: Request, error: ModelFailed) -> JSONResponse:
        detail = f"{error} (request {logs.request_id.get()}: the server's log has the traceback)"
        if request.url.path.startswith(OIP_PREFIX):
            return oip_error(500, detail)
        return error_response(500, detail)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone) -> Response:
        log.info("client closed the connection %s", error)
        return Response(status_code=499)  # nginx's "client closed request": never sent
