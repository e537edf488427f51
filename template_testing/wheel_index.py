"""The offline fallback's torch wheel index, for hosts that cannot reach the PyTorch index.

    /whl/<build>/<project>/   laid out like https://download.pytorch.org/whl/<build>/<project>/:
                              the wheels of TDT_OFFLINE_WHEELS' folders whose local version is
                              +<build>, and PyPI's files of a torch release for the machine
                              whose PyPI build is <build> (torch_compat's `pypi_cuda` for x86_64,
                              `pypi_arm64` for aarch64: 2.10.0's aarch64 files are served as cpu,
                              its x86_64 ones as cu128); their absolute links go to PyPI
    /files/<name>             a local wheel, and <name>.metadata (PEP 658) so Poetry can lock
                              without downloading it

pip accepts plain HTTP only from localhost: builds reach this with `docker build --network host`.
"""

from __future__ import annotations

import hashlib
import html
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterable
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from torch_compat import Compat, TorchPlan, load

# Tried in order: the image tests take the first, a benchmark run beside them the next. The URL
# ends up in build arguments and in the lock, so a fixed port lets Docker's cache serve reruns.
PORTS = range(38411, 38415)
TORCH_PROJECTS = ("torch", "torchvision", "torchaudio")
LINK = re.compile(
    r'<a href="(?P<href>[^"#]+)(?:#(?P<hash>sha256=[0-9a-f]+))?"[^>]*>(?P<name>[^<]+)</a>'
)
WHEEL = re.compile(
    r"^(?P<project>[^-]+)-(?P<version>[^-+]+)(?:\+(?P<build>[^-]+))?-(?P<rest>.+)\.whl$"
)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runs_on(filename: str, python: str, machine: str = "x86_64") -> bool:
    """Whether a wheel installs on CPython `python` (e.g. '3.13') on Linux `machine`."""
    tags = WHEEL.match(filename)["rest"].split("-")
    cp = "cp" + python.replace(".", "")
    return (tags[0] == cp or tags[0].startswith("py3")) and (
        tags[-1] == "any" or ("linux" in tags[-1] and machine in tags[-1])
    )


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


@cache
def pypi_links(project: str) -> tuple[tuple[str, str], ...]:
    """(file name, whole <a> tag) for each file on PyPI's simple page of `project`."""
    page = ""
    for attempt in range(3):  # a proxy in front of PyPI may drop a request now and then
        try:
            with urllib.request.urlopen(f"https://pypi.org/simple/{project}/", timeout=60) as r:
                page = r.read().decode()
            break
        except urllib.error.HTTPError as error:
            if error.code == 404:
                break
        except OSError:
            time.sleep(1 + attempt)
    return tuple((m["name"], m.group(0)) for m in LINK.finditer(page))


class WheelIndex:
    def __init__(self, folders: Iterable[Path] = (), compat: Compat | None = None) -> None:
        self.compat = compat or load()
        self.files = {
            w.name: w
            for folder in folders
            for w in sorted(Path(folder).glob("*.whl"))
            if normalize(w.name.split("-")[0]) in TORCH_PROJECTS
        }
        self.server: ThreadingHTTPServer | None = None
        self.url = ""  # set by start()
        self.downloads: list[str] = []  # local wheel files served, in order (benchmarks read this)

    def pypi_files(self, build: str, project: str) -> set[tuple[str, str]]:
        """(version, machine) of `project`'s PyPI files that are the `build` build (by suffix)."""
        files = set()
        for release in self.compat.releases:
            version = getattr(release, project) if project != "torch" else release.version
            for machine, pypi_build in (
                ("x86_64", release.pypi_cuda),
                ("aarch64", release.pypi_arm64),
            ):
                if version and self.compat.index_suffix(pypi_build) == build:
                    files.add((version, machine))
        return files

    def entries(self, build: str, project: str) -> list[tuple[str, str | None]]:
        """(file name, PyPI <a> tag or None for a local file) served at /whl/<build>/<project>/."""
        project = normalize(project)
        local = [
            (name, None)
            for name in self.files
            if normalize(WHEEL.match(name)["project"]) == project
            and WHEEL.match(name)["build"] == build
        ]
        files = self.pypi_files(build, project) if project in TORCH_PROJECTS else set()
        remote = [
            (name, tag)
            for name, tag in (pypi_links(project) if files else ())
            if name.endswith(".whl")
            and any(WHEEL.match(name)["version"] == v and machine in name for v, machine in files)
        ]
        return local + remote

    def missing(self, plan: TorchPlan, machine: str = "x86_64") -> list[str]:
        """The plan's torch packages this index cannot serve for its Python, as 'name version'."""
        return [
            f"{name} {version}"
            for name, version in plan.packages.items()
            if not any(
                WHEEL.match(f)["version"] == version and runs_on(f, plan.python, machine)
                for f, _ in self.entries(plan.index_suffix, name)
            )
        ]

    def page(self, path: str) -> tuple[int, str, bytes]:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[0] == "whl":
            rows = [tag or self.local_link(name) for name, tag in self.entries(parts[1], parts[2])]
            if rows:
                body = "\n".join(rows)
                return (
                    200,
                    "text/html",
                    f"<!DOCTYPE html><html><body>\n{body}\n</body></html>\n".encode(),
                )
        elif len(parts) == 2 and parts[0] == "files":
            name = parts[1]
            if name.endswith(".metadata") and name.removesuffix(".metadata") in self.files:
                return 200, "text/plain", wheel_metadata(self.files[name.removesuffix(".metadata")])
            if name in self.files:
                return 200, "application/octet-stream", b""  # streamed by the handler
        return 404, "text/plain", b"not found"

    def local_link(self, name: str) -> str:
        path = self.files[name]
        meta = hashlib.sha256(wheel_metadata(path)).hexdigest()
        return (
            f'<a href="/files/{html.escape(name)}#sha256={sha256(path)}" '
            f'data-dist-info-metadata="sha256={meta}" data-core-metadata="sha256={meta}">'
            f"{html.escape(name)}</a><br>"
        )

    def start(self, ports: range = PORTS) -> str:
        """Serve on the first free port of `ports` (any free one after them); return the URL."""
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = urllib.parse.unquote(self.path.split("?")[0])
                status, ctype, body = index.page(path)
                if status == 200 and ctype == "application/octet-stream":
                    file = index.files[path.rsplit("/", 1)[-1]]
                    index.downloads.append(file.name)
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(file.stat().st_size))
                    self.end_headers()
                    with file.open("rb") as f:
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
        print(f"template_testing: offline torch wheel index at {self.url}", file=sys.stderr)
        return self.url

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
