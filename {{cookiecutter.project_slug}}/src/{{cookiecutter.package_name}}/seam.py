"""What a model declares to be served and trained (model.py fills it in; nothing else changes).

A model's inputs and outputs are named tensors with a datatype (the Open Inference Protocol's
names: FP32, INT64, ...) and a shape whose first dimension is the batch (-1); a -1 elsewhere is
a dimension of any size. BYTES (text, encoded images) is one value per row, shape (-1,): a batch
of it is a Python list of `bytes`, not a tensor. The service's request schemas, both protocols,
the batcher, the readiness warm-up, the tests and training read them from here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

# Open Inference Protocol datatypes and their torch dtypes (binary data is little-endian).
DATATYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "INT8": torch.int8,
    "INT16": torch.int16,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "FP16": torch.float16,
    "BF16": torch.bfloat16,
    "FP32": torch.float32,
    "FP64": torch.float64,
}

BYTES = "BYTES"  # strings and blobs: a batch is a list of bytes (OIP: length-prefixed in binary)
DATATYPE_NAMES = (*DATATYPES, BYTES)
DEFAULT_MAX_BYTES = 64 << 10  # the longest BYTES value, unless an input declares max_bytes

Batch = torch.Tensor | list[bytes]  # one input's or output's rows: a list for BYTES
Tensors = dict[str, Batch]


def to_device(tensors: Mapping[str, Batch], device: torch.device) -> Tensors:
    """Tensors moved to `device`; BYTES lists stay as they are."""
    return {k: v if isinstance(v, list) else v.to(device) for k, v in tensors.items()}


class SeamError(ValueError):
    """A declaration in model.py that cannot be; the message names the tensor and the field."""


MOST_ROWS = 1024  # rows one request may carry, at most
REQUEST_TENSOR_BYTES = 8 << 20  # one request's input tensors, at most: large rows mean fewer
LEAST_BODY_BYTES = 1 << 20  # the derived body limit is never smaller


def json_value_chars(spec: TensorSpec) -> int:
    """The most characters one value takes in a JSON request, with its separator and a space
    (BYTES: twice its bytes, room for base64 and some escapes)."""
    if spec.is_bytes:
        return 2 * spec.max_value_bytes() + 8
    if spec.dtype == torch.bool:
        return len("false, ")
    if spec.floating:
        return len("-1.2345678901234567e-308, ")
    return max(len(str(int(limit))) for limit in spec.limits()) + 2


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, OIP datatype, shape ((-1, ...): batch first) and, for
    inputs, the smallest and largest value it may hold, inclusive (None: the datatype's limit;
    any finite value for floats). Category ids for an embedding of 100: low=0, high=99.
    A BYTES input may declare max_bytes, its longest value (DEFAULT_MAX_BYTES otherwise)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    low: float | None = None
    high: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPE_NAMES:
            known = ", ".join(DATATYPE_NAMES)
            raise SeamError(f"{self.name}: datatype {self.datatype!r} is not one of {known}")
        if not self.shape or self.shape[0] != -1:
            raise SeamError(f"{self.name}: the first dimension is the batch, -1")
        if self.datatype in ("BOOL", BYTES) and (self.low, self.high) != (None, None):
            raise SeamError(f"{self.name}: a {self.datatype} input has no range (low, high)")
        if self.is_bytes:
            self.check_bytes()
        elif self.max_bytes is not None:
            raise SeamError(f"{self.name}: max_bytes is for BYTES inputs only")
        low, high = self.limits()
        if low > high:
            raise SeamError(f"{self.name}: low {self.low} is above high {self.high}")

    def check_bytes(self) -> None:
        if tuple(self.shape) != (-1,):
            raise SeamError(f"{self.name}: a BYTES tensor has shape (-1,): one value per row")
        if self.max_bytes is not None and self.max_bytes < 1:
            raise SeamError(f"{self.name}: max_bytes is at least 1")

    @property
    def is_bytes(self) -> bool:
        return self.datatype == BYTES

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype (BYTES, a list of bytes, has none: uint8 stands for its bytes)."""
        return torch.uint8 if self.is_bytes else DATATYPES[self.datatype]

    def max_value_bytes(self) -> int:
        """The longest BYTES value this input takes."""
        return self.max_bytes or DEFAULT_MAX_BYTES

    @property
    def floating(self) -> bool:
        return self.dtype.is_floating_point

    @property
    def integer(self) -> bool:
        return not self.floating and self.datatype not in ("BOOL", BYTES)

    def limits(self) -> tuple[float, float]:
        """The smallest and largest value an input may hold: low and high within the datatype's
        own limits (whole numbers for integer datatypes; BYTES: a byte's)."""
        if self.dtype == torch.bool:
            return 0, 1
        if self.floating:
            low, high = -math.inf, math.inf
        else:
            info = torch.iinfo(self.dtype)
            low, high = info.min, info.max
        if self.low is not None:
            low = max(low, self.low if self.floating else math.ceil(self.low))
        if self.high is not None:
            high = min(high, self.high if self.floating else math.floor(self.high))
        return low, high

    def shape_problem(self, shape: tuple[int, ...] | list[int]) -> str | None:
        """Why a tensor of `shape` cannot be this one (None: it can)."""
        if len(shape) != len(self.shape) or any(
            want not in (-1, got) or got < 0 for want, got in zip(self.shape, shape, strict=False)
        ):
            return f"{self.name} has shape {list(shape)}, the model takes {list(self.shape)}"
        return None

    def input_shape_problem(self, shape: tuple[int, ...] | list[int]) -> str | None:
        """shape_problem, and no empty dimension past the batch (a -1 is of any size >= 1)."""
        if problem := self.shape_problem(shape):
            return problem
        if 0 in shape[1:]:
            return f"{self.name} has shape {list(shape)}: no dimension past the batch may be 0"
        return None

    def value_problem(self, tensor: Batch) -> str | None:
        """Why these values cannot be given to the model (None: they can)."""
        if self.is_bytes:
            longest, most = max(map(len, tensor), default=0), self.max_value_bytes()
            if longest > most:
                return f"{self.name} holds a value of {longest} bytes, past its max_bytes {most}"
            return None
        if self.floating and not torch.isfinite(tensor).all():
            return f"{self.name} holds a value that is not finite"
        if not tensor.numel() or self.dtype == torch.bool:
            return None
        low, high = self.limits()
        if self.low is not None and tensor.min() < low:
            return f"{self.name} holds a value below its low, {low:g}"
        if self.high is not None and tensor.max() > high:
            return f"{self.name} holds a value above its high, {high:g}"
        return None

    def example(self, rows: int) -> Batch:
        """`rows` rows of zeros (a -1 dimension of size 1; BYTES: empty values)."""
        if self.is_bytes:
            return [b""] * rows
        return torch.zeros([rows, *(max(d, 1) for d in self.shape[1:])], dtype=self.dtype)

    def row_elements(self) -> int:
        return math.prod(max(d, 1) for d in self.shape[1:])

    def row_bytes(self) -> int:
        """The most bytes one row takes in a tensor (BYTES: its longest value and its length)."""
        if self.is_bytes:
            return self.max_value_bytes() + 4
        return self.row_elements() * self.dtype.itemsize


