"""`evaluate_tasks`: greedy answers to the test prompts, scored by `verify`."""

import pathlib

from kerasllm.tasks.splits import DEFAULT_TEST, FORMATS, make_split
from kerasllm.tasks.suite import task_names, verify
from kerasllm.tokenizers.chat_template import IM_END, render_chat

# Generation stops at the end token; these many tokens past the longest
# answer leave room for a wrong, longer one to be seen as wrong.
EXTRA_NEW_TOKENS = 4


def model_format(model, default="messages"):
    """The data format a model was fine-tuned with (its metadata), or `default`."""
    finetune = (getattr(model, "metadata", None) or {}).get("finetune") or {}
    return finetune.get("format") if finetune.get("format") in FORMATS else default


def prompt_text(record, format):
    """The text a model is prompted with for a task record.

    `"messages"`: the conversation without its last assistant turn, rendered
    by the chat template with the assistant turn opened. `"prompt-completion"`:
    the record's prompt.
    """
    if format == "messages":
        messages = list(record["messages"])
        if messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        return render_chat(messages, add_generation_prompt=True)
    if format == "prompt-completion":
        return record["prompt"]
    raise ValueError(f"format must be one of {FORMATS}. Received: format={format!r}")


def answer_tasks(model, records, *, format="messages", batch_size=64, tokenizer=None):
    """Greedy completions (text) for task records, batched through the generator."""
    from kerasllm.generation import get_generator

    generator = get_generator(model)
    if tokenizer is not None:
        generator = generator.with_tokenizer(tokenizer)
    tokenizer = generator.tokenizer
    if tokenizer is None:
        raise ValueError("evaluate_tasks needs a model with a tokenizer (kerasllm.load attaches it).")
    if format == "messages":
        end_token_id = tokenizer.special_tokens.get(IM_END)
        if end_token_id is None:
            raise ValueError(
                f"The tokenizer has no {IM_END} token, so it cannot read the chat format; "
                "use format='prompt-completion'."
            )
    else:
        end_token_id = "auto"
    answers = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        longest = max(len(tokenizer.encode(r["answer"])) for r in chunk)
        completions = generator.complete(
            [prompt_text(r, format) for r in chunk],
            max_new_tokens=longest + EXTRA_NEW_TOKENS,
            strategy="greedy",
            end_token_id=end_token_id,
        )
        answers.extend(c.text for c in completions)
    return answers


def evaluate_tasks(model, tasks=None, *, test=DEFAULT_TEST, seed=0, format=None, batch_size=64,
                   records=None, return_answers=False):
    """Exact-match accuracy of a model on the test split of the task suite.

    Answers every test prompt greedily, in batches, through the compiled
    generator (`kerasllm.generation`), and scores each answer with `verify`.
    To score a LoRA adapter, load it onto the model first
    (`kerasllm.finetune.load_adapter(model, adapter_dir)`).

    Args:
        model: a `GPT` with a tokenizer, or a model directory.
        tasks: task names (a list or `"add,reverse"`); `None` for all.
        test: test examples per task. Defaults to `100`.
        seed: the split's seed (use the one the training data was made
            with, so no test prompt was trained on). Defaults to `0`.
        format: `"messages"` or `"prompt-completion"`; `None` takes the
            format the model was fine-tuned with (its metadata), else
            `"messages"`. Defaults to `None`.
        batch_size: prompts per generation batch. Defaults to `64`.
        records: score these test records instead of making the split.
            Defaults to `None`.
        return_answers: also return `"answers"`: one `{task, prompt,
            answer, completion, correct}` per record. Defaults to `False`.

    Returns:
        `{"tasks": {"add": {"accuracy": ..., "n": ...}, ...},
        "mean_accuracy": ...}` (the mean over tasks).

    Example:
    ```python
    model = kerasllm.load("runs/sft/model")
    kerasllm.tasks.evaluate_tasks(model, ["add", "reverse"])["mean_accuracy"]
    ```
    """
    if isinstance(model, (str, pathlib.Path)):
        import kerasllm

        model = kerasllm.load(model)
    format = format or model_format(model)
    if records is None:
        records = make_split(task_names(tasks), train=0, test=test, seed=seed, format=format)["test"]
    elif tasks is not None:
        wanted = set(task_names(tasks))
        records = [r for r in records if r["task"] in wanted]
    if not records:
        raise ValueError("No test records to evaluate.")
    texts = answer_tasks(model, records, format=format, batch_size=batch_size)
    per_task, answers = {}, []
    for record, text in zip(records, texts):
        correct = verify(record, text)
        stats = per_task.setdefault(record["task"], [0, 0])
        stats[0] += int(correct)
        stats[1] += 1
        if return_answers:
            answers.append({"task": record["task"], "prompt": prompt_text(record, format),
                            "answer": record["answer"], "completion": text, "correct": correct})
    result = {
        "tasks": {name: {"accuracy": right / n, "n": n} for name, (right, n) in per_task.items()},
    }
    result["mean_accuracy"] = sum(t["accuracy"] for t in result["tasks"].values()) / len(per_task)
    if return_answers:
        result["answers"] = answers
    return result
