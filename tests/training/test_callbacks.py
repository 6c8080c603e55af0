"""Checkpoints (atomic, last K kept, restore), NaN guard, CSV log and plot."""

import math
import os

import keras
import numpy as np
import pytest

from kerasllm.models import GPT, GPTConfig
from kerasllm.training import (
    LanguageModelLoss,
    NonFiniteGuard,
    StepCheckpoint,
    TrainingLog,
    create_optimizer,
    list_checkpoints,
    restore_checkpoint,
    write_checkpoint,
)
from kerasllm.training.callbacks import read_log


def _model():
    config = GPTConfig.from_preset(
        "tiny", vocab_size=32, context_length=8, num_layers=1, hidden_dim=16, num_heads=2
    )
    model = GPT(config)
    model.compile(optimizer=create_optimizer(1e-2, 100, 2), loss=LanguageModelLoss())
    return model


def _data(n=24):
    x = np.random.default_rng(0).integers(0, 32, size=(n, 8)).astype("int32")
    return x, np.roll(x, -1, axis=1)


def test_checkpoints_every_n_steps_keep_last_k(tmp_path):
    model = _model()
    x, y = _data()
    callback = StepCheckpoint(tmp_path, every=2, keep=2, state_fn=lambda s: {"data_batch": s})
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[callback])  # 6 steps
    assert [step for step, _ in list_checkpoints(tmp_path)] == [4, 6]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp")]


def test_restore_brings_back_weights_optimizer_and_step(tmp_path):
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = write_checkpoint(model, tmp_path, 6, {"data_batch": 6})
    other = _model()
    other.build((None, 8))
    state = restore_checkpoint(other, path)
    assert state["step"] == 6 and state["data_batch"] == 6
    assert state["files"]["checkpoint.weights.h5"]["size"] > 0
    assert int(other.optimizer.iterations) == 6
    for a, b in zip(model.weights + model.optimizer.variables,
                    other.weights + other.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_half_written_checkpoints_are_ignored_and_cleaned(tmp_path):
    (tmp_path / "step-00000009").mkdir()  # no state.json: killed mid-write
    (tmp_path / ".tmp-step-00000010-1").mkdir()
    assert list_checkpoints(tmp_path) == []
    model = _model()
    x, y = _data(8)
    model.fit(x, y, batch_size=4, verbose=0, callbacks=[StepCheckpoint(tmp_path, every=1)])
    assert [s for s, _ in list_checkpoints(tmp_path)] == [1, 2]
    assert not (tmp_path / ".tmp-step-00000010-1").exists()


class _PoisonAt(keras.callbacks.Callback):
    """Sets every weight to NaN after `step` steps."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if batch + 1 == self.step:
            for weight in self.model.trainable_weights:
                weight.assign(keras.ops.full(weight.shape, math.nan))


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    model = _model()
    x, y = _data()
    guard = NonFiniteGuard()
    checkpoints = StepCheckpoint(tmp_path, every=2, keep=5)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0,
              callbacks=[_PoisonAt(3), guard, checkpoints])
    assert guard.diverged_at == 4
    assert "loss became nan at step 4" in guard.message
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2]
    assert int(model.optimizer.iterations) == 4  # stopped, not run to 6


def test_training_log_writes_csv_and_png_and_truncates_on_resume(tmp_path):
    model = _model()
    x, y = _data()
    log = TrainingLog(tmp_path / "log.csv", tmp_path / "loss.png", tokens_per_step=32,
                      val_bytes_per_token=2.0)
    model.fit(x, y, batch_size=4, epochs=3, steps_per_epoch=2, verbose=0,
              validation_data=(x[:8], y[:8]), validation_freq=2, callbacks=[log])
    rows = read_log(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert rows[1]["val_loss"] and not rows[0]["val_loss"]
    assert float(rows[1]["val_bits_per_byte"]) == pytest.approx(
        float(rows[1]["val_loss"]) / math.log(2) / 2.0, rel=1e-4)
    assert float(rows[0]["perplexity"]) == pytest.approx(math.exp(float(rows[0]["loss"])), rel=1e-4)
    assert int(rows[2]["tokens"]) == 6 * 32
    assert (tmp_path / "loss.png").stat().st_size > 1000

    # A run resumed from step 4 drops the row of step 6 and carries on.
    resumed = _model()
    resumed.build((None, 8))
    resumed.optimizer.build(resumed.trainable_variables)
    resumed.optimizer.iterations.assign(4)
    resumed.fit(x, y, batch_size=4, epochs=3, initial_epoch=2, steps_per_epoch=2, verbose=0,
                callbacks=[TrainingLog(tmp_path / "log.csv")])
    assert [int(r["step"]) for r in read_log(tmp_path / "log.csv")] == [2, 4, 6]
