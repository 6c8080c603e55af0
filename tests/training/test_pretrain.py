"""End to end: `pretrain` on a small corpus, resume parity, bad input, CLI."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import kerasllm
from kerasllm.training import (
    ConfigError,
    OutputDirectoryError,
    list_checkpoints,
    pretrain,
)
from kerasllm.training.callbacks import read_log

pytestmark = pytest.mark.slow


class _Crash(keras.callbacks.Callback):
    """Raises out of `fit` after `step` steps, like a process being killed."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            raise KeyboardInterrupt


def test_run_writes_everything_and_a_loadable_model(small_config, tmp_path):
    output = tmp_path / "run"
    result = pretrain(small_config, output, verbose=0)
    assert result["step"] == 12
    for name in ("run.json", "log.csv", "loss.png", "tensorboard", "model/model.keras"):
        assert (output / name).exists(), name
    assert [s for s, _ in list_checkpoints(output / "checkpoints")] == [9, 12]
    rows = read_log(output / "log.csv")
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12]
    assert rows[1]["val_loss"] and rows[1]["val_perplexity"] and rows[1]["val_bits_per_byte"]

    model = kerasllm.load(result["model_dir"])
    assert model.metadata["steps"] == 12
    assert model.metadata["pretrain_config"]["batch_size"] == 4
    assert model.tokenizer.vocabulary_size == model.config.vocab_size == 320
    validation = result["validation"]
    assert validation["loss"] < math.log(320)  # learned something in 12 steps
    assert validation["unigram_bits_per_byte"] > 0

    metrics = kerasllm.training.evaluate(model, split="val")
    assert metrics["loss"] == pytest.approx(validation["loss"], rel=1e-4)
    assert json.loads((output / "run.json").read_text())["status"] == "complete"


def test_resume_continues_the_same_curve(small_config, tmp_path):
    straight = pretrain(small_config, tmp_path / "straight", verbose=0)

    with pytest.raises(KeyboardInterrupt):
        pretrain(small_config, tmp_path / "resumed", callbacks=[_Crash(8)], verbose=0)
    assert [s for s, _ in list_checkpoints(tmp_path / "resumed" / "checkpoints")][-1] == 6
    with pytest.raises(OutputDirectoryError, match="--resume"):
        pretrain(small_config, tmp_path / "resumed", verbose=0)
    resumed = pretrain(small_config, tmp_path / "resumed", resume=True, verbose=0)
    assert resumed["resumed_from"] == 6

    a = kerasllm.load(straight["model_dir"])
    b = kerasllm.load(resumed["model_dir"])
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)
    assert resumed["validation"]["loss"] == pytest.approx(straight["validation"]["loss"], abs=1e-4)
    losses = [
        [float(r["loss"]) for r in read_log(tmp_path / name / "log.csv")]
        for name in ("straight", "resumed")
    ]
    np.testing.assert_allclose(losses[0], losses[1], atol=1e-4)


def test_gradient_accumulation_resumes_at_the_right_batch(small_config, tmp_path):
    config = {**small_config, "gradient_accumulation_steps": 2, "batch_size": 2, "steps": 6,
              "eval_every": 3, "checkpoint_every": 3, "log_every": 3}
    straight = pretrain(config, tmp_path / "a", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config, tmp_path / "b", callbacks=[_Crash(4)], verbose=0)
    _, last = list_checkpoints(tmp_path / "b" / "checkpoints")[-1]
    with open(os.path.join(last, "state.json")) as f:
        state = json.load(f)
    assert state["step"] == 3 and state["data_batch"] == 6
    resumed = pretrain(config, tmp_path / "b", resume=True, verbose=0)
    assert resumed["validation"]["loss"] == pytest.approx(straight["validation"]["loss"], abs=1e-4)


def test_output_directory_rules(small_config, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirectoryError, match="not written by kerasllm"):
        pretrain(small_config, other, verbose=0)

    pretrain({**small_config, "steps": 3, "warmup_steps": 1, "checkpoint_every": 3,
              "eval_every": 3}, tmp_path / "run", verbose=0)
    with pytest.raises(OutputDirectoryError, match="different run.*learning_rate"):
        pretrain({**small_config, "learning_rate": 0.1}, tmp_path / "run", resume=True)
    result = pretrain({**small_config, "steps": 3, "warmup_steps": 1, "checkpoint_every": 3,
                       "eval_every": 3, "learning_rate": 0.1}, tmp_path / "run",
                      overwrite=True, verbose=0)
    assert result["step"] == 3


def test_context_longer_than_the_corpus_allows(small_config, tmp_path):
    config = {**small_config, "model": {**small_config["model"], "context_length": 4096}}
    with pytest.raises(ConfigError, match="context_length=4096 is too long for the val split"):
        pretrain(config, tmp_path / "run", verbose=0)


def _cli(*args, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "kerasllm.cli", *args], capture_output=True, text=True,
        env=env, **kwargs,
    )


def _yaml(config, path):
    import yaml

    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_cli_kill_9_and_resume_matches_uninterrupted(small_config, tmp_path):
    config = _yaml({**small_config, "steps": 60, "checkpoint_every": 3, "eval_every": 30,
                    "log_every": 3}, tmp_path / "c.yaml")
    straight = _cli("pretrain", "--config", config, "--output", str(tmp_path / "a"), "--json")
    assert straight.returncode == 0, straight.stderr[-2000:]

    output = tmp_path / "b"
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasllm.cli", "pretrain", "--config", config,
         "--output", str(output)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(
        s >= 12 for s, _ in list_checkpoints(output / "checkpoints")
    ):
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = list_checkpoints(output / "checkpoints")[-1][0]
    assert 12 <= killed_at < 60

    resumed = _cli("pretrain", "--config", config, "--output", str(output), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = json.loads(straight.stdout), json.loads(resumed.stdout)
    assert b["resumed_from"] == killed_at
    assert b["validation"]["loss"] == pytest.approx(a["validation"]["loss"], abs=1e-4)

    evaluated = _cli("evaluate", "--model", b["model_dir"], "--split", "val", "--json")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads(evaluated.stdout)
    assert {"loss", "perplexity", "bits_per_byte", "unigram_bits_per_byte"} <= set(metrics)
    assert metrics["loss"] == pytest.approx(b["validation"]["loss"], rel=1e-4)


def test_cli_errors_exit_2_with_a_message(small_config, tmp_path):
    config = _yaml(small_config, tmp_path / "c.yaml")
    bad_key = _cli("pretrain", "--config", config, "--set", "learning_rat=0.1",
                   "--output", str(tmp_path / "x"))
    assert bad_key.returncode == 2
    assert "Did you mean 'learning_rate'" in bad_key.stderr
    bad_type = _cli("pretrain", "--config", config, "--set", "steps=lots",
                    "--output", str(tmp_path / "x"))
    assert bad_type.returncode == 2 and "steps must be int" in bad_type.stderr
