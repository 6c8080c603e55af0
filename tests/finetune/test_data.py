"""Fine-tuning data: each format, completion-only labels, errors with file:line, batching."""

import json

import numpy as np
import pytest

from kerasllm.finetune.data import (
    WIDTH_MULTIPLE,
    BatchSchedule,
    DataError,
    encode_record,
    encode_records,
    language_model_batch,
    read_jsonl,
)


def write(path, lines):
    path.write_text("".join(l if isinstance(l, str) else json.dumps(l, ensure_ascii=False) + "\n"
                            for l in lines), encoding="utf-8")
    return path


MESSAGES = {"messages": [{"role": "user", "content": "What is 2 + 3?"},
                         {"role": "assistant", "content": "5"}]}


@pytest.mark.parametrize(
    "record, format",
    [
        ({"prompt": "What is 2 + 3?\n", "completion": "5"}, "prompt-completion"),
        (MESSAGES, "messages"),
        ({"text": "def f():\n    pass\n"}, "text"),
        ({"text": "good", "label": 1}, "classification"),
    ],
)
def test_each_format_is_detected_and_read(tmp_path, record, format):
    found, records = read_jsonl(write(tmp_path / "d.jsonl", [record, record]), num_classes=2)
    assert found == format
    assert len(records) == 2 and records[0]["_source"].endswith("d.jsonl:1")


def test_prompt_completion_mask_and_labels_by_hand(chat_tokenizer):
    tok = chat_tokenizer
    ids, mask = encode_record(tok, {"prompt": "What is 2 + 3?\n", "completion": "5"}, "prompt-completion")
    prompt, completion = tok.encode("What is 2 + 3?\n"), tok.encode("5")
    assert ids == prompt + completion + [tok.end_token_id]
    assert mask == [0] * len(prompt) + [1] * (len(completion) + 1)
    inputs, labels = language_model_batch([(ids, mask)], tok.pad_token_id, width=len(ids) + 2)
    # Labels are the next ids, -100 on the prompt and the padding.
    expected = [-100] * (len(prompt) - 1) + completion + [tok.end_token_id] + [-100] * 3
    assert labels[0].tolist() == expected
    assert inputs[0].tolist() == ids[:-1] + [tok.pad_token_id] * 3


def test_whole_text_switch(chat_tokenizer):
    ids, mask = encode_record(chat_tokenizer, {"prompt": "a\n", "completion": "b"}, "prompt-completion",
                              completion_only_loss=False)
    assert mask == [1] * len(ids)
    ids, mask = encode_record(chat_tokenizer, MESSAGES, "messages", completion_only_loss=False)
    assert mask == [1] * len(ids)


def test_text_trains_everything_and_ends(chat_tokenizer):
    ids, mask = encode_record(chat_tokenizer, {"text": "hello"}, "text")
    assert ids[-1] == chat_tokenizer.end_token_id and mask == [1] * len(ids)


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"prompt": "a", "completion": \n', "not valid JSON"),
        ({"prompt": "a"}, "missing field"),
        ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
         "unknown role 'robot'"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": ""}]},
         "empty assistant turn"),
        ({"messages": [{"role": "user", "content": "x"}]}, "no assistant turn"),
    ],
)
def test_errors_name_file_line_and_problem(tmp_path, chat_tokenizer, line, problem):
    good = {"prompt": "a", "completion": "b"} if "messages" not in str(line) else MESSAGES
    path = write(tmp_path / "bad.jsonl", [good, line])
    format = "messages" if "messages" in str(line) else "prompt-completion"
    with pytest.raises(DataError, match=rf"bad\.jsonl:2: .*{problem}"):
        _, records = read_jsonl(path, format=format)
        encode_records(chat_tokenizer, records, format, max_length=64)


def test_skip_bad_lines_counts(tmp_path, chat_tokenizer):
    path = write(tmp_path / "d.jsonl", [MESSAGES, "not json\n", {"foo": 1},
                                        {"messages": [{"role": "user", "content": "x"},
                                                      {"role": "assistant", "content": " "}]}, MESSAGES])
    report = {}
    format, records = read_jsonl(path, skip_bad_lines=True, report=report)
    examples = encode_records(chat_tokenizer, records, format, max_length=64, skip_bad_lines=True,
                              report=report)
    assert len(examples) == 2 and report["skipped_bad_lines"] == 3


def test_tokenizer_without_chat_tokens_names_the_line(tmp_path, plain_tokenizer):
    _, records = read_jsonl(write(tmp_path / "chat.jsonl", [MESSAGES]))
    with pytest.raises(DataError, match=r"chat\.jsonl:1: .*no <\|im_start\|>"):
        encode_records(plain_tokenizer, records, "messages", max_length=64, skip_bad_lines=True)


def test_overlong_examples_are_truncated_or_dropped_and_counted(chat_tokenizer):
    records = [{"prompt": "x\n", "completion": "a b c d e f g h i j k l"},
               {"prompt": "a b c d e f g h i j k l m n o p\n", "completion": "y"},
               {"prompt": "x\n", "completion": "y"}]
    report = {}
    examples = encode_records(chat_tokenizer, records, "prompt-completion", max_length=8, report=report)
    # The first is cut; the second keeps only prompt tokens, so nothing is left to train: dropped.
    assert [len(ids) for ids, _ in examples] == [8, len(examples[1][0])]
    assert report["truncated"] == 1 and report["dropped_too_long"] == 1
    report = {}
    encode_records(chat_tokenizer, records, "prompt-completion", max_length=8, overlong="drop",
                   report=report)
    assert report["dropped_too_long"] == 2 and report["examples"] == 1


def _examples(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return [([1] * int(k), [1] * int(k)) for k in rng.integers(4, 60, size=n)]


def test_schedule_is_deterministic_and_covers_each_pass():
    a, b = BatchSchedule(_examples(), 8, 0, 64, seed=3), BatchSchedule(_examples(), 8, 0, 64, seed=3)
    assert [a.indices(s) for s in range(60)] == [b.indices(s) for s in range(60)]
    seen = sorted(i for s in range(a.batches_per_pass) for i in a.indices(s))
    assert seen == list(range(400))


def test_buckets_pad_less_than_random_batches():
    bucket = BatchSchedule(_examples(), 8, 0, 64, seed=0, batching="bucket")
    random_ = BatchSchedule(_examples(), 8, 0, 64, seed=0, batching="random")
    assert bucket.padding_fraction(50) < random_.padding_fraction(50) / 2


def test_generator_widths_vary_from_the_first_two_batches():
    schedule = BatchSchedule([([1] * 20, [1] * 20)] * 64, 8, 0, 64, seed=0)
    generator = schedule.generator()
    first, second = next(generator), next(generator)
    assert first[0].shape[1] != second[0].shape[1]
    assert second[0].shape[1] % WIDTH_MULTIPLE == 0
    # Extra padding changes no label.
    assert (first[1][:, second[0].shape[1]:] == -100).all()
