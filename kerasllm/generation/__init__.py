"""Generation: greedy, beam search and sampling over a compiled decode loop.

Two levels:

- Text in, text out: `GPT.generate`, `GPT.generate_ids`, `GPT.stream` (or
  `complete`/`stream` here, or a `Generator`), with stop strings, batching
  and UTF-8-safe streaming. Every strategy chooses only tokens that keep
  the text valid UTF-8 (`kerasllm.generation.utf8`). Compiled programs are cached per model and
  reused across calls.
- In-graph: `generate_tokens` and `beam_search_tokens`, pure `keras.ops`
  functions of tensors, for use inside `jax.jit` or a `tf.function` (the
  SavedModel export traces `generate_tokens` in a plain TF graph).

See docs/generation.md.
"""

from kerasllm.generation.beam_search import beam_search_tokens
from kerasllm.generation.decode_loop import (
    END_TOKEN,
    LENGTH,
    RUNNING,
    STOP_REASONS,
    STOP_STRING,
    generate_tokens,
)
from kerasllm.generation.generation_options import GenerationOptions
from kerasllm.generation.generator import Completion, Generator, forget_generator, get_generator, prompt_bucket


def complete(model, prompts, *, tokenizer=None, **options):
    """`Completion`s for a list of prompts; see `Generator.complete`.

    Args:
        model: a `kerasllm.models.GPT`.
        prompts: a list of `str`, or a list of id lists.
        tokenizer: overrides `model.tokenizer`.
        **options: see `Generator.complete`.
    """
    return _generator(model, tokenizer).complete(prompts, **options)


def stream(model, prompt, *, tokenizer=None, **options):
    """Text pieces of one completion as they are made; see `Generator.stream`."""
    return _generator(model, tokenizer).stream(prompt, **options)


def _generator(model, tokenizer):
    generator = get_generator(model)
    return generator if tokenizer is None else generator.with_tokenizer(tokenizer)


__all__ = [
    "END_TOKEN",
    "LENGTH",
    "RUNNING",
    "STOP_REASONS",
    "STOP_STRING",
    "Completion",
    "GenerationOptions",
    "Generator",
    "beam_search_tokens",
    "complete",
    "generate_tokens",
    "forget_generator",
    "get_generator",
    "prompt_bucket",
    "stream",
]
