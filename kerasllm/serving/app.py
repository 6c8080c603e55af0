"""The HTTP application: TF Serving REST, the OpenAI API, feedback and the playground.

`make_app(state)` returns a Starlette ASGI app; `kerasllm.serving.serve`
runs it under uvicorn beside the gRPC server.

Routes:
    GET  /                                  the playground page
    GET  /v1/models                         OpenAI model list
    GET  /v1/models/NAME[...][/metadata]    TF Serving status / metadata
    POST /v1/models/NAME[...]:predict       TF Serving predict
    POST /v1/completions                    OpenAI completions
    POST /v1/chat/completions               OpenAI chat completions
    POST /v1/feedback                       rating or better answer for a completion id
    GET  /healthz                           200 when every model has a version available
"""

import hmac

from starlette.applications import Starlette
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from kerasllm.serving import openai_api, tf_serving_api


class Limits:
    """ASGI middleware: API key check and request body size limit."""

    def __init__(self, app, state):
        self.app = app
        self.state = state

    @staticmethod
    def _error(path, status, message):
        if path.startswith("/v1/models/"):
            body = {"error": message}
        else:
            body = {"error": {"message": message, "type": openai_api.ERROR_TYPES.get(status, "error"),
                              "param": None, "code": None}}
        return JSONResponse(body, status_code=status)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        config = self.state.config
        headers = dict(scope["headers"])
        if config.api_key and path.startswith("/v1/"):
            given = headers.get(b"authorization", b"").decode("latin-1")
            expected = f"Bearer {config.api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                response = self._error(path, 401, "Missing or wrong API key: send Authorization: Bearer KEY.")
                return await response(scope, receive, send)
        limit = config.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            response = self._error(path, 413, f"The request body is larger than {limit} bytes (--max-body-bytes).")
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            response = self._error(path, 413, f"The request body is larger than {limit} bytes (--max-body-bytes).")
            await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def make_app(state):
    """The Starlette app over a `ServerState`."""
    from kerasllm.serving.playground import PLAYGROUND_HTML

    def bind(handler):
        async def endpoint(request):
            return await handler(request, state)

        return endpoint

    async def playground(request):
        return HTMLResponse(PLAYGROUND_HTML)

    async def healthz(request):
        missing = [n for n in state.manager.names() if not state.manager.available(n)]
        status = 503 if missing else 200
        return JSONResponse({"status": "unavailable" if missing else "ok", "unavailable": missing},
                            status_code=status)

    routes = [
        Route("/", playground, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/models", bind(openai_api.list_models), methods=["GET"]),
        Route("/v1/models/{path:path}", bind(tf_serving_api.get_model), methods=["GET"]),
        Route("/v1/models/{path:path}", bind(tf_serving_api.post_model), methods=["POST"]),
        Route("/v1/completions", bind(openai_api.completions), methods=["POST"]),
        Route("/v1/chat/completions", bind(openai_api.chat_completions), methods=["POST"]),
        Route("/v1/feedback", bind(openai_api.feedback), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.server = state
    return Limits(app, state)

