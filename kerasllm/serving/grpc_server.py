"""gRPC: TF Serving's `PredictionService` and `ModelService`, from its own protos.

The servicers subclass the classes generated in `tensorflow_serving.apis`,
so an unchanged `prediction_service_pb2_grpc.PredictionServiceStub` client
works: `Predict`, `GetModelMetadata` (`metadata_field: "signature_def"`) and
`GetModelStatus`. Other methods answer UNIMPLEMENTED.
"""

import concurrent.futures
import hmac

import grpc
import numpy as np

from kerasllm.serving.errors import ServingError, invalid

STATES = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}


def _spec(model_spec):
    """`(name, version, label)` of a request's ModelSpec."""
    from kerasllm.serving.model_config import check_model_name

    check_model_name(model_spec.name)
    choice = model_spec.WhichOneof("version_choice")
    version = model_spec.version.value if choice == "version" else None
    label = model_spec.version_label if choice == "version_label" else None
    return model_spec.name, version, label


class _Servicers:
    def __init__(self, state):
        self.state = state

    def _check_key(self, context):
        key = self.state.config.api_key
        if not key:
            return
        metadata = dict(context.invocation_metadata())
        given = metadata.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "Missing or wrong API key: send authorization: Bearer KEY.")

    def call(self, context, function):
        self._check_key(context)
        try:
            return function()
        except ServingError as error:
            context.abort(error.code, error.message)


def make_servicers(state):
    from tensorflow_serving.apis import (
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    helper = _Servicers(state)
    manager = state.manager

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            def run():
                import tensorflow as tf

                name, version, label = _spec(request.model_spec)
                version, servable = manager.get(name, version, label)
                signature = request.model_spec.signature_name or "serving_default"
                try:
                    inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
                except (TypeError, ValueError) as error:
                    raise invalid(f"Cannot read the input tensors: {error}") from None
                outputs = servable.predict(signature, inputs, list(request.output_filter))
                response = predict_pb2.PredictResponse()
                response.model_spec.name = name
                response.model_spec.version.value = version
                response.model_spec.signature_name = signature
                for key, value in outputs.items():
                    response.outputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
                return response

            return helper.call(context, run)

        def GetModelMetadata(self, request, context):
            def run():
                from tensorflow_serving.apis import get_model_metadata_pb2 as pb

                name, version, label = _spec(request.model_spec)
                fields = list(request.metadata_field)
                if fields != ["signature_def"]:
                    raise invalid(f"Metadata field(s) {fields} not supported: ask for signature_def.")
                version, servable = manager.get(name, version, label)
                response = pb.GetModelMetadataResponse()
                response.model_spec.name = name
                response.model_spec.version.value = version
                signature_map = pb.SignatureDefMap()
                for key, signature in servable.signature_defs.items():
                    signature_map.signature_def[key].CopyFrom(signature)
                response.metadata["signature_def"].Pack(signature_map)
                return response

            return helper.call(context, run)

    class ModelService(model_service_pb2_grpc.ModelServiceServicer):
        def GetModelStatus(self, request, context):
            def run():
                name, version, label = _spec(request.model_spec)
                response = get_model_status_pb2.GetModelStatusResponse()
                for entry in manager.status(name, version, label):
                    status = response.model_version_status.add()
                    status.version = int(entry["version"])
                    status.state = STATES[entry["state"]]
                    code = entry["status"]["error_code"]
                    status.status.error_code = getattr(grpc.StatusCode, code).value[0]
                    status.status.error_message = entry["status"]["error_message"]
                return response

            return helper.call(context, run)

    return PredictionService(), ModelService()


def start_grpc_server(state, host, port, max_workers=16):
    """A started `grpc.Server` on `host:port` (port 0 picks one; see `.port`)."""
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    limit = state.config.max_body_bytes
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", limit)],
    )
    prediction, models = make_servicers(state)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(prediction, server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(models, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    server.port = server.add_insecure_port(address)
    server.start()
    return server
