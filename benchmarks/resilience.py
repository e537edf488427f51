"""The generated service against slow, costly and silent clients, in its runtime image; writes
docs/resilience.md.

    python -m benchmarks.resilience [--seconds 15]

Six attacks, each beside a normal client that posts a 1-row /predict and a prober that asks
/livez, four times a second each:

- slow bodies: 80 clients send their headers (Content-Length 1 MB), then one byte a second;
- costly bodies: 16, then 40, clients post 1 MB bodies of ~340,000 empty rows, again and again;
- silent sockets: 1,100 connections that never send a byte, under a 1,024 open-file limit;
- response amplification: 8 clients post 1,024 binary rows asking for one output 2,000 times;
- unread answers: 4 connections pipeline 200 requests of 1,024 rows each and never read;
- head flood: 2 clients send requests of 10,000 headers (120 KB) in one write, again and again.

For each: /livez p99, the normal client's success rate and its longest run of failures, the
server's peak and final RSS, 5xx answers, the lines it logged, and that it is still ready.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import resource
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.service_load import MAX_BODY, Server, predict_head, trained_cpu_service
from template_testing.commands import TEMPLATE
from template_testing.engine import docker

TARGETS = {"livez_p99_ms": 3000, "longest_outage_s": 10, "rss_peak_mb": 1000}


class Observer:
    """A normal client and a /livez prober, four requests a second each, while an attack runs."""

    def __init__(self, port: int, row: list[float]) -> None:
        self.port, self.body = port, json.dumps({"features": [row]})
        self.livez: list[float] = []
        self.normal: list[tuple[float, int]] = []  # (time, status; 0 for no answer)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.probe), threading.Thread(target=self.predict)]

    def request(self, method: str, path: str, body: str | None = None) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            headers = {"content-type": "application/json"} if body else {}
            conn.request(method, path, body, headers)
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return 0

    def probe(self) -> None:
        while not self.stopping.wait(0.25):
            started = time.perf_counter()
            self.request("GET", "/livez")
            self.livez.append(time.perf_counter() - started)

    def predict(self) -> None:
        while not self.stopping.wait(0.25):
            self.normal.append((time.monotonic(), self.request("POST", "/predict", self.body)))

    def __enter__(self) -> Observer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join()

    def summary(self) -> dict:
        livez = sorted(self.livez) or [float("nan")]
        ok = [status == 200 for _, status in self.normal]
        longest, start = 0.0, None
        for moment, status in self.normal:
            if status != 200 and start is None:
                start = moment
            elif status == 200 and start is not None:
                longest, start = max(longest, moment - start), None
        if start is not None:
            longest = max(longest, self.normal[-1][0] - start)
        return {
            "livez_p99_ms": livez[max(0, int(len(livez) * 0.99) - 1)] * 1e3,
            "normal_ok": sum(ok) / max(len(ok), 1),
            "longest_outage_s": longest,
            "five_xx": sum(status >= 500 and status != 503 for _, status in self.normal),
        }


def trickle(port: int, clients: int, seconds: float) -> None:
    """Headers of a 1 MB body, then a byte a second, until the server closes or time is up."""
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(predict_head(MAX_BODY))
        socks.append(sock)
    stop = time.monotonic() + seconds
    while time.monotonic() < stop and socks:
        for sock in list(socks):
            try:
                sock.sendall(b" ")
            except OSError:
                socks.remove(sock)
                sock.close()
        time.sleep(1)
    for sock in socks:
        sock.close()


def costly(port: int, clients: int, seconds: float) -> None:
    """`clients` loops posting 1 MB of empty rows."""
    rows = (MAX_BODY - 20) // 3
    body = ('{"features":[' + ",".join(["[]"] * rows) + "]}").encode()
    repeat(port, clients, seconds, "/predict", body, {"content-type": "application/json"})


def silent(port: int, connections: int, seconds: float) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this side needs the sockets too
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, connections + 256)), hard))
    socks = []
    for _ in range(connections):
        with contextlib.suppress(OSError):
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    time.sleep(seconds)
    for sock in socks:
        sock.close()


OIP_INFER = "/v2/models/bench_resilience/infer"  # the package of the "Bench Resilience" bake
MAX_ROWS = 1024  # rows per request of the example model


def amplify(port: int, row: list[float], clients: int, seconds: float) -> None:
    """`clients` loops posting 1,024 binary rows that ask for one output 2,000 times (a 70 KB
    request whose answer was 25 MB before such requests were refused)."""
    data = struct.pack(f"<{len(row) * MAX_ROWS}f", *(row * MAX_ROWS))
    header = json.dumps({
        "inputs": [{"name": "features", "shape": [MAX_ROWS, len(row)], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}] * 2000,
    }).encode()  # fmt: skip
    headers = {"content-type": "application/octet-stream",
               "inference-header-content-length": str(len(header))}  # fmt: skip
    repeat(port, clients, seconds, OIP_INFER, header + data, headers)


def repeat(port: int, clients: int, seconds: float, path: str, body: bytes, headers: dict) -> None:
    """`clients` loops posting `body` to `path` for `seconds`."""
    stop = time.monotonic() + seconds

    def one() -> None:
        while time.monotonic() < stop:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("POST", path, body, headers)
                conn.getresponse().read()
                conn.close()

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def unread(port: int, row: list[float], clients: int, seconds: float) -> None:
    """`clients` connections that each pipeline 200 requests of 1,024 rows (about 14 MB of
    answers) and never read, held for `seconds`."""
    body = json.dumps({"features": [row] * MAX_ROWS}).encode()
    socks = []
    for _ in range(clients):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall((predict_head(len(body)) + body) * 200)
        socks.append(sock)
    time.sleep(seconds)
    for sock in socks:
        sock.close()


def head_flood(port: int, clients: int, seconds: float) -> None:
    """`clients` loops sending requests with 10,000 headers (about 120 KB) in one write."""
    headers = b"".join(b"x-%d: y\r\n" % i for i in range(10_000))
    request = b"GET /livez HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    stop = time.monotonic() + seconds

    def one() -> None:
        while time.monotonic() < stop:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
            ):
                sock.sendall(request)
                while sock.recv(65536):
                    pass

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def attack(image: str, volume: str, row: list[float], run: Callable[[int], None], *docker_args):
    server = Server(image, volume, *docker_args)
    peak, stop = [server.rss_kb()], threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(AssertionError, ValueError, StopIteration):
                peak.append(server.rss_kb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with Observer(server.port, row) as observer:
            run(server.port)
            time.sleep(2)  # and a moment after
        stop.set()
        sampler.join()
        logs = subprocess.run([docker(), "logs", server.container], capture_output=True,
                              text=True).stderr  # fmt: skip
        return {
            **observer.summary(),
            "rss_peak_mb": max(peak) / 1024,
            "rss_after_mb": server.rss_kb() / 1024,
            "log_lines": len(logs.splitlines()),
            "tracebacks": logs.count("Traceback"),
            "still_ready": server.status("/readyz") == 200,
        }
    finally:
        stop.set()
        if sampler.is_alive():
            sampler.join()
        server.stop()


def measure(seconds: float) -> dict:
    with trained_cpu_service("Resilience") as (image, volume, row, network, _):
        results: dict = {"network": network}
        results["slow bodies (80 clients, a byte a second)"] = attack(
            image, volume, row, lambda port: trickle(port, 80, seconds)
        )
        for clients in (16, 40):
            results[f"costly bodies ({clients} clients, 1 MB of empty rows)"] = attack(
                image, volume, row, lambda port, n=clients: costly(port, n, seconds)
            )
        results["silent sockets (1,100, open-file limit 1,024)"] = attack(
            image, volume, row, lambda port: silent(port, 1100, seconds),
            "--ulimit", "nofile=1024:1024",
        )  # fmt: skip
        results["response amplification (8 clients, an output asked 2,000 times)"] = attack(
            image, volume, row, lambda port: amplify(port, row, 8, seconds)
        )
        unread_answers = "unread answers (4 clients, 200 pipelined 1,024-row requests each)"
        results[unread_answers + ", WRITE_TIMEOUT_S=5"] = attack(
            image, volume, row, lambda port: unread(port, row, 4, seconds),
            "--env", "WRITE_TIMEOUT_S=5",
        )  # fmt: skip
        results["head flood (2 clients, 10,000 headers in one write)"] = attack(
            image, volume, row, lambda port: head_flood(port, 2, seconds)
        )
    return results


def table(results: dict, seconds: float) -> str:
    network = results.pop("network")
    columns = ["/livez p99 ms", "normal /predict OK", "longest outage s", "5xx",
               "RSS peak / after MB", "log lines", "tracebacks", "ready after"]  # fmt: skip
    rows = []
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['livez_p99_ms']:.0f} | {r['normal_ok']:.0%} | "
            f"{r['longest_outage_s']:.1f} | {r['five_xx']} | {r['rss_peak_mb']:.0f} / "
            f"{r['rss_after_mb']:.0f} | {r['log_lines']} | {r['tracebacks']} | {r['still_ready']} |"
        )
    misses = [
        f"{name}: {key} {r[key]:.1f} > {limit}"
        for name, r in results.items()
        for key, limit in TARGETS.items()
        if r[key] > limit
    ] + [f"{name}: {r['five_xx']} 5xx" for name, r in results.items() if r["five_xx"]]
    head = [
        "# Resilience: slow, costly, silent and hostile clients",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m benchmarks.resilience "
        f"--seconds {seconds:g}`: the CPU runtime image (torch 2.13.0, Python 3.11), default "
        f"settings, one server process, on {os.cpu_count()} cores ({platform.machine()}) "
        f"shared with the attackers. {network}.",
        "",
        "Each attack lasts the given seconds (then 2 s more) while a normal client posts a "
        '1-row /predict and a prober asks /livez, four times a second each. "Longest outage" '
        "is the longest time the normal client got no 200. Targets: /livez p99 under the "
        f"Kubernetes probe timeout ({TARGETS['livez_p99_ms']} ms), outages at most "
        f"{TARGETS['longest_outage_s']} s, RSS under {TARGETS['rss_peak_mb']} MB, no 5xx, no "
        "traceback, ready after.",
        "",
    ]
    verdict = "all met." if not misses else "missed: " + "; ".join(misses) + "."
    body = ["| attack | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    return "\n".join([*head, *body, *rows, "", "Targets: " + verdict, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--output", type=Path, default=TEMPLATE / "docs" / "resilience.md")
    args = parser.parse_args()
    text = table(measure(args.seconds), args.seconds)
    print(text)
    args.output.write_text(text)


if __name__ == "__main__":
    main()
