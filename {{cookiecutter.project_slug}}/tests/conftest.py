import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn

from {{ cookiecutter.package_name }}.server import GuardedH11Protocol
from {{ cookiecutter.package_name }}.service import create_app
from {{ cookiecutter.package_name }}.settings import Settings
from {{ cookiecutter.package_name }}.train import TrainConfig, train

from serving import affordable


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once for the whole test session: 3 passes over 2048 samples (about a
    second for the example), fewer where the model is larger (about 12 s a pass on 2 cores)."""
    path = tmp_path_factory.mktemp("model") / "model.pt"
    config = TrainConfig(epochs=3, samples=affordable(2048, budget_s=12), device="cpu")
    return train(path, config).checkpoint


class LiveServers:
    """The service in real uvicorn servers on 127.0.0.1, each in a thread."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self.running: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(self, **settings: object) -> str:
        """Start one with these settings; return its base URL."""
        settings = replace(Settings(model_path=self.checkpoint), **settings)
        app = create_app(self.checkpoint, device="cpu", settings=settings)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", http=GuardedH11Protocol
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.01)
        self.running.append((server, thread))
        return f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        for server, thread in self.running:
            server.should_exit = True
            thread.join(timeout=30)


@pytest.fixture
def live_server(checkpoint: Path) -> Iterator:
    """live_server(**settings) -> base URL; stopped after the test."""
    servers = LiveServers(checkpoint)
    yield servers.start
    servers.stop()


@pytest.fixture(scope="module")
def live_url(checkpoint: Path) -> Iterator[str]:
    """One server with the default settings for a whole module."""
    servers = LiveServers(checkpoint)
    yield servers.start()
    servers.stop()


def _post(url: str, body: bytes, content_type: str = "application/json", headers=None):
    """POST over a fresh connection: (status, headers, JSON body)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", parts.path, body, {"content-type": content_type, **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        conn.close()


@pytest.fixture
def post():
    """post(url, body, content_type=..., headers=...) -> (status, headers, JSON body), over a
    fresh connection to a real server."""
    return _post
