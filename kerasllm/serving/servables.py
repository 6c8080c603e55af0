"""Servables: one loaded model version, with its signatures and its engine.

- `SavedModelServable`: a `kerasllm export` version folder (any SavedModel
  with `serve` signatures), loaded with `tf.saved_model.load`; its
  SignatureDefs come from `saved_model.pb`, as TF Serving reads them.
- `ModelDirServable`: a kerasllm model directory (`kerasllm.json`,
  `model.keras`, tokenizer), loaded with `kerasllm.load` (`safe_mode=True`);
  its signatures are the same `ServingModule` functions an export would hold.

Both warm up before they take traffic: the SavedModel replays its
`assets.extra/tf_serving_warmup_requests`, the model directory generates.
"""

import pathlib

import grpc
import numpy as np

from kerasllm.serving.errors import ServingError, invalid

WARMUP_PATH = ("assets.extra", "tf_serving_warmup_requests")


def is_saved_model(path):
    return (pathlib.Path(path) / "saved_model.pb").is_file()


def is_model_dir(path):
    from kerasllm.models.model_dir import METADATA_FILE, MODEL_FILE

    path = pathlib.Path(path)
    return (path / METADATA_FILE).is_file() and (path / MODEL_FILE).is_file()


def load_servable(path, *, jit_compile=True):
    """The servable of a version folder (SavedModel or kerasllm model directory)."""
    if is_saved_model(path):
        return SavedModelServable(path)
    if is_model_dir(path):
        return ModelDirServable(path, jit_compile=jit_compile)
    raise FileNotFoundError(
        f"{path} holds neither saved_model.pb (a SavedModel) nor kerasllm.json + "
        "model.keras (a kerasllm model directory)."
    )


class Servable:
    """Common part: SignatureDefs, input conversion, `predict`."""

    signature_defs = None  # name -> SignatureDef proto
    context_length = None
    engine = None

    def _function(self, signature_name):
        raise NotImplementedError

    def check_signature(self, signature_name):
        """FAILED_PRECONDITION unless the servable has this signature."""
        if signature_name not in self.signature_defs:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{signature_name}" not found.',
            )

    def _check_inputs(self, signature_name, inputs):
        signature_name = signature_name or "serving_default"
        self.check_signature(signature_name)
        signature = self.signature_defs[signature_name]
        unknown = sorted(set(inputs) - set(signature.inputs))
        if unknown:
            raise invalid(
                f"Unknown input(s) {unknown} for signature {signature_name!r}; it takes "
                f"{sorted(signature.inputs)}."
            )
        missing = sorted(set(signature.inputs) - set(inputs) - set(signature.defaults))
        if missing:
            raise invalid(
                f"Missing input(s) {missing} for signature {signature_name!r}."
            )
        import tensorflow as tf

        feed = {}
        for key, value in inputs.items():
            info = signature.inputs[key]
            dtype = tf.dtypes.as_dtype(info.dtype)
            try:
                feed[key] = tf.constant(value, dtype=dtype)
            except (TypeError, ValueError) as error:
                raise invalid(
                    f"Input {key!r} must be {dtype.name}. Received: {np.asarray(value).dtype} "
                    f"({error})"
                ) from error
            rank = -1 if info.tensor_shape.unknown_rank else len(info.tensor_shape.dim)
            if rank >= 0 and feed[key].shape.rank != rank:
                raise invalid(
                    f"Input {key!r} must have rank {rank}. Received shape "
                    f"{feed[key].shape.as_list()}."
                )
        return signature_name, feed

    def predict(self, signature_name, inputs, output_filter=()):
        """Run a signature on numpy inputs; returns `{output name: numpy array}`.

        Unknown signatures, inputs or dtypes, and the graph's own checks
        (`tf.debugging.assert_*`), are `INVALID_ARGUMENT` / `FAILED_PRECONDITION`
        errors carrying the message.
        """
        import tensorflow as tf

        signature_name, feed = self._check_inputs(signature_name, inputs)
        try:
            outputs = self._function(signature_name)(**feed)
        except tf.errors.InvalidArgumentError as error:
            raise invalid(_graph_error_message(error.message or str(error))) from None
        outputs = {k: v.numpy() for k, v in outputs.items()}
        if output_filter:
            unknown = sorted(set(output_filter) - set(outputs))
            if unknown:
                raise invalid(f"Unknown output(s) {unknown}; the signature gives {sorted(outputs)}.")
            outputs = {k: outputs[k] for k in output_filter}
        return outputs

    def close(self):
        """Called when the version is unloaded; in-flight work still finishes."""


