"""`--backend tfserving`: inference on TensorFlow Serving replicas, this server in front.

The front keeps the OpenAI API, the playground, feedback, batching and the
limits; model status, metadata and predict go to TF Serving's REST API at
`--backend-url` (one replica, or a load balancer over several). Responses
are TF Serving's own, passed through with their status codes.

    docker run -p 8501:8501 -v "$PWD/saved_models/tiny:/models/tiny" \\
        -e MODEL_NAME=tiny tensorflow/serving
    kerasllm serve --model-base-path saved_models/tiny --backend tfserving \\
        --backend-url http://localhost:8501 --rest-port 8000
"""

import threading

import grpc
import numpy as np
from google.protobuf import json_format

from kerasllm.serving.errors import ServingError, not_found, unavailable
from kerasllm.serving.servables import Servable
from kerasllm.serving.tensors import tensor_json

_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
          429: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}


class RemoteServable(Servable):
    """One model on the backend: signatures from its metadata, predict over HTTP."""

    def __init__(self, client, name, version):
        from tensorflow.core.protobuf import meta_graph_pb2

        self.client, self.name, self.version = client, name, version
        metadata = self._call("GET", f"/v1/models/{name}/versions/{version}/metadata")
        defs = metadata["metadata"]["signature_def"]["signature_def"]
        self.signature_defs = {
            key: json_format.ParseDict(value, meta_graph_pb2.SignatureDef(), ignore_unknown_fields=True)
            for key, value in defs.items()
        }
        self.context_length = None
        self.engine = None
        for key in ("serving_default", "generate"):
            signature = self.signature_defs.get(key)
            if signature is not None and "prompt" in signature.inputs and "text" in signature.outputs:
                from kerasllm.serving.engines import SignatureEngine

                self.engine = SignatureEngine(self, key)
                # The backend batches (and runs) on its own; no need to serialize here.
                self.engine.lock = _NoLock()
                break

    def _call(self, method, path, body=None):
        import httpx

        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as error:
            raise unavailable(f"TF Serving backend unreachable: {error}") from None
        payload = response.json()
        if response.status_code != 200:
            code = _CODES.get(response.status_code, grpc.StatusCode.UNKNOWN)
            raise ServingError(code, payload.get("error", response.text))
        return payload

    def predict(self, signature_name, inputs, output_filter=()):
        body = {"signature_name": signature_name,
                "inputs": {k: tensor_json(np.asarray(v), k) for k, v in inputs.items()}}
        answer = self._call("POST", f"/v1/models/{self.name}/versions/{self.version}:predict", body)
        outputs = answer["outputs"]
        if not isinstance(outputs, dict):
            outputs = {next(iter(self.signature_defs[signature_name].outputs)): outputs}
        result = {}
        for key, value in outputs.items():
            array = np.array(value, dtype=object)
            if array.size and isinstance(array.flat[0], str):
                array = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
            else:
                array = np.array(value)
            result[key] = array
        if output_filter:
            result = {k: result[k] for k in output_filter}
        return result

    def close(self):
        pass


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class RemoteManager:
    """The `ModelManager` interface over a TF Serving REST endpoint."""

    def __init__(self, specs, backend_url, timeout=300.0):
        import httpx

        self.specs = {spec.name: spec for spec in specs}
        self.client = httpx.Client(base_url=backend_url.rstrip("/"), timeout=timeout)
        self.wrap = None
        self._servables = {}
        self._lock = threading.Lock()

    def start(self, background=True):
        return self

    def close(self):
        self.client.close()

    def stop(self):
        pass

    def names(self):
        return list(self.specs)

    def status(self, name, version=None, label=None):
        if name not in self.specs:
            raise not_found(f"Could not find any versions of model {name}")
        path = f"/v1/models/{name}"
        if version is not None:
            path += f"/versions/{version}"
        elif label is not None:
            path += f"/labels/{label}"
        return RemoteServable._call(self, "GET", path)["model_version_status"]

    def available(self, name):
        try:
            return sorted(int(s["version"]) for s in self.status(name) if s["state"] == "AVAILABLE")
        except ServingError:
            return []

    def get(self, name, version=None, label=None):
        if name not in self.specs:
            raise not_found(f"Servable not found for request: Latest({name})")
        if label is not None:
            states = self.status(name, label=label)
            version = int(states[0]["version"])
        if version is None:
            available = self.available(name)
            if not available:
                raise not_found(f"Servable not found for request: Latest({name})")
            version = max(available)
        key = (name, int(version))
        with self._lock:
            if key not in self._servables:
                servable = RemoteServable(self.client, name, int(version))
                if self.wrap is not None:
                    servable = self.wrap(self.specs[name], version, servable) or servable
                self._servables[key] = servable
            return int(version), self._servables[key]
