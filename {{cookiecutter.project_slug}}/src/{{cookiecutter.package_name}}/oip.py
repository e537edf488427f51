"""The Open Inference Protocol v2 over REST (KServe v2, Triton's HTTP API), beside /predict.

    GET  /v2                                   server metadata
    GET  /v2/health/live, /v2/health/ready     liveness, readiness
    GET  /v2/models/{name}[/versions/{v}]      model metadata: inputs and outputs (model.py)
    GET  /v2/models/{name}[/versions/{v}]/ready
    POST /v2/models/{name}[/versions/{v}]/infer   JSON tensors or the binary tensor extension
    POST /v2/repository/index                  the model repository extension: this one model

The model's name is MODEL.name in model.py (the package's name unless changed there). Requests
share /predict's batcher, limits (MAX_BODY_BYTES, BODY_TIMEOUT_S, MAX_CONCURRENCY) and rows per
request; every refusal is {"error": "..."} with a 4xx (404: another model or version).
"""

from __future__ import annotations

import ctypes
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import torch
from fastapi import APIRouter, FastAPI, Path, Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from . import __version__
from .http_errors import CLOSE, OipError, request_schema, unless_gone
from .inference import MAX_ROWS, Inference, off_the_loop, output_bytes
from .model import MODEL
from .seam import Tensors, TensorSpec

HEADER_LENGTH = "inference-header-content-length"
HEADER_DIGITS = re.compile(r"[0-9]{1,12}")
# Path segments: bounded, so a contract test can also send ones that are not (400).
Name = Annotated[str, Path(max_length=256)]
EXTENSIONS = ["binary_tensor_data", "model_repository"]
# The content types a browser page may post to another origin without asking it first (CORS's
# "simple" requests): refused, so a page cannot spend the model's time. tritonclient and
# perf_analyzer send none, which stays allowed.
FORM_MEDIA_TYPES = {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
# What torch.tensor raises for values that are not of the datatype (strings, ragged lists, ...).
NOT_CONVERTIBLE = (TypeError, ValueError, RuntimeError, OverflowError)


class InferInput(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    data: list[Any] | None = None


class RequestedOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class InferRequest(msgspec.Struct):
    inputs: list[InferInput]
    id: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None


DECODER = msgspec.json.Decoder(InferRequest)


INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": request_schema(InferRequest),
            }
        },
    }
}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class OutputTensor(TensorMetadata):
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


class ModelReady(BaseModel):
    name: str
    ready: bool


class RepositoryEntry(BaseModel):
    name: str
    version: str
    state: str
    reason: str


class Problem(Exception):
    """A request this protocol refuses with 400; the message says why."""


def errors(*codes: int) -> dict:
    return {code: {"model": OipError} for code in codes}


def metadata(spec: TensorSpec) -> TensorMetadata:
    return TensorMetadata(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))