def _graph_error_message(message):
    """The useful line of a graph error: the failed assertion, not the node trace."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "assertion failed:" in line:
            return line[line.index("assertion failed:"):]
    lines = [
        line for line in lines
        if not line.startswith(("Graph execution error", "Detected at node", "File ", "[[", "\t"))
    ]
    return lines[-1] if lines else message


class SavedModelServable(Servable):
    """A SavedModel version folder, as TF Serving loads it."""

    def __init__(self, path):
        import tensorflow as tf

        from kerasllm.export.op_allowlist import read_meta_graph

        self.path = pathlib.Path(path)
        self.meta_graph = read_meta_graph(self.path)
        self.signature_defs = dict(self.meta_graph.signature_def)
        self.loaded = tf.saved_model.load(str(self.path))
        self._functions = dict(self.loaded.signatures)
        # The signatures check lengths in the graph; the context is not stated.
        self.context_length = None
        self.engine = None
        for name in ("serving_default", "generate"):
            signature = self.signature_defs.get(name)
            if signature is not None and "prompt" in signature.inputs and "text" in signature.outputs:
                from kerasllm.serving.engines import SignatureEngine

                self.engine = SignatureEngine(self, name)
                break

    def _function(self, signature_name):
        function = self._functions[signature_name]
        defaults = self.signature_defs[signature_name].defaults
        if not defaults:
            return function

        def with_defaults(**feed):
            # The loaded function does not apply SignatureDef defaults; fill
            # them in the way the model server does.
            import tensorflow as tf

            for key, proto in defaults.items():
                if key not in feed:
                    feed[key] = tf.constant(tf.make_ndarray(proto))
            return function(**feed)

        return with_defaults

    def warmup(self):
        """Replay the warmup file (if any); a failing request fails the load."""
        path = self.path.joinpath(*WARMUP_PATH)
        if not path.is_file():
            return 0
        requests = read_warmup_file(path)
        for signature, inputs in requests:
            self.predict(signature, inputs)
        return len(requests)


def read_warmup_file(path):
    """The `(signature, {input: numpy array})` requests of a TF Serving warmup file.

    Reads the TFRecord of `PredictionLog`s with TensorFlow and the
    `tensorflow_serving.apis` protos, as the model server does.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    requests = []
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        requests.append(
            (
                request.model_spec.signature_name or "serving_default",
                {k: tf.make_ndarray(v) for k, v in request.inputs.items()},
            )
        )
    return requests


class ModelDirServable(Servable):
    """A kerasllm model directory: the Keras model, its tokenizer, its signatures."""

    def __init__(self, path, *, jit_compile=True):
        import kerasllm
        from kerasllm.serving.engines import GeneratorEngine

        self.path = pathlib.Path(path)
        self.model = kerasllm.load(self.path)
        if getattr(self.model, "tokenizer", None) is None:
            raise ValueError(f"{self.path} has no tokenizer; a served model needs one.")
        self.context_length = int(self.model.config.context_length)
        self.engine = GeneratorEngine(self.model, jit_compile=jit_compile)
        self._module = None
        self._signature_defs = None

    @property
    def module(self):
        if self._module is None:
            from kerasllm.export.serving_module import ServingModule

            self._module = ServingModule(self.model, self.model.tokenizer)
        return self._module

    @property
    def signature_defs(self):
        if self._signature_defs is None:
            self._signature_defs = {
                name: _signature_def(function)
                for name, function in self.module.signatures().items()
            }
        return self._signature_defs

    def _function(self, signature_name):
        return self.module.signatures()[signature_name]

    def warmup(self):
        """Compile the decode programs for one row before taking traffic."""
        from kerasllm.serving.engines import GenerationRequest

        with self.engine.lock:
            [result] = self.engine.generate_batch(
                [GenerationRequest(prompt="Hello", max_tokens=4, temperature=0)]
            )
        if isinstance(result, Exception):
            raise result
        return 1


def _signature_def(function):
    """A TF Serving SignatureDef for a `tf.function` with an input signature."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2

    concrete = function.get_concrete_function()
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for spec in function.input_signature:
        info = signature.inputs[spec.name]
        info.name = f"serving_default_{spec.name}:0"
        info.dtype = spec.dtype.as_datatype_enum
        info.tensor_shape.CopyFrom(spec.shape.as_proto())
    for key, tensor in concrete.structured_outputs.items():
        info = signature.outputs[key]
        info.name = f"StatefulPartitionedCall:{key}"
        info.dtype = tensor.dtype.as_datatype_enum
        info.tensor_shape.CopyFrom(tensor.shape.as_proto())
    # Trailing Python defaults of the function are the optional inputs.
    import inspect

    parameters = inspect.signature(function.python_function).parameters
    for name, parameter in parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            signature.defaults[name].CopyFrom(tf.make_tensor_proto(parameter.default.numpy()))
    return signature
