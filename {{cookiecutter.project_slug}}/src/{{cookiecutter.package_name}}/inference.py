"""The loaded model behind its batcher: start-up (device, optional torch.compile, warm-up),
admission (readiness, MAX_CONCURRENCY, bodies), and what readiness reports about it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import torch
from fastapi import Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .batching import MicroBatcher, rows_of
from .checkpoint import first_line, load_for_serving
from .gpu import Accelerator
from .http_errors import CLOSE, RETRY_AFTER_S, ModelFailed, read_body
from .metrics import MODEL_LABELS, Metrics
from .model import MODEL
from .seam import Tensors, to_device
from .settings import Settings, SettingsError

log = logging.getLogger(__name__)

MAX_ROWS = MODEL.max_rows()  # rows in one request, in either protocol
# Parsing or writing less than this many bytes takes less time than a hop to a worker thread.
INLINE_BYTES = 16 << 10
WARM_UP_ROWS = (1, 2)  # torch.compile specialises a batch of one; every larger batch shares one


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    model: str
    device: str
    torch: str
    cuda: str | None = Field(description="torch's CUDA build; null for a CPU build")
    driver: str | None = Field(description="the NVIDIA driver; null where there is none")
    gpu: str | None
    compiled: bool = Field(description="served through torch.compile (TORCH_COMPILE=1)")
    checkpoint: str


async def off_the_loop(size: int, function, *args):
    """function(*args) in a worker thread when `size` (bytes in or out) is large, so that the
    event loop never waits on it; inline when small, saving the hop (about 0.1 ms)."""
    if size <= INLINE_BYTES:
        return function(*args)
    return await run_in_threadpool(function, *args)


def output_bytes(outputs: Tensors) -> int:
    """About what the outputs take written out (JSON numbers: a few bytes each)."""
    return sum(
        sum(map(len, rows)) if isinstance(rows, list) else rows.numel() * 8
        for rows in outputs.values()
    )


def check_compiler(settings: Settings) -> None:
    """TORCH_COMPILE=1 needs a C++ compiler at run time (Inductor builds its kernels)."""
    if settings.torch_compile and not (shutil.which("g++") or shutil.which("c++")):
        raise SettingsError(
            "TORCH_COMPILE=1 needs a C++ compiler (g++), and this image has none: build the "
            "`runtime-compile` target (`docker build --target runtime-compile .`)"
        )


class Inference:
    def __init__(self, settings: Settings, checkpoint: Path, metrics: Metrics) -> None:
        self.settings, self.checkpoint, self.metrics = settings, checkpoint, metrics
        self.batcher: MicroBatcher | None = None
        self.readiness: Readiness | None = None
        self.not_ready = "the model is not loaded yet"
        self.in_flight = 0  # inference requests being answered, in either protocol
        self.body_limit = settings.max_body_bytes or MODEL.max_body_bytes()

    async def start(self, device: str | None) -> None:
        found = Accelerator.detect()
        if device is None and found.problem:
            if self.settings.require_gpu:
                self.not_ready = f"REQUIRE_GPU=1 and no usable GPU: {found.problem}"
                log.error("not ready: %s", self.not_ready)
                return
            if found.cuda_build:  # a CUDA image on the CPU: say so rather than serve slowly
                log.warning("serving on the CPU: %s", found.problem)
        dev = torch.device(device) if device else found.device
        torch.set_num_threads(self.settings.intra_op_threads())
        module = await run_in_threadpool(load_for_serving, self.checkpoint, dev)
        if self.settings.torch_compile:
            module = torch.compile(module, dynamic=True)

        def predict(inputs: Tensors) -> Tensors:
            rows = rows_of(inputs)
            try:
                with torch.inference_mode():
                    outputs = MODEL.predict(module, to_device(inputs, dev))
                outputs = to_device(outputs, torch.device("cpu"))
            except Exception as error:
                log.exception("predict() failed on a pass of %d rows", rows)
                raise ModelFailed(f"the model failed: {type(error).__name__}") from error
            if problem := MODEL.check_outputs(outputs, rows):
                log.error("on a pass of %d rows, %s", rows, problem)
                raise ModelFailed("the model's answer does not match its declared outputs")
            return outputs

        self.batcher = MicroBatcher(
            predict,
            self.settings.max_batch_rows,
            self.settings.max_batch_wait_ms / 1000,
            on_batch=self.metrics.batch_rows.observe,
            on_depth=self.metrics.queue_depth.set,
            in_flight=lambda: self.in_flight,
        )
        self.batcher.start()
        if not await self.warm_up():
            return
        self.readiness = Readiness(
            model=MODEL.name, device=str(dev), torch=torch.__version__, cuda=found.cuda_build,
            driver=found.driver, gpu=found.gpu if dev.type == "cuda" else None,
            compiled=self.settings.torch_compile, checkpoint=str(self.checkpoint),
        )  # fmt: skip
        labels = self.readiness.model_dump(include=set(MODEL_LABELS))
        self.metrics.model.labels(**{k: str(v or "") for k, v in labels.items()}).set(1)
        log.info("ready: %s", self.readiness.model_dump_json())

    async def warm_up(self) -> bool:
        """The first passes are the slow ones (and, compiled, the ones that compile): run them
        before readiness. A model that fails here stays unready, with the reason."""
        assert self.batcher is not None
        try:
            for rows in WARM_UP_ROWS:
                await self.batcher(MODEL.example_inputs(rows))
        except Exception as error:  # e.g. Inductor without a working compiler
            self.not_ready = f"the warm-up failed: {first_line(error.__cause__ or error)}"
            if self.settings.torch_compile:
                self.not_ready += " (TORCH_COMPILE=1: serve without it, or see the debug log)"
            log.error("not ready: %s", self.not_ready)
            log.debug("the warm-up's error", exc_info=error)
            batcher, self.batcher = self.batcher, None
            await batcher.stop()
            return False
        return True

    async def stop(self) -> None:
        batcher, self.batcher = self.batcher, None
        self.not_ready = "shutting down"
        if batcher:
            await batcher.stop()  # the server has stopped taking requests; finish the queued ones

    def ready_batcher(self) -> MicroBatcher:
        if self.batcher is None:
            raise HTTPException(503, self.not_ready, {"Retry-After": RETRY_AFTER_S})
        return self.batcher

    @asynccontextmanager
    async def admitted(self, request: Request) -> AsyncIterator[tuple[MicroBatcher, bytes]]:
        """An inference request let in: ready, under MAX_CONCURRENCY, its body read within the
        limits. Yields the batcher and the body; counts the request in flight until it ends."""
        batcher = self.ready_batcher()
        limit = self.settings.max_concurrency
        if self.in_flight >= limit:
            raise HTTPException(
                503, f"{limit} requests in flight; retry", {"Retry-After": RETRY_AFTER_S, **CLOSE}
            )
        self.in_flight += 1
        self.metrics.in_flight.inc()
        try:
            s = self.settings
            yield batcher, await read_body(request, self.body_limit, s.body_timeout_s)
        finally:
            self.in_flight -= 1
            self.metrics.in_flight.dec()