class ModelSeam:
    """The model behind the service and the training loop. A subclass (model.py) declares:

    name, version   the model's name and version in the Open Inference Protocol's paths
    inputs          TensorSpecs of what a request carries
    outputs         TensorSpecs of what an answer carries
    config_type     a frozen dataclass of the model's settings, saved in every checkpoint
    build           config -> nn.Module (fresh weights; a checkpoint's are loaded into it)
    forward         module, input tensors -> what the module answers: the pre-processing (e.g.
                    UINT8 pixels to floats) shared by training and serving; by default the
                    module called with the inputs in their declared order
    predict         module, input tensors (batched, on its device) -> output tensors (forward,
                    then the post-processing)
    dataset         the training data: (inputs, target) pairs; inputs are named tensors as a
                    request carries them (a dict), or one tensor for a model of one input
    loss            module's output and targets -> the training loss
    score           per-example validation score (higher is better), e.g. accuracy
    lr, batch_size  the training defaults that suit the model (AdamW's learning rate, rows
                    per step)
    """

    name: str
    version: str = "1"
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    config_type: type
    score_name: str = "score"
    lr: float = 1e-2  # train's defaults for this model (--lr, --batch-size)
    batch_size: int = 64
    # What a short training run on the example data reaches (the project's tests check it).
    trained_score: float = 0.0

    def build(self, config) -> nn.Module:
        raise NotImplementedError

    def forward(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]):
        return module(*(inputs[spec.name] for spec in self.inputs))

    def predict(self, module: nn.Module, inputs: Mapping[str, torch.Tensor]) -> Tensors:
        raise NotImplementedError

    def dataset(self, samples: int, seed: int) -> Dataset:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- derived: nothing below needs changing for another model ---

    def max_rows(self) -> int:
        """Rows one request may carry: MOST_ROWS, fewer where a row is large (a request's input
        tensors at most REQUEST_TENSOR_BYTES; a -1 past the batch counts as 1). Override it
        here to allow more or fewer."""
        row = sum(spec.row_bytes() for spec in self.inputs)
        return max(1, min(MOST_ROWS, REQUEST_TENSOR_BYTES // max(row, 1)))

    def max_body_bytes(self) -> int:
        """The largest request body of max_rows() rows, written as JSON (binary ones are
        smaller): MAX_BODY_BYTES's default. A -1 past the batch counts as 1."""
        row = sum(spec.row_elements() * (json_value_chars(spec) + 2) for spec in self.inputs)
        return max(LEAST_BODY_BYTES, self.max_rows() * row + (64 << 10))

    def named_inputs(self, inputs: Batch | Mapping[str, Batch]) -> Tensors:
        """A dataset's inputs as named tensors (a bare tensor is the one declared input)."""
        if not isinstance(inputs, Mapping):
            if len(self.inputs) != 1:
                raise SeamError(
                    f"dataset() gave one tensor; the model declares {len(self.inputs)} inputs: "
                    "give a dict of them by name"
                )
            inputs = {self.inputs[0].name: inputs}
        # A DataLoader batches bytes as a list (from dicts) or a tuple (from tuples).
        return {k: list(v) if isinstance(v, tuple) else v for k, v in inputs.items()}

    def example_inputs(self, rows: int = 1) -> Tensors:
        """Valid inputs of `rows` rows: the warm-up's and the tests'. Zeros and empty BYTES by
        default; override where those are not valid (text, encoded images)."""
        return {spec.name: spec.example(rows) for spec in self.inputs}

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.outputs if spec.name == name), None)

    def check_outputs(self, outputs: Mapping[str, torch.Tensor], rows: int) -> str | None:
        """Why `predict`'s answer for `rows` rows does not match the declared outputs."""
        for spec in self.outputs:
            tensor = outputs.get(spec.name)
            if tensor is None:
                return f"predict() gave no {spec.name!r}"
            if spec.is_bytes:
                if not isinstance(tensor, list) or not all(isinstance(v, bytes) for v in tensor):
                    return f"predict() gave {spec.name!r} not as a list of bytes (BYTES)"
                if len(tensor) != rows:
                    return f"predict() gave {len(tensor)} rows of {spec.name!r} for {rows}"
                continue
            if not isinstance(tensor, torch.Tensor):
                return f"predict() gave {spec.name!r} as {type(tensor).__name__}, not a tensor"
            if tensor.dtype != spec.dtype:
                return f"predict() gave {spec.name!r} as {tensor.dtype}, declared {spec.datatype}"
            if problem := spec.shape_problem(tensor.shape):
                return f"predict(): {problem}"
            if tensor.shape[0] != rows:
                return f"predict() gave {tensor.shape[0]} rows of {spec.name!r} for {rows}"
        return None
