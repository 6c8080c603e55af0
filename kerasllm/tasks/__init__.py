"""The built-in verifiable task suite: generated prompts, a verifier, evaluation.

Instruction tasks whose answers a program checks, in English and Japanese
(add, larger, reverse, sort, count, katakana, kansuji; see `suite.py`), with
deterministic train/test splits from a seed. It is the measuring stick of
fine-tuning, alignment (`verify` is a reward function; `make_preferences`
gives chosen/rejected pairs) and routing.

    split = kerasllm.tasks.make_split(["add", "reverse"], train=1000, test=100)
    kerasllm.tasks.verify(split["test"][0], "4 6")
    kerasllm.tasks.evaluate_tasks(model, ["add", "reverse"])

See docs/finetuning.md.
"""

from kerasllm.tasks.evaluate import answer_tasks, evaluate_tasks, model_format, prompt_text
from kerasllm.tasks.splits import (
    DEFAULT_TEST,
    DEFAULT_TRAIN,
    FORMATS,
    make_preferences,
    make_record,
    make_split,
    make_task_files,
    write_jsonl,
)
from kerasllm.tasks.suite import TASKS, Task, normalize_answer, task_names, to_kansuji, to_katakana, verify

__all__ = [
    "DEFAULT_TEST",
    "DEFAULT_TRAIN",
    "FORMATS",
    "TASKS",
    "Task",
    "answer_tasks",
    "evaluate_tasks",
    "make_preferences",
    "make_record",
    "make_split",
    "make_task_files",
    "model_format",
    "normalize_answer",
    "prompt_text",
    "task_names",
    "to_kansuji",
    "to_katakana",
    "verify",
    "write_jsonl",
]
