"""Fine-tuning data: JSONL records → token ids + loss masks → padded batches.

Formats (one JSON object per line):

| format              | record                                              | trained on (default)            |
|---------------------|-----------------------------------------------------|---------------------------------|
| `prompt-completion` | `{"prompt": ..., "completion": ...}`                | the completion + end token      |
| `messages`          | `{"messages": [{"role": ..., "content": ...}, ...]}` | assistant turns + `<|im_end|>`  |
| `text`              | `{"text": ...}`                                     | all of it + end token           |
| `classification`    | `{"text": ..., "label": int}`                       | the label (a classifier head)   |

`completion_only_loss=False` trains on every token instead. Labels are the
next ids with `-100` where the loss is off (`LanguageModelLoss` skips them).

Batching is by length bucket: examples are shuffled, then sorted by length
inside pools of `BUCKET_POOL` batches, cut into batches, and the batches
shuffled again; each batch is padded on the right to a multiple of
`WIDTH_MULTIPLE` tokens. Why not packing: the model has no per-example
attention mask inside a row, so packed examples would attend to each other,
while short instruction examples barely fill a row anyway; bucketing keeps
examples apart and pads little (docs/finetuning.md has the measurement).
"""

import json
import math
import os
import pathlib
import random

import numpy as np

from kerasllm.tokenizers.chat_template import ROLES, ChatFormatError, encode_chat

FORMATS = ("auto", "prompt-completion", "messages", "text", "classification")
OVERLONG = ("truncate", "drop")
BATCHING = ("bucket", "random")
IGNORE_INDEX = -100
WIDTH_MULTIPLE = 16
BUCKET_POOL = 64


class DataError(ValueError):
    """Bad fine-tuning data: the message names the file, the line and the problem."""


def detect_format(record):
    """The format of one record from its fields (`None` if none fits)."""
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return "messages"
    if "prompt" in record and "completion" in record:
        return "prompt-completion"
    if "text" in record and "label" in record:
        return "classification"
    if "text" in record:
        return "text"
    return None


REQUIRED = {
    "prompt-completion": ("prompt", "completion"),
    "messages": ("messages",),
    "text": ("text",),
    "classification": ("text", "label"),
}


def _check_record(record, format, num_classes=None):
    """Raise `DataError` (without location) if `record` does not fit `format`."""
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object. Received: {record!r:.120}")
    if format == "auto":
        format = detect_format(record)
        if format is None:
            raise DataError(
                "missing fields: expected prompt+completion, messages, text, or text+label. "
                f"Received keys: {sorted(record)}"
            )
    missing = [f for f in REQUIRED[format] if f not in record]
    if missing:
        raise DataError(
            f"missing field(s) {missing} for format {format!r}. Received keys: {sorted(record)}"
        )
    if format == "messages":
        messages = record["messages"]
        if isinstance(messages, list):
            for index, message in enumerate(messages):
                role = message.get("role") if isinstance(message, dict) else None
                if role is not None and role not in ROLES:
                    raise DataError(
                        f"messages[{index}] has an unknown role {role!r}; expected one of "
                        f"{', '.join(ROLES)}"
                    )
            if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
                raise DataError("the conversation has no assistant turn to train on")
    elif format == "prompt-completion":
        for key in ("prompt", "completion"):
            if not isinstance(record[key], str):
                raise DataError(f"{key} must be a string. Received: {record[key]!r:.80}")
        if not record["completion"].strip():
            raise DataError("empty completion")
    elif format in ("text", "classification"):
        if not isinstance(record["text"], str) or not record["text"]:
            raise DataError(f"text must be a non-empty string. Received: {record['text']!r:.80}")
        if format == "classification":
            label = record["label"]
            if not isinstance(label, int) or isinstance(label, bool) or label < 0 or (
                num_classes is not None and label >= num_classes
            ):
                raise DataError(
                    f"label must be an int in [0, {num_classes or 'num_classes'}). Received: {label!r}"
                )
    return format


