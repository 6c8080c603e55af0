"""Shared checks that every public kerasllm layer and model goes through.

`run_layer_checks` is the one place that says what "a well-behaved Keras
layer" means here: config round trip, symbolic and eager call, one `fit`
step, and `.keras` save/load (safe_mode) of a model that uses the layer.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
from keras import ops

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_close(actual, expected, atol=1e-5, rtol=0.0):
    np.testing.assert_allclose(
        np.asarray(ops.convert_to_numpy(actual), dtype="float64"),
        np.asarray(ops.convert_to_numpy(expected), dtype="float64"),
        atol=atol,
        rtol=rtol,
    )


def random_ids(shape, vocab_size, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, size=shape).astype("int32")


def run_layer_checks(layer_cls, init_kwargs, input_data, tmp_path, expected_output_shape=None):
    """Puts `layer_cls(**init_kwargs)` through the standard checks.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: a numpy batch the layer is called on.
        tmp_path: a directory for the `.keras` file.
        expected_output_shape: the eager output's shape. Defaults to the
            input's shape.
    """
    expected_output_shape = tuple(expected_output_shape or input_data.shape)

    # 1. get_config / from_config round trip, before and after building.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config
    eager_out = layer(input_data)
    built_config = layer.get_config()
    assert layer_cls.from_config(built_config).get_config() == built_config
    assert tuple(eager_out.shape) == expected_output_shape

    # 2. Symbolic call inside a functional model.
    dtype = "int32" if np.issubdtype(input_data.dtype, np.integer) else "float32"
    inputs = keras.Input(shape=input_data.shape[1:], dtype=dtype)
    outputs = layer_cls(**init_kwargs)(inputs)
    assert tuple(outputs.shape[1:]) == expected_output_shape[1:]
    head = keras.layers.Dense(3, name="head")(outputs)
    model = keras.Model(inputs, head)

    # 3. Training lowers the loss, and every trainable weight of the layer
    #    moves (gradients reach all of them).
    targets = np.random.default_rng(0).normal(size=expected_output_shape[:-1] + (3,))
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="mse")
    inner = model.layers[1]
    before = [ops.convert_to_numpy(v) for v in inner.trainable_weights]
    history = model.fit(input_data, targets, epochs=3, batch_size=len(input_data), verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    for variable, start in zip(inner.trainable_weights, before):
        assert not np.array_equal(ops.convert_to_numpy(variable), start), variable.path

    # 4. .keras save/load with safe_mode reproduces outputs exactly.
    path = os.path.join(tmp_path, f"{layer_cls.__name__}.keras")
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert_close(restored(input_data), model(input_data), atol=0.0)
    return layer


def run_in_fresh_process(code, env=None, timeout=300):
    """Runs `code` in a new Python (the repo on its path); returns stdout."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    full_env["PYTHONPATH"] = REPO_ROOT + os.pathsep + full_env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout
