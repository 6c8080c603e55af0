"""`RunDirectory` on its own, with a small Keras model: the API other trainers use."""

import json
import os

import keras
import numpy as np
import pytest

from kerasllm.training import OutputDirectoryError, RunDirectory


def _model():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    return model


def _train(run, steps, checkpoint_every=2, start=0):
    x, y = np.ones((8, 4), "float32"), np.zeros((8, 1), "float32")
    model = _model()
    start = run.restore(model)
    model.fit(x, y, batch_size=8, epochs=steps, initial_epoch=start, verbose=0,
              callbacks=run.callbacks(checkpoint_every=checkpoint_every))
    run.raise_if_diverged()
    return model


def _record(path):
    return json.loads((path / "run.json").read_text())


def test_a_new_run_then_resume_then_overwrite(tmp_path):
    path = tmp_path / "run"
    run = RunDirectory(path, kind="test")
    assert run.prepare({"steps": 4}) == "new"
    assert not path.exists()  # prepare changes nothing
    with run.session():
        model = _train(run, 4)
        run.complete({"step": run.step(model)})
    record = _record(path)
    assert record["status"] == "complete" and record["step"] == 4 and record["kind"] == "test"
    assert (path / "log.csv").exists() and (path / "loss.png").exists()

    with pytest.raises(OutputDirectoryError, match="--resume"):
        RunDirectory(path).prepare({"steps": 4})
    with pytest.raises(OutputDirectoryError, match="would change lr"):
        RunDirectory(path).prepare({"steps": 6, "lr": 1}, resume=True, resumable=("steps",))

    resumed = RunDirectory(path, kind="test")
    assert resumed.prepare({"steps": 6}, resume=True, resumable=("steps",)) == "resume"
    with resumed.session():
        model = _train(resumed, 6)
        resumed.complete({"step": resumed.step(model)})
    assert resumed.resumed_from == 4 and _record(path)["step"] == 6

    again = RunDirectory(path, kind="test")
    assert again.prepare({"steps": 2}, overwrite=True) == "overwrite"
    with pytest.raises(RuntimeError, match="broken"), again.session():
        raise RuntimeError("broken before any checkpoint")
    # Nothing new was trained: the old run is back, untouched.
    assert _record(path)["status"] == "complete" and _record(path)["step"] == 6
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]


def test_restore_skips_damaged_checkpoints(tmp_path):
    path = tmp_path / "run"
    run = RunDirectory(path, log=lambda message: messages.append(message))
    messages = []
    run.prepare({})
    with run.session():
        _train(run, 4)
    newest = path / "checkpoints" / "step-00000004" / "checkpoint.weights.h5"
    with open(newest, "r+b") as f:  # same size, different bytes
        f.seek(100)
        f.write(b"\x00" * 16)
    assert run.restore(_model()) == 2
    assert any("step-00000004" in m and "SHA-256" in m for m in messages)


def test_foreign_directory_is_refused_even_with_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirectoryError, match="not written by kerasllm"):
        RunDirectory(tmp_path / ".." / tmp_path.name).prepare({}, overwrite=True)
    assert os.listdir(tmp_path) == ["notes.txt"]
