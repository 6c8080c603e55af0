"""A LoRA run stopped and resumed ends exactly where the uninterrupted run does.

Keras writes a LoRA layer's kernel with its factors folded in and the factors
not at all, so checkpoints carry the LoRA layers' own variables beside the
weights file. The references: the values the model had when it was saved,
and the same run without the interruption.
"""

import json
import pathlib

import keras
import numpy as np
import pytest

import kerasllm
from helpers import assert_close, random_ids
from kerasllm.finetune import apply_lora, finetune, load_adapter, merge_lora
from kerasllm.finetune.lora import ADAPTER_FILE, WEIGHTS_FILE, base_fingerprint, lora_layers
from kerasllm.models import GPT
from kerasllm.training import CheckpointError, restore_checkpoint, write_checkpoint
from kerasllm.training.callbacks import LORA_FILE, STATE_FILE

STEPS, STOP_AT = 6, 2
TOKENS = ["<|im_end|>", {"text": "アイ"}]  # token rows beside the adapters


# ---------------------------------------------------------------- one checkpoint


def lora_gpt(seed):
    """A tiny GPT (the same base for every seed) with LoRA and token rows; factors from `seed`."""
    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", vocab_size=64, context_length=16, num_layers=1, num_heads=2,
                            hidden_dim=16, intermediate_dim=32)
    apply_lora(model, rank=2, alpha=4, targets=["qkv", "down"], trainable_tokens=[3, 7])
    rng = np.random.default_rng(seed)
    for _, layer in lora_layers(model):
        for variable in (layer.lora_kernel_a, layer.lora_kernel_b):
            variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
    table = model.embedding.token_embedding
    table.lora_embeddings_b.assign(rng.normal(0, 0.1, table.lora_embeddings_b.shape).astype("float32"))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.optimizer.build(model.trainable_variables)
    return model


def test_a_checkpoint_restores_the_lora_layers_and_the_optimizer_exactly(tmp_path):
    saved = lora_gpt(seed=1)
    ids = random_ids((2, 9), 64, seed=4)
    saved.fit(ids[:, :-1], ids[:, 1:], epochs=1, batch_size=2, verbose=0)  # optimizer slots too
    expected = [keras.ops.convert_to_numpy(v).copy() for v in saved.weights + saved.optimizer.variables]
    path = write_checkpoint(saved, tmp_path, step=1)

    restored = lora_gpt(seed=2)  # other factors, which the checkpoint replaces
    assert restore_checkpoint(restored, path)["step"] == 1
    actual = restored.weights + restored.optimizer.variables
    for variable, value in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(variable), value, err_msg=variable.path)
    assert base_fingerprint(restored)["id"] == base_fingerprint(saved)["id"]
    assert (tmp_path / "step-00000001" / LORA_FILE).is_file()


def test_a_checkpoint_without_the_lora_variables_is_refused(tmp_path):
    path = tmp_path / "step-00000003"
    write_checkpoint(lora_gpt(seed=1), tmp_path, step=3)
    # What an older kerasllm wrote: the weights file alone (factors folded into the kernels).
    (path / LORA_FILE).unlink()
    state = json.loads((path / STATE_FILE).read_text())
    del state["files"][LORA_FILE]
    (path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=f"no {LORA_FILE}.*cannot be resumed exactly"):
        restore_checkpoint(lora_gpt(seed=2), path)


# ---------------------------------------------------------------- a finetune run


class Crash(Exception):
    """What the interrupted run dies of (after its checkpoint at STOP_AT)."""


class CrashAt(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == self.step:
            raise Crash(f"stopped at step {self.step}")


def lora_config(base, data):
    return {
        "base": base, "data": str(data), "format": "prompt-completion", "method": "lora",
        "lora": {"rank": 2, "alpha": 4, "targets": ["qkv", "down"]}, "trainable_tokens": TOKENS,
        "batch_size": 4, "steps": STEPS, "warmup_steps": 2, "learning_rate": 0.01,
        "log_every": 2, "eval_every": 2, "checkpoint_every": 2, "batching": "random",
    }


@pytest.fixture(scope="module")
def runs(base_model_dir, tmp_path_factory):
    """`(adapter dir of the uninterrupted run, adapter dir of the resumed run)`."""
    root = tmp_path_factory.mktemp("lora-resume")
    data = root / "train.jsonl"
    records = [{"prompt": f"{i} + {i} = ", "completion": f"{2 * i}<|im_end|>アイ"} for i in range(24)]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    config = lora_config(base_model_dir, data)
    whole = finetune(config, root / "whole", verbose=0)
    with pytest.raises(Crash):
        finetune(config, root / "resumed", callbacks=[CrashAt(STOP_AT)], verbose=0)
    resumed = finetune(None, root / "resumed", resume=True, verbose=0)
    assert resumed["resumed_from"] == STOP_AT and resumed["step"] == whole["step"] == STEPS
    return whole["adapter_dir"], resumed["adapter_dir"]


def adapter_arrays(directory):
    with np.load(f"{directory}/{WEIGHTS_FILE}") as stored:
        return {key: stored[key] for key in stored.files}


@pytest.mark.slow
def test_resumed_adapter_factors_and_token_rows_equal_the_uninterrupted_run(runs):
    whole, resumed = runs
    expected, actual = adapter_arrays(whole), adapter_arrays(resumed)
    assert sorted(actual) == sorted(expected)
    assert any(k.endswith("lora_kernel_b") for k in expected)
    assert any(k.endswith("lora_embeddings_b") for k in expected)
    for key in expected:
        assert np.abs(expected[key]).max() > 0, key
        assert_close(actual[key], expected[key], atol=1e-6)


@pytest.mark.slow
def test_resumed_adapter_belongs_to_the_unchanged_base(runs, base_model_dir):
    _, resumed = runs
    spec = json.loads((pathlib.Path(resumed) / ADAPTER_FILE).read_text())
    assert spec["base_fingerprint"]["id"] == base_fingerprint(kerasllm.load(base_model_dir))["id"]


@pytest.mark.slow
def test_resumed_logits_and_merged_model_equal_the_uninterrupted_run(runs, base_model_dir):
    whole, resumed = runs
    ids = random_ids((2, 16), kerasllm.load(base_model_dir).config.vocab_size, seed=5)
    models = []
    for adapter in (whole, resumed):
        model = kerasllm.load(base_model_dir)
        load_adapter(model, adapter)  # refuses an adapter whose base fingerprint differs
        models.append(model)
    assert_close(models[1](ids), models[0](ids), atol=1e-6)
    for model in models:
        merge_lora(model)
    for expected, actual in zip(models[0].weights, models[1].weights, strict=True):
        assert_close(actual, expected, atol=1e-6)
    assert_close(models[1](ids), models[0](ids), atol=1e-6)
