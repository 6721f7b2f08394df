"""Micro-batching: concurrent requests share one forward pass.

Each request puts its preprocessed image on an asyncio queue and awaits a future. One task takes the first waiting
image, then keeps collecting until it has ``max_batch`` images or ``max_wait_ms`` has passed since the first, runs
the batch in a worker thread (so the event loop keeps accepting requests meanwhile) and resolves every future
with its own row. While a batch runs, the next one fills up, so under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class MicroBatcher:
    """Collects single images into batches for ``forward(uint8 (N, C, H, W)) -> (N, K)``.

    Args:
        forward: the batched model call; runs in one dedicated thread, one batch at a time.
        max_batch: images per forward pass at most.
        max_wait_ms: how long the first image of a batch waits for company.
        on_batch: called with (batch size, seconds) after each forward pass (for metrics).
    """

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch: int = 32, max_wait_ms: float = 5.0,
                 on_batch: Callable[[int, float], None] | None = None):
        self.forward = forward
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self._executor: ThreadPoolExecutor | None = None
        self._outstanding = 0  # submitted and not yet answered
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        return 0 if self._queue is None else self._queue.qsize()

    @property
    def alive(self) -> bool:
        return self._task is None or not self._task.done()

    def start(self) -> None:
        """Start the batching task on the running loop (again, if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="imgclf-forward")
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._task = loop.create_task(self._run(), name="imgclf-micro-batcher")

    async def submit(self, image: np.ndarray) -> np.ndarray:
        """The model's output row for one preprocessed uint8 (C, H, W) image."""
        self.start()
        future = self._loop.create_future()
        self._queue.put_nowait((image, future))
        self._outstanding += 1
        try:
            return await future
        finally:
            self._outstanding -= 1

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        items = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(items) < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                while len(items) < self.max_batch and not self._queue.empty():  # take what already waits
                    items.append(self._queue.get_nowait())
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                continue
        return [(img, fut) for img, fut in items if not fut.done()]  # a client that went away was cancelled

    async def _run(self) -> None:
        while True:
            items = await self._collect()
            if not items:
                continue
            start = time.perf_counter()
            try:
                batch = np.stack([img for img, _ in items])
                out = await self._loop.run_in_executor(self._executor, self.forward, batch)
            except Exception as exc:  # a failed forward pass fails its requests, never the batcher
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            if self.on_batch:
                self.on_batch(len(items), time.perf_counter() - start)
            for (_, fut), row in zip(items, out, strict=True):
                if not fut.done():
                    fut.set_result(row)

    async def close(self, timeout: float = 30.0) -> None:
        """Stop batching; images already submitted are answered first (waiting ``timeout`` seconds at most)."""
        if self._task is not None and not self._task.done():
            deadline = time.monotonic() + timeout
            while self._outstanding and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
