"""Serving: `kerasllm serve` — TF Serving's REST and gRPC APIs, an OpenAI-compatible
API, dynamic batching, feedback in SQLite and a playground page.

    kerasllm serve --model-base-path saved_models/tiny --feedback-db feedback.sqlite
    curl localhost:8501/v1/models/tiny
    curl localhost:8501/v1/completions -d '{"model": "tiny", "prompt": "def "}'

Python:

    state = kerasllm.serving.build_state(model_base_path="saved_models/tiny")
    kerasllm.serving.serve(state, rest_port=8501, grpc_port=8500)

See docs/serving.md.
"""

from kerasllm.serving.content_filter import OutputFilter
from kerasllm.serving.feedback_store import FeedbackStore
from kerasllm.serving.model_config import ModelSpec, parse_model_config, read_model_config
from kerasllm.serving.model_manager import ModelManager
from kerasllm.serving.server import build_state, serve
from kerasllm.serving.state import ServerConfig, ServerState

__all__ = [
    "FeedbackStore",
    "ModelManager",
    "ModelSpec",
    "OutputFilter",
    "ServerConfig",
    "ServerState",
    "build_state",
    "parse_model_config",
    "read_model_config",
    "serve",
]
