"""The chat template: rendering, the loss mask, and the round trip through a trained tokenizer."""

import pytest

from kerasllm.tokenizers.chat_template import (
    IM_END,
    ChatFormatError,
    chat_segments,
    encode_chat,
    render_chat,
)

CONVERSATION = [
    {"role": "system", "content": "Be terse."},
    {"role": "user", "content": "What is 1 + 2?"},
    {"role": "assistant", "content": "3"},
    {"role": "user", "content": "カタカナ: さくら"},
    {"role": "assistant", "content": "サクラ"},
]


def test_render_is_chatml():
    assert render_chat(CONVERSATION[1:3]) == (
        "<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n3<|im_end|>\n"
    )
    assert render_chat(CONVERSATION[1:2], add_generation_prompt=True).endswith(
        "<|im_start|>assistant\n"
    )


def test_segments_join_to_the_rendered_text():
    for add in (False, True):
        segments = chat_segments(CONVERSATION, add_generation_prompt=add)
        assert "".join(text for text, _ in segments) == render_chat(CONVERSATION, add_generation_prompt=add)
    trained = [text for text, trained in chat_segments(CONVERSATION) if trained]
    assert trained == [f"3{IM_END}", f"サクラ{IM_END}"]


def test_round_trip_through_a_trained_tokenizer(chat_tokenizer):
    ids, mask = encode_chat(chat_tokenizer, CONVERSATION)
    assert chat_tokenizer.decode(ids) == render_chat(CONVERSATION)
    assert len(ids) == len(mask)
    # The special tokens are single ids.
    assert ids.count(chat_tokenizer.token_to_id(IM_END)) == 5


def test_loss_mask_against_a_hand_computed_one(chat_tokenizer):
    tok = chat_tokenizer
    ids, mask = encode_chat(tok, CONVERSATION)
    # By hand: the context pieces are untrained, each answer and its <|im_end|> trained.
    first = tok.encode(
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    answer1 = tok.encode("3") + [tok.token_to_id(IM_END)]
    between = tok.encode("\n<|im_start|>user\nカタカナ: さくら<|im_end|>\n<|im_start|>assistant\n")
    answer2 = tok.encode("サクラ") + [tok.token_to_id(IM_END)]
    after = tok.encode("\n")
    assert ids == first + answer1 + between + answer2 + after
    assert mask == [0] * len(first) + [1] * len(answer1) + [0] * len(between) + [1] * len(answer2) + [0]
    # The end-of-turn token is trained after every answer.
    end = tok.token_to_id(IM_END)
    assert [m for i, m in zip(ids, mask) if i == end] == [0, 0, 1, 0, 1]


def test_prompt_ids_are_what_generation_feeds(chat_tokenizer):
    prompt = render_chat(CONVERSATION[:2], add_generation_prompt=True)
    ids, mask = encode_chat(chat_tokenizer, CONVERSATION[:3])
    prompt_ids = chat_tokenizer.encode(prompt)
    assert ids[: len(prompt_ids)] == prompt_ids
    assert not any(mask[: len(prompt_ids)])


def test_train_on_all(chat_tokenizer):
    ids, mask = encode_chat(chat_tokenizer, CONVERSATION, train_on="all")
    assert mask == [1] * len(ids)


def test_tokenizer_without_chat_tokens_is_refused(plain_tokenizer):
    with pytest.raises(ChatFormatError, match="<\\|im_start\\|>"):
        encode_chat(plain_tokenizer, CONVERSATION)


@pytest.mark.parametrize(
    "messages, match",
    [
        ([{"role": "robot", "content": "hi"}], "unknown role"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": " "}], "empty assistant"),
        ([{"role": "user"}], "'role' and 'content'"),
        ([], "non-empty"),
    ],
)
def test_bad_conversations(chat_tokenizer, messages, match):
    with pytest.raises(ChatFormatError, match=match):
        encode_chat(chat_tokenizer, messages)
