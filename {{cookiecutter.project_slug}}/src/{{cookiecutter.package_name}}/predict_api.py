"""POST /predict: the service's own JSON protocol, derived from the model's declared tensors.

A request is {input name: nested lists, batch first}; the answer is {output name: nested lists}.
Bodies are decoded by msgspec, which checks the schema in the same pass and stops at the first
error, so a refused body never costs more than an accepted one. Its JSON schema is the OpenAPI
request schema.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

import msgspec
import torch
from fastapi import FastAPI, Request, Response
from pydantic import create_model
from starlette.exceptions import HTTPException

from .http_errors import CLOSE, ERROR_RESPONSES, ValidationFailed
from .inference import MAX_ROWS, Inference, off_the_loop, output_bytes
from .model import MODEL
from .seam import Tensors, TensorSpec


def element_type(spec: TensorSpec, *, bounded: bool) -> Any:
    if spec.datatype == "BOOL":
        return bool
    kind = float if spec.floating else int
    if not bounded:
        return kind
    low, high = spec.limits()
    return Annotated[kind, msgspec.Meta(ge=low if math.isfinite(low) else None,
                                        le=high if math.isfinite(high) else None)]  # fmt: skip


def nested_type(spec: TensorSpec, *, bounded: bool = True) -> Any:
    """The spec as nested lists: fixed dimensions have fixed lengths, the batch 1 to MAX_ROWS."""
    item = element_type(spec, bounded=bounded)
    for dim in reversed(spec.shape[1:]):
        item = (
            Annotated[list[item], msgspec.Meta(min_length=dim, max_length=dim)]
            if (bounded and dim >= 0)
            else list[item]
        )
    if bounded:
        return Annotated[list[item], msgspec.Meta(min_length=1, max_length=MAX_ROWS)]
    return list[item]


PredictRequest = msgspec.defstruct(
    "PredictRequest",
    [(spec.name, nested_type(spec)) for spec in MODEL.inputs],
    forbid_unknown_fields=True,
)
REQUEST_DECODER = msgspec.json.Decoder(PredictRequest)
REQUEST_SCHEMA = msgspec.json.schema_components([PredictRequest])[1]["PredictRequest"]
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


def parse_request(body: bytes) -> Tensors:
    """Validate a /predict body (in a worker thread) and return its inputs as tensors."""
    try:
        request = REQUEST_DECODER.decode(body)
    except msgspec.ValidationError as error:
        raise ValidationFailed([error_item(error)]) from None
    except msgspec.DecodeError:
        raise HTTPException(400, "the body is not valid JSON") from None
    inputs = {}
    for spec in MODEL.inputs:
        try:
            tensor = torch.tensor(getattr(request, spec.name), dtype=spec.dtype)
        except RAGGED:
            raise invalid(spec.name, "rows of different lengths") from None
        if problem := spec.value_problem(tensor):
            raise invalid(spec.name, problem)
        inputs[spec.name] = tensor
    if len({len(t) for t in inputs.values()}) > 1:
        raise invalid(MODEL.inputs[0].name, "every input must have the same number of rows")
    return inputs


def encode_answer(outputs: Tensors) -> bytes:
    """The answer as JSON (in a worker thread: 1024 rows take a while to write)."""
    return msgspec.json.encode({spec.name: outputs[spec.name].tolist() for spec in MODEL.outputs})


def add_predict_route(app: FastAPI, inference: Inference) -> None:
    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=ERROR_RESPONSES,
        openapi_extra=REQUEST_BODY,
    )
    async def predict(request: Request) -> Response:
        inference.ready_batcher()
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, "send the inputs as application/json", CLOSE)
        async with inference.admitted(request) as (batcher, body):
            inputs = await off_the_loop(len(body), parse_request, body)
            outputs = await batcher(inputs)
        return Response(
            await off_the_loop(output_bytes(outputs), encode_answer, outputs),
            media_type="application/json",
        )
