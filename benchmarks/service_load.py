"""Load and abuse the generated service in its runtime image; write a markdown table.

    python -m benchmarks.service_load            # full run, writes docs/service-benchmarks.md
    python -m benchmarks.service_load --smoke    # a short run, prints the table

Measures, on this machine, in one run: requests/s, p50 and p99 for 1-row and 256-row requests
at 1, 8, 32 and 64 concurrent clients, with batching on and off (MAX_BATCH_ROWS=0); the same
rows in three protocols (JSON /predict, Open Inference Protocol JSON and binary tensors) at 1, 4
and 32 clients; the binary protocol served eager and through torch.compile (the runtime-compile
target); /livez p99 while maximum-size uploads stream in; the time to refuse a 100 MB body and
the server's RSS growth; and that no request of any of these got a 5xx. The clients run on the
same cores as the server, so the numbers are what one machine does to itself.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import struct
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from template_testing.commands import TEMPLATE, sh
from template_testing.engine import docker, remove_images
from template_testing.images import ImageHost, free_port, image_size, train_into
from torch_compat import load

CLIENTS = (1, 8, 32, 64)
PROTOCOL_CLIENTS = (1, 4, 32)
ROUNDS = 5  # the protocols take turns this many times within each load
COMPILED_CLIENTS = (1, 4)
ROWS = (1, 256)
MAX_BODY = 1 << 20  # the service's default MAX_BODY_BYTES
TARGETS = {
    "refuse_ms": 100,
    "refuse_rss_mb": 10,
    "livez_p99_ms": 50,
    "scale_32": 1.5,
    "p99_ms": 250,
    "binary_vs_predict_256x4": 3.0,  # OIP binary rows/s ÷ JSON /predict rows/s, 256 rows, 4 clients
    "oip_vs_predict_p50_1x1": 1.0,  # OIP 1-row p50 ÷ /predict's, 1 client: no worse
}


class Server:
    """The runtime image serving a freshly trained checkpoint on 127.0.0.1."""

    def __init__(
        self, image: str, volume: str, *docker_args: str, ready_within_s: float = 60, **env: str
    ) -> None:
        self.port = free_port()
        args = [*docker_args, *(f"--env={k}={v}" for k, v in env.items())]
        self.container = sh(
            docker(), "run", "-d", "-p", f"127.0.0.1:{self.port}:8000",
            "-v", f"{volume}:/app/artifacts:ro", *args, image,
        ).strip()  # fmt: skip
        deadline = time.monotonic() + ready_within_s
        while self.status("/readyz") != 200:
            assert time.monotonic() < deadline, "the service did not become ready"
            time.sleep(0.2)

    def status(self, path: str) -> int | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", path)
            return conn.getresponse().status
        except OSError:
            return None

    def rss_kb(self) -> int:
        status = sh(docker(), "exec", self.container, "cat", "/proc/1/status")
        return int(
            next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]
        )

    def stop(self) -> None:
        sh(docker(), "rm", "-f", self.container)


def predict_head(length: int) -> bytes:
    """The request line and headers of a JSON POST /predict declaring `length` body bytes."""
    return (
        "POST /predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def predict_request(row: list[float], rows: int) -> tuple[str, bytes, dict[str, str]]:
    body = json.dumps({"features": [row] * rows}).encode()
    return "/predict", body, {"content-type": "application/json"}


def oip_json_request(row: list[float], rows: int) -> tuple[str, bytes, dict[str, str]]:
    tensor = {"name": "features", "shape": [rows, len(row)], "datatype": "FP32",
              "data": row * rows}  # fmt: skip
    body = json.dumps({"inputs": [tensor]}).encode()
    return OIP_INFER, body, {"content-type": "application/json"}


def oip_binary_request(row: list[float], rows: int) -> tuple[str, bytes, dict[str, str]]:
    """Binary tensors in and out (tritonclient's default)."""
    data = struct.pack(f"<{len(row) * rows}f", *(row * rows))
    header = json.dumps({
        "inputs": [{"name": "features", "shape": [rows, len(row)], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(data)}}],
        "parameters": {"binary_data_output": True},
    }).encode()  # fmt: skip
    headers = {"content-type": "application/octet-stream",
               "inference-header-content-length": str(len(header))}  # fmt: skip
    return OIP_INFER, header + data, headers


OIP_INFER = "/v2/models/bench_service/infer"  # the package of the "Bench Service" bake
PROTOCOLS = {
    "JSON /predict": predict_request,
    "OIP JSON": oip_json_request,
    "OIP binary": oip_binary_request,
}


