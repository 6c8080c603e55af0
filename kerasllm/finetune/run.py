"""`finetune`: a base model directory + JSONL (or built-in tasks) → a fine-tuned model.

One function does the whole run; `kerasllm finetune` and
`recipes/finetune.py` call it. A run directory ends up as:

    OUTPUT/
      run.json          the config, status, last step, the result (data report, accuracy)
      checkpoints/      step-XXXXXXXX/ (weights + optimizer + step; lora: the LoRA layers'
                        variables unmerged, lora_layers.npz), for --resume
      log.csv           step, loss, val_loss, perplexity, lr
      loss.png          train and validation loss curve
      tensorboard/      TensorBoard logs
      model/            full / partial: the fine-tuned model directory (`kerasllm.load`)
      adapter/          lora: the adapter alone (`kerasllm lora merge` makes a model of it)

Training is Keras `fit` with the pretraining callbacks, in "epochs" of
`gcd(log_every, eval_every, checkpoint_every, steps)` optimizer steps.
"""

import math
import statistics
import sys
import time

import keras

from kerasllm.finetune.config import FinetuneConfig
from kerasllm.finetune.data import (
    BatchSchedule,
    classification_batch,
    encode_records,
    language_model_batch,
    read_jsonl,
)
from kerasllm.finetune.trainable import format_trainable
from kerasllm.training.config import ConfigError
from kerasllm.training.losses import LanguageModelLoss
from kerasllm.training.optimizers import create_optimizer
from kerasllm.training.run_directory import RunDirectory

# Keys that may change when a run is resumed: they do not change what has
# been computed so far.
RESUMABLE_CHANGES = ("steps", "decay_steps", "eval_batches", "keep_checkpoints")


