"""`serve`: the model manager, the HTTP app under uvicorn and the gRPC server, together.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections and waits up to
`shutdown_timeout` seconds for in-flight requests (streams included) to
finish; then the gRPC server gets the same grace, and the models unload.
"""

import logging
import pathlib

from kerasllm.serving.model_config import read_model_config, spec_from_flags
from kerasllm.serving.model_manager import ModelManager
from kerasllm.serving.state import ServerConfig, ServerState

log = logging.getLogger("kerasllm.serving")


def build_state(
    *,
    model_base_path=None,
    model_name=None,
    model_config_file=None,
    config=None,
    feedback_db=None,
    output_filter=None,
    backend="local",
    backend_url=None,
    servables=None,
):
    """A `ServerState` (models not loaded yet; call `state.manager.start()`).

    `servables` maps more names to servables built in memory (served as
    version 1 beside the models on disk; see `ModelManager.add_servable`).
    """
    config = config or ServerConfig()
    servables = dict(servables or {})
    if model_config_file:
        specs = read_model_config(model_config_file)
    elif model_base_path:
        specs = [spec_from_flags(model_base_path, model_name)]
    elif servables:
        specs = []
    else:
        raise ValueError("Give --model-base-path, --model-config-file or --constellation.")
    if servables and backend != "local":
        raise ValueError(f"Servables built here run with the local backend. Received: backend={backend!r}")
    if backend == "tfserving":
        from kerasllm.serving.remote import RemoteManager

        if not backend_url:
            raise ValueError("--backend tfserving needs --backend-url http://HOST:8501")
        manager = RemoteManager(specs, backend_url)
    elif backend == "local":
        for spec in specs:
            if not pathlib.Path(spec.base_path).is_dir():
                raise FileNotFoundError(f"Model {spec.name!r}: no directory at {spec.base_path}")
        manager = ModelManager(specs, poll_seconds=config.poll_seconds, jit_compile=config.jit_compile)
    else:
        raise ValueError(f"backend must be local or tfserving. Received: {backend!r}")
    store = None
    if feedback_db:
        from kerasllm.serving.feedback_store import FeedbackStore

        store = FeedbackStore(feedback_db)
    state = ServerState(manager, config, feedback=store, output_filter=output_filter)
    for name, servable in servables.items():
        manager.add_servable(name, servable)
    return state


def serve(state, *, host="127.0.0.1", rest_port=8501, grpc_port=8500, log_level="info", ready=None,
          on_server=None):
    """Load the models, then serve REST (and gRPC unless `grpc_port` is None) until stopped.

    Args:
        state: a `ServerState` from `build_state`.
        host: the address to bind. Defaults to `"127.0.0.1"` (this machine only).
        rest_port, grpc_port: ports; 0 picks a free one.
        ready: called with `(rest_port, grpc_port)` once both listen.
        on_server: called with the `uvicorn.Server` before it runs (to stop
            it from another thread: `server.should_exit = True`).
    """
    import uvicorn

    from kerasllm.serving.app import make_app
    from kerasllm.serving.grpc_server import start_grpc_server

    state.manager.start()
    grpc_server = None
    if grpc_port is not None:
        grpc_server = start_grpc_server(state, host, grpc_port)
        log.info("gRPC on %s:%s", host, grpc_server.port)
    server = uvicorn.Server(
        uvicorn.Config(
            make_app(state),
            host=host,
            port=rest_port,
            log_level=log_level,
            timeout_graceful_shutdown=state.config.shutdown_timeout,
            access_log=False,
        )
    )
    if on_server is not None:
        on_server(server)
    if ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets=sockets)
            port = server.servers[0].sockets[0].getsockname()[1] if server.servers else rest_port
            ready(port, grpc_server.port if grpc_server else None)

        server.startup = startup
    _keep_running_after_signals()
    try:
        server.run()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=state.config.shutdown_timeout).wait()
        state.manager.close()


def _keep_running_after_signals():
    """Let `serve` finish its own shutdown after uvicorn's.

    uvicorn drains HTTP on SIGTERM / SIGINT, restores the previous handlers and
    raises the signal again; with the default handlers that would end the
    process before the gRPC server drains and the models unload. Handlers that
    do nothing make that second delivery harmless (main thread only).
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)


class BackgroundServer:
    """`serve` in a thread, for tests and benchmarks: `with BackgroundServer(state) as s:`.

    Attributes:
        url: `http://127.0.0.1:PORT`.
        grpc_port: the gRPC port.
    """

    def __init__(self, state, host="127.0.0.1", grpc=True):
        import threading

        self.state = state
        self._ready = threading.Event()
        self._server = None
        self.error = None

        def ready(rest_port, grpc_port):
            self.url = f"http://{host}:{rest_port}"
            self.grpc_port = grpc_port
            self._ready.set()

        def run():
            try:
                serve(state, host=host, rest_port=0, grpc_port=0 if grpc else None,
                      log_level="warning", ready=ready, on_server=self._keep)
            except BaseException as error:  # noqa: BLE001 (reported by __enter__)
                self.error = error
                self._ready.set()

        self._thread = threading.Thread(target=run, name="kerasllm-serve", daemon=True)

    def _keep(self, server):
        self._server = server

    def __enter__(self):
        self._thread.start()
        self._ready.wait(600)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=60)