MODEL_METADATA = ModelMetadata(
    name=MODEL.name, versions=[MODEL.version], platform="pytorch",
    inputs=[metadata(s) for s in MODEL.inputs], outputs=[metadata(s) for s in MODEL.outputs],
)  # fmt: skip


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary data after it (Inference-Header-Content-Length bytes)."""
    if header_length is None:
        return body, memoryview(b"")
    if not HEADER_DIGITS.fullmatch(header_length.strip()):  # ASCII: str.isdigit() takes "²"
        raise Problem("Inference-Header-Content-Length is not a number of at most 12 digits")
    length = int(header_length)
    if length > len(body):
        raise Problem(
            f"Inference-Header-Content-Length is {length}, past the body's {len(body)} bytes"
        )
    return body[:length], memoryview(body)[length:]


def from_binary(spec: TensorSpec, shape: list[int], raw: memoryview) -> torch.Tensor:
    if not raw.nbytes:
        return torch.empty(shape, dtype=spec.dtype)
    if spec.dtype == torch.bool:  # any non-zero byte is true
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(shape) != 0
    return torch.frombuffer(bytearray(raw), dtype=spec.dtype).reshape(shape)


def bytes_from_binary(spec: TensorSpec, shape: list[int], raw: memoryview) -> list[bytes]:
    """BYTES values as the binary extension sends them: each a 4-byte little-endian length,
    then that many bytes."""
    values, at = [], 0
    while at < raw.nbytes:
        if at + 4 > raw.nbytes:
            raise Problem(f"input {spec.name!r}: a BYTES length cut short at byte {at}")
        length = int.from_bytes(raw[at : at + 4], "little")
        if at + 4 + length > raw.nbytes:
            raise Problem(f"input {spec.name!r}: a value of {length} bytes runs past the data")
        values.append(bytes(raw[at + 4 : at + 4 + length]))
        at += 4 + length
    if len(values) != math.prod(shape):
        raise Problem(f"input {spec.name!r}: {len(values)} values for shape {shape}")
    return values


def bytes_from_json(spec: TensorSpec, shape: list[int], data: list[Any]) -> list[bytes]:
    """BYTES values in JSON: one string per value (UTF-8)."""
    if len(data) != math.prod(shape) or not all(type(value) is str for value in data):
        raise Problem(
            f"input {spec.name!r}: data must be {math.prod(shape)} strings for shape {shape}"
        )
    return [value.encode() for value in data]


def holds_booleans(data: list[Any]) -> bool:
    """Whether JSON true or false is among the values (torch takes them as 1 and 0)."""
    if data and type(data[0]) is list:
        return any(holds_booleans(row) for row in data)
    return bool in set(map(type, data))


def from_json(spec: TensorSpec, shape: list[int], data: list[Any]) -> torch.Tensor:
    """The values of `data`, flat or nested as `shape` (the protocol allows both)."""
    not_its_values = Problem(f"input {spec.name!r}: data is not a list of {spec.datatype} values")
    if spec.dtype != torch.bool and holds_booleans(data):
        raise not_its_values
    try:
        tensor = torch.tensor(data, dtype=spec.dtype)
    except NOT_CONVERTIBLE:
        raise not_its_values from None
    if tensor.numel() != math.prod(shape):
        raise Problem(
            f"input {spec.name!r}: {tensor.numel()} values for shape {shape} "
            f"({math.prod(shape)} values)"
        )
    if tensor.dim() > 1 and list(tensor.shape) != shape:
        raise Problem(f"input {spec.name!r}: data nested as {list(tensor.shape)}, not {shape}")
    return tensor.reshape(shape)


def decode_input(item: InferInput, binary: memoryview, offset: int) -> tuple[torch.Tensor, int]:
    """One input as a tensor, and the offset of the next input's binary data."""
    spec = MODEL.input(item.name)
    if spec is None:
        names = ", ".join(s.name for s in MODEL.inputs)
        raise Problem(f"unknown input {item.name!r}: the model takes {names}")
    if item.datatype != spec.datatype:
        raise Problem(f"input {spec.name!r} is {item.datatype}, the model takes {spec.datatype}")
    if problem := spec.input_shape_problem(item.shape):
        raise Problem(problem)
    if not 1 <= item.shape[0] <= MAX_ROWS:
        raise Problem(
            f"input {spec.name!r}: 1 to {MAX_ROWS} rows, not {item.shape[0]} (the seam's max_rows)"
        )
    size = item.parameters.get("binary_data_size")
    if size is None:
        if item.data is None:
            raise Problem(f"input {spec.name!r} has neither data nor binary_data_size")
        decode = bytes_from_json if spec.is_bytes else from_json
        return decode(spec, item.shape, item.data), offset
    if spec.is_bytes:  # lengths vary: the values' prefixes must add up to the size
        needed = size if type(size) is int and size >= 0 else "a byte count"
    else:
        needed = math.prod(item.shape) * spec.dtype.itemsize
    if item.data is not None or type(size) is not int or size != needed:
        raise Problem(
            f"input {spec.name!r}: binary_data_size must be {needed} (shape {item.shape}, "
            f"{spec.datatype}) and data absent"
        )
    if offset + size > len(binary):
        raise Problem(f"input {spec.name!r}: binary data past the end of the body")
    decode = bytes_from_binary if spec.is_bytes else from_binary
    return decode(spec, item.shape, binary[offset : offset + size]), offset + size


