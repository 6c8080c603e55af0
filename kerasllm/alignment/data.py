"""Preference pairs and prompts from JSONL, and their token arrays.

Accepted preference lines (one JSON object each), as the field writes them:

- `{"prompt": str, "chosen": str, "rejected": str}`;
- `{"chosen": str, "rejected": str}`: the prompt is their longest shared
  prefix (cut back to the last whitespace, so a word is not split);
- conversational: `prompt` a list of `{"role", "content"}` messages (or
  `messages`), `chosen`/`rejected` lists of messages (usually one assistant
  turn) or plain strings (the assistant's answer); without a prompt, the
  leading messages the two share. Rendered with the chat template, so the
  completion ends with `<|im_end|>`, the token generation stops at.

Prompt-only lines for the online methods (PPO, GRPO): `{"prompt": str |
messages}` or `{"messages": [...]}`; every other field of the line (the task
suite's `task`, `answer`) is kept for the reward function.

A line that cannot be read fails with `FILE:LINE: problem`, unless
`skip_bad_lines=True` skips it (and counts it).
"""

import dataclasses
import json
import os

import numpy as np

from kerasllm.tokenizers.chat_template import (
    IM_END,
    ChatFormatError,
    render_chat,
)

IGNORE_INDEX = -100


class PreferenceDataError(ValueError):
    """A preference or prompt file that cannot be read; names file and line."""


@dataclasses.dataclass
class PreferencePair:
    """A prompt with a preferred and a dispreferred completion (text)."""

    prompt: str
    chosen: str
    rejected: str
    chat: bool = False


@dataclasses.dataclass
class LoadReport:
    """What a loader read: lines used, and bad lines skipped (`(file:line, why)`)."""

    used: int = 0
    skipped: list = dataclasses.field(default_factory=list)


def _lines(paths):
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for path in paths:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No such data file: {path}")
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    yield path, number, line


def _read_records(paths, parse, skip_bad_lines, report):
    out = []
    for path, number, line in _lines(paths):
        where = f"{path}:{number}"
        try:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise PreferenceDataError(f"not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise PreferenceDataError(
                    f"expected a JSON object. Received: {type(record).__name__}"
                )
            out.append(parse(record))
        except (PreferenceDataError, ChatFormatError) as error:
            if not skip_bad_lines:
                raise PreferenceDataError(f"{where}: {error}") from None
            report.skipped.append((where, str(error)))
    report.used = len(out)
    return out


def _is_messages(value):
    return isinstance(value, list)


def _shared_text_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    prefix = a[:n]
    if n < max(len(a), len(b)):
        # Cut back to whitespace so the completions start at a word.
        cut = max(prefix.rfind(" "), prefix.rfind("\n"))
        prefix = prefix[: cut + 1] if cut >= 0 else ""
    return prefix


def _completion_text(prompt_messages, completion):
    """The rendered assistant turn(s) after `prompt_messages`, ending at `<|im_end|>`."""
    if isinstance(completion, str):
        completion = [{"role": "assistant", "content": completion}]
    prompt_text = render_chat(prompt_messages, add_generation_prompt=True)
    full = render_chat(list(prompt_messages) + list(completion))
    if not full.startswith(prompt_text):
        raise PreferenceDataError("a completion must start with an assistant turn")
    # Drop the newline after the last <|im_end|>: the model stops at the token.
    text = full[len(prompt_text):]
    return text[: -1] if text.endswith(IM_END + "\n") else text


def parse_preference(record):
    """One `PreferencePair` from a parsed JSON line (see the module docstring)."""
    for key in ("chosen", "rejected"):
        if key not in record:
            raise PreferenceDataError(
                f"missing field {key!r}; a preference line has 'chosen' and "
                f"'rejected' (and usually 'prompt'). Received keys: {sorted(record)}"
            )
    prompt = record.get("prompt", record.get("messages"))
    chosen, rejected = record["chosen"], record["rejected"]
    chat = _is_messages(prompt) or _is_messages(chosen) or _is_messages(rejected)
    if not chat:
        for key, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
            if value is not None and not isinstance(value, str):
                raise PreferenceDataError(
                    f"{key} must be a string or a list of messages. Received: {value!r}"
                )
        if prompt is None:
            prompt = _shared_text_prefix(chosen, rejected)
            chosen, rejected = chosen[len(prompt):], rejected[len(prompt):]
        if not chosen.strip() or not rejected.strip():
            raise PreferenceDataError("empty chosen or rejected completion")
        if chosen == rejected:
            raise PreferenceDataError("chosen and rejected are the same text")
        return PreferencePair(prompt, chosen, rejected)

    if prompt is None:
        if not (_is_messages(chosen) and _is_messages(rejected)):
            raise PreferenceDataError(
                "without a prompt, chosen and rejected must both be message lists"
            )
        n = 0
        while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
        if not prompt:
            raise PreferenceDataError("chosen and rejected share no leading messages (no prompt)")
    elif isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not chosen or not rejected:
        raise PreferenceDataError("empty chosen or rejected completion")
    chosen_text = _completion_text(prompt, chosen)
    rejected_text = _completion_text(prompt, rejected)
    if chosen_text == rejected_text:
        raise PreferenceDataError("chosen and rejected are the same text")
    return PreferencePair(
        render_chat(prompt, add_generation_prompt=True), chosen_text, rejected_text, chat=True
    )


