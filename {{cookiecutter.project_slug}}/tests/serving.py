"""Test helpers: the model's inputs and answers (from model.py, so the tests hold for any model
declared there), and the service as its container runs it, `python -m
{{ cookiecutter.package_name }} serve`, in a child process on a free port of 127.0.0.1."""

from __future__ import annotations

import base64
import functools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import tritonclient.http as triton
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

from {{ cookiecutter.package_name }}.checkpoint import load_checkpoint
from {{ cookiecutter.package_name }}.model import MODEL
from {{ cookiecutter.package_name }}.oip import bytes_binary, tensor_bytes
from {{ cookiecutter.package_name }}.seam import Batch, Tensors, TensorSpec
from {{ cookiecutter.package_name }}.train import MIN_SAMPLES

SRC = Path(__file__).resolve().parents[1] / "src"


def command_env(**env: str) -> dict[str, str]:
    """This environment, the project's source importable (it may not be installed), and `env`."""
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **env}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "{{ cookiecutter.package_name }}", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(checkpoint: Path, preexec_fn=None, **env: str) -> tuple[subprocess.Popen, str]:
    """`serve` on `checkpoint` with these settings; returns once /readyz answers 200."""
    port = free_port()
    process = subprocess.Popen(
        command("serve", "--host", "127.0.0.1", "--port", str(port), "--model", str(checkpoint)),
        env=command_env(**env),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1):
                return process, base
        except OSError:
            assert process.poll() is None, process.stderr.read()
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not become ready")


