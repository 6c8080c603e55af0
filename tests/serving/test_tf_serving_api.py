"""TF Serving's REST API and gRPC services, spoken by the unchanged clients."""

import base64

import grpc
import numpy as np
import pytest

pytestmark = pytest.mark.tf_only


def _latest(http, name="tiny"):
    states = http.get(f"/v1/models/{name}").json()["model_version_status"]
    return max(int(s["version"]) for s in states if s["state"] == "AVAILABLE")


def test_model_status_matches_tf_serving_shape(server, http):
    version = _latest(http)
    answer = http.get(f"/v1/models/tiny/versions/{version}")
    assert answer.status_code == 200
    assert answer.json() == {
        "model_version_status": [
            {"version": str(version), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    missing = http.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Could not find any versions of model nope"}
    assert http.get("/v1/models/tiny/versions/777").status_code == 404


def test_metadata_lists_signature_defs(server, http):
    answer = http.get("/v1/models/tiny/metadata").json()
    assert answer["model_spec"]["name"] == "tiny"
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["prompt"]["dtype"] == "DT_STRING"
    assert default["inputs"]["prompt"]["tensor_shape"] == {"dim": [{"size": "-1"}]}
    assert "score" in signatures
    # The model directory offers the same signatures as its export.
    directory = http.get("/v1/models/tinydir/metadata").json()
    assert set(directory["metadata"]["signature_def"]["signature_def"]) >= {"serving_default", "score"}


def test_predict_row_and_columnar_and_b64(server, http):
    rows = http.post("/v1/models/tiny:predict", json={
        "instances": [{"prompt": "def ", "max_new_tokens": 3}, {"prompt": "日本", "max_new_tokens": 3}]})
    assert rows.status_code == 200, rows.text
    predictions = rows.json()["predictions"]
    assert len(predictions) == 2 and set(predictions[0]) >= {"text", "token_ids", "stop_reason"}
    columns = http.post("/v1/models/tiny:predict", json={
        "inputs": {"prompt": ["def ", "日本"], "max_new_tokens": [3]}})
    assert columns.json()["outputs"]["text"] == [p["text"] for p in predictions]
    b64 = http.post("/v1/models/tiny:predict", json={
        "inputs": {"prompt": [{"b64": base64.b64encode("日本".encode()).decode()}], "max_new_tokens": [3]}})
    assert b64.json()["outputs"]["text"] == [predictions[1]["text"]]
    score = http.post("/v1/models/tiny:predict", json={"signature_name": "score", "instances": ["def "]})
    assert score.status_code == 200 and "num_tokens" in score.json()["predictions"][0]


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({}, 400, "Missing 'inputs' or 'instances' key"),
        ({"instances": [{"prompt": "a"}], "inputs": {"prompt": ["a"]}}, 400, "Not both"),
        ({"signature_name": "nope", "instances": [{"prompt": "a"}]}, 400, 'Serving signature key "nope" not found.'),
        ({"instances": [{"prompt": "a", "bogus": 1}]}, 400, "bogus"),
        ({"instances": [{"prompt": "a", "max_new_tokens": "x"}]}, 400, "max_new_tokens"),
        ({"instances": [{"prompt": "a", "max_new_tokens": 0}]}, 400, "max_new_tokens must be at least 1"),
        ({"inputs": {"prompt": [{"b64": "%%%"}]}}, 400, "base64"),
    ],
)
def test_predict_errors_are_tf_serving_errors(server, http, body, status, message):
    answer = http.post("/v1/models/tiny:predict", json=body)
    assert answer.status_code == status
    assert set(answer.json()) == {"error"}
    assert message in answer.json()["error"]


def test_malformed_requests(server, http):
    bad_json = http.post("/v1/models/tiny:predict", content=b"{not json")
    assert bad_json.status_code == 400 and "JSON Parse error" in bad_json.json()["error"]
    assert http.post("/v1/models/nope:predict", json={"instances": ["a"]}).json() == {
        "error": "Servable not found for request: Latest(nope)"}
    assert http.post("/v1/models/..%2F..%2Fetc:predict", json={"instances": ["a"]}).status_code in (400, 404)
    assert http.post("/v1/models/tiny/labels/nope:predict", json={"instances": ["a"]}).status_code == 404


def test_grpc_predict_metadata_and_status_with_the_stock_stub(server):
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    request.model_spec.signature_name = "serving_default"
    request.inputs["prompt"].CopyFrom(tf.make_tensor_proto(np.array([b"def "], object)))
    request.inputs["max_new_tokens"].CopyFrom(tf.make_tensor_proto(np.array([3], np.int32)))
    response = stub.Predict(request, timeout=60)
    assert tf.make_ndarray(response.outputs["text"]).shape == (1,)
    assert response.model_spec.version.value >= 1

    metadata = stub.GetModelMetadata(
        get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec={"name": "tiny"}, metadata_field=["signature_def"]), timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_map)
    assert "prompt" in signature_map.signature_def["serving_default"].inputs

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status = models.GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "tiny"}), timeout=30)
    assert any(s.state == 30 for s in status.model_version_status)  # AVAILABLE

    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
