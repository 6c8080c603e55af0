"""Deterministic train/test splits of the task suite, as records and JSONL files.

A split is a pure function of `(tasks, train, test, seed)`: each task draws
from its own `random.Random(f"{seed}:{task}")`, the test prompts first (all
distinct), then the training prompts, skipping every test prompt. So the test
set does not depend on how much training data is asked for, and no test
prompt is ever trained on.
"""

import itertools
import json
import os
import pathlib
import random

from kerasllm.tasks.suite import TASKS, task_names

FORMATS = ("prompt-completion", "messages")
DEFAULT_TRAIN = 1000
DEFAULT_TEST = 100
# Prompt-completion records end the prompt with this separator, so that the
# concatenated text reads "What is 1 + 2?\n3".
PROMPT_SEPARATOR = "\n"


def _check_format(format):
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")


def _draws(task, seed):
    rng = random.Random(f"{seed}:{task.name}")
    while True:
        yield task.sample(rng)


def _task_examples(task, train, test, seed):
    if test > task.size // 2:
        raise ValueError(
            f"Task {task.name!r} makes only {task.size} distinct prompts; ask for at most "
            f"{task.size // 2} test examples. Received: test={test}"
        )
    draws = _draws(task, seed)
    test_examples, seen = [], set()
    while len(test_examples) < test:
        example = next(draws)
        if example[0] not in seen:
            seen.add(example[0])
            test_examples.append(example)
    train_examples = []
    while len(train_examples) < train:
        example = next(draws)
        if example[0] not in seen:  # duplicates inside train are fine; test prompts are not
            train_examples.append(example)
    return train_examples, test_examples


def _interleave(groups):
    """One list taking from each group in turn (groups may differ in length)."""
    return [r for row in itertools.zip_longest(*groups) for r in row if r is not None]


def _per_task(train, names):
    """`{task: count}` from an int (each task) or a dict naming every task."""
    if isinstance(train, dict):
        missing = [n for n in names if n not in train]
        if missing:
            raise ValueError(
                f"train as a dict must give a count for every task; missing {missing}. "
                f"Received: train={train!r}"
            )
        counts = {n: train[n] for n in names}
    else:
        counts = {n: train for n in names}
    for name, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"train must be an int >= 0 per task. Received: {name}={value!r}")
    return counts


def make_record(task, prompt, answer, format="messages"):
    """One training/test record with `"task"` and `"answer"` for `verify`."""
    _check_format(format)
    if format == "messages":
        return {
            "task": task,
            "messages": [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": answer},
            ],
            "answer": answer,
        }
    return {"task": task, "prompt": prompt + PROMPT_SEPARATOR, "completion": answer, "answer": answer}


def make_preference(task, prompt, answer, wrong, format="messages"):
    """A preference pair: chosen is the right answer, rejected a plausible wrong one."""
    _check_format(format)
    if format == "messages":
        return {
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": answer}],
            "rejected": [{"role": "assistant", "content": wrong}],
            "task": task,
            "answer": answer,
        }
    return {
        "prompt": prompt + PROMPT_SEPARATOR,
        "chosen": answer,
        "rejected": wrong,
        "task": task,
        "answer": answer,
    }


def make_split(tasks=None, *, train=DEFAULT_TRAIN, test=DEFAULT_TEST, seed=0, format="messages"):
    """Train and test records of the task suite.

    Args:
        tasks: task names (a list or `"add,reverse"`); `None` for all.
        train: training examples per task, or a dict of them by task name
            (to weight a harder task). Defaults to `1000`.
        test: test examples per task, all distinct. Defaults to `100`.
        seed: the split's seed. Defaults to `0`.
        format: `"messages"` (a user and an assistant turn) or
            `"prompt-completion"`. Defaults to `"messages"`.

    Returns:
        `{"train": [record, ...], "test": [record, ...]}`; each record holds
        `"task"` and `"answer"` besides its training fields, training records
        interleaved across tasks.

    Example:
    ```python
    >>> split = make_split(["add"], train=3, test=2, seed=0)
    >>> len(split["train"]), len(split["test"]), split["test"][0]["task"]
    (3, 2, 'add')
    ```
    """
    _check_format(format)
    if not isinstance(test, int) or isinstance(test, bool) or test < 0:
        raise ValueError(f"test must be an int >= 0. Received: test={test!r}")
    names = task_names(tasks)
    counts = _per_task(train, names)
    split = {"train": [], "test": []}
    for name in names:
        train_examples, test_examples = _task_examples(TASKS[name], counts[name], test, seed)
        split["train"].append([make_record(name, p, a, format) for p, a, _ in train_examples])
        split["test"].extend(make_record(name, p, a, format) for p, a, _ in test_examples)
    # Interleave the tasks so that any prefix of the training file mixes them.
    split["train"] = _interleave(split["train"])
    return split


def make_preferences(tasks=None, *, train=DEFAULT_TRAIN, test=DEFAULT_TEST, seed=0, format="messages"):
    """Preference pairs over the training prompts of `make_split` (same arguments).

    Returns:
        A list of `{"prompt", "chosen", "rejected", "task", "answer"}`;
        `chosen` is correct (`verify` accepts it), `rejected` is a plausible
        mistake: off by one, unreversed, unsorted, the smaller number, ...
    """
    _check_format(format)
    names = task_names(tasks)
    counts = _per_task(train, names)
    pairs = []
    for name in names:
        train_examples, _ = _task_examples(TASKS[name], counts[name], test, seed)
        pairs.append([make_preference(name, p, a, w, format) for p, a, w in train_examples])
    return _interleave(pairs)


def write_jsonl(path, records):
    """Write records as UTF-8 JSONL (one object per line), atomically."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(staging, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(staging, path)
    return path


def make_task_files(output, tasks=None, *, train=DEFAULT_TRAIN, test=DEFAULT_TEST, seed=0,
                    format="messages", preferences=False):
    """Write `train.jsonl`, `test.jsonl` (and `preferences.jsonl`) under `output`.

    What `kerasllm tasks make` runs; the arguments are `make_split`'s. A
    `tasks.json` beside them records how the files were made.

    Returns:
        A dict: `output`, `files` (name → path), `counts` (name → records),
        `tasks`, `seed`, `format`.
    """
    output = pathlib.Path(output)
    names = task_names(tasks)
    split = make_split(names, train=train, test=test, seed=seed, format=format)
    files = {
        "train": str(write_jsonl(output / "train.jsonl", split["train"])),
        "test": str(write_jsonl(output / "test.jsonl", split["test"])),
    }
    counts = {"train": len(split["train"]), "test": len(split["test"])}
    if preferences:
        pairs = make_preferences(names, train=train, test=test, seed=seed, format=format)
        files["preferences"] = str(write_jsonl(output / "preferences.jsonl", pairs))
        counts["preferences"] = len(pairs)
    manifest = {"tasks": names, "train": train, "test": test, "seed": seed, "format": format}
    (output / "tasks.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {"output": str(output), "files": files, "counts": counts, "tasks": names,
            "seed": seed, "format": format}