def finetune(config, output, *, overrides=None, resume=False, overwrite=False, callbacks=None,
             verbose="auto"):
    """Fine-tune a model directory on JSONL data or the built-in tasks.

    Loads `config.base`, reads and encodes the data (completion-only labels,
    over-long examples truncated or dropped, bad lines reported), sets up the
    method (`full`; `partial`: `freeze_for_partial`; `lora`: `apply_lora`;
    `format: classification`: a `SequenceClassifier` head), trains with
    `model.fit` and the pretraining callbacks (checkpoints, CSV log, loss
    curve, TensorBoard, NaN guard), and writes the model directory (or the
    LoRA adapter). With `tasks`, it scores the task test split at the end.

    Args:
        config: a `FinetuneConfig`, a dict of its fields, a YAML path, or
            `None` with `resume=True` (reuse the run's own config).
        output: the run directory.
        overrides: `{key: value}` on top of `config` (`--set`). Defaults to
            `None`.
        resume: continue from the last checkpoint in `output`. Defaults to
            `False`.
        overwrite: delete `output` first. Defaults to `False`.
        callbacks: extra Keras callbacks for `fit`. Defaults to `None`.
        verbose: `fit`'s verbosity. Defaults to `"auto"`.

    Returns:
        A dict: `output`, `model_dir` (full/partial) or `adapter_dir` (lora),
        `method`, `step`, `seconds`, `step_seconds` (median training step),
        `trainable` (`{"trainable", "total", "fraction"}`), `data` (the data
        report: examples, truncated, dropped_too_long, skipped_bad_lines,
        tokens, trained_tokens, padding_fraction), `resumed_from`, and with
        `tasks` the `evaluate_tasks` result under `tasks`.

    Raises:
        ConfigError: a bad config key, type or value.
        DataError: bad data (`file:line: problem`).
        OutputDirectoryError: `output` holds something else (pass `resume`
            or `overwrite`).
        TrainingDiverged: the loss became NaN/Inf.

    Example:
    ```python
    result = kerasllm.finetune.finetune(
        "recipes/configs/finetune/sft.yaml", "runs/sft",
        overrides={"base": "runs/demo/model", "steps": 300})
    model = kerasllm.load(result["model_dir"])
    ```
    """
    import kerasllm

    started = time.perf_counter()
    run = RunDirectory(output, kind="finetune", log=_log)
    config = run.resolve_config(FinetuneConfig, config, overrides, resume=resume)
    run.prepare(config.to_dict(), resume=resume, overwrite=overwrite, resumable=RESUMABLE_CHANGES)
    # Every input is read and checked before anything in `output` changes.
    model = kerasllm.load(config.base)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ConfigError(f"base {config.base!r} has no tokenizer to encode the data with.")
    context = model.config.context_length
    format, train_records, eval_records, report = _records(config)
    classification = format == "classification"
    max_length = min(config.max_length or context + 1, context + (0 if classification else 1))
    encode = dict(max_length=max_length, overlong=config.overlong,
                  completion_only_loss=config.completion_only_loss, skip_bad_lines=config.skip_bad_lines)
    train_examples = encode_records(tokenizer, train_records, format, report=report, **encode)
    val = None
    if eval_records:
        val_examples = encode_records(tokenizer, eval_records, format, report={}, **encode)
        width = max(len(ids) for ids, _ in val_examples) - (0 if classification else 1)
        batch = classification_batch if classification else language_model_batch
        val = batch(val_examples, tokenizer.pad_token_id, min(width, context))
    schedule = BatchSchedule(
        train_examples, config.batch_size, tokenizer.pad_token_id, context, config.seed,
        batching=config.batching, classification=classification,
    )
    report["padding_fraction"] = round(schedule.padding_fraction(min(config.steps, 200)), 4)
    _log(
        f"Data: {report['examples']:,} {format} examples, {report['trained_tokens']:,} trained "
        f"tokens; {report['truncated']} truncated, {report['dropped_too_long']} dropped as too "
        f"long, {report['skipped_bad_lines']} bad lines skipped."
    )

    with run.session(config.to_dict()):
        keras.utils.set_random_seed(config.seed)
        model, trainable = _prepare_model(model, config, tokenizer)
        _log(f"Method {config.method}: training {trainable['trainable']:,} parameters, "
             f"{format_trainable(trainable)}.")
        model.compile(optimizer=_optimizer(config), loss=_loss(classification),
                      metrics=["accuracy"] if classification else None)
        # Keras "epochs" are logging intervals; validation and checkpoints
        # fall on their boundaries.
        epoch_steps = math.gcd(config.log_every, config.eval_every, config.checkpoint_every, config.steps)
        epochs = config.steps // epoch_steps
        accumulation = config.gradient_accumulation_steps
        start_step = run.restore(model)
        if start_step % epoch_steps:
            raise ConfigError(
                f"Cannot resume at step {start_step}: not a multiple of gcd(log_every, eval_every, "
                f"checkpoint_every, steps)={epoch_steps}. Resume with the run's own steps value."
            )
        timer = _StepTimer()
        run_callbacks = [
            *run.callbacks(checkpoint_every=config.checkpoint_every, keep=config.keep_checkpoints,
                           state_fn=lambda step: {"data_batch": step * accumulation, "seed": config.seed},
                           title="kerasllm fine-tuning"),
            timer,
            *(callbacks or []),
        ]
        if start_step < config.steps:
            model.fit(
                schedule.generator(start_step * accumulation),
                steps_per_epoch=epoch_steps * accumulation,
                epochs=epochs,
                initial_epoch=start_step // epoch_steps,
                validation_data=val,
                validation_steps=config.eval_batches if val is not None else None,
                validation_batch_size=config.batch_size,
                validation_freq=_validation_epochs(epochs, epoch_steps, config.eval_every),
                callbacks=run_callbacks,
                shuffle=False,  # BatchSchedule shuffles (seeded, resumable)
                verbose=verbose,
            )
        run.raise_if_diverged()
        step = run.step(model)
        result = {
            "output": str(run.path),
            "method": config.method,
            "format": format,
            "step": step,
            "step_seconds": timer.median(),
            "trainable": trainable,
            "data": report,
            "resumed_from": run.resumed_from,
        }
        metadata = {
            **(getattr(model, "metadata", None) or {}),
            "finetune": {"base": config.base, "method": config.method, "format": format,
                         "steps": step, "config": config.to_dict(), "data": report},
        }
        if config.method == "lora":
            from kerasllm.finetune.lora import save_adapter

            result["adapter_dir"] = str(save_adapter(model, run.path / "adapter", overwrite=True))
        else:
            from kerasllm.finetune.lora import merge_lora

            merge_lora(model)  # token rows trained beside a partial run go into the table
            for layer in model._flatten_layers(include_self=True):
                layer.trainable = True  # the saved model is not frozen for whoever trains it next
            model_dir = run.path / "model"
            kerasllm.save(model, model_dir, tokenizer=tokenizer, overwrite=True, metadata=metadata)
            result["model_dir"] = str(model_dir)
        if config.tasks is not None and not classification:
            from kerasllm.tasks import evaluate_tasks

            model.metadata = metadata
            _log("Scoring the task test split...")
            result["tasks"] = evaluate_tasks(model, config.tasks, test=config.task_test,
                                             seed=config.task_seed, format=format)
            _log(f"Mean task accuracy {result['tasks']['mean_accuracy']:.3f}.")
        result["seconds"] = round(time.perf_counter() - started, 1)
        run.complete(result)
    _log(f"Done: step {step}. Output: {result.get('model_dir') or result.get('adapter_dir')}")
    return result


