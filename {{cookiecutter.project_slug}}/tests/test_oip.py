"""The Open Inference Protocol v2. The fast layer drives the app in-process, with requests and
answers encoded and decoded by the protocol's own client (tritonclient[http], as KServe and
Triton users do) and malformed requests written by hand: every one a 4xx with {"error": ...},
never a 5xx. The slow layer points tritonclient at a real server."""

import http.client
import json
import struct
import urllib.parse

import pytest
import torch
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from {{ cookiecutter.package_name }}.model import MODEL
from {{ cookiecutter.package_name }}.oip import bytes_binary
from {{ cookiecutter.package_name }}.service import create_app

from serving import (
    assert_same,
    expected_outputs,
    json_data,
    random_inputs,
    raw_bytes,
    raw_connection,
    result_tensor,
    shape_of,
    triton_inputs,
)

INFER = f"/v2/models/{MODEL.name}/infer"


@pytest.fixture(scope="module")
def app_client(checkpoint):
    """The app in-process (httpx's ASGI transport): no socket, no server."""
    with TestClient(create_app(checkpoint, device="cpu")) as test_client:
        yield test_client


def infer_in_process(app_client, inputs, outputs=None, **options) -> triton.InferResult:
    """tritonclient's own request body, posted in-process; its answer decoded by tritonclient."""
    body, json_size = triton.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, **options
    )
    status, headers, content = post_infer(app_client, body, json_size and str(json_size))
    assert status == 200, content[:500]
    length = headers.get("inference-header-content-length")
    return triton.InferResult.from_response_body(
        content, header_length=int(length) if length else None
    )


