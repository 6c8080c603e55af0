"""Decode-time forms are chosen by generation; saved models stay plain Keras."""

import zipfile

import keras
import pytest

from generation.support import PROMPTS, tiny_gpt
from kerasllm.generation import Generator


def test_saved_model_holds_only_keras_dense(tmp_path):
    model = tiny_gpt()
    model.save(tmp_path / "m.keras")
    config = zipfile.ZipFile(tmp_path / "m.keras").read("config.json").decode()
    assert "kerasllm>Dense" not in config
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dense):
            assert type(layer) is keras.layers.Dense


def test_files_naming_the_old_dense_still_load():
    from kerasllm.layers.dense import LegacyDense

    layer = keras.layers.Dense(3)
    config = keras.saving.serialize_keras_object(layer)
    config.update(module=None, registered_name="kerasllm>Dense")
    assert isinstance(keras.saving.deserialize_keras_object(config), LegacyDense)


@pytest.mark.tf_only
def test_one_row_projections_change_nothing_but_speed():
    """XLA with and without the one-row form: same greedy ids, and the
    layers' own `call` is back after tracing."""
    model = tiny_gpt()
    on = Generator(model, one_row_projections=True)
    off = Generator(model, one_row_projections=False)
    kwargs = dict(max_new_tokens=8, end_token_id=None)
    assert on.complete([PROMPTS[0]], **kwargs)[0].token_ids == off.complete([PROMPTS[0]], **kwargs)[0].token_ids
    assert all("call" not in vars(layer) for layer in model._flatten_layers())
