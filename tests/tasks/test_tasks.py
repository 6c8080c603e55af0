"""The built-in task suite: answers, verifier, splits, preference pairs, files, evaluation."""

import json
import random

import pytest

import kerasllm.tasks as tasks
from kerasllm.tasks import TASKS, make_preferences, make_split, verify


@pytest.mark.parametrize("name", list(TASKS))
def test_each_task_answer_verifies_and_the_wrong_one_does_not(name):
    rng = random.Random(0)
    for _ in range(200):
        prompt, answer, wrong = TASKS[name].sample(rng)
        record = {"task": name, "answer": answer}
        assert verify(record, answer) and verify(record, f"  {answer}\n")
        assert not verify(record, wrong), (prompt, answer, wrong)
        assert not verify(record, answer + " 1")


def test_answers_against_independent_computations():
    rng = random.Random(1)
    for _ in range(100):
        prompt, answer, _ = TASKS["add"].sample(rng)
        a, b = (int(x.replace(" ", "")) for x in prompt.removeprefix("What is ").removesuffix("?").split(" + "))
        assert int(answer.replace(" ", "")) == a + b
        prompt, answer, _ = TASKS["reverse"].sample(rng)
        assert answer.split() == prompt.split()[1:][::-1]
        prompt, answer, _ = TASKS["katakana"].sample(rng)
        assert answer == prompt.split(" ")[1].translate(
            {c: c + 0x60 for c in range(ord("ぁ"), ord("ゖ") + 1)})


@pytest.mark.parametrize(
    "number, kanji",
    [(1, "一"), (10, "十"), (11, "十一"), (20, "二十"), (23, "二十三"), (100, "百"), (105, "百五"),
     (110, "百十"), (999, "九百九十九"), (1000, "千"), (2024, "二千二十四")],
)
def test_kansuji(number, kanji):
    assert tasks.to_kansuji(number) == kanji


def test_split_is_deterministic_and_keeps_test_out_of_train():
    a = make_split(train=300, test=50, seed=7)
    assert a == make_split(train=300, test=50, seed=7)
    assert a != make_split(train=300, test=50, seed=8)
    test_prompts = {r["messages"][0]["content"] for r in a["test"]}
    assert len(test_prompts) == len(a["test"]) == 50 * len(TASKS)
    assert not test_prompts & {r["messages"][0]["content"] for r in a["train"]}
    # The test set does not depend on how much training data is asked for.
    assert make_split(train=10, test=50, seed=7)["test"] == a["test"]


def test_train_counts_per_task():
    split = make_split(["add", "sort"], train={"add": 5, "sort": 2}, test=1)
    assert [r["task"] for r in split["train"]] == ["add", "sort", "add", "sort", "add", "add", "add"]
    with pytest.raises(ValueError, match="every task"):
        make_split(["add", "sort"], train={"add": 5})


def test_records_in_both_formats():
    pc = make_split(["add"], train=1, test=1, format="prompt-completion")["test"][0]
    assert pc["prompt"].endswith("?\n") and pc["completion"] == pc["answer"] and pc["task"] == "add"
    chat = make_split(["add"], train=1, test=1)["test"][0]
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert chat["messages"][1]["content"] == chat["answer"]


def test_preference_pairs_are_correct_versus_plausible_wrong():
    pairs = make_preferences(train=20, test=5, format="prompt-completion")
    assert len(pairs) == 20 * len(TASKS)
    for pair in pairs:
        assert set(pair) >= {"prompt", "chosen", "rejected"}
        assert verify(pair, pair["chosen"]) and not verify(pair, pair["rejected"])
    chat = make_preferences(["reverse"], train=1, test=1)[0]
    assert chat["prompt"][0]["role"] == "user" and chat["chosen"][0]["role"] == "assistant"
    assert chat["rejected"][0]["content"] == chat["prompt"][0]["content"].removeprefix("Reverse: ")


def test_errors():
    with pytest.raises(ValueError, match="Unknown task"):
        make_split(["multiply"])
    with pytest.raises(ValueError, match="at most"):
        make_split(["kansuji"], test=600)
    with pytest.raises(ValueError, match="answer"):
        verify({"task": "add"}, "1")


def test_tasks_make_command(tmp_path, capsys):
    from kerasllm.cli import main

    main(["tasks", "make", "--output", str(tmp_path), "--tasks", "add,reverse", "--train", "5",
          "--test", "3", "--format", "prompt-completion", "--seed", "2", "--preferences", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["counts"] == {"train": 10, "test": 6, "preferences": 10}
    lines = (tmp_path / "preferences.jsonl").read_text(encoding="utf-8").splitlines()
    assert {"prompt", "chosen", "rejected"} <= set(json.loads(lines[0]))
    train = [json.loads(l) for l in (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["task"] for r in train[:2]] == ["add", "reverse"]


def test_evaluate_tasks_scores_with_verify(monkeypatch):
    from kerasllm.tasks import evaluate as evaluate_module

    def perfect_on_add(model, records, **kwargs):
        return [r["answer"] if r["task"] == "add" else "?" for r in records]

    monkeypatch.setattr(evaluate_module, "answer_tasks", perfect_on_add)
    result = tasks.evaluate_tasks(object(), ["add", "sort"], test=10)
    assert result == {"tasks": {"add": {"accuracy": 1.0, "n": 10}, "sort": {"accuracy": 0.0, "n": 10}},
                      "mean_accuracy": 0.5}


def test_prompt_text_formats():
    record = make_split(["add"], train=0, test=1)["test"][0]
    assert tasks.prompt_text(record, "messages").endswith("<|im_start|>assistant\n")
    assert record["answer"] not in tasks.prompt_text(record, "messages").split("?")[-1]
