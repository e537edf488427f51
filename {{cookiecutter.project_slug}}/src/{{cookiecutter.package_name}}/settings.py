"""Service settings, from the environment: one place, checked once at start-up.

Each setting is declared once, below, with its variable, default and meaning; `serve --help`
lists them from here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A setting with a value the service cannot use; the message names it."""


def setting(env: str, default, help: str, minimum: int | None = None):
    return field(default=default, metadata={"env": env, "help": help, "minimum": minimum})


@dataclass(frozen=True)
class Settings:
    model_path: Path = setting(
        "MODEL_PATH", Path("artifacts/model.pt"), "the weights to serve: a checkpoint, a "
        ".safetensors file or a state_dict",
    )  # fmt: skip
    model_uri: str = setting(
        "MODEL_URI", "", "fetch the weights from here at start-up, before readiness, and serve "
        "them instead of MODEL_PATH: file://, http(s)://...#sha256=<hex>, s3:// or gs://",
    )  # fmt: skip
    model_cache_dir: Path = setting(
        "MODEL_CACHE_DIR", Path(tempfile.gettempdir()) / "{{ cookiecutter.project_slug }}-models",
        "where MODEL_URI's downloads are kept (a pinned one is reused)",
    )  # fmt: skip
    max_body_bytes: int = setting(
        "MAX_BODY_BYTES", 0, "a larger request body gets 413 before it is read (0: the largest "
        "JSON request the model's inputs allow, at least 1 MiB)", 0,
    )  # fmt: skip
    body_timeout_s: int = setting(
        "BODY_TIMEOUT_S", 5, "the request body must arrive within this; else 408 and close", 1
    )
    header_timeout_s: int = setting(
        "HEADER_TIMEOUT_S", 5, "request line and headers must arrive within this; else closed", 1
    )
    write_timeout_s: int = setting(
        "WRITE_TIMEOUT_S", 30, "an answer the client stops reading for this long is dropped, and "
        "its connection", 1,
    )  # fmt: skip
    max_connections: int = setting(
        "MAX_CONNECTIONS", 0, "open connections per process; more are closed at once "
        "(0: the open-file limit less a reserve)", 0,
    )  # fmt: skip
    max_concurrency: int = setting(
        "MAX_CONCURRENCY", 64, "/predict requests in flight per process; one more gets 503", 1
    )
    max_batch_rows: int = setting(
        "MAX_BATCH_ROWS", 256, "rows of concurrent requests in one forward pass (0: no batching)", 0
    )
    max_batch_wait_ms: int = setting(
        "MAX_BATCH_WAIT_MS", 2, "how long a batch waits for rows still on their way", 0
    )
    torch_threads: int = setting(
        "TORCH_NUM_THREADS", 0, "torch threads per process (0: this process's share of the CPUs)", 0
    )
    torch_compile: bool = setting(
        "TORCH_COMPILE", False, "1: serve through torch.compile, compiled before readiness "
        "(needs a C++ compiler: the runtime-compile image target)",
    )  # fmt: skip
    workers: int = setting("WEB_CONCURRENCY", 1, "server processes", 1)
    require_gpu: bool = setting(
        "REQUIRE_GPU", False, "1: never ready without a usable CUDA device (no CPU fallback)"
    )
    api_docs: bool = setting(
        "API_DOCS", True, "1: serve /docs, /redoc and /openapi.json (0 in production: the "
        "Kubernetes files set it; the API's schema is then not published)",
    )  # fmt: skip
    log_format: str = setting("LOG_FORMAT", "text", "text or json (one object a line)")
    log_level: str = setting("LOG_LEVEL", "INFO", ", ".join(LOG_LEVELS))

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        values = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in env:
                values[f.name] = parse(name, env[name], f.default, f.metadata["minimum"])
        return cls(**values).checked()

    def checked(self) -> Settings:
        log_format, log_level = self.log_format.lower(), self.log_level.upper()
        if log_format not in LOG_FORMATS:
            raise SettingsError(f"LOG_FORMAT={self.log_format!r}: use {' or '.join(LOG_FORMATS)}")
        if log_level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        return replace(self, log_format=log_format, log_level=log_level)

    def intra_op_threads(self) -> int:
        """torch threads per process: set, or the CPUs this process may use shared among the
        workers, so that workers x threads never oversubscribes the cores."""
        if self.torch_threads:
            return self.torch_threads
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, (cpus or 1) // self.workers)


def parse(name: str, raw: str, default, minimum: int | None):
    """One variable's text as the type of its default; SettingsError names it when it is not."""
    if isinstance(default, bool):
        if raw.strip().lower() not in ("0", "1", "true", "false", "yes", "no"):
            raise SettingsError(f"{name}={raw!r}: use 1 or 0")
        return raw.strip().lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not a whole number") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={value} must be at least {minimum}")
        return value
    return type(default)(raw)


def describe() -> str:
    """Every setting: variable, default and meaning, for `serve --help`."""
    lines = ["settings (environment variables):"]
    for f in fields(Settings):
        default = f.default
        shown = int(default) if isinstance(default, bool) else default
        lines.append(f"  {f.metadata['env']:<18} {f.metadata['help']} (default: {shown})")
    return "\n".join(lines)
