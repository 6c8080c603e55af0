"""`ServerConfig` (the limits and switches) and `ServerState` (what the routes share)."""

import dataclasses
import threading
from typing import Optional

from kerasllm.serving.batching import Batcher


@dataclasses.dataclass
class ServerConfig:
    """Settings of `kerasllm serve`; the command-line flags read their defaults here.

    Attributes:
        max_batch_size: most generation requests in one batch (1: no batching).
        batch_timeout_ms: how long a batch waits for more requests.
        max_queue: waiting generation requests beyond this get 429.
        api_key: when set, every `/v1/` call needs `Authorization: Bearer KEY`.
        max_body_bytes: larger request bodies get 413.
        max_prompt_tokens: longer prompts get 400 (the model's context is a
            limit too).
        max_tokens_limit: the largest `max_tokens` a request may ask for.
        max_n: the largest `n`.
        default_max_tokens: `max_tokens` of a completion that gives none
            (OpenAI's default); a chat completion without it gets the rest
            of the context, up to `max_tokens_limit`.
        jit_compile: compile model directories' decode programs with XLA.
        poll_seconds: seconds between scans of the model base paths.
        shutdown_timeout: seconds SIGTERM waits for in-flight requests.
    """

    max_batch_size: int = 8
    batch_timeout_ms: float = 5.0
    max_queue: int = 256
    api_key: Optional[str] = None
    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int = 4096
    max_tokens_limit: int = 1024
    max_n: int = 8
    default_max_tokens: int = 16
    jit_compile: bool = True
    poll_seconds: float = 1.0
    shutdown_timeout: float = 30.0


class ServerState:
    """The model manager, feedback store, output filter and counters of one server.

    Args:
        manager: a `ModelManager` (not started yet).
        config: a `ServerConfig`.
        feedback: a `FeedbackStore` or `None`.
        output_filter: an `OutputFilter` or `None`.
    """

    def __init__(self, manager, config, feedback=None, output_filter=None):
        self.manager = manager
        self.config = config
        self.feedback = feedback
        self.output_filter = output_filter
        self.active_streams = 0
        self.requests = 0
        self._lock = threading.Lock()
        manager.wrap = self._attach_batcher

    def _attach_batcher(self, spec, version, servable):
        if servable.engine is not None:
            servable.batcher = Batcher(
                servable.engine,
                max_batch_size=self.config.max_batch_size,
                batch_timeout_ms=self.config.batch_timeout_ms,
                max_queue=self.config.max_queue,
            )
            close = servable.close

            def close_all():
                servable.batcher.close()
                close()

            servable.close = close_all
        return servable

    def stream_opened(self):
        with self._lock:
            self.active_streams += 1

    def stream_closed(self):
        with self._lock:
            self.active_streams -= 1
