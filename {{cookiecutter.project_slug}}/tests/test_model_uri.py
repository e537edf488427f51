"""MODEL_URI: weights fetched at start-up from a local HTTP server (pinned by sha256), a file://
path, and every refusal in one line."""

import functools
import hashlib
import http.server
import json
import shutil
import threading

import pytest

from {{ cookiecutter.package_name }}.checkpoint import CheckpointError
from {{ cookiecutter.package_name }}.model_uri import fetch

from serving import (
    assert_answers,
    expected_outputs,
    get,
    predict_json,
    random_inputs,
    start_server,
    stop_server,
)


@pytest.fixture
def weights_server(tmp_path, checkpoint):
    """An HTTP server on 127.0.0.1 serving a copy of the checkpoint: (URL, its sha256)."""
    folder = tmp_path / "served"
    folder.mkdir()
    shutil.copyfile(checkpoint, folder / "model.pt")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    digest = hashlib.sha256((folder / "model.pt").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{server.server_port}/model.pt", digest
    server.shutdown()
    server.server_close()


def test_a_pinned_download_is_fetched_once_and_reused(weights_server, tmp_path, checkpoint):
    url, digest = weights_server
    cache = tmp_path / "cache"
    path = fetch(f"{url}#sha256={digest}", cache)
    assert path.read_bytes() == checkpoint.read_bytes() and path.parent == cache
    (path.parent.parent / "served" / "model.pt").unlink()  # gone from the server: the copy serves
    assert fetch(f"{url}#sha256={digest}", cache) == path


def test_a_wrong_hash_is_refused_and_nothing_is_kept(weights_server, tmp_path):
    url, digest = weights_server
    wrong = "0" * 64
    with pytest.raises(CheckpointError, match=f"sha256 is {digest}, not the pin") as refused:
        fetch(f"{url}#sha256={wrong}", tmp_path / "cache")
    assert "\n" not in str(refused.value)
    assert not list((tmp_path / "cache").iterdir())


REFUSALS = {
    "no-pin": ("http://127.0.0.1:9/model.pt", "needs the file's hash"),
    "short-pin": ("https://example.com/m.pt#sha256=abc", "64 hex digits"),
    "scheme": ("ftp://example.com/m.pt", "use file://"),
    "unreachable": (f"http://127.0.0.1:9/m.pt#sha256={'a' * 64}", "cannot fetch it"),
}


@pytest.mark.parametrize(("uri", "message"), REFUSALS.values(), ids=REFUSALS)
def test_every_unusable_uri_is_one_line(tmp_path, uri, message):
    with pytest.raises(CheckpointError, match=message) as refused:
        fetch(uri, tmp_path)
    assert "\n" not in str(refused.value) and uri.split("#")[0] in str(refused.value)


def test_a_file_uri_is_the_path(checkpoint, tmp_path):
    assert fetch(checkpoint.as_uri(), tmp_path) == checkpoint


@pytest.mark.slow
def test_serve_fetches_model_uri_before_it_is_ready(weights_server, checkpoint, tmp_path, post):
    url, digest = weights_server
    process, base = start_server(
        tmp_path / "not-here.pt", MODEL_URI=f"{url}#sha256={digest}",
        MODEL_CACHE_DIR=str(tmp_path / "cache"), WEB_CONCURRENCY="2",
    )  # fmt: skip
    try:
        assert get(f"{base}/readyz")[0] == 200
        inputs = random_inputs(3)
        status, _, body = post(f"{base}/predict", json.dumps(predict_json(inputs)).encode())
    finally:
        stop_server(process)
    assert status == 200
    assert_answers(body, expected_outputs(checkpoint, inputs))
