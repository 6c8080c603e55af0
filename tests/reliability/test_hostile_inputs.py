"""Hostile cases: kerasllm never loses a user's files and fails with one line.

Each case runs through the command line (in this process) or the Python API
and checks the message, the exit status, and that every file present before
is unchanged afterwards (`snapshot`).
"""

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time

import keras
import pytest

import kerasllm
from kerasllm.data import atomic
from kerasllm.data.atomic import OutputExistsError, OutputWriteError
from kerasllm.tokenizers import load, train_tokenizer
from kerasllm.training import pretrain
from kerasllm.training.callbacks import list_checkpoints

# ---------------------------------------------------------------- helpers


def snapshot(root):
    """Every path under `root` (itself included): its type and content hash."""
    root = os.fspath(root)
    found = {}
    for directory, names, files in os.walk(root):
        names.sort()
        for name in [""] + names + files:
            path = os.path.join(directory, name) if name else directory
            info = os.lstat(path)
            digest = None
            if stat.S_ISREG(info.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            found[os.path.relpath(path, root)] = (stat.S_IFMT(info.st_mode), digest)
    return found


def error_line(err):
    """The one `kerasllm: error: ...` line of stderr (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("kerasllm: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _yaml(config, path):
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path


def _run_json(output):
    return json.loads((output / "run.json").read_text())


class _Raise(keras.callbacks.Callback):
    """Raises `error` once the optimizer reaches `step`."""

    def __init__(self, step, error):
        super().__init__()
        self.step, self.error = step, error

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) >= self.step:
            raise self.error


# ---------------------------------------------------------------- 1. never replace foreign files


def test_tokenizer_train_into_the_working_directory_is_refused(cli, corpus, tmp_path, monkeypatch):
    home = tmp_path / "s"
    home.mkdir()
    shutil.copytree(corpus, home / "c")
    (home / "thesis.tex").write_text("x")
    before = snapshot(home)
    monkeypatch.chdir(home)
    for extra in ([], ["--overwrite"]):
        code, _, err = cli("tokenizer", "train", "--input", "c", "--split", "all",
                           "--vocab-size", 300, "--output", ".", *extra)
        assert code != 0
        assert "working directory" in error_line(err)
        assert snapshot(home) == before


def test_tokenizer_output_rules(cli, corpus, tokenizer_dir, tmp_path):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep")
    before = snapshot(foreign)
    code, _, err = cli("tokenizer", "train", "--input", corpus, "--vocab-size", 300,
                       "--output", foreign, "--overwrite")
    assert code == 2 and "not written by kerasllm" in error_line(err)
    tokenizer = load(tokenizer_dir)
    with pytest.raises(OutputExistsError, match="not written by kerasllm"):
        tokenizer.save(foreign, overwrite=True)
    assert snapshot(foreign) == before

    mine = tmp_path / "tok"
    tokenizer.save(mine)
    before = snapshot(mine)
    code, _, err = cli("tokenizer", "train", "--input", corpus, "--vocab-size", 300,
                       "--output", mine)
    assert code == 2 and "--overwrite" in error_line(err)
    assert snapshot(mine) == before
    code, _, _ = cli("tokenizer", "train", "--input", corpus, "--vocab-size", 300,
                     "--output", mine, "--overwrite", "--json")
    assert code == 0 and load(mine).vocabulary_size == 300


def test_new_directories_get_the_usual_permissions(tokenizer_dir, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    load(tokenizer_dir).save(tmp_path / "tok")
    assert stat.S_IMODE(os.stat(tmp_path / "tok").st_mode) == 0o777 & ~umask


def test_data_clean_never_replaces_a_device_or_an_unasked_file(cli, corpus, tmp_path):
    fifo = tmp_path / "mynull"
    os.mkfifo(fifo)
    code, _, err = cli("data", "clean", "--input", corpus, "--output", fifo, "--overwrite")
    assert code == 2 and "not a regular file" in error_line(err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    existing = tmp_path / "clean.jsonl"
    existing.write_text("precious\n")
    code, _, err = cli("data", "clean", "--input", corpus, "--output", existing)
    assert code == 2 and "--overwrite" in error_line(err)
    assert existing.read_text() == "precious\n"
    assert not (tmp_path / "clean.report.json").exists()
    code, _, _ = cli("data", "clean", "--input", corpus, "--output", existing, "--overwrite")
    assert code == 0 and existing.read_text().startswith('{"text"')


def test_model_dir_overwrite_never_replaces_a_foreign_directory(finished_run, tmp_path):
    model = kerasllm.load(finished_run / "model")
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "a.jpg").write_bytes(b"\xff\xd8")
    before = snapshot(foreign)
    with pytest.raises(OutputExistsError, match="not written by kerasllm"):
        kerasllm.save(model, foreign, overwrite=True)
    assert snapshot(foreign) == before


def test_pretrain_overwrite_checks_inputs_before_touching_the_old_run(
    cli, run_copy, run_config, tmp_path
):
    before = snapshot(run_copy)
    config = _yaml(run_config, tmp_path / "c.yaml")
    code, _, err = cli("pretrain", "--config", config, "--output", run_copy, "--overwrite",
                       "--set", "tokenizer=/no/such/tokenizr")
    assert code == 2 and "tokenizr" in error_line(err)
    assert snapshot(run_copy) == before


def test_pretrain_refuses_a_foreign_directory_even_with_overwrite(cli, run_config, tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("x")
    config = _yaml(run_config, tmp_path / "c.yaml")
    code, _, err = cli("pretrain", "--config", config, "--output", foreign, "--overwrite")
    assert code == 2 and "not written by kerasllm" in error_line(err)
    assert (foreign / "thesis.tex").read_text() == "x"
    assert sorted(os.listdir(foreign)) == ["thesis.tex"]


# ---------------------------------------------------------------- 2. checkpoints and run state


def test_resume_skips_a_truncated_checkpoint(run_copy, run_config, capfd):
    newest = run_copy / "checkpoints" / "step-00000006" / "checkpoint.weights.h5"
    os.truncate(newest, 5000)
    result = pretrain({**run_config, "steps": 9}, run_copy, resume=True, verbose=0)
    err = capfd.readouterr().err
    assert "Skipping checkpoint" in err and "step-00000006" in err and "5,000 bytes" in err
    assert result["resumed_from"] == 3 and result["step"] == 9


def test_failed_resume_keeps_the_previous_result(run_copy, run_config):
    previous = _run_json(run_copy)
    assert previous["status"] == "complete"
    with pytest.raises(RuntimeError, match="boom"):
        pretrain({**run_config, "steps": 9}, run_copy, resume=True, verbose=0,
                 callbacks=[_Raise(7, RuntimeError("boom"))])
    record = _run_json(run_copy)
    assert record["status"] == "failed" and "boom" in record["error"]
    assert record["result"] == previous["result"]
    assert record["step"] >= 6


@pytest.mark.slow  # trains twice or more
def test_a_run_that_failed_before_training_says_so_and_can_be_rerun(
    run_config, tmp_path, monkeypatch
):
    import importlib

    pretrain_module = importlib.import_module("kerasllm.training.pretrain")

    output = tmp_path / "run"
    original = pretrain_module._build_model

    def broken(*args):
        raise RuntimeError("no device")

    monkeypatch.setattr(pretrain_module, "_build_model", broken)
    with pytest.raises(RuntimeError, match="no device"):
        pretrain(run_config, output, verbose=0)
    record = _run_json(output)
    assert record["status"] == "failed" and "no device" in record["error"] and record["step"] == 0
    monkeypatch.setattr(pretrain_module, "_build_model", original)
    assert pretrain(run_config, output, verbose=0)["step"] == 6  # no --overwrite needed


def test_interrupted_run_records_the_step_it_reached(run_config, tmp_path):
    output = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        pretrain(run_config, output, verbose=0, callbacks=[_Raise(5, KeyboardInterrupt())])
    record = _run_json(output)
    assert record["status"] == "interrupted" and record["step"] == 5


def test_disk_full_while_checkpointing(cli, run_config, tmp_path, monkeypatch):
    output = tmp_path / "run"
    save_weights = keras.Model.save_weights

    def full_after_first(self, path, *args, **kwargs):
        if int(self.optimizer.iterations) > 3:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return save_weights(self, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_after_first)
    config = _yaml(run_config, tmp_path / "c.yaml")
    code, _, err = cli("pretrain", "--config", config, "--output", output)
    assert code == 1 and "disk is full" in error_line(err)
    assert [step for step, _ in list_checkpoints(output / "checkpoints")] == [3]
    assert not [n for n in os.listdir(output / "checkpoints") if n.startswith(".")]
    record = _run_json(output)
    assert record["status"] == "failed" and "disk is full" in record["error"]


def test_no_room_for_a_checkpoint_is_found_before_hdf5_writes(run_config, tmp_path, monkeypatch):
    # HDF5 does not raise on a full disk (it logs from destructors, then the
    # process may crash), so the free space is checked before writing.
    import collections

    from kerasllm.training import callbacks

    real = shutil.disk_usage
    calls = []

    def no_room_after_first(path):
        calls.append(path)
        usage = real(path)
        return usage._replace(free=0) if len(calls) > 1 else usage

    monkeypatch.setattr(callbacks.shutil, "disk_usage", no_room_after_first)
    output = tmp_path / "run"
    with pytest.raises(OutputWriteError, match="disk is full"):
        pretrain(run_config, output, verbose=0)
    assert [step for step, _ in list_checkpoints(output / "checkpoints")] == [3]
    record = _run_json(output)
    assert record["status"] == "failed" and record["step"] == 6
    assert collections.Counter(os.listdir(output / "checkpoints")) == {"step-00000003": 1}


def test_read_only_output(cli, corpus, tmp_path, monkeypatch):
    def read_only(target, tag):
        raise OSError(errno.EROFS, "Read-only file system", str(target))

    monkeypatch.setattr(atomic, "make_sibling_directory", read_only)
    code, _, err = cli("tokenizer", "train", "--input", corpus, "--vocab-size", 300,
                       "--output", tmp_path / "tok")
    assert code == 1 and "read-only" in error_line(err)
    assert os.listdir(tmp_path) == []

    real_open = os.open

    def refuse_temp(path, *args, **kwargs):
        if str(path).endswith(".tmp"):
            raise OSError(errno.EROFS, "Read-only file system", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", refuse_temp)
    code, _, err = cli("data", "clean", "--input", corpus, "--output", tmp_path / "c.jsonl")
    assert code == 1 and "read-only" in error_line(err)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- 3. one-line errors


def _bad_corpus(kind, tmp_path):
    path = tmp_path / "corpus"
    path.mkdir()
    if kind == "empty file":
        (path / "a.txt").write_text("")
    elif kind == "binary":
        (path / "a.bin").write_bytes(bytes(range(256)) * 40)
    elif kind == "not utf-8":
        (path / "a.txt").write_bytes("caf\u00e9 ".encode("latin-1") * 500)
    return path


@pytest.mark.parametrize("kind", ["empty directory", "empty file", "binary", "not utf-8"])
def test_pretrain_bad_corpus(cli, kind, run_config, tmp_path):
    corpus = _bad_corpus(kind, tmp_path)
    config = _yaml({**run_config, "corpus": str(corpus), "tokenizer": None, "vocab_size": 300},
                   tmp_path / "c.yaml")
    code, _, err = cli("pretrain", "--config", config, "--output", tmp_path / "run")
    assert code == 2 and "corpus" in error_line(err)
    assert not (tmp_path / "run").exists()


def test_sentencepiece_vocabulary_smaller_than_the_alphabet(tmp_path, capfd):
    text = "".join(chr(0x4E00 + i) for i in range(2000))
    with pytest.raises(ValueError, match="vocab_size=300 is too small") as caught:
        train_tokenizer([text], kind="sentencepiece", vocab_size=300,
                        output_dir=tmp_path / "spm")
    assert "2,000 distinct characters" in str(caught.value)
    assert len(capfd.readouterr().err.splitlines()) < 5  # was 339 lines of log
    assert not (tmp_path / "spm").exists()


def test_set_model_to_a_number(cli, run_config, tmp_path):
    config = _yaml(run_config, tmp_path / "c.yaml")
    code, _, err = cli("pretrain", "--config", config, "--output", tmp_path / "run",
                       "--set", "model=5")
    assert code == 2 and "model must be dict" in error_line(err)


def test_numbers_written_the_short_way_are_floats(tmp_path):
    from kerasllm.cli.common import parse_set_overrides
    from kerasllm.training import PretrainConfig

    assert parse_set_overrides(["learning_rate=3e-4"]) == {"learning_rate": 3e-4}
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 6e-4\nwarmup_steps: 10\nsteps: 100\n")
    assert PretrainConfig.from_yaml(path).learning_rate == 6e-4
    assert PretrainConfig.from_yaml(
        path, parse_set_overrides(["weight_decay=1E-2"])).weight_decay == 0.01


@pytest.mark.parametrize("command", ["tokenizer", "generate"])
def test_prompt_that_is_not_utf8(cli, command, tokenizer_dir, finished_run):
    bad = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what argv holds
    if command == "tokenizer":
        code, _, err = cli("tokenizer", "encode", "--tokenizer", tokenizer_dir, "--text", bad)
    else:
        code, _, err = cli("generate", "--model", finished_run / "model", "--prompt", bad)
    assert code == 2 and "not valid UTF-8" in error_line(err) and "0xff" in err


def test_a_swapped_tokenizer_is_detected(finished_run, corpus, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(finished_run / "model", model_dir)
    from kerasllm.data import corpus_documents

    # The same text in capitals: as many tokens, other ids for every word.
    other = train_tokenizer(
        (d.upper() for d in corpus_documents(str(corpus), split="train")),
        vocab_size=320, output_dir=tmp_path / "other", show_progress=False,
    )
    assert other.vocabulary_size == load(model_dir / "tokenizer").vocabulary_size
    shutil.rmtree(model_dir / "tokenizer")
    shutil.copytree(tmp_path / "other", model_dir / "tokenizer")
    with pytest.raises(ValueError, match="not the one the model was trained with"):
        kerasllm.load(model_dir)

    import random

    rng = random.Random(0)
    words = [" ".join("".join(rng.choices("abcdefghijklmnop", k=5)) for _ in range(200))
             for _ in range(40)]
    bigger = train_tokenizer(words, vocab_size=400, output_dir=tmp_path / "bigger",
                             show_progress=False)
    assert bigger.vocabulary_size > 320
    shutil.rmtree(model_dir / "tokenizer")
    shutil.copytree(tmp_path / "bigger", model_dir / "tokenizer")
    with pytest.raises(ValueError, match="do not belong together"):
        kerasllm.load(model_dir)


@pytest.mark.parametrize(
    "damage, named",
    [
        ("truncate model.keras", "model.keras"),
        ("empty model.keras", "model.keras"),
        ("corrupt kerasllm.json", "kerasllm.json"),
        ("corrupt tokenizer.json", "tokenizer.json"),
    ],
)
def test_damaged_model_directory_names_the_file(cli, finished_run, tmp_path, damage, named):
    model_dir = tmp_path / "model"
    shutil.copytree(finished_run / "model", model_dir)
    if damage == "truncate model.keras":
        os.truncate(model_dir / "model.keras", 2000)
    elif damage == "empty model.keras":
        os.truncate(model_dir / "model.keras", 0)
    elif damage == "corrupt kerasllm.json":
        (model_dir / "kerasllm.json").write_text('{"format": "kerasllm-mo')
    else:
        (model_dir / "tokenizer" / "tokenizer.json").write_text("{not json")
    before = snapshot(model_dir)
    code, _, err = cli("evaluate", "--model", model_dir, "--input", finished_run / "log.csv")
    assert code == 2 and named in error_line(err)
    assert snapshot(model_dir) == before


def test_context_too_long_is_found_before_tokenizing(run_config, tmp_path):
    from kerasllm.training import ConfigError

    cache = tmp_path / "cache"
    config = {**run_config, "cache_dir": str(cache),
              "model": {**run_config["model"], "context_length": 8192}}
    with pytest.raises(ConfigError, match="context_length=8192 is too long"):
        pretrain(config, tmp_path / "run", verbose=0)
    assert not cache.exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------- 4. no hangs


def test_tokenizer_training_on_one_long_run_is_fast_and_shows_progress(tmp_path, capfd):
    started = time.perf_counter()
    tokenizer = train_tokenizer(["x" * 2_000_000, "some words here\n" * 100],
                                vocab_size=300, output_dir=tmp_path / "tok")
    assert time.perf_counter() - started < 60  # was many minutes
    assert "[kerasllm tokenizer] read 2 documents" in capfd.readouterr().err
    assert tokenizer.decode(tokenizer.encode("x" * 5000)) == "x" * 5000


# ---------------------------------------------------------------- 5. smaller things


def test_tensorboard_x_axis_is_the_optimizer_step(finished_run):
    import tensorflow as tf

    steps = set()
    for directory, _, files in os.walk(finished_run / "tensorboard" / "train"):
        for name in files:
            for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
                if any(v.tag == "epoch_loss" for v in event.summary.value):
                    steps.add(event.step)
    assert steps == {3, 6}  # log_every=3: not the epoch indices 0, 1


@pytest.mark.slow  # trains twice or more
def test_progress_has_no_ansi_codes_when_redirected(cli, run_config, tmp_path):
    config = _yaml({**run_config, "steps": 3, "eval_every": 3}, tmp_path / "c.yaml")
    code, out, err = cli("pretrain", "--config", config, "--output", tmp_path / "run")
    assert code == 0
    assert "loss" in out  # Keras's progress lines
    assert "\x1b" not in out and "\x1b" not in err
    assert "\r" not in out and "\r" not in err  # lines, not a redrawn bar


def test_no_cuda_probe_noise_on_the_command_line(tokenizer_dir):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "kerasllm.cli", "tokenizer", "encode", "--tokenizer",
         str(tokenizer_dir), "--text", "hello"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.slow  # trains twice or more
def test_resuming_a_finished_run_with_more_steps_keeps_the_schedule(run_copy, run_config, capfd):
    result = pretrain({**run_config, "steps": 9}, run_copy, resume=True, verbose=0)
    assert "learning-rate schedule is kept" in capfd.readouterr().err
    assert result["step"] == 9 and result["resumed_from"] == 6
    assert _run_json(run_copy)["config"]["decay_steps"] == 6
    rows = [r for r in csv_rows(run_copy / "log.csv") if int(r["step"]) > 6]
    floor = run_config["learning_rate"] * run_config["min_lr_ratio"]
    assert all(float(r["learning_rate"]) == pytest.approx(floor, rel=1e-3) for r in rows)


def csv_rows(path):
    from kerasllm.training.callbacks import read_log

    return read_log(path)


def test_write_errors_are_one_sentence(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputWriteError, match="disk is full") as caught:
        with atomic.atomic_path(tmp_path / "out.txt") as tmp:
            monkeypatch.setattr(atomic, "_fsync", full)
            open(tmp, "w").write("x")
    assert "\n" not in str(caught.value)
    assert os.listdir(tmp_path) == []


def test_data_cache_progress_is_not_redrawn_into_a_redirected_file(corpus, tokenizer_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "kerasllm.cli", "data", "cache", "--input", str(corpus), "--split", "val",
         "--tokenizer", str(tokenizer_dir), "--output", str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b" not in done.stderr