def post_infer(app_client, body: bytes, header_length: str | None = None, path: str = INFER):
    """POST `body` to `path` in-process: (status, headers, raw answer)."""
    headers = {"content-type": "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    response = app_client.post(path, content=body, headers=headers)
    return response.status_code, response.headers, response.content


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_answers_what_the_model_answers(app_client, checkpoint, binary):
    inputs = random_inputs(5, seed=1)
    asked = [triton.InferRequestedOutput(s.name, binary_data=binary) for s in MODEL.outputs]
    result = infer_in_process(
        app_client, triton_inputs(inputs, binary), outputs=asked, request_id="req-7"
    )
    assert result.get_response()["id"] == "req-7"
    expected = expected_outputs(checkpoint, inputs)
    for spec in MODEL.outputs:
        assert_same(result_tensor(result, spec.name), expected[spec.name])


def test_outputs_default_to_all_of_them_in_binary(app_client, checkpoint):
    inputs = random_inputs(3, seed=2)
    result = infer_in_process(app_client, triton_inputs(inputs, binary=True))
    expected = expected_outputs(checkpoint, inputs)
    for output in result.get_response()["outputs"]:
        assert "binary_data_size" in output["parameters"]
        assert_same(result_tensor(result, output["name"]), expected[output["name"]])


@pytest.fixture(scope="module")
def client(live_url):
    """tritonclient against a real server (slow layer)."""
    client = triton.InferenceServerClient(live_url.removeprefix("http://"), network_timeout=30)
    yield client
    client.close()


@pytest.mark.slow
def test_live_ready_and_described(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL.name) and client.is_model_ready(MODEL.name, MODEL.version)
    assert not client.is_model_ready("no-such-model")
    server = client.get_server_metadata()
    assert {"binary_tensor_data", "model_repository"} <= set(server["extensions"])
    metadata = client.get_model_metadata(MODEL.name)
    assert metadata["name"] == MODEL.name and metadata["versions"] == [MODEL.version]
    for declared, listed in (
        (MODEL.inputs, metadata["inputs"]),
        (MODEL.outputs, metadata["outputs"]),
    ):
        assert [(s.name, s.datatype, list(s.shape)) for s in declared] == [
            (t["name"], t["datatype"], t["shape"]) for t in listed
        ]
    index = client.get_model_repository_index()
    assert index == [{"name": MODEL.name, "version": MODEL.version, "state": "READY", "reason": ""}]


@pytest.mark.slow
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_a_real_server_answers_tritonclient(client, checkpoint, binary):
    inputs = random_inputs(5, seed=1)
    asked = [triton.InferRequestedOutput(s.name, binary_data=binary) for s in MODEL.outputs]
    result = client.infer(
        MODEL.name, triton_inputs(inputs, binary), outputs=asked, request_id="req-7",
        model_version=MODEL.version,
    )  # fmt: skip
    assert result.get_response()["id"] == "req-7"
    expected = expected_outputs(checkpoint, inputs)
    for spec in MODEL.outputs:
        assert_same(result_tensor(result, spec.name), expected[spec.name])


@pytest.mark.slow
def test_an_unknown_model_or_version_is_refused(client):
    inputs = triton_inputs(random_inputs(1), binary=True)
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("no-such-model", inputs)
    with pytest.raises(InferenceServerException, match="unknown version"):
        client.infer(MODEL.name, inputs, model_version="99")


@pytest.mark.slow
def test_the_wrong_datatype_is_refused(client):
    spec = MODEL.inputs[0]
    other = "FP64" if spec.datatype != "FP64" else "FP32"
    wrong = triton.InferInput(spec.name, [1, *ROW_SHAPE], other)
    wrong.set_data_from_numpy(torch.zeros([1, *ROW_SHAPE], dtype=torch.float64).numpy()
                              .astype(other.replace("FP", "float")))  # fmt: skip
    with pytest.raises(InferenceServerException, match=f"the model takes {spec.datatype}"):
        client.infer(MODEL.name, [wrong, *triton_inputs(random_inputs(1), True)[1:]])


def raw_infer(base: str, body: bytes, header_length: str | None = None, path: str = INFER):
    """POST `body` to `path`: (status, JSON answer)."""
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"content-type": "application/octet-stream"}
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    try:
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def binary_request(rows: int = 2, first_raw: bytes | None = None, **changes) -> tuple[bytes, str]:
    """A valid binary infer request (body, header length), with `changes` to its first input
    (and `first_raw` as its binary data)."""
    inputs = random_inputs(rows)
    raws = [raw_bytes(inputs[spec.name]) for spec in MODEL.inputs]
    if first_raw is not None:
        raws[0] = first_raw
    header = {"inputs": [], "outputs": [{"name": s.name} for s in MODEL.outputs]}
    for spec, raw in zip(MODEL.inputs, raws, strict=True):
        header["inputs"].append({"name": spec.name, "shape": shape_of(inputs[spec.name]),
                                 "datatype": spec.datatype,
                                 "parameters": {"binary_data_size": len(raw)}})  # fmt: skip
    header["inputs"][0].update(changes)
    text = json.dumps(header).encode()
    return text + b"".join(raws), str(len(text))


def json_request(data=None, outputs=None, nested=False, **changes) -> bytes:
    """A valid JSON infer request of 2 rows, with `changes` to its first input (and `data` as
    its data, `outputs` as the outputs asked for); `nested`: tensors' data nested as their
    shape rather than flat."""
    inputs = random_inputs(2)

    def data_of(rows):
        return rows.tolist() if nested and not isinstance(rows, list) else json_data(rows)

    body = {"inputs": [{"name": s.name, "shape": shape_of(inputs[s.name]),
                        "datatype": s.datatype, "data": data_of(inputs[s.name])}
                       for s in MODEL.inputs]}  # fmt: skip
    if outputs is not None:
        body["outputs"] = outputs
    body["inputs"][0].update(changes)
    if data is not None:
        body["inputs"][0]["data"] = data
    return json.dumps(body).encode()


