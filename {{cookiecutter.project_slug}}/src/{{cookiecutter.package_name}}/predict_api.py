"""POST /predict: the service's own JSON protocol, derived from the model's declared tensors.

A request is {input name: nested lists, batch first}; the answer is {output name: nested lists}.
Bodies are decoded by msgspec, which checks the schema in the same pass and stops at the first
error, so a refused body never costs more than an accepted one. Its JSON schema is the OpenAPI
request schema.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
from typing import Annotated, Any

import msgspec
import torch
from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, Field, create_model
from starlette.exceptions import HTTPException

from .batching import concat, row_shapes
from .http_errors import CLOSE, ERROR_RESPONSES, ValidationFailed, request_schema, unless_gone
from .inference import MAX_ROWS, Inference, off_the_loop, output_bytes
from .model import MODEL
from .seam import Batch, Tensors, TensorSpec

BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def bytes_type(spec: TensorSpec) -> Any:
    """A BYTES value: a string (UTF-8 text; at most max_bytes characters, and bytes) or
    {"b64": "<base64>"} for other bytes (TF Serving's and KServe v1's form)."""
    most = spec.max_value_bytes()
    base64_value = msgspec.defstruct(
        f"{spec.name}_base64",
        [("b64", Annotated[str, msgspec.Meta(pattern=BASE64, max_length=4 * math.ceil(most / 3))])],
        forbid_unknown_fields=True,
    )
    return Annotated[str, msgspec.Meta(max_length=most)] | base64_value


class Base64Answer(BaseModel):
    b64: str = Field(description="base64 of a BYTES value that is not UTF-8 text")


def element_type(spec: TensorSpec, *, bounded: bool, whole_floats: bool = False) -> Any:
    """One value's type; with `whole_floats`, an integer input also takes JSON floats (5.0 is an
    integer to JSON Schema; parse_request refuses 5.5). BYTES: a string (UTF-8 text) or
    {"b64": ...}."""
    if spec.is_bytes:
        return bytes_type(spec) if bounded else str | Base64Answer
    if spec.datatype == "BOOL":
        return bool
    kind = float if spec.floating else int
    if not bounded:
        return kind
    low, high = spec.limits()
    meta = msgspec.Meta(ge=low if math.isfinite(low) else None,
                        le=high if math.isfinite(high) else None)  # fmt: skip
    if whole_floats and spec.integer:
        return Annotated[int, meta] | Annotated[float, meta]
    return Annotated[kind, meta]


def nested_type(spec: TensorSpec, *, bounded: bool = True, whole_floats: bool = False) -> Any:
    """The spec as nested lists: fixed dimensions have fixed lengths, others at least 1, the
    batch 1 to MAX_ROWS."""
    item = element_type(spec, bounded=bounded, whole_floats=whole_floats)
    for dim in reversed(spec.shape[1:]):
        if not bounded:
            item = list[item]
        elif dim >= 0:
            item = Annotated[list[item], msgspec.Meta(min_length=dim, max_length=dim)]
        else:
            item = Annotated[list[item], msgspec.Meta(min_length=1)]
    if bounded:
        return Annotated[list[item], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]
    return list[item]


def request_type(*, whole_floats: bool = False) -> type:
    fields = [(s.name, nested_type(s, whole_floats=whole_floats)) for s in MODEL.inputs]
    return msgspec.defstruct("PredictRequest", fields, forbid_unknown_fields=True)


PredictRequest = request_type()
REQUEST_DECODER = msgspec.json.Decoder(PredictRequest)
# Integer inputs sent as whole floats (5.0): decoded again, more slowly, only when they come.
WHOLE_FLOATS_DECODER = msgspec.json.Decoder(request_type(whole_floats=True))
INTEGERS = any(spec.integer for spec in MODEL.inputs)
REQUEST_SCHEMA = request_schema(PredictRequest)
REQUEST_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": REQUEST_SCHEMA}}}
}
PredictResponse = create_model(
    "PredictResponse",
    **{spec.name: (nested_type(spec, bounded=False), ...) for spec in MODEL.outputs},
)


# What torch.tensor raises for nested lists of different lengths (the schema fixed the rest).
RAGGED = (ValueError, TypeError, RuntimeError)


def error_item(error: msgspec.ValidationError) -> dict:
    """msgspec's message ('Expected `float`, got `str` - at `$.features[0][1]`') as an error
    item with the location as a list, like FastAPI's."""
    message, _, at = str(error).partition(" - at `$")
    loc: list[str | int] = ["body"]
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", at.rstrip("`")):
        loc.append(name or int(index))
    return {"loc": loc, "msg": message, "type": "value_error"}


def invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed([{"loc": ["body", name], "msg": message, "type": "value_error"}])


def decode_request(body: bytes) -> tuple[Any, bool]:
    """The decoded body, and whether integer inputs may hold floats (to check they are whole)."""
    try:
        return REQUEST_DECODER.decode(body), False
    except msgspec.ValidationError as error:
        if not (INTEGERS and "got `float`" in str(error)):
            raise ValidationFailed([error_item(error)]) from None
    except msgspec.DecodeError:
        raise HTTPException(400, "the body is not valid JSON") from None
    try:
        return WHOLE_FLOATS_DECODER.decode(body), True
    except msgspec.ValidationError as error:
        raise ValidationFailed([error_item(error)]) from None


def to_tensor(spec: TensorSpec, values: list, whole_floats: bool) -> Batch:
    if spec.is_bytes:
        return [v.encode() if isinstance(v, str) else base64.b64decode(v.b64) for v in values]
    if not (whole_floats and spec.integer):
        return torch.tensor(values, dtype=spec.dtype)
    as_floats = torch.tensor(values, dtype=torch.float64)
    if (as_floats != as_floats.round()).any():
        raise invalid(spec.name, "holds a value that is not a whole number")
    return as_floats.to(spec.dtype)


def parse_request(body: bytes) -> list[Tensors]:
    """Validate a /predict body (in a worker thread) and return its inputs as tensors, in parts:
    one, unless an input with a -1 dimension past the batch has rows of different lengths (a
    batch of sentences, say); then each run of rows of the same shapes is a part of its own."""
    request, whole_floats = decode_request(body)
    values = {spec.name: getattr(request, spec.name) for spec in MODEL.inputs}
    if len({len(rows) for rows in values.values()}) > 1:
        raise invalid(MODEL.inputs[0].name, "every input must have the same number of rows")
    try:
        parts = [{s.name: to_tensor(s, values[s.name], whole_floats) for s in MODEL.inputs}]
    except RAGGED:
        parts = rows_by_shape(values, whole_floats)
    for part in parts:
        for spec in MODEL.inputs:
            if problem := spec.value_problem(part[spec.name]):
                raise invalid(spec.name, problem)
    return parts


def rows_by_shape(values: dict[str, list], whole_floats: bool) -> list[Tensors]:
    """Rows of different shapes as parts: each run of consecutive rows of the same shapes."""
    parts: list[list[Tensors]] = []
    for i in range(len(values[MODEL.inputs[0].name])):
        row = {}
        for spec in MODEL.inputs:
            try:
                row[spec.name] = to_tensor(spec, values[spec.name][i : i + 1], whole_floats)
            except RAGGED:
                raise invalid(spec.name, f"row {i} is ragged inside") from None
        if parts and row_shapes(parts[-1][-1]) == row_shapes(row):
            parts[-1].append(row)
        else:
            parts.append([row])
    return [concat(rows) for rows in parts]


def json_rows(rows: Batch) -> list:
    """An output's rows as JSON values (BYTES: text, or {"b64": ...} where not UTF-8)."""
    if not isinstance(rows, list):
        return rows.tolist()
    answer = []
    for value in rows:
        try:
            answer.append(value.decode())
        except UnicodeDecodeError:
            answer.append({"b64": base64.b64encode(value).decode()})
    return answer


def encode_answer(outputs: list[Tensors]) -> bytes:
    """The answer as JSON, the parts' rows in order (in a worker thread: 1024 rows take a while
    to write)."""
    return msgspec.json.encode(
        {s.name: [v for part in outputs for v in json_rows(part[s.name])] for s in MODEL.outputs}
    )


def add_predict_route(app: FastAPI, inference: Inference) -> None:
    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=REQUEST_BODY,
        description="Every input has the same number of rows (422: every input must have the "
        "same number of rows); rows of a dimension of any size may differ in length between "
        "rows, not inside one (422: row N is ragged inside). A BYTES value is a string (sent "
        'as UTF-8) or {"b64": base64} for other bytes, at most its max_bytes long (422).',
    )
    async def predict(request: Request) -> Response:
        inference.ready_batcher()
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, "send the inputs as application/json", CLOSE)
        async with inference.admitted(request) as (batcher, body):
            parts = await off_the_loop(len(body), parse_request, body)
            outputs = await unless_gone(request, asyncio.gather(*(batcher(p) for p in parts)))
        size = sum(output_bytes(part) for part in outputs)
        return Response(
            await off_the_loop(size, encode_answer, outputs),
            media_type="application/json",
        )