def stop_server(process: subprocess.Popen) -> str:
    """SIGTERM, then its stderr."""
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    return stderr


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def predict_head(length: int) -> bytes:
    """The request line and headers of a JSON POST /predict declaring `length` body bytes."""
    return (
        "POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def raw_connection(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` within `within_s` (whatever it sends first)."""
    sock.settimeout(within_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def result_tensor(result: triton.InferResult, name: str) -> Batch:
    """An output of tritonclient's answer as the tensor the model declares (BF16 arrives as
    ml_dtypes.bfloat16 in binary, as floats in JSON: torch takes neither directly; BYTES as
    an array of bytes objects)."""
    array, spec = result.as_numpy(name), MODEL.output(name)
    if spec.is_bytes:
        return [v if isinstance(v, bytes) else v.encode() for v in array.tolist()]
    if spec.datatype == "BF16":
        return torch.tensor(array.astype("float32")).to(torch.bfloat16)
    return torch.tensor(array)


def triton_inputs(inputs: Tensors, binary: bool) -> list[triton.InferInput]:
    """The inputs as tritonclient's InferInputs, in JSON or as binary tensors."""
    made = []
    for spec in MODEL.inputs:
        rows = inputs[spec.name]
        made.append(triton.InferInput(spec.name, shape_of(rows), spec.datatype))
        array = np.array(rows, dtype=np.object_) if spec.is_bytes else rows.numpy()
        made[-1].set_data_from_numpy(array, binary_data=binary)
    return made


def shape_of(rows: Batch) -> list[int]:
    return [len(rows)] if isinstance(rows, list) else list(rows.shape)


def raw_bytes(rows: Batch) -> bytes:
    """An input's rows as the binary tensor extension carries them."""
    return bytes_binary(rows) if isinstance(rows, list) else tensor_bytes(rows)


def json_data(rows: Batch) -> list:
    """An input's rows as an OIP JSON request's flat `data` (BYTES: strings)."""
    return [v.decode() for v in rows] if isinstance(rows, list) else rows.flatten().tolist()


def assert_same(got: Batch, expected: Batch) -> None:
    """Outputs equal (BYTES) or close (floats to float32 precision)."""
    if isinstance(expected, list):
        assert got == expected
    else:
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def sample_range(spec: TensorSpec) -> tuple[float, float]:
    """Where random values are drawn: within the input's range, near zero (20 wide for floats,
    2 integers)."""
    low, high = spec.limits()
    if spec.floating:
        low = max(low, min(-10.0, high - 20.0))
        return low, min(high, low + 20.0)
    low = max(low, min(0, high - 1))
    return low, min(high, low + 1)


def random_inputs(rows: int, seed: int = 0, length: int = 1) -> Tensors:
    """`rows` rows of every input, random but valid (within each input's range); a dimension of
    any size past the batch (-1) is `length` long. BYTES: the model's example values, shuffled
    by `seed`."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    examples = MODEL.example_inputs(rows)
    for spec in MODEL.inputs:
        if spec.is_bytes:
            order = torch.randperm(rows, generator=generator).tolist()
            inputs[spec.name] = [examples[spec.name][i] for i in order]
            continue
        shape = [rows, *(dim if dim > 0 else length for dim in spec.shape[1:])]
        low, high = sample_range(spec)
        if spec.floating:
            values = low + torch.rand(shape, generator=generator) * (high - low)
        else:
            values = torch.randint(int(low), int(high) + 1, shape, generator=generator)
        inputs[spec.name] = values.to(spec.dtype)
    return inputs


def predict_json(inputs: Tensors) -> dict:
    """A /predict body (BYTES: text, or {"b64": ...} where not UTF-8)."""
    return {name: predict_rows(rows) for name, rows in inputs.items()}


def predict_rows(rows: Batch) -> list:
    if not isinstance(rows, list):
        return rows.tolist()
    answer = []
    for value in rows:
        try:
            answer.append(value.decode())
        except UnicodeDecodeError:
            answer.append({"b64": base64.b64encode(value).decode()})
    return answer


def predict_bytes(rows: int = 1, seed: int = 0) -> bytes:
    return json.dumps(predict_json(random_inputs(rows, seed))).encode()


def expected_outputs(checkpoint: Path, inputs: Tensors) -> Tensors:
    """What the checkpoint's model answers, computed here without the service."""
    module, _, _ = load_checkpoint(checkpoint)
    with torch.inference_mode():
        return MODEL.predict(module, inputs)


def assert_answers(answer: dict, expected: Tensors) -> None:
    """A /predict answer holds the expected outputs (floats to float32 precision)."""
    assert set(answer) == {spec.name for spec in MODEL.outputs}
    for spec in MODEL.outputs:
        if spec.is_bytes:
            assert answer[spec.name] == predict_rows(expected[spec.name])
        else:
            got = torch.tensor(answer[spec.name], dtype=spec.dtype)
            torch.testing.assert_close(got, expected[spec.name], rtol=1e-4, atol=1e-5)


# The first input of numbers (not BYTES): where the tests send values that are not numbers.
NUMERIC = next((s for s in MODEL.inputs if not s.is_bytes), None)
# The first BYTES input: where the tests send values too long or not text.
TEXT = next((s for s in MODEL.inputs if s.is_bytes), None)


# The first input whose innermost dimension is fixed: a row one value short or long is refused.
FIXED_WIDTH = next((s for s in MODEL.inputs if len(s.shape) > 1 and s.shape[-1] > 0), None)


def one_row_body(spec: TensorSpec = NUMERIC) -> tuple[dict, list]:
    """A one-row /predict body, and the first innermost list of `spec`'s input (to change)."""
    body = predict_json(random_inputs(1))
    leaf = body[spec.name]
    while isinstance(leaf[0], list):
        leaf = leaf[0]
    return body, leaf


def body_with_first_value(token: str) -> str:
    """A one-row /predict body whose first value is `token`, as written (e.g. NaN, "1", true)."""
    body, leaf = one_row_body()
    leaf[0] = "__VALUE__"
    return json.dumps(body).replace('"__VALUE__"', token)


def body_with_innermost_length(change: int) -> str:
    """A one-row /predict body whose first innermost list of FIXED_WIDTH is `change` values
    longer."""
    body, leaf = one_row_body(FIXED_WIDTH)
    del leaf[len(leaf) + change :]
    leaf.extend([leaf[0]] * max(change, 0))
    return json.dumps(body)


def weights_made_elsewhere(folder, kind: str):
    """A module's weights saved as another tool would, and the module."""
    torch.manual_seed(7)
    module = MODEL.build(MODEL.config_type()).eval()
    state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    path = folder / f"weights.{kind}"
    if kind == "safetensors":
        save_file(state, path, metadata={"config": json.dumps(asdict(MODEL.config_type()))})
    else:
        torch.save(state, path)
    return path, module


# FLOPs a second that training reaches on 2 CPU cores (the backward pass counted as twice the
# forward): measured ~170 G for a ResNet-18; the budgets below are conservative with 100 G.
TRAINING_FLOPS_PER_S = 100e9


@functools.cache
def flops_per_sample() -> float:
    """What training costs per sample: three times the FLOPs of the model's forward pass on one
    example row (counted by torch, so the same on every machine: a 1x4 MLP ~10 k, a ResNet-18 on
    224x224 images ~11 G)."""
    module = MODEL.build(MODEL.config_type()).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        MODEL.forward(module, MODEL.example_inputs(1))
    return 3 * max(counter.get_total_flops(), 1)


def affordable(samples: int, budget_s: float = 2.0) -> int:
    """`samples` training samples, or as many fewer (MIN_SAMPLES at least) as train in about
    `budget_s` a pass on 2 cores: the tests' training scales with the model, deterministically."""
    most = int(budget_s * TRAINING_FLOPS_PER_S / flops_per_sample())
    return max(MIN_SAMPLES, min(samples, most))