def load_run(
    port: int, row: list[float], rows: int, clients: int, seconds: float, protocol=predict_request
) -> dict:
    """`clients` keep-alive connections sending `rows` copies of `row` for `seconds`."""
    latencies, errors = load_latencies(port, protocol(row, rows), clients, seconds)
    return summary(latencies, errors, rows, seconds)


def summary(latencies: list[float], errors: dict[str, int], rows: int, seconds: float) -> dict:
    latencies = sorted(latencies)
    return {
        "rps": len(latencies) / seconds,
        "rows_per_s": len(latencies) * rows / seconds,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1e3,
        **errors,
    }


def load_latencies(
    port: int, request: tuple[str, bytes, dict[str, str]], clients: int, seconds: float
) -> tuple[list[float], dict[str, int]]:
    """Each request's latency (s), and the non-200 answers, of `clients` keep-alive connections
    sending `request` for `seconds`."""
    path, body, headers = request
    latencies: list[float] = []
    errors = {"5xx": 0, "other": 0}
    stop = time.perf_counter() + seconds
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.perf_counter() < stop:
            started = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            if response.status != 200:
                with lock:
                    errors["5xx" if response.status >= 500 else "other"] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors


def livez_during_uploads(port: int, seconds: float) -> float:
    """/livez p99 (ms) while two clients stream maximum-size bodies slowly, again and again."""
    stop = time.perf_counter() + seconds

    def upload() -> None:
        while time.perf_counter() < stop:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(predict_head(MAX_BODY))
                for _ in range(16):  # 1 MiB in 16 pieces, over about 0.2 s
                    sock.sendall(b"[" * (MAX_BODY // 16))
                    time.sleep(0.0125)
                sock.recv(4096)

    uploaders = [threading.Thread(target=upload) for _ in range(2)]
    for t in uploaders:
        t.start()
    times = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.perf_counter() < stop:
        started = time.perf_counter()
        conn.request("GET", "/livez")
        conn.getresponse().read()
        times.append(time.perf_counter() - started)
        time.sleep(0.005)
    for t in uploaders:
        t.join()
    times.sort()
    return times[max(0, int(len(times) * 0.99) - 1)] * 1e3


def refuse_100_mb(server: Server) -> tuple[float, float]:
    """(ms to the 413, RSS growth in MB) for a declared 100 MB body whose first MB is sent."""
    before = server.rss_kb()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        started = time.perf_counter()
        sock.sendall(predict_head(100_000_000) + b" " * (1 << 20))
        reply = sock.recv(4096)
        elapsed = time.perf_counter() - started
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    return elapsed * 1e3, (server.rss_kb() - before) / 1024


@contextlib.contextmanager
def trained_cpu_service(
    name: str, compiled: bool = False, model: Path | None = None, train_args=("--epochs", "3")
) -> Iterator[tuple[str, str, list[float] | None, str, str | None]]:
    """The CPU runtime image of a fresh bake (its model.py replaced by `model`, if given) with a
    checkpoint trained by `train_args` in a volume: (image, volume, a row the example model
    takes (None for another model), this host's network in words, the runtime-compile image
    when `compiled`); removed afterwards."""
    host = ImageHost.start()
    answers = {"project_name": f"Bench {name}", "python_version": "3.11",
               "torch_version": "2.13.0", "accelerator": "cpu"}  # fmt: skip
    plan = load().plan(answers)
    if reason := host.cannot_build(plan):
        raise SystemExit(f"benchmark: cannot build the CPU image here: {reason}")
    volume = f"bench-{name.lower()}-artifacts"
    with tempfile.TemporaryDirectory() as tmp:
        project = host.bake(Path(tmp), plan, **answers)
        if model:
            shutil.copyfile(model, project.path / "src" / project.package / "model.py")
        image = project.build("runtime", f"bench-{name.lower()}")
        compiled_image = (
            project.build("runtime-compile", f"bench-{name.lower()}-compile") if compiled else None
        )
        row = None if model else project.class_centers(image)[0]  # the example model's width
    try:
        train_into(image, volume, *train_args)
        yield image, volume, row, host.network.describe(), compiled_image
    finally:
        sh(docker(), "volume", "rm", "-f", volume)
        remove_images(image, *([compiled_image] if compiled_image else []))
        host.stop()


def measure(smoke: bool) -> dict:
    seconds = 1.0 if smoke else 5.0
    with trained_cpu_service("Service", compiled=True) as (image, volume, row, network, compiled):
        results: dict = {"network": network, "runs": [], "protocols": [], "compiled": [],
                         "size_mb": {"runtime": image_size(image) / 1e6,
                                     "runtime-compile": image_size(compiled) / 1e6}}  # fmt: skip
        for batching, env in (("on", {}), ("off", {"MAX_BATCH_ROWS": "0"})):
            server = Server(image, volume, **env)
            try:
                for rows in ROWS:
                    for clients in CLIENTS if not smoke else (1, 32):
                        run = load_run(server.port, row, rows, clients, seconds)
                        results["runs"].append({"batching": batching, "rows": rows,
                                                "clients": clients, **run})  # fmt: skip
                if batching == "on":
                    results["protocols"] = protocol_runs(server.port, row, seconds, smoke)
                    results["compiled"] += compiled_runs(server.port, row, seconds, "eager")
                    results["livez_p99_ms"] = livez_during_uploads(server.port, 2 * seconds)
                    results["refuse_ms"], results["refuse_rss_mb"] = refuse_100_mb(server)
                    results["still_ready"] = server.status("/readyz") == 200
            finally:
                server.stop()
        server = Server(compiled, volume, ready_within_s=600)
        try:
            results["compiled"] += compiled_runs(server.port, row, seconds, "torch.compile")
        finally:
            server.stop()
    return results


def protocol_runs(port: int, row: list[float], seconds: float, smoke: bool) -> list[dict]:
    """Each load in the three protocols in turn, in ROUNDS slices each, so that drift on a
    shared machine touches all three alike."""
    runs = []
    for rows in ROWS:
        for clients in PROTOCOL_CLIENTS if not smoke else (1, 4):
            found = {name: ([], {"5xx": 0, "other": 0}) for name in PROTOCOLS}
            for _ in range(ROUNDS):
                for name, protocol in PROTOCOLS.items():
                    latencies, errors = load_latencies(
                        port, protocol(row, rows), clients, seconds / ROUNDS
                    )
                    found[name][0].extend(latencies)
                    for key, count in errors.items():
                        found[name][1][key] += count
            runs += [{"protocol": name, "rows": rows, "clients": clients,
                      **summary(latencies, errors, rows, seconds)}
                     for name, (latencies, errors) in found.items()]  # fmt: skip
    return sorted(runs, key=lambda run: list(PROTOCOLS).index(run["protocol"]))


def compiled_runs(port: int, row: list[float], seconds: float, mode: str) -> list[dict]:
    return [
        {"mode": mode, "rows": rows, "clients": clients,
         **load_run(port, row, rows, clients, seconds, oip_binary_request)}
        for rows in ROWS for clients in COMPILED_CLIENTS
    ]  # fmt: skip


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(r: dict, smoke: bool) -> str:
    runs = {(x["batching"], x["rows"], x["clients"]): x for x in r["runs"]}
    rows = [
        f"| {b} | {n} | {c} | {x['rps']:.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['5xx']} |"
        for (b, n, c), x in runs.items()
    ]
    every_run = r["runs"] + r["protocols"] + r["compiled"]
    five_xx = sum(x["5xx"] for x in every_run)
    others = sum(x["other"] for x in every_run)
    protocols = {(x["protocol"], x["rows"], x["clients"]): x for x in r["protocols"]}
    predict, binary = protocols[("JSON /predict", 256, 4)], protocols[("OIP binary", 256, 4)]
    binary_ratio = binary["rows_per_s"] / predict["rows_per_s"]
    p50_ratios = {
        name: protocols[(name, 1, 1)]["p50_ms"] / protocols[("JSON /predict", 1, 1)]["p50_ms"]
        for name in ("OIP JSON", "OIP binary")
    }
    one, many = runs.get(("on", 256, 1)), runs.get(("on", 256, 32))
    scale = many["rps"] / one["rps"] if one and many else float("nan")
    p99_32 = many["p99_ms"] if many else float("nan")

    def target(key: str, value: float, at_least: bool = False) -> str:
        ok = value >= TARGETS[key] if at_least else value <= TARGETS[key]
        return f"{'≥' if at_least else '≤'} {TARGETS[key]}: {verdict(ok)}"

    summary = [
        ("5xx answers, all runs", f"{five_xx}", "0: " + verdict(five_xx == 0)),
        ("other non-200 answers, all load runs", f"{others}", "0: " + verdict(others == 0)),
        ("OIP binary ÷ JSON /predict, rows/s, 256 rows, 4 clients", f"{binary_ratio:.2f}",
         target("binary_vs_predict_256x4", binary_ratio, at_least=True)),
        *((f"{name} ÷ JSON /predict, 1-row p50, 1 client", f"{ratio:.2f}",
           target("oip_vs_predict_p50_1x1", ratio)) for name, ratio in p50_ratios.items()),
        ("Still ready after the abuse", str(r["still_ready"]), verdict(r["still_ready"])),
        ("100 MB body refused in (ms)", f"{r['refuse_ms']:.1f}",
         target("refuse_ms", r["refuse_ms"])),
        ("… server RSS growth (MB)", f"{r['refuse_rss_mb']:.1f}",
         target("refuse_rss_mb", r["refuse_rss_mb"])),
        ("/livez p99 during maximum-size uploads (ms)", f"{r['livez_p99_ms']:.1f}",
         target("livez_p99_ms", r["livez_p99_ms"])),
        ("256-row req/s, 32 clients ÷ 1 client (batching on)", f"{scale:.2f}",
         target("scale_32", scale, at_least=True)),
        ("256-row p99, 32 clients, batching on (ms)", f"{p99_32:.0f}", target("p99_ms", p99_32)),
    ]  # fmt: skip
    head = [
        "# Benchmark: the generated service under load and abuse"
        + (" — smoke run" if smoke else ""),
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `benchmarks/service_load.py`: CPU "
        f"image (torch 2.13.0, Python 3.11), default settings, one server process, "
        f"{os.cpu_count()} cores ({platform.machine()}) shared by server and clients. "
        f"{r['network']}.",
        "",
        "This is the example model (4 features in a row); an image model the size people serve "
        "(ResNet-18, 3x224x224 pixels) has its own table: `docs/image-model-benchmarks.md`.",
        "",
        "| measure | value | target |",
        "| --- | --- | --- |",
        *(f"| {a} | {b} | {c} |" for a, b, c in summary),
        "",
        "Batching shares the forward pass, not JSON: 256-row requests spend most of their time "
        "parsing and writing JSON on the cores the load generator also uses, which batching "
        "cannot share; 1-row requests under concurrency are where it pays.",
        "",
        "| batching | rows/request | clients | req/s | p50 ms | p99 ms | 5xx |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "## Protocols (batching on)",
        "",
        "The same rows as JSON `/predict`, as Open Inference Protocol JSON tensors and as OIP "
        "binary tensors (`binary_data_size` in, `binary_data_output` out: what tritonclient "
        "sends by default). Rows/s counts the rows answered. The protocols differ only in how "
        "the tensors are written: with the example's 4 features a 256-row request is about 22 kB "
        "of JSON, a small share of what a request costs next to HTTP, admission and batching, so "
        "binary tensors gain little here; they pay where inputs are wide (images, embeddings), "
        "where JSON is most of the cost.",
        "",
        "| protocol | rows/request | clients | rows/s | req/s | p50 ms | p99 ms | 5xx |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {x['protocol']} | {x['rows']} | {x['clients']} | {x['rows_per_s']:.0f} | "
            f"{x['rps']:.0f} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['5xx']} |"
            for x in r["protocols"]
        ),
        "",
        "## Compiled and eager (OIP binary, batching on)",
        "",
        "`runtime` serving eager against `runtime-compile` with `TORCH_COMPILE=1`, the same "
        f"checkpoint and requests. Image sizes: runtime {r['size_mb']['runtime']:.0f} MB, "
        f"runtime-compile {r['size_mb']['runtime-compile']:.0f} MB (g++ adds "
        f"{r['size_mb']['runtime-compile'] - r['size_mb']['runtime']:.0f} MB).",
        "",
        "| mode | rows/request | clients | rows/s | p50 ms | p99 ms | 5xx |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *(
            f"| {x['mode']} | {x['rows']} | {x['clients']} | {x['rows_per_s']:.0f} | "
            f"{x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['5xx']} |"
            for x in r["compiled"]
        ),
    ]
    return "\n".join(head) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="short runs, print only")
    parser.add_argument("--output", type=Path, default=TEMPLATE / "docs" / "service-benchmarks.md")
    args = parser.parse_args()
    results = measure(args.smoke)
    text = table(results, args.smoke)
    print(text)
    if not args.smoke:
        args.output.write_text(
            text + "\nRaw results:\n\n```json\n" + json.dumps(results, indent=2) + "\n```\n"
        )


if __name__ == "__main__":
    main()
