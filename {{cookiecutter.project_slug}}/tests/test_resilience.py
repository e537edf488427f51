"""The service under slow, silent, vanishing and costly clients, several workers, and mistakes at
start-up: each is a 4xx or a closed connection and a quiet log, never a 5xx, a traceback or a
held slot."""

import asyncio
import logging
import re
import resource
import socket
import struct
import subprocess
import time
import types
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }} import gpu, server
from {{ cookiecutter.package_name }}.batching import rows_of
from {{ cookiecutter.package_name }}.gpu import cuda_problem
from {{ cookiecutter.package_name }}.inference import MAX_ROWS
from {{ cookiecutter.package_name }}.model import MODEL
from {{ cookiecutter.package_name }}.service import create_app
from {{ cookiecutter.package_name }}.settings import Settings

from serving import (
    closed_by_server,
    command,
    command_env,
    get,
    predict_bytes,
    predict_head,
    raw_connection,
    start_server,
    stop_server,
)

ROW = predict_bytes()
UNREAD_BYTES = 14 << 20  # answers left unread: more than a loopback socket's buffers hold


def test_malformed_requests_are_logged_at_most_once_per_quiet_period(caplog):
    """uvicorn warns once per malformed request: a flood of them is one line per QUIET_S."""
    quiet = server.QuietInvalidRequests(logging.getLogger("uvicorn.error"))
    server.QuietInvalidRequests.invalid.last = -server.QUIET_S  # as if none came recently
    with caplog.at_level(logging.WARNING):
        for _ in range(1000):
            quiet.warning("Invalid HTTP request received.")
        quiet.warning("something else")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "malformed HTTP requests refused with 400" in lines[0], lines


def test_a_paused_answer_is_reset_after_the_deadline(monkeypatch):
    """The write deadline itself, whatever the model's answers: a transport paused (its client
    not reading) past WRITE_TIMEOUT_S is reset, the kernel's copy dropped too (SO_LINGER 0)."""
    monkeypatch.setenv("WRITE_TIMEOUT_S", "1")
    server.limits.cache_clear()
    calls = []

    class Socket:
        def setsockopt(self, *option):
            calls.append(("setsockopt", option))

    class Transport:
        def get_extra_info(self, name, default=None):
            return {"socket": Socket(), "peername": ("127.0.0.1", 1)}.get(name, default)

        def abort(self):
            calls.append(("abort",))

        def is_closing(self):
            return False

    async def pause_and_wait():
        protocol = server.GuardedH11Protocol.__new__(server.GuardedH11Protocol)
        protocol.loop, protocol.transport, protocol.write_timer = (
            asyncio.get_running_loop(),
            Transport(),
            None,
        )
        protocol.flow = types.SimpleNamespace(
            pause_writing=lambda: None, resume_writing=lambda: None
        )
        protocol.pause_writing()
        await asyncio.sleep(0.5)
        assert calls == []  # not yet
        await asyncio.sleep(0.7)

    try:
        asyncio.run(pause_and_wait())
    finally:
        server.limits.cache_clear()
    assert calls == [("setsockopt", (socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))),
                     ("abort",)]  # fmt: skip


