"""Preference pairs from a model's own answers (`sample_preferences`, `tasks make --sample-from`)."""

import json

import pytest

from kerasllm.alignment import sampled_pairs


def _record(question, answer):
    return {"task": "add", "answer": answer,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_pairs_join_each_prompts_right_answers_to_its_wrong_ones(monkeypatch, tmp_path, tokenizer):
    from kerasllm.alignment import encode_pairs, load_preferences

    records = [_record("2 + 3 =", "5"), _record("1 + 2 =", "3"), _record("4 + 4 =", "8")]
    # Four answers per prompt: (text, stopped). An answer that never stopped
    # and an empty one are no one's pair.
    answers = [
        [("5", True), ("6", True), ("7", True), ("9", False)],
        [("4", True), ("1", True), ("1", True), ("", True)],
        [("8", True), ("8", True), ("1", True), ("5", False)],
    ]
    monkeypatch.setattr(sampled_pairs, "sample_answers", lambda model, recs, **kw: (
        [t for row in answers for t, _ in row], [s for row in answers for _, s in row]))
    judge = lambda record, text: text == record["answer"]  # noqa: E731

    pairs = sampled_pairs.sample_preferences("unused", records, samples=4, per_prompt=4, judge=judge)
    assert [(p["answer"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("5", "5", "6"), ("5", "5", "7"),  # one right, two wrong: two pairs
        ("8", "8", "1"),                   # 1 + 2: nothing right, no pair; "5" never stopped
    ]
    assert pairs[0]["prompt"] == [{"role": "user", "content": "2 + 3 ="}]  # the reference answer dropped
    assert pairs[0]["task"] == "add" and "messages" not in pairs[0]
    one = sampled_pairs.sample_preferences("unused", records, samples=4, per_prompt=1, judge=judge)
    assert [(p["chosen"], p["rejected"]) for p in one] == [("5", "6"), ("8", "1")]

    # They load as conversational pairs: each completion ends at <|im_end|>.
    file = tmp_path / "pairs.jsonl"
    file.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    loaded = load_preferences(str(file))
    assert [p.chosen for p in loaded] == ["5<|im_end|>", "5<|im_end|>", "8<|im_end|>"]
    encoded = encode_pairs(loaded, tokenizer, max_length=32)
    im_end = tokenizer.token_to_id("<|im_end|>")
    for labels in encoded.chosen_labels:
        assert [t for t in labels if t != -100][-1] == im_end


def test_answers_come_from_the_model_in_record_order(base_dir):
    import kerasllm
    from kerasllm.alignment.data import parse_prompt
    from kerasllm.alignment.rollout import sample

    records = [_record("1 + 1 =", "2"), _record("2 + 2 =", "4")]
    texts, stopped = sampled_pairs.sample_answers(base_dir, records, samples=3, max_new_tokens=4, seed=5)
    model = kerasllm.load(base_dir)
    tok = model.tokenizer
    ids = [list(tok.encode(parse_prompt(r)["prompt"])) for r in records for _ in range(3)]
    direct = sample(model, ids, max_new_tokens=4, seed=5, end_token_id=tok.token_to_id("<|im_end|>"),
                    pad_token_id=int(tok.pad_token_id))
    assert texts == direct.texts and stopped == [bool(s) for s in direct.stopped]
    pairs = sampled_pairs.sample_preferences(model, records, samples=3, max_new_tokens=4, seed=5,
                                             judge=lambda r, t: len(t) % 2 == 0)
    for pair in pairs:  # whatever pairs there are were stopped answers of that prompt
        owner = [r["answer"] for r in records].index(pair["answer"])
        mine = {t for t, s in zip(texts[owner * 3 : owner * 3 + 3], stopped[owner * 3 : owner * 3 + 3]) if s}
        assert {pair["chosen"], pair["rejected"]} <= mine


def test_bad_arguments_are_named(base_dir):
    records = [_record("1 + 1 =", "2")]
    with pytest.raises(ValueError, match="samples must be an int >= 2.*samples=1"):
        sampled_pairs.sample_preferences("unused", records, samples=1)
    with pytest.raises(ValueError, match="per_prompt=0"):
        sampled_pairs.sample_preferences("unused", records, per_prompt=0)
    with pytest.raises(ValueError, match="needs a model with a tokenizer"):
        sampled_pairs.sample_answers(object(), records, samples=2)
    with pytest.raises(ValueError, match="mix conversations and plain prompts"):
        sampled_pairs.sample_answers(base_dir, [records[0], {"prompt": "1 + 1 ="}], samples=2)


def test_tasks_make_sample_from_writes_the_pairs_and_says_how(tmp_path, base_dir, capsys):
    from kerasllm.cli import main

    main(["tasks", "make", "--output", str(tmp_path), "--tasks", "add", "--train", "3", "--test", "2",
          "--sample-from", base_dir, "--samples", "4", "--max-new-tokens", "4", "--json"])
    result = json.loads(capsys.readouterr().out)  # --json: stdout holds the JSON alone
    path = tmp_path / "sampled_preferences.jsonl"
    assert result["files"]["sampled_preferences"] == str(path) and path.is_file()
    assert result["counts"]["sampled_preferences"] == len(path.read_text(encoding="utf-8").splitlines())
    manifest = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    assert manifest["sampled_preferences"]["model"] == base_dir and manifest["train"] == 3
    with pytest.raises(SystemExit):
        main(["tasks", "make", "--output", str(tmp_path / "b"), "--tasks", "add", "--train", "2",
              "--sample-from", str(tmp_path / "nowhere")])
    assert "--sample-from must be a model directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tasks", "make", "--output", str(tmp_path / "b"), "--sample-from", base_dir, "--samples", "1"])
    assert "--samples must be at least 2. Received: --samples 1" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()  # refused before anything was written