def checked_input(item: InferInput, binary: memoryview, offset: int) -> tuple[torch.Tensor, int]:
    """decode_input, and the values checked against the input's spec."""
    tensor, offset = decode_input(item, binary, offset)
    if problem := MODEL.input(item.name).value_problem(tensor):
        raise Problem(problem)
    return tensor, offset


@dataclass(frozen=True)
class ParsedInfer:
    """An infer request, checked: its inputs as tensors, the outputs it asks for (each with
    whether it goes as binary) and its id."""

    inputs: Tensors
    outputs: list[tuple[TensorSpec, bool]]
    id: str | None


def parse_infer(body: bytes, header_length: str | None) -> ParsedInfer:
    """An infer request, checked (in a worker thread when large). Raises Problem."""
    header, binary = split_body(body, header_length)
    try:
        request = DECODER.decode(header)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        raise Problem(f"not an inference request: {str(error)[:200]}") from None
    except RecursionError:  # JSON nested deeper than msgspec follows (parameters, data, ...)
        raise Problem("not an inference request: nested too deep") from None
    inputs, offset = {}, 0
    for item in request.inputs:
        if item.name in inputs:
            raise Problem(f"input {item.name!r} given twice")
        inputs[item.name], offset = checked_input(item, binary, offset)
    if offset != len(binary):
        raise Problem(
            f"the binary data is {len(binary)} bytes; the inputs' sizes add up to {offset}"
        )
    if missing := [s.name for s in MODEL.inputs if s.name not in inputs]:
        raise Problem(f"missing input {', '.join(map(repr, missing))}")
    if len({len(t) for t in inputs.values()}) > 1:
        raise Problem("every input must have the same number of rows")
    # Unknown outputs are refused here, before inference.
    return ParsedInfer(inputs, wanted_outputs(request), request.id)


def wanted_outputs(request: InferRequest) -> list[tuple[TensorSpec, bool]]:
    """The outputs asked for (all when none are named), each with whether it goes as binary."""
    all_binary = request.parameters.get("binary_data_output") is True
    if request.outputs is None:
        return [(spec, all_binary) for spec in MODEL.outputs]
    wanted = []
    for asked in request.outputs:
        spec = MODEL.output(asked.name)
        if spec is None:
            names = ", ".join(s.name for s in MODEL.outputs)
            raise Problem(f"unknown output {asked.name!r}: the model gives {names}")
        if any(spec is other for other, _ in wanted):  # each asked once: the answer stays bounded
            raise Problem(f"output {spec.name!r} asked for twice")
        wanted.append((spec, asked.parameters.get("binary_data", all_binary) is True))
    return wanted


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    """A CPU tensor's memory, row-major and little-endian, without NumPy."""
    tensor = tensor.contiguous()
    return ctypes.string_at(tensor.data_ptr(), tensor.numel() * tensor.element_size())


def bytes_binary(values: list[bytes]) -> bytes:
    """BYTES values in the binary extension: each a 4-byte little-endian length, then itself."""
    return b"".join(len(value).to_bytes(4, "little") + value for value in values)


def bytes_json(spec: TensorSpec, values: list[bytes]) -> list[str]:
    """BYTES values as JSON strings: UTF-8 text only (other bytes go in binary)."""
    try:
        return [value.decode() for value in values]
    except UnicodeDecodeError:
        raise Problem(
            f"output {spec.name!r} is not UTF-8 text: ask for it with binary_data"
        ) from None


def encode_infer(parsed: ParsedInfer, outputs: Tensors) -> tuple[bytes, int | None]:
    """The response body and, when it carries binary data, the length of its JSON header."""
    entries, blobs = [], []
    for spec, binary in parsed.outputs:
        tensor = outputs[spec.name]
        shape = [len(tensor)] if spec.is_bytes else list(tensor.shape)
        entry: dict[str, Any] = {"name": spec.name, "datatype": spec.datatype, "shape": shape}
        if binary:
            blobs.append(bytes_binary(tensor) if spec.is_bytes else tensor_bytes(tensor))
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = bytes_json(spec, tensor) if spec.is_bytes else tensor.flatten().tolist()
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": MODEL.name, "model_version": MODEL.version}
    if parsed.id is not None:
        answer["id"] = parsed.id
    header = msgspec.json.encode({**answer, "outputs": entries})
    return (header + b"".join(blobs), len(header)) if blobs else (header, None)


