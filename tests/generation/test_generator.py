"""The text API (`GPT.generate`/`generate_ids`/`stream`) over compiled programs."""

import pytest
from keras import ops

from generation.support import PROMPTS, left_pad, tiny_gpt
from kerasllm.generation import Generator, generate_tokens, get_generator

MAX_NEW = 16  # with prompts of <= 16 tokens: one cache bucket (32) for all tests
TEXTS = ["Hello", "Why so s"]  # the bytes of PROMPTS


def test_generate_equals_the_in_graph_loop(model):
    ids, mask = left_pad(PROMPTS)
    tokens, lengths, _ = generate_tokens(model, ids, mask, MAX_NEW, max_length=32)
    expected = [
        ops.convert_to_numpy(tokens)[i, : int(ops.convert_to_numpy(lengths)[i])].tolist()
        for i in range(2)
    ]
    # The in-graph loop without a table has no valid-UTF-8 mask; nor here.
    kwargs = dict(max_new_tokens=MAX_NEW, end_token_id=None, valid_utf8=False)
    assert model.generate_ids(PROMPTS, **kwargs) == expected
    assert model.generate_ids(PROMPTS[0], **kwargs) == expected[0]


def test_text_in_text_out(model):
    text = model.generate(TEXTS[0], max_new_tokens=MAX_NEW)
    [completion] = get_generator(model).complete([TEXTS[0]], max_new_tokens=MAX_NEW)
    assert isinstance(text, str) and text == completion.text
    assert completion.text == model.tokenizer.decode(completion.token_ids)
    assert completion.num_prompt_tokens == 5
    assert model.generate(TEXTS, max_new_tokens=MAX_NEW)[0] == text


def test_batch_equals_each_prompt_alone(model):
    batch = model.generate(TEXTS + ["x"], max_new_tokens=MAX_NEW)  # 3 rows → bucket 4
    assert batch == [model.generate(t, max_new_tokens=MAX_NEW) for t in TEXTS + ["x"]]


def test_no_recompilation_within_buckets(model):
    generator = get_generator(model)
    model.generate(["Hello"], max_new_tokens=MAX_NEW, strategy="sample", seed=0)
    model.generate(["Hello"], max_new_tokens=MAX_NEW)
    traces = generator.trace_count
    model.generate(["Hello there, a longer one"], max_new_tokens=MAX_NEW)  # 25 tokens: bucket 32
    traces_after_new_bucket = generator.trace_count
    assert traces_after_new_bucket > traces
    for prompt in ["Hi", "Hello world", "Hey"]:  # lengths 2..11: bucket 16
        model.generate([prompt], max_new_tokens=MAX_NEW)
    for temperature, top_k, top_p, min_p in [(0.5, 0, 1.0, 0.0), (1.3, 5, 0.9, 0.1), (2.0, 40, 0.5, 0.0)]:
        model.generate(
            ["Hello"], max_new_tokens=MAX_NEW - 3, strategy="sample", temperature=temperature,
            top_k=top_k, top_p=top_p, min_p=min_p, repetition_penalty=1.2, seed=1,
        )
    assert generator.trace_count == traces_after_new_bucket


def test_seeded_sampling_reproduces(model):
    kwargs = dict(max_new_tokens=MAX_NEW, strategy="top_p", temperature=1.5)
    a = model.generate_ids(PROMPTS, seed=11, **kwargs)
    assert a == model.generate_ids(PROMPTS, seed=11, **kwargs)
    assert a != model.generate_ids(PROMPTS, seed=12, **kwargs)


def test_top_k_one_equals_greedy(model):
    greedy = model.generate_ids(PROMPTS, max_new_tokens=MAX_NEW)
    assert model.generate_ids(PROMPTS, max_new_tokens=MAX_NEW, strategy="top_k", top_k=1, seed=5) == greedy


def test_stop_string_spanning_tokens(model):
    [free] = get_generator(model).complete([TEXTS[1]], max_new_tokens=MAX_NEW, end_token_id=None)
    stop = free.text[4:7]  # three byte tokens
    cut = free.text.find(stop)
    [done, other] = get_generator(model).complete(
        [TEXTS[1], TEXTS[0]], max_new_tokens=MAX_NEW, stop=[stop], end_token_id=None
    )
    assert done.text == free.text[:cut] and stop not in done.text
    assert done.stop_reason == "stop_string"
    assert done.token_ids == free.token_ids[: len(done.text.encode())]
    # Per-row stopping: the other row runs on unchanged (unless it met it too).
    [alone] = get_generator(model).complete([TEXTS[0]], max_new_tokens=MAX_NEW, end_token_id=None)
    if stop not in alone.text:
        assert other.text == alone.text and other.stop_reason == "length"


def test_stream_pieces_join_to_the_text(model):
    [free] = get_generator(model).complete([TEXTS[1]], max_new_tokens=MAX_NEW, end_token_id=None)
    pieces = list(model.stream(TEXTS[1], max_new_tokens=MAX_NEW, end_token_id=None))
    assert "".join(pieces) == free.text and len(pieces) > 1
    stop = free.text[5:7]
    pieces = list(model.stream(TEXTS[1], max_new_tokens=MAX_NEW, stop=[stop], end_token_id=None))
    assert "".join(pieces) == free.text[: free.text.find(stop)]


def test_beam_with_one_beam_equals_greedy(model):
    greedy = model.generate(TEXTS, max_new_tokens=MAX_NEW)
    assert model.generate(TEXTS, max_new_tokens=MAX_NEW, strategy="beam", num_beams=1) == greedy


def test_prompt_longer_than_context(model):
    long_prompt = "a" * 60  # context_length 64
    with pytest.raises(ValueError, match="Prompt 0 has 60 tokens.*truncate='left'"):
        model.generate(long_prompt, max_new_tokens=8)
    text = model.generate(long_prompt, max_new_tokens=8, truncate="left")
    assert text == model.generate("a" * 56, max_new_tokens=8)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strategy": "nucleus"}, "strategy='nucleus'"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"temperature": -1.0}, "temperature=-1.0"),
        ({"max_new_tokens": 0}, "max_new_tokens=0"),
        ({"num_beams": 0}, "num_beams=0"),
        ({"stop": [""]}, "stop="),
        ({"truncate": "right"}, "truncate='right'"),
        ({"max_new_tokens": 64}, "max_new_tokens=64"),
    ],
)
def test_bad_options_name_the_value(model, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        model.generate("Hi", **kwargs)


def test_bad_prompts(model):
    with pytest.raises(ValueError, match=r"vocab_size=258\). Received: \[999\]"):
        model.generate_ids([[1, 999]])
    with pytest.raises(ValueError, match="Text prompts need a tokenizer"):
        tiny_gpt().generate("Hi")


def test_empty_prompt_starts_after_the_end_token(model):
    assert model.generate_ids([[]], max_new_tokens=4) == [model.generate_ids([256], max_new_tokens=4)]


@pytest.mark.slow
@pytest.mark.tf_only
def test_xla_and_plain_graph_agree(model):
    plain = Generator(model, jit_compile=False).complete(TEXTS, max_new_tokens=MAX_NEW)
    xla = Generator(model, jit_compile=True).complete(TEXTS, max_new_tokens=MAX_NEW)
    assert [c.token_ids for c in plain] == [c.token_ids for c in xla]
