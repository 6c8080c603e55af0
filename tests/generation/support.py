"""Helpers of the generation tests: a byte tokenizer, tiny GPTs, padded prompts.

Imported as `generation.support` (pytest puts tests/ on the path).
"""

import keras
import numpy as np

from kerasllm.generation import GenerationOptions
from kerasllm.models import GPT

PROMPTS = [[72, 101, 108, 108, 111], [87, 104, 121, 32, 115, 111, 32, 115]]


class ByteTokenizer:
    """A stand-in tokenizer: UTF-8 bytes as ids, 256 is end-of-text, 257 pad.

    It has what generation uses (`encode_batch`, `token_bytes`,
    `end_token_id`, `pad_token_id`), so decoding, stop strings and streaming
    are tested at the byte level, where a character spans several tokens.
    """

    vocabulary_size = 258
    end_token_id = 256
    pad_token_id = 257

    def encode(self, text):
        return list(text.encode("utf-8"))

    def encode_batch(self, texts):
        return [self.encode(text) for text in texts]

    def token_bytes(self, token_id):
        return bytes([token_id]) if token_id < 256 else b""

    def decode(self, ids):
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", "replace")


def tiny_gpt(**overrides):
    """A 2-layer random GPT over the byte vocabulary, 64 tokens of context."""
    keras.utils.set_random_seed(overrides.pop("seed", 0))
    config = dict(
        vocab_size=258,
        context_length=64,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        intermediate_dim=64,
    )
    config.update(overrides)
    return GPT.from_preset("tiny", **config)


def left_pad(prompts, width=None, pad=257):
    """`(ids, mask)` int32 `(B, width)` with each prompt at the right end."""
    width = width or max(map(len, prompts))
    ids = np.full((len(prompts), width), pad, "int32")
    mask = np.zeros((len(prompts), width), "int32")
    for i, row in enumerate(prompts):
        ids[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    return ids, mask


_PROGRAMS = {}
# The in-graph defaults are GenerationOptions' (each filter off).
_OPTIONS = GenerationOptions()
_TOP_K, _TOP_P = _OPTIONS.sampling_values()
_GENERATE_DEFAULTS = dict(
    temperature=(_OPTIONS.temperature, "float32"), top_k=(_TOP_K, "int32"),
    top_p=(_TOP_P, "float32"), min_p=(_OPTIONS.min_p, "float32"),
    repetition_penalty=(_OPTIONS.repetition_penalty, "float32"), seed=(0, "int32"),
    end_token_id=(-1, "int32"), pad_token_id=(257, "int32"),
)
_BEAM_DEFAULTS = dict(
    length_penalty=(_OPTIONS.length_penalty, "float32"),
    early_stopping=(_OPTIONS.early_stopping, "bool"),
    repetition_penalty=(_OPTIONS.repetition_penalty, "float32"), end_token_id=(-1, "int32"),
    pad_token_id=(257, "int32"),
)


def _tensor_params(defaults, batch, overrides):
    params = {}
    for name, (default, dtype) in defaults.items():
        value = np.asarray(overrides.pop(name, default), dtype)
        params[name] = value if name in ("end_token_id", "pad_token_id", "early_stopping") else (
            np.broadcast_to(value, (batch,)).copy()
        )
    if overrides:
        raise TypeError(f"Unknown parameters: {sorted(overrides)}")
    return params


def _compiled(model, key, fn):
    """One compiled program per (model, key), reused across tests (JAX would
    otherwise recompile the loop body on every eager call)."""
    from kerasllm.generation.compile import compile_model_function

    key = (id(model),) + key
    if key not in _PROGRAMS:
        _PROGRAMS[key] = compile_model_function(model, fn, jit_compile=False)
    return _PROGRAMS[key]


def run_generate(model, prompts, max_new_tokens=8, width=None, strategy="greedy",
                 max_length=32, **params):
    """`generate_tokens` on left-padded prompts, as NumPy `(tokens, lengths, reasons)`."""
    from keras import ops

    from kerasllm.generation import generate_tokens

    ids, mask = left_pad(prompts, width)
    batch = len(prompts)
    params = _tensor_params(_GENERATE_DEFAULTS, batch, dict(params))
    max_new = np.broadcast_to(np.asarray(max_new_tokens, "int32"), (batch,)).copy()
    program = _compiled(
        model, ("generate", strategy, max_length),
        lambda ids, mask, n, p: generate_tokens(
            model, ids, mask, n, strategy=strategy, max_length=max_length, **p
        ),
    )
    return [ops.convert_to_numpy(x) for x in program(ids, mask, max_new, params)]


def run_beam(model, prompts, max_new_tokens=8, num_beams=4, max_length=32, **params):
    """`beam_search_tokens`, as NumPy `(tokens, lengths, reasons, scores)`."""
    from keras import ops

    from kerasllm.generation import beam_search_tokens

    ids, mask = left_pad(prompts)
    batch = len(prompts)
    params = _tensor_params(_BEAM_DEFAULTS, batch, dict(params))
    max_new = np.broadcast_to(np.asarray(max_new_tokens, "int32"), (batch,)).copy()
    program = _compiled(
        model, ("beam", num_beams, max_length),
        lambda ids, mask, n, p: beam_search_tokens(
            model, ids, mask, n, num_beams=num_beams, max_length=max_length, **p
        ),
    )
    return [ops.convert_to_numpy(x) for x in program(ids, mask, max_new, params)]
