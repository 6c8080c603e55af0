"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests`.

TensorFlow Serving replays the `PredictionLog` records in this TFRecord file
when it loads a version, before it marks the version available, so the first
real request does not pay for graph initialization (the tokenizer's tables,
the decode loop's first run). A request that fails here fails the load, so the
export runs them itself first (see `export_saved_model`).
"""

import pathlib

import numpy as np

WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_DIR = "assets.extra"


def warmup_requests(end_token_id, prompt="Hello", max_new_tokens=4, chat=False):
    """The warmup `PredictRequest`s' contents, one per signature.

    Args:
        end_token_id: an id valid for the `logits` signature.
        prompt: the text to generate from and to score. Defaults to `"Hello"`.
        max_new_tokens: tokens the warmup generation makes. Defaults to `4`.
        chat: include a request for the `chat` signature. Defaults to `False`.

    Returns:
        A list of `(signature_name, {input_name: numpy array})`.
    """
    return [
        (
            "serving_default",
            {
                "prompt": np.array([prompt.encode("utf-8")], dtype=object),
                "max_new_tokens": np.array([max_new_tokens], np.int32),
            },
        ),
        ("generate", {"prompt": np.array([prompt.encode("utf-8")], dtype=object)}),
        ("score", {"text": np.array([prompt.encode("utf-8")], dtype=object)}),
        ("logits", {"token_ids": np.array([[end_token_id]], np.int32)}),
    ] + (
        [
            (
                "chat",
                {
                    "role": np.array([[b"user"]], dtype=object),
                    "content": np.array([[prompt.encode("utf-8")]], dtype=object),
                    "max_new_tokens": np.array([max_new_tokens], np.int32),
                },
            )
        ]
        if chat
        else []
    )


def write_warmup_file(saved_model_dir, model_name, end_token_id, **kwargs):
    """Write `assets.extra/tf_serving_warmup_requests` into a SavedModel directory.

    Args:
        saved_model_dir: the (staging) SavedModel directory.
        model_name: the model name the requests carry (the server checks
            nothing else about it).
        end_token_id: see `warmup_requests`.
        **kwargs: passed to `warmup_requests`.

    Returns:
        The path of the file written.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = pathlib.Path(saved_model_dir) / WARMUP_DIR / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, inputs in warmup_requests(end_token_id, **kwargs):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path

