"""Micro-batching: texts from concurrent requests share one model call, run off the event loop.

One worker task takes whatever is queued (up to ``max_items``), runs the model on a single dedicated
thread and hands each request its own result. One model call at a time is deliberate: onnxruntime already
spreads a call over its intra-op threads, and two sessions' threads fighting over 2 cores slow both down
(DESIGN.md, "Facts"). While a call runs, new requests queue up and form the next batch, so an idle
server adds no wait; ``wait_ms`` > 0 trades latency for bigger batches.

          request ─┐
          request ─┼─► queue ─► worker task ─► [1 thread] engine.predict(batch) ─► futures
          request ─┘
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Callable, Optional, Sequence

logger = logging.getLogger(__name__)


class ShuttingDown(RuntimeError):
    """The server is stopping; the request was not run."""


class MicroBatcher:
    def __init__(self, predict: Callable[[Sequence[str]], list[dict]], max_items: int = 32, wait_ms: float = 0.0):
        self._predict = predict
        self._max_items = max_items
        self._wait_s = wait_ms / 1000.0
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-infer")
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._queue: Optional[asyncio.Queue] = None
        self._task: Optional[asyncio.Task] = None
        self._closed = False
        self.batches = 0
        self.items = 0
        self.largest_batch = 0

    def _ensure_started(self) -> None:
        # Bound to the loop that first submits (uvicorn's, or a TestClient's); restarted if that loop changed.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run(), name="serve-micro-batcher")

    async def submit(self, text: str) -> dict[str, Any]:
        """The model's result for ``text``; raises what the model raised, or ShuttingDown."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        self._ensure_started()
        future = self._loop.create_future()
        self._queue.put_nowait((text, future))
        return await future

    async def call(self, fn: Callable, *args) -> Any:
        """Run ``fn(*args)`` on the inference thread (between batches), e.g. the warm-up request."""
        if self._closed:
            raise ShuttingDown("the server is shutting down")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _collect(self) -> list[tuple[str, asyncio.Future]]:
        batch = [await self._queue.get()]
        deadline = self._loop.time() + self._wait_s
        while len(batch) < self._max_items:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            # A client that disconnected cancelled its future: do not spend the model on it.
            batch = [(text, fut) for text, fut in batch if not fut.done()]
            if not batch:
                continue
            try:
                results = await self._loop.run_in_executor(self._executor, self._predict, [t for t, _ in batch])
                answered = list(zip(batch, results, strict=True))  # one result per text, else a model failure
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(ShuttingDown("the server is shutting down"))
                raise
            except Exception as exc:  # the model failed: each waiting request gets the error, the worker lives on
                logger.exception("inference failed for a batch of %d", len(batch))
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            for (_, fut), result in answered:
                if not fut.done():
                    fut.set_result(result)

    def stats(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "texts": self.items,
            "mean_batch": round(self.items / self.batches, 2) if self.batches else 0.0,
            "largest_batch": self.largest_batch,
        }

    async def close(self) -> None:
        """Stop taking work, fail what is still queued, let a running model call finish."""
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:  # _run catches a model's errors: cancelling is its only way out
                pass
        if self._queue is not None:
            while not self._queue.empty():
                _, fut = self._queue.get_nowait()
                if not fut.done():
                    fut.set_exception(ShuttingDown("the server is shutting down"))
        self._executor.shutdown(wait=True)
