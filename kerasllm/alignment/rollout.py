"""Sampling completions from the policy and scoring them (GRPO, PPO).

`sample` runs the compiled generator (the same programs `kerasllm generate`
uses: KV cache, XLA / `jax.jit`, reused across calls) and packs prompts and
completions into fixed-shape arrays, so the train step compiles once.
`reward_function` turns config names into Python reward functions.
"""

import dataclasses
import importlib

import numpy as np

from kerasllm.alignment.data import IGNORE_INDEX
from kerasllm.tokenizers.chat_template import IM_END


@dataclasses.dataclass
class Rollout:
    """Prompts and their sampled completions as arrays.

    `token_ids` `(N, L)` are inputs (prompt + completion, right-padded),
    `labels` `(N, L)` the next tokens with `-100` off the completion;
    `texts` the completions' text, `lengths` their token counts, `stopped`
    whether each ended with the end token.
    """

    token_ids: np.ndarray
    labels: np.ndarray
    texts: list
    lengths: np.ndarray
    stopped: np.ndarray
    prompt_lengths: np.ndarray

    @property
    def mask(self):
        return (self.labels != IGNORE_INDEX).astype("float32")


def end_token_for(tokenizer, chat):
    """`<|im_end|>` for chat prompts (the end of an assistant turn), else end-of-text."""
    if chat:
        return tokenizer.token_to_id(IM_END)
    return tokenizer.end_token_id


def sample(
    policy,
    prompt_ids,
    *,
    max_new_tokens,
    temperature=1.0,
    top_k=0,
    seed=None,
    end_token_id=None,
    pad_token_id=0,
    max_prompt_length=None,
    generator=None,
):
    """Samples one completion per prompt; returns a `Rollout`.

    Args:
        policy: a `kerasllm.models.GPT`.
        prompt_ids: a list of id lists (repeat a prompt for several samples).
        max_new_tokens: most tokens per completion.
        temperature, top_k: sampling settings.
        seed: sampling seed (row `i` uses `seed + i`).
        end_token_id: the id that ends a completion (it is trained as part
            of the completion, so the model learns to stop); `None` samples
            `max_new_tokens` always.
        pad_token_id: id for padding.
        max_prompt_length: pad prompts to this many tokens (one compiled
            shape across calls). Defaults to the longest prompt.
        generator: a `kerasllm.generation.Generator` to reuse.
    """
    from kerasllm.generation import get_generator

    generator = generator or get_generator(policy)
    completions = generator.complete(
        [list(p) for p in prompt_ids],
        max_new_tokens=max_new_tokens,
        strategy="sample",
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        end_token_id=end_token_id,
        truncate="left",
        # Samples of the policy itself: the generator's default valid-UTF-8
        # mask would renormalize every step over the allowed tokens, so the
        # log-probabilities the losses and the KL use (the model's plain
        # softmax) would not be those of the samples. Under that mismatch the
        # KL estimate drifts negative and the policy is free to move mass onto
        # tokens it is never shown. A broken character is a sample like any
        # other: the reward judges it.
        valid_utf8=False,
    )
    prompt_len = max_prompt_length or max(len(p) for p in prompt_ids)
    length = prompt_len + max_new_tokens  # inputs: all tokens but the last
    token_ids = np.full((len(prompt_ids), length), pad_token_id, "int32")
    labels = np.full((len(prompt_ids), length), IGNORE_INDEX, "int32")
    lengths, stopped, prompt_lengths, texts = [], [], [], []
    tokenizer = generator.tokenizer
    for i, (prompt, completion) in enumerate(zip(prompt_ids, completions)):
        prompt = list(prompt)[-prompt_len:]
        answer = list(completion.token_ids)
        ended = completion.stop_reason == "end_token"
        if ended:
            answer.append(int(end_token_id))
        sequence = prompt + answer
        token_ids[i, : len(sequence) - 1] = sequence[:-1]
        labels[i, len(prompt) - 1 : len(sequence) - 1] = answer
        lengths.append(len(answer))
        stopped.append(ended)
        prompt_lengths.append(len(prompt))
        texts.append(tokenizer.decode(completion.token_ids) if tokenizer is not None else None)
    return Rollout(
        token_ids, labels, texts, np.array(lengths), np.array(stopped), np.array(prompt_lengths)
    )


def reward_function(name):
    """A Python reward function from its config name.

    `"tasks.verify"` is the task suite's verifier (1.0 for a correct answer,
    else 0.0; the prompt record carries `task` and `answer`); any other name
    is `"module:function"`, called as `function(record, completion_text)`
    and returning a number.
    """
    if name in ("tasks.verify", "verify"):
        from kerasllm.tasks import verify

        return lambda record, text: float(verify(record, text))
    if ":" not in name:
        raise ValueError(
            "A reward function is 'tasks.verify' or 'module:function'. "
            f"Received: {name!r}"
        )
    module, attribute = name.split(":", 1)
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"Cannot load the reward function {name!r}: {error}") from None


def score(functions, records, texts, reward_model=None, stopped=None, end_token_id=None):
    """The summed reward of each completion: every function, plus the reward model.

    Functions get the completion's text; the reward model gets it followed
    by `end_token_id` where `stopped` (bools `(N,)`) says the completion
    ended there, as its training pairs end (`RewardModel.score`).
    """
    rewards = np.zeros(len(texts), "float32")
    for function in functions:
        rewards += np.array([float(function(r, t)) for r, t in zip(records, texts)], "float32")
    if reward_model is not None:
        rewards += np.asarray(
            reward_model.score(
                [r["prompt"] for r in records], texts, end_token_id=end_token_id,
                ended=None if stopped is None else [bool(s) for s in stopped],
            ),
            "float32",
        )
    return rewards