SPEC = MODEL.inputs[0]  # the requests below change the first input
ROW_SHAPE = [max(d, 1) for d in SPEC.shape[1:]]
NAN = struct.pack("<f", float("nan")) * SPEC.row_elements()
NOT_ITS_VALUES = [1, 2] if SPEC.is_bytes else ["a"] * 2 * SPEC.row_elements()  # two rows
BAD_REQUESTS = {
    "not-json": (b"{not json", None),
    "not-a-request": (b'{"inputs": 3}', None),
    "no-inputs": (b"{}", None),
    "unknown-input": (json_request(name="no-such-input"), None),
    "missing-input": (b'{"inputs": []}', None),
    "wrong-datatype": (json_request(datatype="FP64" if SPEC.is_bytes else "BYTES"), None),
    "shape-vs-data": (json_request(shape=[3, *ROW_SHAPE]), None),
    "wrong-rank": (json_request(shape=[2, *ROW_SHAPE, 1]), None),
    "negative-shape": (json_request(shape=[-2, *ROW_SHAPE]), None),
    "too-many-rows": (json_request(shape=[1025, *ROW_SHAPE]), None),
    "not-its-values": (json_request(data=NOT_ITS_VALUES), None),
    "nested-ragged": (json_request(data=[[1.0], [1.0, 2.0]]), None),
    "overflow": (json_request(data=[1e309] * 2 * SPEC.row_elements()), None),
    "unknown-output": (b'{"inputs": [], "outputs": [{"name": "nope"}]}', None),
    "header-not-a-number": (binary_request()[0], "12abc"),
    "header-past-the-body": (binary_request()[0], "99999999"),
    "header-unicode-digits": (binary_request()[0], "\u00b2".encode("latin-1")),  # isdigit()
    "header-5000-digits": (binary_request()[0], "9" * 5000),  # past Python's int-string limit
    "nested-1000-deep-in-parameters": (
        b'{"inputs": [], "parameters": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}",
        None,
    ),
    "nested-1000-deep-in-unknown-field": (b'{"x": ' + b"[" * 1000 + b"]" * 1000 + b"}", None),
    # Each copy would be written out again: 2,000 copies of 1,024 rows made a 25 MB answer.
    "same-output-twice": (json_request(outputs=[{"name": MODEL.outputs[0].name}] * 2), None),
    "binary-size-too-small": binary_request(parameters={"binary_data_size": 4}),
    "binary-size-not-a-number": binary_request(parameters={"binary_data_size": "12"}),
    "binary-and-data": binary_request(data=[1.0]),
    "binary-bytes-left-over": (binary_request()[0] + b"\0" * 4, binary_request()[1]),
    "binary-bytes-missing": (binary_request()[0][:-4], binary_request()[1]),
}
if not SPEC.is_bytes and SPEC.datatype != "BOOL":  # true and false are not numbers
    BAD_REQUESTS["booleans-as-numbers"] = (json_request(data=[True] * 2 * SPEC.row_elements()),
                                           None)  # fmt: skip
# Nested data must be nested as the shape says (flat data is always fine).
FIRST_VALUE = json.loads(json_request())["inputs"][0]["data"][0]
BAD_REQUESTS["nested-unlike-the-shape"] = (
    json_request(data=[[[FIRST_VALUE]]] * 2 * SPEC.row_elements()),
    None,
)
if SPEC.is_bytes:  # length prefixes that do not add up; a value past its max_bytes
    BAD_REQUESTS.update({
        "bytes-length-past-the-data": binary_request(1, (100).to_bytes(4, "little") + b"abc"),
        "bytes-length-cut-short": binary_request(1, b"\x01\x00"),
        "bytes-more-values-than-rows": binary_request(1, bytes_binary([b"a", b"b"])),
        "bytes-too-long": binary_request(1, bytes_binary([b"x" * (SPEC.max_value_bytes() + 1)])),
        "bytes-not-strings-in-json": (json_request(data=[["a"], ["b"]]), None),
    })  # fmt: skip
