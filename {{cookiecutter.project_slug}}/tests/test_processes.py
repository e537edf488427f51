"""The project as its container runs it: `python -m {{ cookiecutter.package_name }} serve`, and
training under torchrun."""

import json
import math
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.checkpoint import read_checkpoint
from {{ cookiecutter.package_name }}.model import MODEL
from {{ cookiecutter.package_name }}.service import create_app
from {{ cookiecutter.package_name }}.train import TrainConfig, train

from serving import (
    affordable,
    assert_answers,
    command_env,
    expected_outputs,
    predict_bytes,
    predict_json,
    random_inputs,
    start_server,
)

pytestmark = pytest.mark.slow  # each test starts processes


def test_sigterm_finishes_in_flight_requests(checkpoint, post):
    # Each request waits in the batcher for 300 ms, so all are in flight at SIGTERM.
    process, base = start_server(checkpoint, MAX_BATCH_WAIT_MS="300", MAX_BATCH_ROWS="1024")
    body = predict_bytes()
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(post, f"{base}/predict", body) for _ in range(16)]
        time.sleep(0.15)
        process.send_signal(signal.SIGTERM)
        statuses = [future.result()[0] for future in futures]
    assert statuses == [200] * 16
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    process.stderr.close()


def test_json_logs_carry_the_request_id(checkpoint):
    process, base = start_server(checkpoint, LOG_FORMAT="json")
    request = urllib.request.Request(f"{base}/livez", headers={"x-request-id": "trace-me"})
    urllib.request.urlopen(request, timeout=10).read()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    access = [r for r in records if r["name"] == "uvicorn.access" and "/livez" in r["message"]]
    assert access and access[0]["request_id"] == "trace-me"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_PATH": "/nonexistent/model.pt"}, "no checkpoint at /nonexistent/model.pt"),
        ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES='lots' is not a whole number"),
    ],
)
def test_start_up_errors_are_one_line_without_a_traceback(env, message):
    done = subprocess.run(
        [sys.executable, "-m", "{{ cookiecutter.package_name }}", "serve"],
        env=command_env(**env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_torchrun_trains_two_processes_on_half_the_data_each(tmp_path):
    """The README's command, 2 CPU processes under torchrun (gloo): one checkpoint, world size 2,
    each rank the same number of steps, half the single-process count."""
    output = tmp_path / "ddp.pt"
    samples, batch = affordable(400, budget_s=10), min(20, MODEL.batch_size)
    rows = math.ceil((samples - samples // 5) / 2)  # a fifth held out, half of the rest each
    steps = 2 * math.ceil(rows / batch)  # 2 epochs: 16 steps each for the example
    args = ["--samples", str(samples), "--batch-size", str(batch), "--epochs", "2",
            "--device", "cpu"]  # fmt: skip
    done = subprocess.run(
        [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc-per-node", "2",
         "-m", "{{ cookiecutter.package_name }}", "train", "--output", str(output), *args],
        env=command_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world size 2" in done.stderr
    assert f"steps per process: [{steps}, {steps}]" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.pt", "ddp.resume.pt"]
    config = TrainConfig(samples=samples, batch_size=batch, epochs=2, device="cpu")
    single = train(tmp_path / "single.pt", config)
    assert single.steps == 2 * math.ceil((samples - samples // 5) / batch)
    saved = read_checkpoint(output)
    assert saved["metadata"]["world_size"] == 2 and saved["metadata"]["steps"] == steps
    # Half the optimizer steps of the single process, as large a share of the data each: both
    # learn what a short run of this model reaches (model.py's trained_score).
    assert min(saved["metadata"]["val_score"], single.val_score) >= MODEL.trained_score
    # A DDP checkpoint is a plain one: the service loads it.
    with TestClient(create_app(output, device="cpu")) as client:
        inputs = random_inputs(3)
        answer = client.post("/predict", json=predict_json(inputs)).json()
        assert_answers(answer, expected_outputs(output, inputs))