# ---------------------------------------------------------------- steps


def _records(config):
    """`(format, train records, eval records, report)` from `data` or `tasks`."""
    report = {"skipped_bad_lines": 0}
    if config.tasks is not None:
        from kerasllm.tasks import make_split

        split = make_split(config.tasks, train=config.task_train, test=config.task_test,
                           seed=config.task_seed, format=config.task_format)
        return config.task_format, split["train"], split["test"], report
    format, records = read_jsonl(config.data, format=config.format, skip_bad_lines=config.skip_bad_lines,
                                 num_classes=config.num_classes, report=report)
    eval_records = []
    if config.eval_data is not None:
        _, eval_records = read_jsonl(config.eval_data, format=format, num_classes=config.num_classes)
    return format, records, eval_records, report


def _prepare_model(model, config, tokenizer):
    """Add the classifier head / freeze / add adapters; returns `(model, trainable summary)`."""
    from kerasllm.finetune.trainable import trainable_summary

    if config.format == "classification":
        from kerasllm.finetune.sequence_classifier import SequenceClassifier

        model = SequenceClassifier(model, config.num_classes, pooling=config.pooling,
                                   pad_token_id=tokenizer.pad_token_id)
    tokens = _token_ids(tokenizer, config.trainable_tokens)
    if config.method == "partial":
        from kerasllm.finetune.partial import freeze_for_partial

        freeze_for_partial(model, config.trainable_blocks, trainable_tokens=tokens)
    elif config.method == "lora":
        from kerasllm.finetune.lora import apply_lora

        apply_lora(model, **config.lora, trainable_tokens=tokens)
    return model, trainable_summary(model)


def _token_ids(tokenizer, tokens):
    """The ids of `trainable_tokens` in `tokenizer`, in order, once each; or `None`.

    An entry is a token (a string such as `"<|im_end|>"`, or an id) or
    `{"text": TEXT}`: every token `TEXT` encodes to, e.g. the byte tokens of
    a script the base never saw.
    """
    if tokens is None:
        return None
    ids = []
    for token in tokens:
        if isinstance(token, dict):
            ids.extend(tokenizer.encode(token["text"]))
            continue
        if isinstance(token, int):
            if token >= tokenizer.vocabulary_size:
                raise ConfigError(
                    f"trainable_tokens: id {token} is outside the base's vocabulary "
                    f"[0, {tokenizer.vocabulary_size})."
                )
            ids.append(token)
            continue
        special = tokenizer.special_tokens
        try:
            ids.append(special[token] if token in special else tokenizer.token_to_id(token))
        except KeyError:
            raise ConfigError(
                f"trainable_tokens: {token!r} is not a token of the base's tokenizer "
                f"(for every token of a text, write {{text: {token!r}}}). "
                f"Its special tokens: {sorted(special)}."
            ) from None
    return list(dict.fromkeys(ids))


def _optimizer(config):
    optimizer = create_optimizer(
        learning_rate=config.learning_rate,
        total_steps=config.decay_steps or config.steps,
        warmup_steps=config.warmup_steps,
        min_lr_ratio=config.min_lr_ratio,
        weight_decay=config.weight_decay,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        clipnorm=config.clipnorm,
    )
    if config.gradient_accumulation_steps > 1:
        optimizer.gradient_accumulation_steps = config.gradient_accumulation_steps
    return optimizer


def _loss(classification):
    if classification:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return LanguageModelLoss()


class _StepTimer(keras.callbacks.Callback):
    """Wall time of each training batch (the median skips compilation)."""

    def __init__(self):
        super().__init__()
        self.times, self._start = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def median(self):
        times = self.times[3:] or self.times
        return round(statistics.median(times), 5) if times else None


def _validation_epochs(epochs, epoch_steps, eval_every):
    return sorted({e for e in range(1, epochs + 1) if (e * epoch_steps) % eval_every == 0} | {epochs})


def _log(message):
    print(f"[kerasllm finetune] {message}", file=sys.stderr, flush=True)
