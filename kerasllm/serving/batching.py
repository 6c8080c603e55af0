"""Dynamic batching: concurrent generation requests run as rows of one batch.

Like TF Serving's batching (`max_batch_size`, `batch_timeout_micros`): a
worker thread takes the first waiting request, waits up to the batch timeout
for more (at most `max_batch_size` in all), and runs them as one call of the
engine, which groups rows that can share a compiled program. With
`max_batch_size=1` every request runs alone, in arrival order.

Streams do not join a batch: each of their decode steps takes the engine's
lock between batches, so a stream and a batch interleave step by step.
"""

import collections
import concurrent.futures
import threading
import time

from kerasllm.serving.errors import exhausted


class Batcher:
    """Queues `GenerationRequest`s for one engine and runs them in batches.

    Args:
        engine: a `kerasllm.serving.engines.Engine`.
        max_batch_size: most requests in one batch. Defaults to `8`.
        batch_timeout_ms: how long the first request of a batch waits for
            others. Defaults to `5`.
        max_queue: requests waiting beyond this are refused (429). Defaults
            to `256`.
    """

    def __init__(self, engine, max_batch_size=8, batch_timeout_ms=5.0, max_queue=256):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1. Received: {max_batch_size}")
        self.engine = engine
        self.max_batch_size = int(max_batch_size)
        self.batch_timeout = float(batch_timeout_ms) / 1000.0
        self.max_queue = int(max_queue)
        self._queue = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self.batches = 0  # how many batches ran (and rows in them), for tests and stats
        self.rows = 0
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, request):
        """A `concurrent.futures.Future` of the request's `GenerationResult`."""
        future = concurrent.futures.Future()
        with self._ready:
            if len(self._queue) >= self.max_queue:
                raise exhausted(
                    f"Too many requests waiting ({len(self._queue)}, the limit is "
                    f"{self.max_queue}); retry later."
                )
            self._queue.append((request, future))
            self._ready.notify()
            if not self._thread.is_alive():
                # Closed and drained while this request was on its way (a
                # version swap): a fresh worker drains it.
                self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
                self._thread.start()
        return future

    def close(self):
        """Stop taking the thread's turn once the queue is empty (queued work finishes)."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def _take(self):
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            batch = [self._queue.popleft()]
            deadline = time.monotonic() + self.batch_timeout
            while len(batch) < self.max_batch_size:
                if self._queue:
                    batch.append(self._queue.popleft())
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            return batch

    def _run(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            batch = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                with self.engine.lock:
                    results = self.engine.generate_batch([r for r, _ in batch])
            except BaseException as error:  # noqa: BLE001 (the callers get it)
                results = [error] * len(batch)
            self.batches += 1
            self.rows += len(batch)
            for (_, future), result in zip(batch, results):
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
