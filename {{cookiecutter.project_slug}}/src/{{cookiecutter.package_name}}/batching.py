"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests queue their rows (named tensors, batch first; BYTES: lists); one worker takes whatever
is queued (up to `max_rows` rows), waits at most `max_wait_s` for more when the queue runs dry
while other requests are still on their way (`in_flight()` counts them), runs the batch in the
inference thread, and hands each caller exactly its own rows back. Under load batches fill while the
previous one runs; a request alone does not wait at all.

Only requests of the same shape past the batch dimension share a pass (a model with a -1
dimension, e.g. sequences of any length, gets each length batched with its own); the others
wait, in their order, for the next pass, which starts with the oldest of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

from .seam import Tensors

Predict = Callable[[Tensors], Tensors]
Queued = tuple[Tensors, asyncio.Future]


def rows_of(tensors: Tensors) -> int:
    return len(next(iter(tensors.values())))


def row_shapes(tensors: Tensors) -> tuple:
    """What must match for requests to share a pass: each input's shape past the batch (a BYTES
    input, a list, has none: any values batch together)."""
    return tuple(
        (name, () if isinstance(rows, list) else rows.shape[1:]) for name, rows in tensors.items()
    )


def concat(parts: list[Tensors]) -> Tensors:
    """The parts' rows in order: tensors concatenated, BYTES lists joined."""
    return {
        name: [v for part in parts for v in part[name]]
        if isinstance(parts[0][name], list)
        else torch.cat([part[name] for part in parts])
        for name in parts[0]
    }


def slice_rows(tensors: Tensors, start: int, stop: int) -> Tensors:
    return {name: tensor[start:stop] for name, tensor in tensors.items()}


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        max_rows: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] = lambda rows: None,
        on_depth: Callable[[int], None] = lambda depth: None,
        in_flight: Callable[[], int] = lambda: 0,
    ) -> None:
        self.predict = predict
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.on_depth = on_depth  # told the queue's depth whenever it changes
        self.in_flight = in_flight  # requests being answered, queued or not
        # One inference thread: torch parallelises inside it (torch.set_num_threads).
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.queue: asyncio.Queue[Queued] = asyncio.Queue()
        self.held: deque[Queued] = deque()  # taken from the queue, left for a later pass
        self.worker: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Requests waiting for a batch."""
        return self.queue.qsize() + len(self.held)

    def start(self) -> None:
        if self.max_rows and self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker and the inference thread."""
        if self.worker:
            while self.depth:
                await asyncio.sleep(0.005)
            self.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.worker
        self.executor.shutdown(wait=True)

    async def __call__(self, rows: Tensors) -> Tensors:
        loop = asyncio.get_running_loop()
        if not self.max_rows:  # batching off: one forward pass per request
            self.on_batch(rows_of(rows))
            return await loop.run_in_executor(self.executor, self.predict, rows)
        future = loop.create_future()
        self.queue.put_nowait((rows, future))
        self.on_depth(self.depth)
        return await future

    async def _next(self, timeout: float | None) -> Queued | None:
        """The next request from the queue, waiting at most `timeout` seconds (None: for ever)."""
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout is not None and timeout <= 0:
            return None
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({getter}, timeout=timeout)
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    async def _batch(self) -> list[Queued]:
        """The oldest request and those that may share its pass: same row shapes, at most
        `max_rows` rows in all (one request larger than that goes alone)."""
        loop = asyncio.get_running_loop()
        first = self.held.popleft() if self.held else await self._next(timeout=None)
        batch, rows, shapes = [first], rows_of(first[0]), row_shapes(first[0])
        later: list[Queued] = []

        def fits(item: Queued) -> bool:
            return rows + rows_of(item[0]) <= self.max_rows and row_shapes(item[0]) == shapes

        while self.held and rows < self.max_rows:  # held ones are older than the queue's
            item = self.held.popleft()
            if fits(item):
                batch.append(item)
                rows += rows_of(item[0])
            else:
                later.append(item)
        deadline = loop.time() + self.max_wait_s
        while rows < self.max_rows:
            # Wait for more only while requests not yet queued are on their way.
            coming = self.in_flight() > len(batch) + len(later) + self.depth
            item = await self._next(deadline - loop.time() if coming else 0)
            if item is None:
                break
            if fits(item):
                batch.append(item)
                rows += rows_of(item[0])
            else:
                later.append(item)
                if row_shapes(item[0]) == shapes:
                    break  # the batch is full
        self.held.extendleft(reversed(later))  # oldest first, before the ones held earlier
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._batch()
            self.on_depth(self.depth)
            waiting = [(r, f) for r, f in batch if not f.done()]  # callers may have gone
            if not waiting:
                continue
            self.on_batch(sum(rows_of(r) for r, _ in waiting))
            try:
                inputs = concat([r for r, _ in waiting])
                outputs = await loop.run_in_executor(self.executor, self.predict, inputs)
            except Exception as error:  # each caller gets the error of its batch
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
                continue
            start = 0
            for r, future in waiting:
                if not future.done():
                    future.set_result(slice_rows(outputs, start, start + rows_of(r)))
                start += rows_of(r)