def load_preferences(paths, skip_bad_lines=False, report=None):
    """Preference pairs from JSONL files.

    Args:
        paths: a path or a list of paths.
        skip_bad_lines: skip (and count in `report`) lines that cannot be
            read instead of failing. Defaults to `False`.
        report: an optional `LoadReport` to fill.

    Returns:
        A list of `PreferencePair`.

    Raises:
        PreferenceDataError: `FILE:LINE: problem` for the first bad line.

    Example:
    ```python
    pairs = load_preferences("data/prefs.jsonl")
    pairs[0].prompt, pairs[0].chosen, pairs[0].rejected
    ```
    """
    return _read_records(paths, parse_preference, skip_bad_lines, report or LoadReport())


def without_answer(messages):
    """A prompt's messages without a trailing assistant turn (the reference answer)."""
    messages = list(messages)
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        messages = messages[:-1]
    return messages


def parse_prompt(record):
    """`{"prompt": text, **other fields}` from a prompt-only line."""
    prompt = record.get("prompt", record.get("messages"))
    if prompt is None:
        raise PreferenceDataError(
            f"missing field 'prompt' (or 'messages'). Received keys: {sorted(record)}"
        )
    if _is_messages(prompt):
        text = render_chat(without_answer(prompt), add_generation_prompt=True)
    elif isinstance(prompt, str) and prompt:
        text = prompt
    else:
        raise PreferenceDataError(f"prompt must be a non-empty string or messages. Received: {prompt!r}")
    extra = {k: v for k, v in record.items() if k not in ("prompt", "messages")}
    return {**extra, "prompt": text, "chat": _is_messages(prompt)}


def load_prompts(paths, skip_bad_lines=False, report=None):
    """Prompt records (dicts with `"prompt"` text and the line's other fields)."""
    return _read_records(paths, parse_prompt, skip_bad_lines, report or LoadReport())


# ---------------------------------------------------------------- tokens


@dataclasses.dataclass
class EncodedPairs:
    """Token arrays of preference pairs, right-padded to `length`.

    `chosen_ids`/`rejected_ids` `(N, L)` are the inputs; `chosen_labels`/
    `rejected_labels` `(N, L)` the next token at each position, `-100` on
    the prompt and the padding (so only completion tokens count).
    `truncated` counts pairs whose prompt lost its oldest tokens to fit.
    """

    chosen_ids: np.ndarray
    chosen_labels: np.ndarray
    rejected_ids: np.ndarray
    rejected_labels: np.ndarray
    truncated: int = 0

    def __len__(self):
        return len(self.chosen_ids)


def encode_completion(tokenizer, prompt, completion, max_length, end_token_id=None):
    """`(input ids, labels, truncated)` of one prompt + completion.

    The sequence is `prompt + completion (+ end token)`; it is cut to
    `max_length + 1` tokens by dropping the prompt's oldest tokens first
    (the completion is what is being judged), then the completion's last.
    Inputs are all tokens but the last, labels all but the first, with the
    prompt's labels set to `-100`.
    """
    prompt_ids = list(tokenizer.encode(prompt)) if prompt else []
    completion_ids = list(tokenizer.encode(completion))
    if end_token_id is not None:
        completion_ids.append(int(end_token_id))
    truncated = False
    room = max_length + 1
    if len(prompt_ids) + len(completion_ids) > room:
        truncated = True
        keep = max(room - len(completion_ids), 1 if prompt_ids else 0)
        prompt_ids = prompt_ids[len(prompt_ids) - keep:] if keep else []
        completion_ids = completion_ids[: room - len(prompt_ids)]
    if not prompt_ids:
        # The first token has no label; an empty prompt starts a document.
        prompt_ids = [int(tokenizer.end_token_id)]
        completion_ids = completion_ids[: room - 1]
    ids = prompt_ids + completion_ids
    labels = [IGNORE_INDEX] * (len(prompt_ids) - 1) + completion_ids
    return ids[:-1], labels, truncated


def _pad(rows, length, value):
    out = np.full((len(rows), length), value, "int32")
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def encode_pairs(pairs, tokenizer, max_length, pad_to=None):
    """`EncodedPairs` for a list of `PreferencePair`.

    Plain-text completions get the tokenizer's end token appended (TRL's
    convention: the model learns to stop); chat completions, and text
    completions written with their `<|im_end|>`, already end there.

    Args:
        pairs: `PreferencePair`s.
        tokenizer: a kerasllm tokenizer.
        max_length: most input positions per sequence (the model's context
            or less).
        pad_to: pad every array to this length (one compiled shape);
            defaults to the longest sequence.
    """
    rows = {"chosen": ([], []), "rejected": ([], [])}
    truncated = 0
    for pair in pairs:
        cut = False
        for key in ("chosen", "rejected"):
            completion = getattr(pair, key)
            end = None if pair.chat or completion.endswith(IM_END) else tokenizer.end_token_id
            ids, labels, was_cut = encode_completion(
                tokenizer, pair.prompt, completion, max_length, end
            )
            rows[key][0].append(ids)
            rows[key][1].append(labels)
            cut = cut or was_cut
        truncated += cut
    longest = max(len(r) for key in rows for r in rows[key][0])
    length = pad_to or longest
    pad = int(tokenizer.pad_token_id)
    return EncodedPairs(
        _pad(rows["chosen"][0], length, pad),
        _pad(rows["chosen"][1], length, IGNORE_INDEX),
        _pad(rows["rejected"][0], length, pad),
        _pad(rows["rejected"][1], length, IGNORE_INDEX),
        truncated=truncated,
    )