if SPEC.datatype == "FP32":
    body, length = binary_request(rows=1)
    BAD_REQUESTS["binary-nan"] = (
        body[: int(length)] + NAN + body[int(length) + len(NAN) :],
        length,
    )


@pytest.mark.parametrize(("body", "header_length"), BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_malformed_requests_are_refused_with_an_error(app_client, body, header_length):
    status, _, answer = post_infer(app_client, body, header_length)
    assert status == 400, answer
    answer = json.loads(answer)
    assert set(answer) == {"error"} and answer["error"]
    assert app_client.get("/v2/health/live").status_code == 200  # and it keeps serving


def test_valid_raw_requests_are_answered(app_client):
    assert post_infer(app_client, *binary_request())[0] == 200
    assert post_infer(app_client, json_request(nested=True))[0] == 200  # the protocol allows it
    status, _, answer = post_infer(app_client, json_request())
    assert status == 200 and [o["name"] for o in json.loads(answer)["outputs"]] == [
        s.name for s in MODEL.outputs
    ]


def test_a_model_that_fails_is_a_500_in_the_protocol(app_client, monkeypatch):
    def out_of_range(module, inputs):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(MODEL, "predict", out_of_range)  # a global until it is passed in
    status, headers, answer = post_infer(app_client, json_request())
    assert status == 500 and "IndexError" in json.loads(answer)["error"]
    assert headers["x-request-id"] in json.loads(answer)["error"]


@pytest.mark.parametrize("media_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_form_post_from_a_web_page_is_refused(app_client, media_type):
    """What a browser may send to another origin without asking it first (CORS): 415.
    tritonclient and perf_analyzer send no content type at all, which stays allowed."""
    answer = app_client.post(INFER, content=json_request(), headers={"content-type": media_type})
    assert answer.status_code == 415 and answer.json()["error"]
    answer = app_client.post(INFER, content=json_request(), headers={"content-type": ""})
    assert answer.status_code == 200, answer.text


def test_an_unknown_model_is_404_in_the_protocol(app_client):
    status, _, answer = post_infer(app_client, json_request(), path="/v2/models/nope/infer")
    assert status == 404 and json.loads(answer)["error"]


@pytest.mark.slow
def test_a_body_past_the_limit_is_413_before_it_is_read(live_url):
    with raw_connection(live_url) as sock:  # declares too much, sends 1 kB: refused at once
        too_long = MODEL.max_body_bytes() + 1
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\ncontent-length: {too_long}\r\n\r\n"
        sock.sendall(head.encode() + b" " * 1024)
        reply = b"".join(iter(lambda: sock.recv(65536), b"")).decode()  # it closes: read to the end
    assert reply.startswith("HTTP/1.1 413") and json.loads(reply.split("\r\n\r\n", 1)[1])["error"]


@pytest.mark.slow
def test_a_slow_infer_body_gets_408_and_shares_the_concurrency_limit(live_server):
    """The protocol shares /predict's admission: a body that does not arrive holds one of
    MAX_CONCURRENCY slots until BODY_TIMEOUT_S, then 408 {"error"} and the connection closes."""
    base = live_server(max_concurrency=1, body_timeout_s=1)
    body, header_length = binary_request()
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\ncontent-length: {len(body)}\r\n"
            f"inference-header-content-length: {header_length}\r\n\r\n")  # fmt: skip
    with raw_connection(base) as slow:
        slow.sendall(head.encode() + body[:5])  # and then nothing
        status, answer = raw_infer(base, body, header_length)
        assert status == 503 and set(answer) == {"error"}
        reply = b"".join(iter(lambda: slow.recv(65536), b"")).decode()
    assert reply.startswith("HTTP/1.1 408") and "connection: close" in reply.lower()
    assert json.loads(reply.split("\r\n\r\n", 1)[1])["error"]
    assert raw_infer(base, body, header_length)[0] == 200  # the slot is free again