def read_jsonl(paths, *, format="auto", skip_bad_lines=False, num_classes=None, report=None):
    """Records from JSONL files, checked; errors name `file:line`.

    Args:
        paths: a path or a list of paths.
        format: one of `FORMATS`; `"auto"` detects each record's. Every file
            must hold one format. Defaults to `"auto"`.
        skip_bad_lines: skip (and count in `report["skipped_bad_lines"]`) bad
            lines instead of raising. Defaults to `False`.
        num_classes: for `"classification"`, labels must be below it.
        report: a dict to count into. Defaults to `None`.

    Returns:
        `(format, records)`: the (detected) format and the records, each with
        `"_source"` set to `"file:line"`.

    Raises:
        DataError: `file:line: problem` (not JSON, missing fields, unknown
            role, empty assistant turn, mixed formats), unless skipped.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    report = report if report is not None else {}
    report.setdefault("skipped_bad_lines", 0)
    records, seen_format = [], None if format == "auto" else format
    for path in paths:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No data file at {path}.")
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as error:
                        raise DataError(f"not valid JSON ({error.msg} at column {error.colno})") from None
                    found = _check_record(record, seen_format or "auto", num_classes)
                    if seen_format is None:
                        seen_format = found
                except DataError as error:
                    if skip_bad_lines:
                        report["skipped_bad_lines"] += 1
                        continue
                    raise DataError(f"{where}: {error}") from None
                records.append({**record, "_source": where})
    if not records:
        raise DataError(f"No usable records in {', '.join(map(str, paths))}.")
    return seen_format, records


def encode_record(tokenizer, record, format, *, completion_only_loss=True):
    """`(ids, mask)` for one language-model record (mask 1 = trained).

    Prompt-completion: prompt and completion are encoded apart (the prompt
    exactly as generation will encode it) and the end token follows the
    completion. Messages: `encode_chat`. Text: the text and the end token.
    """
    if format == "messages":
        return encode_chat(
            tokenizer, record["messages"], train_on="assistant" if completion_only_loss else "all"
        )
    end = [tokenizer.end_token_id]
    if format == "prompt-completion":
        prompt, completion = tokenizer.encode_batch([record["prompt"], record["completion"]])
        ids = prompt + completion + end
        mask = [0 if completion_only_loss else 1] * len(prompt) + [1] * (len(completion) + 1)
        return ids, mask
    if format == "text":
        ids = tokenizer.encode(record["text"]) + end
        return ids, [1] * len(ids)
    raise ValueError(f"encode_record handles language-model formats. Received: format={format!r}")


def encode_records(tokenizer, records, format, *, max_length, overlong="truncate",
                   completion_only_loss=True, skip_bad_lines=False, report=None):
    """Encode records, handling over-long ones; counts go into `report`.

    Args:
        max_length: the most ids one example may have: the context length
            plus one (inputs are the ids but the last, labels the ids but
            the first). For classification, the context length.
        overlong: `"truncate"` (keep the first `max_length` ids; an example
            left with nothing to train on is dropped) or `"drop"`.

    Returns:
        For language-model formats, a list of `(ids, mask)`; for
        classification, a list of `(ids, label)`.
    """
    if overlong not in OVERLONG:
        raise ValueError(f"overlong must be one of {OVERLONG}. Received: overlong={overlong!r}")
    report = report if report is not None else {}
    for key in ("examples", "truncated", "dropped_too_long", "skipped_bad_lines", "tokens", "trained_tokens"):
        report.setdefault(key, 0)
    examples = []
    for record in records:
        try:
            if format == "classification":
                ids, target = tokenizer.encode(record["text"]), record["label"]
            else:
                ids, target = encode_record(
                    tokenizer, record, format, completion_only_loss=completion_only_loss
                )
        except ChatFormatError as error:
            if skip_bad_lines and "special token" not in str(error):
                report["skipped_bad_lines"] += 1
                continue
            raise DataError(f"{record.get('_source', '?')}: {error}") from None
        if len(ids) > max_length:
            if overlong == "drop":
                report["dropped_too_long"] += 1
                continue
            ids = ids[:max_length]
            if format != "classification":
                target = target[:max_length]
                if not any(target[1:]):  # no trained label left
                    report["dropped_too_long"] += 1
                    continue
            report["truncated"] += 1
        examples.append((ids, target))
        report["examples"] += 1
        report["tokens"] += len(ids)
        if format != "classification":
            report["trained_tokens"] += sum(target[1:])
    if not examples:
        raise DataError("Every example was dropped (too long for the context, or bad).")
    return examples


def language_model_batch(examples, pad_id, width):
    """`(inputs, labels)` int32 `(B, width)` from `(ids, mask)` examples.

    `inputs[t] = ids[t]`, `labels[t] = ids[t + 1]` where `mask[t + 1]` is 1,
    else `-100`; rows are padded on the right with `pad_id` / `-100`.
    """
    inputs = np.full((len(examples), width), pad_id, dtype="int32")
    labels = np.full((len(examples), width), IGNORE_INDEX, dtype="int32")
    for row, (ids, mask) in enumerate(examples):
        ids, mask = np.asarray(ids[: width + 1]), np.asarray(mask[: width + 1])
        n = len(ids) - 1
        inputs[row, :n] = ids[:-1]
        labels[row, :n] = np.where(mask[1:] > 0, ids[1:], IGNORE_INDEX)
    return inputs, labels


def classification_batch(examples, pad_id, width):
    """`(inputs, labels)`: ids `(B, width)` right-padded with `pad_id`, labels `(B,)`."""
    inputs = np.full((len(examples), width), pad_id, dtype="int32")
    for row, (ids, _) in enumerate(examples):
        inputs[row, : len(ids)] = ids[:width]
    return inputs, np.asarray([label for _, label in examples], dtype="int32")


class BatchSchedule:
    """The run's batches, a pure function of the seed: batch `i` is `batch(i)`.

    Each pass over the examples shuffles them (seed, pass), and with
    `batching="bucket"` sorts them by length inside pools of `BUCKET_POOL`
    batches before cutting batches, whose order is shuffled again; so a
    batch holds examples of similar length and pads little. `"random"`
    skips the sort. A batch is padded to a multiple of `WIDTH_MULTIPLE`
    tokens (at most `max_width`), so a run compiles only a few shapes.

    Args:
        examples: `(ids, target)` pairs from `encode_records`.
        batch_size: examples per batch (at most the number of examples).
        pad_id: the padding id.
        max_width: the context length.
        seed: the shuffling seed.
        batching: `"bucket"` or `"random"`. Defaults to `"bucket"`.
        classification: batches of `(ids, label)`. Defaults to `False`.
    """

    def __init__(self, examples, batch_size, pad_id, max_width, seed, batching="bucket",
                 classification=False):
        if batching not in BATCHING:
            raise ValueError(f"batching must be one of {BATCHING}. Received: batching={batching!r}")
        if len(examples) < batch_size:
            raise DataError(
                f"batch_size={batch_size} is larger than the {len(examples)} examples; "
                "use a smaller batch_size or more data."
            )
        self.examples = examples
        self.batch_size = batch_size
        self.pad_id = pad_id
        self.max_width = max_width
        self.seed = seed
        self.batching = batching
        self.classification = classification
        self.batches_per_pass = len(examples) // batch_size
        self._pass, self._order = None, None

    def _pass_order(self, index):
        if self._pass != index:
            rng = random.Random(f"{self.seed}:{index}")
            order = list(range(len(self.examples)))
            rng.shuffle(order)
            order = order[: self.batches_per_pass * self.batch_size]
            if self.batching == "bucket":
                pool = BUCKET_POOL * self.batch_size
                order = [
                    i
                    for start in range(0, len(order), pool)
                    for i in sorted(order[start:start + pool], key=lambda i: len(self.examples[i][0]))
                ]
            batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
            rng.shuffle(batches)
            self._pass, self._order = index, batches
        return self._order

    def indices(self, step):
        """The example indices of batch `step`."""
        return self._pass_order(step // self.batches_per_pass)[step % self.batches_per_pass]

    def natural_width(self, step):
        longest = max(len(self.examples[i][0]) for i in self.indices(step))
        longest -= 0 if self.classification else 1  # inputs drop the last id
        return min(self.max_width, WIDTH_MULTIPLE * math.ceil(longest / WIDTH_MULTIPLE))

    def batch(self, step, width=None):
        """`(inputs, labels)` of batch `step`, padded to `width` (default: its own)."""
        chosen = [self.examples[i] for i in self.indices(step)]
        width = width or self.natural_width(step)
        make = classification_batch if self.classification else language_model_batch
        return make(chosen, self.pad_id, width)

    def padding_fraction(self, steps):
        """The share of input positions that are padding over the first `steps` batches."""
        real = total = 0
        for step in range(steps):
            width = self.natural_width(step)
            for i in self.indices(step):
                real += min(width, len(self.examples[i][0]) - (0 if self.classification else 1))
                total += width
        return 1 - real / max(total, 1)

    def generator(self, start_step=0):
        """Batches from `start_step` on, forever, for `model.fit`.

        Keras infers a Python generator's shapes from its first two batches
        and fixes every dimension on which they agree. So that the length
        stays variable, the first batch is padded one `WIDTH_MULTIPLE`
        wider when the first two would have the same width (extra padding
        changes no loss); when both are already at the context length,
        every batch is padded to it.
        """
        first, second = self.natural_width(start_step), self.natural_width(start_step + 1)
        fixed = None
        if first == second:
            if first < self.max_width:
                first = min(first + WIDTH_MULTIPLE, self.max_width)
            else:
                fixed = self.max_width
        step = start_step
        while True:
            yield self.batch(step, fixed or (first if step == start_step else None))
            step += 1
