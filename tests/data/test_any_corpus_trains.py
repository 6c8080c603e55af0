"""Any text trains: one Japanese file, held-out files, a tiny validation split."""

import json
import os
import random
import subprocess
import sys

import pytest

from kerasllm.training import PretrainConfig

_WORDS = ["吾輩", "猫", "名前", "東京", "電車", "学校", "先生", "天気", "今日", "本"]
_SMALL = {
    "preset": "tiny",
    "vocab_size": 300,
    "model": {"num_layers": 1, "num_heads": 2, "hidden_dim": 32, "intermediate_dim": 64,
              "context_length": 32},
    "batch_size": 8,
    "steps": 4,
    "warmup_steps": 1,
    "log_every": 2,
    "eval_every": 2,
    "eval_batches": 50,
    "checkpoint_every": 2,
}


def _japanese_text(lines, seed=0):
    rng = random.Random(seed)
    return "".join(
        f"{rng.choice(_WORDS)}は{rng.choice(_WORDS)}である。{rng.choice(_WORDS)}を見た。\n"
        for _ in range(lines)
    )


def test_config_reads_held_out_files_whole_and_the_corpus_whole_for_training():
    config = PretrainConfig(corpus="ja.txt", validation_corpus="val.txt", text_unit="line")
    assert config.corpus_split("train") == (
        "ja.txt", "all", {"text_unit": "line", "jsonl_field": "text"}
    )
    assert config.corpus_split("val")[:2] == ("val.txt", "all")
    assert config.corpus_split("test")[:2] == ("ja.txt", "test")
    plain = PretrainConfig(corpus="ja.txt", test_corpus="test.txt")
    assert plain.corpus_split("train")[:2] == ("ja.txt", "train")
    assert plain.corpus_split("test")[:2] == ("test.txt", "all")
    assert PretrainConfig().corpus_split("val") == ("python-stdlib", "val", {})


def test_text_unit_is_checked():
    from kerasllm.training import ConfigError

    with pytest.raises(ConfigError, match="text_unit must be one of.*Received: text_unit='page'"):
        PretrainConfig(text_unit="page")


def _cli(*args, cwd):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-m", "kerasllm.cli", *args], capture_output=True, text=True,
        env=env, cwd=cwd, timeout=600,
    )


@pytest.mark.slow
def test_pretrain_from_one_japanese_text_file(tmp_path):
    """The plain repro: one file, default split, a context of the tiny recipe."""
    (tmp_path / "ja.txt").write_text(_japanese_text(3000), encoding="utf-8")
    (tmp_path / "c.yaml").write_text(json.dumps({**_SMALL, "corpus": "ja.txt"}))
    result = _cli("pretrain", "--config", "c.yaml", "--output", "runs/ja", "--json",
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "input ran out of data" not in result.stderr
    # The cap is said once, not at every validation pass.
    assert result.stderr.count("fewer than eval_batches=50") == 1
    summary = json.loads(result.stdout)
    assert summary["step"] == 4 and summary["validation"]["num_tokens"] > 0
    run = json.loads((tmp_path / "runs/ja/run.json").read_text(encoding="utf-8"))
    assert "byte range" in run["data_splits"]["val"]

    # Held-out text named explicitly: all of the corpus trains.
    (tmp_path / "val.txt").write_text(_japanese_text(200, seed=1), encoding="utf-8")
    result = _cli("pretrain", "--config", "c.yaml", "--set", "validation_corpus=val.txt",
                  "--set", "tokenizer=runs/ja/tokenizer", "--output", "runs/held-out",
                  "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "runs/held-out/run.json").read_text(encoding="utf-8"))
    assert run["data_splits"] == {"train": "all of it", "val": "all of it"}


def test_tokenizer_train_help_states_the_train_split_and_an_empty_split_is_named(
    tmp_path, capsys
):
    from kerasllm.cli import build_parser, main

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["tokenizer", "train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Defaults to train." in help_text and "Defaults to all." not in help_text
    (tmp_path / "tiny.txt").write_text("abc", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["tokenizer", "train", "--input", str(tmp_path / "tiny.txt"), "--split", "val",
              "--vocab-size", "300", "--output", str(tmp_path / "tok")])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "'val' split of the corpus is empty" in error and "--split all" in error
