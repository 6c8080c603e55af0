"""`FinetuneConfig`: the shipped recipes, comments on every key, and the errors."""

import pathlib

import pytest

from kerasllm.finetune import FinetuneConfig
from kerasllm.training import ConfigError

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "configs" / "finetune"


def test_the_three_recipes_exist_and_parse():
    configs = {p.stem: FinetuneConfig.from_yaml(p) for p in CONFIGS.glob("*.yaml")}
    assert {"sft", "partial", "lora"} <= set(configs)
    assert [configs[n].method for n in ("sft", "partial", "lora")] == ["full", "partial", "lora"]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_key_has_a_comment(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{path.name}: no comment on {line.strip()!r}"


def test_trainable_tokens_parse():
    config = FinetuneConfig.from_yaml(CONFIGS / "lora.yaml")
    assert config.trainable_tokens[:2] == ["<|im_start|>", "<|im_end|>"]
    assert [set(entry) for entry in config.trainable_tokens[2:]] == [{"text"}, {"text"}]
    config = FinetuneConfig.from_yaml(CONFIGS / "partial.yaml", {"trainable_tokens": ["<|im_end|>"]})
    assert config.trainable_tokens == ["<|im_end|>"]
    assert FinetuneConfig.from_yaml(CONFIGS / "sft.yaml").trainable_tokens is None


def test_overrides_reach_into_lora():
    config = FinetuneConfig.from_yaml(CONFIGS / "lora.yaml", {"lora.rank": 2, "steps": 70})
    assert config.lora["rank"] == 2 and config.lora["alpha"] == 8 and config.steps == 70


@pytest.mark.parametrize(
    "values, match",
    [
        ({"base": "m", "data": "d.jsonl", "learning_rat": 1.0}, "learning_rate"),
        ({"base": "m"}, "exactly one of data"),
        ({"base": "m", "data": "d", "tasks": ["add"]}, "exactly one of data"),
        ({"base": "m", "tasks": ["multiply"]}, "Unknown task"),
        ({"base": "m", "data": "d", "method": "partial"}, "trainable_blocks"),
        ({"base": "m", "data": "d", "method": "qlora"}, "method must be one of"),
        ({"base": "m", "data": "d", "lora": {"rnk": 4}}, "Unknown lora key"),
        ({"base": "m", "data": "d", "steps": "10"}, "steps must be int"),
        ({"base": "m", "data": "d", "format": "classification"}, "num_classes"),
        ({"data": "d"}, "base"),
        ({"base": "m", "data": "d", "trainable_tokens": ["<|im_end|>"]}, "method lora or partial"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": []}, "non-empty list"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": ["a", "a"]}, "distinct"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": [-1]}, r"Received: trainable_tokens=\[-1\]"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": "<|im_end|>"}, "trainable_tokens must be"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": [{"txt": "ア"}]}, r"\{text: TEXT\}"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": [{"text": ""}]}, "non-empty TEXT"),
        ({"base": "m", "data": "d", "method": "lora", "trainable_tokens": [["a"]]},
         "a list of str or dict"),
    ],
)
def test_errors_say_what_was_received(values, match):
    with pytest.raises(ConfigError, match=match):
        FinetuneConfig.from_dict(values)


def test_trainable_tokens_text_entries_are_every_token_of_the_text(chat_tokenizer):
    import tokenizers

    from kerasllm.finetune.run import _token_ids

    reference = tokenizers.Tokenizer.from_str(chat_tokenizer._py.hf.to_str())
    text = "サクラ 二十三"
    expected = list(dict.fromkeys(reference.encode(text, add_special_tokens=False).ids))
    end = reference.token_to_id("<|im_end|>")
    ids = _token_ids(chat_tokenizer, ["<|im_end|>", {"text": text}, {"text": text}])
    assert ids == [end] + [i for i in expected if i != end]
    assert len(expected) > 3  # bytes of kana and kanji: several tokens
    with pytest.raises(ConfigError, match=r"not a token .*\{text: 'サクラ'\}"):
        _token_ids(chat_tokenizer, ["サクラ"])
