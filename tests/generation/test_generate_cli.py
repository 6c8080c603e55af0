"""`kerasllm generate`: a saved model directory with a real BPE tokenizer."""

import json

import pytest

import kerasllm
from generation.support import tiny_gpt
from kerasllm import cli
from kerasllm.tokenizers import train_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate_cli")
    docs = ["def add(a, b):\n    return a + b\n", "こんにちは世界 😀 hello world"] * 20
    tokenizer = train_tokenizer(
        docs, kind="bpe", vocab_size=300, output_dir=root / "tok", show_progress=False
    )
    model = tiny_gpt(vocab_size=tokenizer.vocabulary_size)
    return kerasllm.save(model, root / "model", tokenizer=tokenizer)


def run_cli(capsys, *argv):
    code = cli.main(["generate", *map(str, argv)])
    return code, capsys.readouterr()


@pytest.mark.slow  # loads the model afresh: compiles with XLA
def test_json_output(model_dir, capsys):
    code, out = run_cli(
        capsys, "--model", model_dir, "--prompt", "def add", "--prompt", "こんにちは",
        "--max-new-tokens", 8, "--strategy", "top_p", "--top-p", 0.9, "--seed", 1, "--json",
    )
    assert code == 0
    result = json.loads(out.out)
    assert [c["prompt"] for c in result["completions"]] == ["def add", "こんにちは"]
    for completion in result["completions"]:
        assert set(completion) >= {"prompt", "text", "token_ids", "stop_reason"}
        assert len(completion["token_ids"]) <= 8
        assert completion["stop_reason"] in ("end_token", "length", "stop_string")
    model = kerasllm.load(model_dir)
    again = model.generate(["def add", "こんにちは"], max_new_tokens=8, strategy="top_p", top_p=0.9, seed=1)
    assert again == [c["text"] for c in result["completions"]]


@pytest.mark.slow
def test_stream_and_plain_output_agree(model_dir, capsys):
    _, plain = run_cli(capsys, "--model", model_dir, "--prompt", "hello", "--max-new-tokens", 8)
    _, streamed = run_cli(
        capsys, "--model", model_dir, "--prompt", "hello", "--max-new-tokens", 8, "--stream"
    )
    assert plain.out == "hello" + streamed.out  # --stream prints the continuation only


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--top-p", "1.5"], "top_p=1.5"),
        (["--max-new-tokens", "0"], "max_new_tokens=0"),
        (["--temperature", "-2"], "temperature=-2.0"),
        (["--stream", "--json"], "--stream and --json"),
    ],
)
def test_bad_values_are_named(model_dir, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "--model", model_dir, "--prompt", "hi", *argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_model_dir(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "--model", tmp_path / "nope", "--prompt", "hi")
    assert "nope" in capsys.readouterr().err


def test_flags_come_from_generation_options():
    """Every option flag has GenerationOptions' default and choices, and
    reaches the options object unchanged."""
    import argparse
    import dataclasses

    from kerasllm.cli.generate import GENERATION_FLAGS, add_generation_flags, options_from_args
    from kerasllm.generation import GenerationOptions

    parser = argparse.ArgumentParser()
    add_generation_flags(parser)
    assert options_from_args(parser.parse_args([])) == {}  # nothing restated
    args = parser.parse_args(
        ["--strategy", "beam", "--length-penalty", "1.5", "--early-stopping",
         "--no-valid-utf8", "--stop", "a", "b", "--num-beams", "3"]
    )
    options = GenerationOptions(**options_from_args(args))
    assert (options.length_penalty, options.early_stopping, options.valid_utf8) == (1.5, True, False)
    assert options.stop == ("a", "b") and options.num_beams == 3
    fields = {f.name: f for f in dataclasses.fields(GenerationOptions)}
    strategy = next(a for a in parser._actions if a.dest == "strategy")
    assert tuple(strategy.choices) == fields["strategy"].metadata["choices"]
    for name in GENERATION_FLAGS:
        action = next(a for a in parser._actions if a.dest == name)
        assert fields[name].metadata["help"] in action.help


@pytest.mark.slow
def test_chat_renders_the_template_and_stops_at_end_of_turn(model_dir, capsys):
    from kerasllm.tokenizers.chat_template import IM_END, render_chat

    code, out = run_cli(
        capsys, "--model", model_dir, "--chat", "--system", "terse", "--prompt", "2+3=",
        "--max-new-tokens", 6, "--json",
    )
    assert code == 0
    [completion] = json.loads(out.out)["completions"]
    messages = [{"role": "system", "content": "terse"}, {"role": "user", "content": "2+3="}]
    assert completion["prompt"] == render_chat(messages, add_generation_prompt=True)
    model = kerasllm.load(model_dir)
    end_of_turn = model.tokenizer.token_to_id(IM_END)
    [expected] = model.generate_ids(
        [model.tokenizer.encode(completion["prompt"])], max_new_tokens=6,
        stop_token_ids=[end_of_turn],
    )
    assert completion["token_ids"] == expected


def test_stop_token_ids_end_a_row(model):
    """An extra stop id ends a row as the end token does (not included)."""
    [free] = model.generate_ids([[72, 101, 108]], max_new_tokens=8, end_token_id=None)
    stop = free[3]
    first = free.index(stop)
    [stopped] = model.generate_ids(
        [[72, 101, 108]], max_new_tokens=8, end_token_id=None, stop_token_ids=[stop]
    )
    assert stopped == free[:first]
