"""What an input may hold and how much a request may carry, from the declared tensors alone
(whatever model.py declares)."""

import base64
import json

import msgspec
import pytest
import torch

from {{ cookiecutter.package_name }}.http_errors import ValidationFailed
from {{ cookiecutter.package_name }}.predict_api import element_type, to_tensor
from {{ cookiecutter.package_name }}.seam import ModelSeam, TensorSpec

CATEGORY = TensorSpec("category", "INT64", (-1,), low=0, high=99)


def test_integer_ranges_are_checked_at_both_ends():
    assert CATEGORY.limits() == (0, 99)
    assert CATEGORY.value_problem(torch.tensor([0, 99])) is None
    assert "below its low, 0" in CATEGORY.value_problem(torch.tensor([5, -3]))
    assert "above its high, 99" in CATEGORY.value_problem(torch.tensor([100]))


def test_the_json_schema_has_the_same_range():
    decode = msgspec.json.Decoder(list[element_type(CATEGORY, bounded=True)]).decode
    assert decode(b"[0, 99]") == [0, 99]
    for outside in (b"[-3]", b"[100]"):
        with pytest.raises(msgspec.ValidationError):
            decode(outside)


def test_whole_floats_are_integers_and_others_are_refused():
    """JSON Schema's "integer" takes 5.0; so does /predict, and refuses 5.5."""
    whole = element_type(CATEGORY, bounded=True, whole_floats=True)
    decode = msgspec.json.Decoder(list[whole]).decode
    tensor = to_tensor(CATEGORY, decode(b"[5.0, 7, 1e1]"), whole_floats=True)
    assert tensor.dtype == torch.int64 and tensor.tolist() == [5, 7, 10]
    with pytest.raises(ValidationFailed):
        to_tensor(CATEGORY, decode(b"[5.5]"), whole_floats=True)
    with pytest.raises(msgspec.ValidationError):
        decode(b"[99.5, 100.0]")


def test_without_a_range_the_datatype_is_the_limit():
    assert TensorSpec("pixels", "UINT8", (-1, 3)).limits() == (0, 255)
    low, high = TensorSpec("x", "FP32", (-1, 2)).limits()
    assert low == -float("inf") and high == float("inf")
    assert TensorSpec("x", "FP32", (-1,), low=-1.5).limits() == (-1.5, float("inf"))
    assert TensorSpec("x", "INT8", (-1,), low=-0.5, high=300).limits() == (0, 127)


@pytest.mark.parametrize(
    "spec",
    [
        lambda: TensorSpec("x", "INT64", (-1,), low=5, high=1),
        lambda: TensorSpec("x", "BOOL", (-1,), high=1),
        lambda: TensorSpec("x", "FP32", (4,)),
        lambda: TensorSpec("x", "STRING", (-1,)),
        lambda: TensorSpec("x", "BYTES", (-1, 2)),
        lambda: TensorSpec("x", "BYTES", (-1,), max_bytes=0),
        lambda: TensorSpec("x", "BYTES", (-1,), high=9),
        lambda: TensorSpec("x", "UINT8", (-1,), max_bytes=9),
    ],
    ids=[
        "low-above-high",
        "bool-range",
        "no-batch",
        "datatype",
        "bytes-shape",
        "bytes-empty",
        "bytes-range",
        "max-bytes-on-numbers",
    ],
)
def test_a_spec_that_cannot_be_is_refused_naming_the_input(spec):
    with pytest.raises(ValueError, match=r"^x: "):
        spec()


class ImageSeam(ModelSeam):
    inputs = (TensorSpec("image", "FP32", (-1, 3, 224, 224)),)


class PixelSeam(ModelSeam):
    inputs = (TensorSpec("pixels", "UINT8", (-1, 224, 224, 3)),)


class TabularSeam(ModelSeam):
    inputs = (TensorSpec("features", "FP32", (-1, 4)), TensorSpec("category", "INT64", (-1,)))


class TextSeam(ModelSeam):
    inputs = (TensorSpec("text", "BYTES", (-1,), max_bytes=1 << 20),)


def test_bytes_values_are_checked_against_max_bytes():
    spec = TensorSpec("text", "BYTES", (-1,), max_bytes=4)
    assert spec.value_problem([b"", b"four"]) is None
    assert spec.value_problem([b"five!"]) == "text holds a value of 5 bytes, past its max_bytes 4"
    assert TensorSpec("text", "BYTES", (-1,)).max_value_bytes() == 64 << 10


def test_bytes_in_predict_are_text_or_base64():
    spec = TensorSpec("blob", "BYTES", (-1,), max_bytes=8)
    decoder = msgspec.json.Decoder(list[element_type(spec, bounded=True)])
    values = decoder.decode(b'["caf\\u00e9", {"b64": "AP8="}]')
    assert to_tensor(spec, values, whole_floats=False) == ["café".encode(), b"\x00\xff"]
    for refused in (b'[{"b64": "AP8"}]', b'["123456789"]', b'[{"b64": "", "x": 1}]', b"[1]"):
        with pytest.raises(msgspec.ValidationError):
            decoder.decode(refused)


def filled(shape: list[int], value):
    return [filled(shape[1:], value) for _ in range(shape[0])] if shape else value


def longest_value(spec: TensorSpec):
    return -1.2345678901234567e-300 if spec.floating else int(spec.limits()[0])


def longest_row(spec: TensorSpec):
    if spec.is_bytes:  # base64 of its longest value
        return {"b64": base64.b64encode(b"\xff" * spec.max_value_bytes()).decode()}
    return filled([1, *(max(d, 1) for d in spec.shape[1:])], longest_value(spec))


def json_row_bytes(seam: ModelSeam) -> int:
    """One row of a JSON request whose values are as long as they get (a request of n rows is
    about n times as long)."""
    return len(json.dumps({s.name: longest_row(s) for s in seam.inputs}))


SEAMS = {"fp32-image": (ImageSeam(), 13), "uint8-image": (PixelSeam(), 55),
         "tabular": (TabularSeam(), 1024), "text-1MiB": (TextSeam(), 7)}  # fmt: skip


@pytest.mark.parametrize(("seam", "rows"), SEAMS.values(), ids=SEAMS)
def test_the_body_limit_admits_the_largest_request_the_rows_allow(seam, rows):
    """A 224x224 image model takes a dozen images a request (8 MiB of tensors), in JSON too; a
    small model 1024 rows; the body limit follows, never below 1 MiB."""
    assert seam.max_rows() == rows
    assert json_row_bytes(seam) * rows <= seam.max_body_bytes()
    assert seam.max_body_bytes() >= 1 << 20