def post_predict(base: str, body: bytes) -> int:
    request = urllib.request.Request(f"{base}/predict", body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value in Prometheus text, 0 when absent."""
    sample = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.slow
def test_a_client_that_hangs_up_mid_body_is_a_quiet_log_line(live_server, caplog):
    base = live_server()
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            with raw_connection(base) as sock:
                sock.sendall(predict_head(1000) + b'{"features": [[')
                time.sleep(0.1)
        time.sleep(0.3)
    text = get(f"{base}/metrics")[2].decode()
    assert metric(text, "http_requests_total", route="/predict", status="499") == 3
    assert not re.search(r'status="5\d\d"', text)
    assert "client closed the connection" in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow
def test_a_request_whose_client_has_gone_is_never_computed(live_server, monkeypatch):
    """A client that sends its request and hangs up while the model is busy: its rows leave the
    queue uncomputed, counted as 499."""
    base = live_server()
    passes, predict = [], MODEL.predict

    def slow_predict(module, inputs):
        passes.append(rows_of(inputs))
        time.sleep(0.5)
        return predict(module, inputs)

    monkeypatch.setattr(MODEL, "predict", slow_predict)  # this process's server, in a thread
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(get, f"{base}/livez")  # warms the pool's thread
        busy.result()
        busy = pool.submit(post_predict, base, predict_bytes(1))
        time.sleep(0.1)  # its pass has begun
        with raw_connection(base) as gone:
            body = predict_bytes(7)
            gone.sendall(predict_head(len(body)) + body)
            time.sleep(0.1)
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert busy.result() == 200
    time.sleep(0.6)  # a pass that took the 7 rows would have begun by now
    assert 7 not in passes and sum(passes) == 1, passes
    text = get(f"{base}/metrics")[2].decode()
    assert metric(text, "http_requests_total", route="/predict", status="499") == 1


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/predict", f"/v2/models/{MODEL.name}/infer"])
def test_python_clients_read_the_413_of_a_body_past_the_limit(live_server, path):
    """http.client (urllib's too) sends the whole body before it reads: the server answers 413
    early and keeps reading what still comes for a moment, so that the client sees the 413
    rather than a reset connection."""
    base = live_server(max_body_bytes=1 << 20)
    request = urllib.request.Request(f"{base}{path}", b"[" * (4 << 20),
                                     {"content-type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 413


@pytest.mark.slow
def test_a_slow_body_gets_408_and_frees_its_slot(live_server, post):
    base = live_server(max_concurrency=1, body_timeout_s=1)
    with raw_connection(base) as slow:
        slow.sendall(predict_head(len(ROW)) + ROW[:5])  # and then nothing: it holds the one slot
        assert post(f"{base}/predict", ROW)[0] == 503
        started = time.monotonic()
        reply = slow.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:100]
        assert b"connection: close" in reply.lower()
        assert closed_by_server(slow, within_s=5)
        assert time.monotonic() - started < 6  # 1 s deadline; its body would take for ever
    assert post(f"{base}/predict", ROW)[0] == 200


@pytest.mark.slow
def test_a_trickling_body_is_cut_off_at_the_deadline(live_server, post):
    base = live_server(max_concurrency=2, body_timeout_s=2)
    socks = [raw_connection(base) for _ in range(2)]
    replies: dict[int, bytes] = {}
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(predict_head(len(ROW)))
            sock.settimeout(0.5)
        while time.monotonic() - started < 15 and len(replies) < len(socks):
            for i, sock in enumerate(socks):  # a byte a second each: never idle, never done
                if i in replies:
                    continue
                try:
                    sock.sendall(b" ")
                    replies[i] = sock.recv(4096)
                except TimeoutError:
                    pass
        elapsed = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert [reply[:12] for reply in replies.values()] == [b"HTTP/1.1 408"] * 2
    assert elapsed < 10  # a 2 s deadline; at a byte a second the body would take 40 s
    assert post(f"{base}/predict", ROW)[0] == 200


@pytest.mark.slow
def test_an_answer_the_client_never_reads_is_dropped(checkpoint):
    """Pipelined requests whose answers are never read: once the socket's buffers are full the
    rest waits in the server's memory until WRITE_TIMEOUT_S, then the connection is reset (what
    the kernel still held for it dropped too)."""
    process, base = start_server(checkpoint, WRITE_TIMEOUT_S="1")
    try:
        body = predict_bytes(MAX_ROWS)
        request = urllib.request.Request(
            f"{base}/predict", body, {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer_bytes = len(answer.read())
        requests = -(-UNREAD_BYTES // answer_bytes)  # more answers than the socket buffers hold
        if requests * len(body) > 64 << 20:
            pytest.skip(f"{requests} requests of {len(body)} bytes to fill the socket buffers with "
                        "this model's answers; test_a_paused_answer_is_reset_after_the_deadline "
                        "tests the deadline for every model")  # fmt: skip
        with raw_connection(base) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall((predict_head(len(body)) + body) * requests)
            time.sleep(4)  # reading nothing
            received = b""
            with pytest.raises(ConnectionResetError):
                while chunk := sock.recv(1 << 20):
                    received += chunk
        assert received.count(b"HTTP/1.1 200") < requests
        assert get(f"{base}/livez")[0] == 200
    finally:
        stderr = stop_server(process)
    assert "answers not read in time" in stderr


@pytest.mark.slow
def test_silent_connections_close_and_a_flood_never_exhausts_descriptors(checkpoint):
    def few_descriptors():  # the hard limit too, so that the server cannot raise it
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    process, base = start_server(checkpoint, preexec_fn=few_descriptors, HEADER_TIMEOUT_S="2")
    try:
        silent, half = raw_connection(base), raw_connection(base)
        half.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        with silent, half:
            assert closed_by_server(silent, within_s=4) and closed_by_server(half, within_s=1)
        socks = [raw_connection(base) for _ in range(400)]  # past the 256-descriptor limit
        time.sleep(3)  # the header deadline closes the silent ones
        for sock in socks:
            sock.close()
        assert get(f"{base}/livez")[0] == 200
        assert process.poll() is None
    finally:
        stderr = stop_server(process)
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) < 30, stderr[-3000:]
    # Connections held and the accept backlog stay within the descriptors (server.limits()).
    assert "out of file descriptors" not in stderr


@pytest.mark.slow
def test_connections_past_the_cap_are_closed_at_once(checkpoint):
    process, base = start_server(checkpoint, HEADER_TIMEOUT_S="30", MAX_CONNECTIONS="5")
    socks = [raw_connection(base) for _ in range(10)]
    try:
        closed = [closed_by_server(sock, within_s=1) for sock in socks]
        assert closed.count(True) >= 5 and closed[:4] == [False] * 4  # the first ones are held
    finally:
        for sock in socks:
            sock.close()
        stderr = stop_server(process)
    assert "connection limit reached" in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_several_workers_count_every_request(checkpoint, tmp_path):
    process, base = start_server(
        checkpoint, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)
    )
    try:
        for sent in range(1, 21):  # scraped between requests, while the second worker starts
            assert get(f"{base}/livez")[0] == 200  # a new connection each: either worker answers
            text = get(f"{base}/metrics")[2].decode()
            assert metric(text, "http_requests_total", route="/livez", status="200") == sent
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("gauge_livesum_*.db"))) < 2:  # one file per started worker
            assert time.monotonic() < deadline, "the second worker did not start"
            time.sleep(0.1)
        for _ in range(4):  # every scrape, whichever worker answers it, sees all twenty
            text = get(f"{base}/metrics")[2].decode()
            assert metric(text, "http_requests_total", route="/livez", status="200") == 20
        assert text.count("model_info{") == 1
    finally:
        stderr = stop_server(process)
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("given", "kept"),
    [("abc-123", True), ("4bf92f3577b34da6a3ce929d0e0e4736", True),
     ("x] INFO forged line [y", False), ("caf\u00e9", False), ("a" * 129, False)],
)  # fmt: skip
def test_request_ids_are_kept_only_when_plain(client_app, given, kept):
    answer = client_app.get("/livez", headers={"x-request-id": given.encode("latin-1")})
    echoed = answer.headers["x-request-id"]
    assert echoed == given if kept else re.fullmatch(r"[0-9a-f]{32}", echoed)


def test_no_redirect_is_built_from_the_host_header(client_app):
    """A trailing slash is a 404, never a 307 to wherever the client's Host: says."""
    for method, path in (("GET", "/v2/"), ("POST", "/predict/"), ("GET", "/livez/")):
        answer = client_app.request(method, path, headers={"host": "evil.example"},
                                    follow_redirects=False)  # fmt: skip
        assert answer.status_code == 404 and "location" not in answer.headers


def test_api_docs_can_be_turned_off(checkpoint):
    settings = Settings(model_path=checkpoint, api_docs=False)
    with TestClient(create_app(checkpoint, device="cpu", settings=settings)) as test_client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert test_client.get(path).status_code == 404
        assert test_client.get("/readyz").status_code == 200


@pytest.mark.slow
def test_content_length_with_transfer_encoding_is_refused_and_closed(live_url):
    """Request smuggling (RFC 9112 6.3): a body framed both ways is refused, and the request
    hidden after it is never answered."""
    hidden = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
    body = ROW + b"0\r\n\r\n" + hidden
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\ncontent-length: %d\r\n\r\n" % len(body))  # fmt: skip
    chunk = b"%x\r\n" % len(ROW) + ROW + b"\r\n"
    with raw_connection(live_url) as sock:
        sock.sendall(head + chunk + b"0\r\n\r\n" + hidden)
        reply = b"".join(iter(lambda: sock.recv(65536), b""))  # read until the server closes
    assert reply.startswith(b"HTTP/1.1 400") and reply.count(b"HTTP/1.1") == 1, reply[:300]


@pytest.mark.slow
def test_a_head_past_16_kib_is_refused_however_it_arrives(live_url):
    """10,000 headers (about 120 KB) in one write: 431 and closed before they are parsed;
    the service keeps answering."""
    headers = b"".join(b"x-%d: y\r\n" % i for i in range(10_000))
    with raw_connection(live_url) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        reply = b"".join(iter(lambda: sock.recv(65536), b""))
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert get(f"{live_url}/livez")[0] == 200


@pytest.fixture(scope="module")
def client_app(checkpoint):
    with TestClient(create_app(checkpoint, device="cpu")) as test_client:
        yield test_client


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve", "--port", "99999"], {}, "99999 is not a port number"),
        (["serve", "--model", "nowhere.pt"], {}, "no checkpoint at nowhere.pt"),
        (["serve"], {"LOG_LEVEL": "verbose"}, "LOG_LEVEL='verbose': use one of"),
        (["serve"], {"REQUIRE_GPU": "maybe"}, "REQUIRE_GPU='maybe'"),
        (["train", "--epochs", "many"], {}, "--epochs"),
        (["serve", "--no-such-flag"], {}, "unrecognized arguments"),
    ],
)
def test_command_line_mistakes_are_one_line(args, env, message):
    done = subprocess.run(
        command(*args), env=command_env(**env), capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.mark.slow
def test_help_names_every_setting_and_default():
    serve = subprocess.run(command("serve", "--help"), env=command_env(), capture_output=True,
                           text=True, timeout=60).stdout  # fmt: skip
    for variable in ("MODEL_PATH", "BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "LOG_LEVEL", "--model"):
        assert variable in serve
    train = subprocess.run(command("train", "--help"), env=command_env(), capture_output=True,
                           text=True, timeout=60).stdout  # fmt: skip
    options = re.findall(r"^  (--[\w-]+)", train, re.MULTILINE)
    assert {"--epochs", "--lr", "--batch-size", "--samples", "--seed"} <= set(options)
    assert train.count("(default:") >= 10


@pytest.mark.slow
def test_log_level_is_honoured(checkpoint):
    process, base = start_server(checkpoint, LOG_LEVEL="WARNING")
    get(f"{base}/livez")
    stderr = stop_server(process)
    assert " INFO " not in stderr and "GET /livez" not in stderr


def test_the_gpu_check_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(gpu, "MIN_DRIVER", "580.65.06")  # a CUDA 13 build's (CPU bakes: none)
    assert "CPU-only build" in cuda_problem(None, None, False)
    assert "no NVIDIA driver is visible" in cuda_problem("13.0", None, False)
    assert "470.57.02 is older than 580.65.06" in cuda_problem("13.0", "470.57.02", True)
    assert "CUDA is not usable" in cuda_problem("13.0", "580.95.05", False)
    assert cuda_problem("13.0", "580.95.05", True) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_require_gpu_refuses_readiness_without_one(checkpoint):
    settings = Settings(model_path=checkpoint, require_gpu=True)
    with TestClient(create_app(checkpoint, settings=settings)) as client:  # no GPU here
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["detail"].startswith("REQUIRE_GPU=1 and no usable GPU: ")
        assert client.get("/livez").status_code == 200
