"""Test helpers: the service as its container runs it, `python -m {{ cookiecutter.package_name }}
serve`, in a child process on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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