def check_model(name: str, version: str | None = None) -> None:
    if name != MODEL.name:
        raise HTTPException(
            404, f"unknown model {name[:100]!r}: this service serves {MODEL.name!r}"
        )
    if version is not None and version != MODEL.version:
        raise HTTPException(
            404, f"unknown version {version[:100]!r} of {MODEL.name!r}: it has {MODEL.version!r}"
        )


def add_routes(app: FastAPI, inference: Inference) -> None:
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
    add_status_routes(router, app.title, inference)
    add_infer_routes(router, inference)
    app.include_router(router)


def add_status_routes(router: APIRouter, title: str, inference: Inference) -> None:
    """Server and model metadata, health, readiness and the repository index."""

    @router.get("", response_model=ServerMetadata)
    async def server_metadata() -> ServerMetadata:
        return ServerMetadata(name=title, version=__version__, extensions=EXTENSIONS)

    @router.get("/health/live")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready", responses=errors(503))
    async def ready() -> dict[str, bool]:
        inference.ready_batcher()
        return {"ready": True}

    @router.get("/models/{name}", response_model=ModelMetadata, responses=errors(400, 404))
    async def model_metadata(name: Name) -> ModelMetadata:
        check_model(name)
        return MODEL_METADATA

    @router.get("/models/{name}/versions/{version}", response_model=ModelMetadata,
                responses=errors(400, 404))  # fmt: skip
    async def version_metadata(name: Name, version: Name) -> ModelMetadata:
        check_model(name, version)
        return MODEL_METADATA

    @router.get("/models/{name}/ready", response_model=ModelReady, responses=errors(400, 404, 503))
    async def model_ready(name: Name) -> ModelReady:
        check_model(name)
        inference.ready_batcher()
        return ModelReady(name=MODEL.name, ready=True)

    @router.get("/models/{name}/versions/{version}/ready", response_model=ModelReady,
                responses=errors(400, 404, 503))  # fmt: skip
    async def version_ready(name: Name, version: Name) -> ModelReady:
        check_model(name, version)
        return await model_ready(name)

    @router.post("/repository/index", response_model=list[RepositoryEntry])
    async def repository_index() -> list[RepositoryEntry]:
        ready = inference.batcher is not None
        return [
            RepositoryEntry(
                name=MODEL.name,
                version=MODEL.version,
                state="READY" if ready else "UNAVAILABLE",
                reason="" if ready else inference.not_ready,
            )
        ]


def add_infer_routes(router: APIRouter, inference: Inference) -> None:
    """POST .../infer, with and without a version in the path."""

    async def infer(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type in FORM_MEDIA_TYPES:
            raise HTTPException(415, "send application/json or application/octet-stream", CLOSE)
        async with inference.admitted(request) as (batcher, body):
            header_length = request.headers.get(HEADER_LENGTH)
            try:
                parsed = await off_the_loop(len(body), parse_infer, body, header_length)
                outputs = await unless_gone(request, batcher(parsed.inputs))
                # Written inside the slot: MAX_CONCURRENCY bounds the answers being built too.
                content, json_length = await off_the_loop(
                    output_bytes(outputs), encode_infer, parsed, outputs
                )
            except Problem as problem:  # includes BYTES that JSON cannot carry
                raise HTTPException(400, str(problem)) from None
        if json_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(json_length)})  # fmt: skip

    infer_route = {
        "response_model": InferResponse,
        "openapi_extra": INFER_BODY,
        "responses": {
            200: {"content": {"application/octet-stream": {}}},
            **errors(400, 404, 408, 413, 415, 500, 503),
        },
    }

    @router.post("/models/{name}/infer", **infer_route)
    async def model_infer(request: Request, name: Name) -> Response:
        check_model(name)
        return await infer(request)

    @router.post("/models/{name}/versions/{version}/infer", **infer_route)
    async def version_infer(request: Request, name: Name, version: Name) -> Response:
        check_model(name, version)
        return await infer(request)
