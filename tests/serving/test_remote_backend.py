"""`--backend tfserving`: the front sends inference to a TF Serving REST endpoint.

The backend here is this package's own TF Serving REST API (the tests of
test_tf_serving_api.py hold it to TF Serving's format), so the front's
client side is exercised without a tensorflow_model_server binary.
"""

import pytest

pytestmark = pytest.mark.tf_only


def test_front_over_tf_serving_backend(server, tmp_path):
    from starlette.testclient import TestClient

    import httpx

    from kerasllm.serving import ServerConfig, build_state
    from kerasllm.serving.app import make_app

    config_file = tmp_path / "models.config"
    config_file.write_text('model_config_list { config { name: "tiny" base_path: "/models/tiny" } }')
    state = build_state(model_config_file=config_file, config=ServerConfig(),
                        backend="tfserving", backend_url=server.url,
                        feedback_db=tmp_path / "f.sqlite")
    with TestClient(make_app(state)) as client:
        status = client.get("/v1/models/tiny").json()
        assert any(s["state"] == "AVAILABLE" for s in status["model_version_status"])
        predict = client.post("/v1/models/tiny:predict", json={"inputs": {"prompt": ["日本"], "max_new_tokens": [3]}})
        assert predict.status_code == 200 and len(predict.json()["outputs"]["text"]) == 1
        answer = client.post("/v1/completions", json={"model": "tiny", "prompt": "日本", "max_tokens": 3,
                                                      "temperature": 0})
        assert answer.status_code == 200, answer.text
        direct = httpx.post(server.url + "/v1/completions", timeout=120,
                            json={"model": "tiny", "prompt": "日本", "max_tokens": 3, "temperature": 0})
        assert answer.json()["choices"][0]["text"] == direct.json()["choices"][0]["text"]
        assert client.post("/v1/feedback", json={"id": answer.json()["id"], "rating": 1}).status_code == 200
        missing = client.get("/v1/models/nope")
        assert missing.status_code == 404
    state.manager.close()
