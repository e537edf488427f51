"""Service settings, from the environment: one place, checked once at start-up."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """A setting with a value the service cannot use; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    model_path: Path = Path("artifacts/model.pt")
    max_body_bytes: int = 1 << 20  # a larger request body gets 413 before it is read
    max_concurrency: int = 64  # /predict requests in flight; one more gets 503 + Retry-After
    max_batch_rows: int = 256  # rows gathered into one forward pass; 0 turns batching off
    max_batch_wait_ms: int = 2  # how long a batch waits for more rows once the queue is empty
    torch_threads: int = 0  # torch's intra-op threads; 0 = this process's share of the CPUs
    workers: int = 1  # server processes (WEB_CONCURRENCY)
    log_format: str = "text"  # or "json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        log_format = env.get("LOG_FORMAT", "text").lower()
        if log_format not in ("text", "json"):
            raise SettingsError(f"LOG_FORMAT={log_format!r}: use text or json")
        return cls(
            model_path=Path(env.get("MODEL_PATH", str(cls.model_path))),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes, 1024),
            max_concurrency=_int(env, "MAX_CONCURRENCY", cls.max_concurrency, 1),
            max_batch_rows=_int(env, "MAX_BATCH_ROWS", cls.max_batch_rows, 0),
            max_batch_wait_ms=_int(env, "MAX_BATCH_WAIT_MS", cls.max_batch_wait_ms, 0),
            torch_threads=_int(env, "TORCH_NUM_THREADS", cls.torch_threads, 0),
            workers=_int(env, "WEB_CONCURRENCY", cls.workers, 1),
            log_format=log_format,
        )

    def intra_op_threads(self) -> int:
        """torch threads per process: set, or the CPUs this process may use shared among the
        workers, so that workers x threads never oversubscribes the cores."""
        if self.torch_threads:
            return self.torch_threads
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, (cpus or 1) // self.workers)
