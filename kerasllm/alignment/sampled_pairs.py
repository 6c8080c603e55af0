"""Preference pairs from a model's own samples, judged by a program.

A reward model judges what the policy will show it, so its best training
pairs are the policy's own answers: sample several per prompt, let a
program (the task suite's `verify`) say which are right, and pair a right
answer with a wrong one. On the task suite this is what made PPO against a
reward model gain (docs/alignment.md, Measured); DPO trains on the same
pairs. `kerasllm tasks make --sample-from MODEL` writes them.
"""

import keras

from kerasllm.alignment.data import parse_prompt, without_answer
from kerasllm.alignment.rollout import end_token_for, sample

# Leave out of a pair's fields: the prompt forms, the reference answer turn.
_PROMPT_FIELDS = ("prompt", "messages", "completion", "chat")


def sample_answers(model, records, *, samples, max_new_tokens=16, temperature=1.0, seed=0, batch_size=512,
                   verbose=0):
    """`(texts, stopped)`: `samples` sampled answers to each record's prompt, in record order.

    `model` is a `kerasllm.models.GPT` with its tokenizer or a model
    directory; `records` are prompt records (see `sample_preferences`);
    `stopped[i]` says whether answer `i` ended with the end token rather
    than at `max_new_tokens`. `verbose=1` shows a progress bar.
    """
    import kerasllm

    for name, value in (("samples", samples), ("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = kerasllm.load(model)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("Sampling answers needs a model with a tokenizer (kerasllm.load attaches it).")
    parsed = [parse_prompt(record) for record in records]
    chat = {p["chat"] for p in parsed}
    if len(chat) > 1:
        raise ValueError("records mix conversations and plain prompts; give one kind at a time.")
    end_token_id = end_token_for(tokenizer, chat == {True})
    if end_token_id is None:
        raise ValueError("The tokenizer has no <|im_end|> token, so it cannot answer conversations.")
    prompt_ids = [list(tokenizer.encode(p["prompt"])) for p in parsed for _ in range(samples)]
    texts, stopped = [], []
    progress = keras.utils.Progbar(len(prompt_ids), unit_name="answer") if verbose else None
    # The generator pads a batch to a power of two: fixed-size calls reuse one program.
    for start in range(0, len(prompt_ids), batch_size):
        out = sample(model, prompt_ids[start : start + batch_size], max_new_tokens=max_new_tokens,
                     temperature=temperature, seed=seed + start, end_token_id=end_token_id,
                     pad_token_id=int(tokenizer.pad_token_id))
        texts.extend(out.texts)
        stopped.extend(bool(s) for s in out.stopped)
        if progress is not None:
            progress.update(len(texts))
    return texts, stopped


def sample_preferences(model, records, *, samples=16, per_prompt=4, max_new_tokens=16,
                       temperature=1.0, seed=0, judge=None, batch_size=512, verbose=0):
    """Pairs of a judged-right and a judged-wrong sample of each prompt.

    Args:
        model: a `kerasllm.models.GPT` with its tokenizer, or a model directory.
        records: prompt records: the task suite's (`messages` or `prompt`,
            with `task` and `answer`) or prompt-only lines.
        samples: completions sampled per prompt.
        per_prompt: most pairs per prompt; the distinct right and wrong
            answers are paired in turn, so a prompt gives
            `min(per_prompt, max(#right, #wrong))` pairs when it has both.
        max_new_tokens: most tokens per completion. A completion that hits
            it never ended and is left out.
        temperature: sampling temperature (1.0 samples the model itself).
        seed: sampling seed.
        judge: `judge(record, text) -> bool`; defaults to
            `kerasllm.tasks.verify`.
        batch_size: completions sampled per generator call.
        verbose: `1` shows a progress bar while sampling.

    Returns:
        A list of pair dicts in the form `kerasllm reward` / `dpo` read: for
        a conversation `{"prompt": [messages], "chosen": text, "rejected":
        text}` (rendered with the chat template, so they end with
        `<|im_end|>`), else `{"prompt": text, "chosen", "rejected"}`; each
        keeps the record's other fields (`task`, `answer`).
    """
    if not isinstance(per_prompt, int) or isinstance(per_prompt, bool) or per_prompt < 1:
        raise ValueError(f"per_prompt must be an int >= 1. Received: per_prompt={per_prompt!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 2:
        raise ValueError(f"samples must be an int >= 2 (a right and a wrong answer). Received: samples={samples!r}")
    if judge is None:
        from kerasllm.tasks import verify as judge
    texts, stopped = sample_answers(model, records, samples=samples, max_new_tokens=max_new_tokens,
                                    temperature=temperature, seed=seed, batch_size=batch_size, verbose=verbose)
    pairs = []
    for i, record in enumerate(records):
        rows = range(i * samples, (i + 1) * samples)
        own = dict.fromkeys(texts[j] for j in rows if stopped[j] and texts[j].strip())  # distinct, in order
        verdicts = {t: judge(record, t) for t in own}
        right = [t for t, ok in verdicts.items() if ok]
        wrong = [t for t, ok in verdicts.items() if not ok]
        if not right or not wrong:
            continue
        prompt = record.get("prompt", record.get("messages"))
        if isinstance(prompt, list):
            prompt = without_answer(prompt)
        extra = {k: v for k, v in record.items() if k not in _PROMPT_FIELDS}
        for k in range(min(per_prompt, max(len(right), len(wrong)))):
            pairs.append({"prompt": prompt, "chosen": right[k % len(right)],
                          "rejected": wrong[k % len(wrong)], **extra})
    return pairs
