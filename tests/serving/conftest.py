"""Fixtures of the serving tests: one tiny model, its export, one running server.

The model directory and the export are made once per session; the server
(REST + gRPC on free loopback ports, feedback in a temporary SQLite file)
serves both: `tiny` (the export's version folders) and `tinydir` (the
kerasllm model directory, through the compiled Generator).
"""

import shutil

import pytest

pytestmark = pytest.mark.tf_only


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory):
    from kerasllm.export import export_saved_model
    from serving.support import make_model_dir

    root = tmp_path_factory.mktemp("serving")
    model_dir, model = make_model_dir(root)
    export_saved_model(model, root / "saved_models", name="tiny", max_new_tokens=16)
    # A second version folder copy, for swap tests (same weights: same answers).
    return {"root": root, "model_dir": model_dir, "model": model,
            "base_path": root / "saved_models" / "tiny"}


@pytest.fixture(scope="session")
def server(artifacts, tmp_path_factory):
    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.content_filter import OutputFilter
    from kerasllm.serving.server import BackgroundServer

    work = tmp_path_factory.mktemp("server")
    # The test server serves a copy, so tests may add and remove versions.
    base = work / "tiny"
    shutil.copytree(artifacts["base_path"], base)
    config_file = work / "models.config"
    config_file.write_text(
        "model_config_list {\n"
        f'  config {{ name: "tiny" base_path: "{base}" model_platform: "tensorflow" }}\n'
        f'  config {{ name: "tinydir" base_path: "{artifacts["model_dir"]}" }}\n'
        "}\n"
    )
    config = ServerConfig(jit_compile=False, poll_seconds=0.5, max_batch_size=8, batch_timeout_ms=20,
                          shutdown_timeout=5)
    state = build_state(model_config_file=config_file, config=config,
                        feedback_db=work / "feedback.sqlite",
                        output_filter=OutputFilter(["forbiddenword"]))
    with BackgroundServer(state) as running:
        running.work = work
        running.base = base
        running.db = work / "feedback.sqlite"
        yield running


@pytest.fixture(scope="session")
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client
