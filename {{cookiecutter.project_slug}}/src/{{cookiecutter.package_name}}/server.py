"""The HTTP server around the app: uvicorn, with the limits it lacks for slow and silent clients.

uvicorn closes idle keep-alive connections, but not a connection that never finishes its request
line and headers, and it accepts connections until the process runs out of file descriptors.
GuardedH11Protocol (uvicorn's own h11 protocol, given to it as `http=`) adds both: the request
head must arrive within HEADER_TIMEOUT_S (and be at most 16 KiB), and past MAX_CONNECTIONS a new
connection is closed at once; an answer the client does not read is dropped after
WRITE_TIMEOUT_S. The request body's deadline is the app's (http_errors.read_body).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import shutil
import socket
import struct
import tempfile
import time
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from . import logs
from .settings import Settings

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors kept for the model, logs, threads and the listening socket
QUIET_S = 10.0  # at most one log line per this many seconds for each kind of refused connection
MAX_HEAD_BYTES = 16 * 1024  # request line and headers, however they arrive
LINGER_S = 2.0  # after an answer that closes early, what the client still sends is read (and
# dropped) this long, so that its send does not fail and it reads the answer (a 413, say)
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 53\r\n\r\n"
    b'{"detail": "request head past 16 KiB", "errors": []}\n'
)


class RateLimitedLog:
    """Log a recurring event at most once per QUIET_S, with how often it happened meanwhile."""

    def __init__(self, message: str) -> None:
        self.message, self.count, self.last = message, 0, -QUIET_S

    def __call__(self) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= QUIET_S:
            log.warning("%s (%d times in the last %.0f s)", self.message, self.count, QUIET_S)
            self.count, self.last = 0, now


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float
    write_timeout_s: float  # an answer that does not drain for this long is dropped
    max_connections: int  # held at once; past it a new connection is closed at once
    backlog: int  # connections the kernel queues, and asyncio accepts in one go


@functools.cache
def limits() -> Limits:
    """This process's limits, from the environment (uvicorn's workers are spawned processes that
    get the protocol class, not its settings). asyncio accepts up to `backlog` connections before
    the protocol sees any of them, so the connections held and the backlog together stay within
    the descriptors this process has: accept() never runs out."""
    settings = Settings.from_env()
    budget = settings.max_connections or descriptor_budget()
    backlog = max(16, min(2048, budget // 8))
    held = settings.max_connections or budget - backlog
    return Limits(float(settings.header_timeout_s), float(settings.write_timeout_s), held, backlog)


class QuietInvalidRequests:
    """uvicorn's logger, its warning for each malformed request at most once per QUIET_S."""

    invalid = RateLimitedLog("malformed HTTP requests refused with 400")

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def warning(self, message: str, *args, **kwargs) -> None:
        if message.startswith("Invalid HTTP request"):
            self.invalid()
        else:
            self.logger.warning(message, *args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.logger, name)


class LingeringClose:
    """The connection's transport, whose close() after an answer sent before the request's body
    was read first half-closes (FIN), reads and drops what the client still sends for up to
    LINGER_S, then closes: closed at once, the kernel would answer the client's next bytes with
    a reset that loses the answer (Python's http.client reads only after sending)."""

    def __init__(self, transport, protocol: GuardedH11Protocol) -> None:
        self.transport, self.protocol = transport, protocol

    def close(self) -> None:
        p = self.protocol
        unread_body = p.conn.their_state is h11.SEND_BODY
        if p.lingering or not unread_body or not self.transport.can_write_eof():
            self.transport.close()
            return
        p.lingering = True
        self.transport.write_eof()
        p.loop.call_later(LINGER_S, self.transport.close)

    def __getattr__(self, name: str):
        return getattr(self.transport, name)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline and a size limit for the request head, and a
    connection cap."""

    over_capacity = RateLimitedLog("connection limit reached: new connections closed")
    too_slow = RateLimitedLog("request head not received in time: connections closed")
    too_large = RateLimitedLog("request head past 16 KiB: 431, connections closed")
    not_read = RateLimitedLog("answers not read in time: connections dropped")

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = LingeringClose(transport, self)
        self.lingering = False
        self.logger = QuietInvalidRequests(self.logger)
        self.head_timer: asyncio.TimerHandle | None = None
        self.write_timer: asyncio.TimerHandle | None = None
        self.head_bytes = 0
        self.header_timeout_s = limits().header_timeout_s
        if len(self.connections) > limits().max_connections:
            self.over_capacity()
            transport.abort()
            return
        self.arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self.lingering:  # the rest of a refused body: dropped
            return
        if self.cycle is None or self.cycle.response_complete:
            self.arm_head_timer()  # bytes of a new request: its head has a deadline too
            if self.head_past_limit(data):
                return
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle:  # a request's head arrived
            self.disarm_head_timer()
            self.head_bytes = 0

    def head_past_limit(self, data: bytes) -> bool:
        """Count the head's bytes however they arrive (h11's own limit holds only while a head
        is incomplete: 10,000 headers in one write passed it); past the limit, 431 and close
        before anything parses them."""
        end = data.find(b"\r\n\r\n")
        self.head_bytes += len(data) if end < 0 else end + 4
        if self.head_bytes <= MAX_HEAD_BYTES:
            return False
        self.too_large()
        self.disarm_head_timer()
        self.transport.write(HEAD_TOO_LARGE)
        self.transport.close()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_head_timer()
        if self.write_timer is not None:
            self.write_timer.cancel()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client is not reading its answer: the rest waits in memory until it does, or
        until WRITE_TIMEOUT_S, when the connection and what it holds are dropped."""
        super().pause_writing()
        if self.write_timer is None:
            self.write_timer = self.loop.call_later(limits().write_timeout_s, self.answer_not_read)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None

    def answer_not_read(self) -> None:
        self.write_timer = None
        self.not_read()
        sock = self.transport.get_extra_info("socket")
        if sock is not None:  # a reset: the kernel drops what it still holds for the client too
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    def arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.header_timeout_s, self.head_too_slow)

    def disarm_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_too_slow(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.too_slow()
            self.transport.abort()


def descriptor_budget() -> int:
    """Descriptors this process can give connections: its open-file limit, raised to the hard
    limit (as Go and nginx do), less a reserve for everything else."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: keep the soft one
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(16, soft - max(FD_RESERVE, soft // 8))


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio logs a traceback for every accept() that fails for lack of descriptors; log one
    line per QUIET_S instead. Other loop errors keep the default handling."""
    out_of_descriptors = RateLimitedLog("out of file descriptors: accept() paused")

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if "out of system resource" in context.get("message", ""):
            out_of_descriptors()
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def multiprocess_metrics(settings: Settings) -> None:
    """With several workers, prometheus-client keeps the metrics of every process in files in
    PROMETHEUS_MULTIPROC_DIR, so that each scrape adds them up. Made empty at start-up; the
    workers inherit the variable."""
    if settings.workers < 2:
        return
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metrics-")


def run(host: str, port: int, settings: Settings) -> None:
    import uvicorn

    multiprocess_metrics(settings)
    uvicorn.run(
        "{{ cookiecutter.package_name }}.service:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        http=GuardedH11Protocol,
        backlog=limits().backlog,
        log_config=logs.config(settings.log_format, settings.log_level),
        timeout_keep_alive=5,  # idle keep-alive connections close after 5 s
        timeout_graceful_shutdown=30,  # on SIGTERM: stop accepting, finish in-flight requests
        h11_max_incomplete_event_size=16 * 1024,  # request line and headers at most 16 KiB
    )
