"""Model versions: config file, policies, labels, swaps, failed loads, the base path boundary."""

import shutil
import time

import numpy as np
import pytest

from kerasllm.serving.errors import ServingError
from kerasllm.serving.model_config import ModelSpec, parse_model_config

pytestmark = pytest.mark.tf_only

CONFIG = """
model_config_list {
  config {
    name: "tiny"
    base_path: "/models/tiny"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 3 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 3 }
  }
  config { name: "other" base_path: "/models/other" model_version_policy { all {} } }
  config { name: "two" base_path: "/models/two" model_version_policy { latest { num_versions: 2 } } }
}
"""


def test_config_file_is_tf_serving_text_proto():
    tiny, other, two = parse_model_config(CONFIG)
    assert (tiny.name, tiny.policy, tiny.versions) == ("tiny", "specific", (1, 3))
    assert tiny.labels == {"stable": 1, "canary": 3}
    assert tiny.wanted([1, 2, 3, 4]) == [1, 3]
    assert other.policy == "all" and other.wanted([1, 2, 3]) == [1, 2, 3]
    assert two.wanted([1, 2, 3]) == [2, 3]
    assert ModelSpec("x", "/m").wanted([1, 5, 2]) == [5]


@pytest.mark.parametrize(
    "text, message",
    [
        ("model_config_list { config { name: 'a' base_path: '/a' bogus: 1 } }", "bogus"),
        ("model_config_list { config { name: '../a' base_path: '/a' } }", "path separators"),
        ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'onnx' } }", "onnx"),
        ("", "model_config_list"),
    ],
)
def test_bad_config_files_name_the_problem(text, message):
    with pytest.raises((ValueError, ServingError), match=message):
        parse_model_config(text)


def _wait(predicate, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _states(http, name="tiny"):
    return {s["version"]: s for s in http.get(f"/v1/models/{name}").json()["model_version_status"]}


def test_new_version_swaps_in_and_failed_one_never_replaces_it(server, http):
    base = server.base
    # A broken version 5 fails to load and is reported; version 1 keeps serving.
    (base / "5").mkdir()
    (base / "5" / "saved_model.pb").write_bytes(b"not a protobuf")
    assert _wait(lambda: _states(http).get("5", {}).get("state") == "END")
    states = _states(http)
    assert states["5"]["status"]["error_code"] == "UNKNOWN"
    assert states["5"]["status"]["error_message"]
    assert states["1"]["state"] == "AVAILABLE"
    ok = http.post("/v1/models/tiny:predict", json={"instances": [{"prompt": "a"}]})
    assert ok.status_code == 200
    # A good version 6 loads, warms up, takes traffic; then version 1 goes.
    shutil.rmtree(base / "5")
    shutil.copytree(base / "1", base / ".6.tmp")
    (base / ".6.tmp").rename(base / "6")
    assert _wait(lambda: _states(http).get("6", {}).get("state") == "AVAILABLE")
    assert _wait(lambda: _states(http)["1"]["state"] == "END")
    answer = http.post("/v1/models/tiny/versions/6:predict", json={"inputs": {"prompt": ["a"]}})
    assert answer.status_code == 200
    gone = http.post("/v1/models/tiny/versions/1:predict", json={"inputs": {"prompt": ["a"]}})
    assert gone.status_code == 404
    assert gone.json() == {"error": "Servable not found for request: Specific(tiny, 1)"}


def test_symlink_out_of_the_base_path_is_not_loaded(server, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.copytree(server.base / sorted(p.name for p in server.base.iterdir() if p.name.isdigit())[0], outside)
    (server.base / "99").symlink_to(outside)
    try:
        manager = server.state.manager
        spec = manager.specs["tiny"]
        assert 99 not in manager.version_paths(spec)
    finally:
        (server.base / "99").unlink()


def test_specific_policy_and_labels(artifacts, tmp_path):
    from kerasllm.serving.model_manager import ModelManager

    base = tmp_path / "m"
    shutil.copytree(artifacts["base_path"], base)
    (base / "2").symlink_to(base / "1")  # inside the base path: allowed
    spec = ModelSpec("m", base, policy="specific", versions=(1,), labels={"stable": 1, "next": 2})
    manager = ModelManager([spec], poll_seconds=0).start()
    try:
        assert manager.available("m") == [1]
        assert manager.get("m", label="stable")[0] == 1
        with pytest.raises(ServingError, match=r"Specific\(m, 2\)"):
            manager.get("m", label="next")
        with pytest.raises(ServingError, match="Unrecognized servable version label: nope"):
            manager.get("m", label="nope")
        with pytest.raises(ServingError, match="Could not find any versions of model zz"):
            manager.status("zz")
        _, servable = manager.get("m")
        out = servable.predict("serving_default", {"prompt": np.array([b"x"], object)})
        assert out["text"].shape == (1,)
    finally:
        manager.close()
