"""Preference and prompt files in every accepted form, and their errors."""

import json

import pytest

from kerasllm.alignment.data import (
    LoadReport,
    PreferenceDataError,
    encode_pairs,
    load_preferences,
    load_prompts,
)


def write(path, lines):
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    return path


def test_explicit_prompt(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"prompt": "2+3=", "chosen": "5", "rejected": "6"}])
    [pair] = load_preferences(path)
    assert (pair.prompt, pair.chosen, pair.rejected, pair.chat) == ("2+3=", "5", "6", False)


def test_implicit_prompt_is_the_shared_prefix_cut_at_a_word(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"chosen": "Q: add 2 and 3. A: 5", "rejected": "Q: add 2 and 3. A: 50"}])
    [pair] = load_preferences(path)
    assert pair.prompt == "Q: add 2 and 3. A: "
    assert (pair.chosen, pair.rejected) == ("5", "50")


def test_conversational_forms_render_with_the_chat_template(tmp_path):
    user = {"role": "user", "content": "2+3="}
    lines = [
        {"prompt": [user], "chosen": [{"role": "assistant", "content": "5"}],
         "rejected": [{"role": "assistant", "content": "6"}]},
        {"chosen": [user, {"role": "assistant", "content": "5"}],
         "rejected": [user, {"role": "assistant", "content": "6"}]},
        {"prompt": [user], "chosen": "5", "rejected": "6"},
    ]
    pairs = load_preferences(write(tmp_path / "p.jsonl", lines))
    for pair in pairs:
        assert pair.chat
        assert pair.prompt == "<|im_start|>user\n2+3=<|im_end|>\n<|im_start|>assistant\n"
        assert (pair.chosen, pair.rejected) == ("5<|im_end|>", "6<|im_end|>")


@pytest.mark.parametrize(
    "line,problem",
    [
        ("{not json", "not valid JSON"),
        ({"prompt": "a", "chosen": "b"}, "missing field 'rejected'"),
        ({"prompt": "a", "chosen": "b", "rejected": "b"}, "same text"),
        ({"prompt": [{"role": "robot", "content": "x"}], "chosen": "b", "rejected": "c"}, "unknown role"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, line, problem):
    good = {"prompt": "a", "chosen": "b", "rejected": "c"}
    path = write(tmp_path / "p.jsonl", [good, line])
    with pytest.raises(PreferenceDataError, match=rf"p.jsonl:2: .*{problem}"):
        load_preferences(path)
    report = LoadReport()
    assert len(load_preferences(path, skip_bad_lines=True, report=report)) == 1
    assert report.used == 1 and report.skipped[0][0].endswith("p.jsonl:2")


def test_prompt_only_files_keep_the_other_fields(tmp_path):
    lines = [
        {"prompt": "2+3=", "task": "add", "answer": "5"},
        {"messages": [{"role": "user", "content": "2+3="}, {"role": "assistant", "content": "5"}],
         "task": "add", "answer": "5"},
    ]
    plain, chat = load_prompts(write(tmp_path / "p.jsonl", lines))
    assert plain == {"prompt": "2+3=", "task": "add", "answer": "5", "chat": False}
    assert chat["prompt"].endswith("<|im_start|>assistant\n") and "5" not in chat["prompt"]
    assert chat["answer"] == "5"


def test_encode_pairs_labels_only_the_completion(tokenizer):
    from kerasllm.alignment.data import PreferencePair

    pairs = [PreferencePair("the fox", " jumps", " dog dog dog")]
    encoded = encode_pairs(pairs, tokenizer, max_length=32)
    prompt = tokenizer.encode("the fox")
    chosen = list(tokenizer.encode(" jumps")) + [tokenizer.end_token_id]
    full = list(prompt) + chosen
    row = encoded.chosen_ids[0]
    assert list(row[: len(full) - 1]) == full[:-1]
    labels = encoded.chosen_labels[0]
    assert (labels[: len(prompt) - 1] == -100).all()
    assert list(labels[len(prompt) - 1 : len(full) - 1]) == chosen
    assert (labels[len(full) - 1 :] == -100).all()
    assert encoded.chosen_ids.shape == encoded.rejected_ids.shape


def test_long_prompts_lose_their_oldest_tokens(tokenizer):
    from kerasllm.alignment.data import PreferencePair

    pairs = [PreferencePair("the quick brown fox " * 10, " 1", " 2")]
    encoded = encode_pairs(pairs, tokenizer, max_length=8)
    assert encoded.truncated == 1 and encoded.chosen_ids.shape[1] == 8
    assert (encoded.chosen_labels[0] != -100).sum() == len(tokenizer.encode(" 1")) + 1
