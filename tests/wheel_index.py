"""A local package index for the Docker tests, because the PyTorch wheel index cannot be reached.

    /whl/<build>/<project>/   the torch wheel index: <build> is cpu (pip's find-links folder)
                              or cu130 (the PyPI CUDA wheels in pip's extra indexes)
    /simple/<project>/        a PyPI mirror: wheels on this machine first, the rest of PyPI's
                              simple page after them (their absolute links go out through the proxy)
    /files/<name>             the local wheels, and <name>.metadata (PEP 658) so Poetry can lock
                              without downloading them

pip accepts plain HTTP only from localhost: builds reach this with `docker build --network host`.
"""

from __future__ import annotations

import hashlib
import html
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# Tried in order: the Docker tests take the first, a benchmark run beside them the next.
PORTS = range(38411, 38415)
LINK = re.compile(
    r'<a href="(?P<href>[^"#]+)(?:#(?P<hash>sha256=[0-9a-f]+))?"[^>]*>(?P<name>[^<]+)</a>'
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_config() -> dict[str, str]:
    """pip's effective configuration (`pip config list`), e.g. global.find-links."""
    done = subprocess.run(["pip", "config", "list"], capture_output=True, text=True, check=False)
    values = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip().strip("'")
    return values


def local_wheel_dirs() -> tuple[list[Path], list[Path]]:
    """(find-links folders, file:// simple indexes) that pip is configured with."""
    config = pip_config()
    find_links = [Path(p) for p in config.get("global.find-links", "").split() if p]
    indexes = [
        Path(u.removeprefix("file://"))
        for u in config.get("global.extra-index-url", "").split()
        if u.startswith("file://")
    ]
    return [p for p in find_links if p.is_dir()], [p for p in indexes if p.is_dir()]


def project_of(filename: str) -> str:
    return normalize(filename.split("-")[0])


@cache
def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as wheel:
        name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        return wheel.read(name)


class WheelIndex:
    def __init__(self, torch_builds: dict[str, list[Path]], mirror: list[Path]) -> None:
        self.files: dict[str, Path] = {}
        self.torch: dict[str, dict[str, list[str]]] = {}
        for build, wheels in torch_builds.items():
            for wheel in wheels:
                self.files[wheel.name] = wheel
                self.torch.setdefault(build, {}).setdefault(project_of(wheel.name), []).append(
                    wheel.name
                )
        self.mirror: dict[str, list[str]] = {}
        for wheel in mirror:
            self.files.setdefault(wheel.name, wheel)
            self.mirror.setdefault(project_of(wheel.name), []).append(wheel.name)
        self.server: ThreadingHTTPServer | None = None
        self.url = ""  # set by start()
        self.downloads: list[str] = []  # wheel files served, in order (benchmarks read this)

    @classmethod
    def from_this_machine(cls) -> WheelIndex:
        find_links, indexes = local_wheel_dirs()
        cpu = [w for d in find_links for w in d.glob("torch-*+cpu-*.whl")]
        simple_files = [w for d in indexes for w in (d.parent / "files").glob("*.whl")]
        cuda = [w for w in simple_files if project_of(w.name) in {"torch", "torchvision"}]
        return cls({"cpu": cpu, "cu130": cuda}, simple_files)

    def links(self, names: list[str]) -> str:
        rows = []
        for name in sorted(names):
            path = self.files[name]
            meta = hashlib.sha256(wheel_metadata(path)).hexdigest()
            rows.append(
                f'<a href="/files/{html.escape(name)}#sha256={sha256(path)}" '
                f'data-dist-info-metadata="sha256={meta}" data-core-metadata="sha256={meta}">'
                f"{html.escape(name)}</a><br>"
            )
        return "\n".join(rows)

    def pypi_links(self, project: str, skip: set[str]) -> str:
        page = ""
        for attempt in range(3):  # the proxy in front of PyPI drops a request now and then
            try:
                with urllib.request.urlopen(f"https://pypi.org/simple/{project}/", timeout=60) as r:
                    page = r.read().decode()
                break
            except urllib.error.HTTPError as error:
                if error.code == 404:
                    break
            except OSError:
                time.sleep(1 + attempt)
        return "\n".join(m.group(0) for m in LINK.finditer(page) if m["name"] not in skip)

    def page(self, path: str) -> tuple[int, str, bytes]:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[0] == "whl":
            names = self.torch.get(parts[1], {}).get(normalize(parts[2]))
            if names:
                return 200, "text/html", self.page_html(self.links(names))
        elif len(parts) == 2 and parts[0] == "simple":
            local = self.mirror.get(normalize(parts[1]), [])
            body = self.links(local) + "\n" + self.pypi_links(normalize(parts[1]), set(local))
            return 200, "text/html", self.page_html(body)
        elif len(parts) == 2 and parts[0] == "files":
            name = parts[1]
            if name.endswith(".metadata") and name.removesuffix(".metadata") in self.files:
                return 200, "text/plain", wheel_metadata(self.files[name.removesuffix(".metadata")])
            if name in self.files:
                return 200, "application/octet-stream", b""  # streamed by the handler
        return 404, "text/plain", b"not found"

    @staticmethod
    def page_html(body: str) -> bytes:
        return f"<!DOCTYPE html><html><body>\n{body}\n</body></html>\n".encode()

    def start(self, ports: range = PORTS) -> str:
        """Serve on the first free port of `ports` (any free one after them) and return the URL.

        The URL ends up in build arguments and in the lock, so a port that stays the same from
        run to run lets Docker's build cache serve the next run.
        """
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urllib.parse.unquote(self.path.split("?")[0])
                status, ctype, body = index.page(path)
                name = path.rsplit("/", 1)[-1]
                if status == 200 and ctype == "application/octet-stream":
                    path = index.files[name]
                    index.downloads.append(name)
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(path.stat().st_size))
                    self.end_headers()
                    with path.open("rb") as f:
                        while block := f.read(1 << 20):
                            self.wfile.write(block)
                    return
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        for port in [*ports, 0]:
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
                break
            except OSError:
                continue
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
