"""`pretrain`: corpus → tokenizer → token caches → GPT → `model.fit` → model dir.

One function does the whole run; `kerasllm pretrain` and
`recipes/pretrain.py` call it. A run directory ends up as:

    OUTPUT/
      run.json          config, status (running/complete/failed/...), step, result
      tokenizer/        the tokenizer (trained here, unless config.tokenizer)
      cache/            tokenized train/val splits (unless config.cache_dir)
      checkpoints/      step-XXXXXXXX/ (weights + optimizer + data position,
                        with the weights' size and SHA-256)
      log.csv           step, loss, val_loss, perplexity, bits-per-byte, lr
      loss.png          train and validation loss curve
      tensorboard/      TensorBoard logs
      model/            the trained model directory (`kerasllm.load`)

Training is Keras `fit` with "epochs" of `gcd(log_every, eval_every,
checkpoint_every, steps)` optimizer steps, so the progress bar, validation,
TensorBoard and any callbacks of your own work as usual. The run directory,
its status file, callbacks and resume are `RunDirectory`'s
(`kerasllm.training.run_directory`), shared with the other trainers.
"""

import contextlib
import math
import pathlib
import sys
import time

import keras
import numpy as np

from kerasllm.training.config import ConfigError, PretrainConfig
from kerasllm.training.distribution import distribution_scope
from kerasllm.training.evaluation import language_model_metrics, unigram_counts
from kerasllm.training.losses import LanguageModelLoss
from kerasllm.training.optimizers import create_optimizer
from kerasllm.training.run_directory import RUN_FILE, OutputDirectoryError, RunDirectory

# Keys that may change when a run is resumed: they do not change what has
# been computed so far. (A changed decay_steps changes the rate from then on.)
RESUMABLE_CHANGES = ("steps", "decay_steps", "eval_batches", "keep_checkpoints", "cache_dir")

__all__ = ["RESUMABLE_CHANGES", "RUN_FILE", "OutputDirectoryError", "pretrain"]


def pretrain(
    config,
    output,
    *,
    overrides=None,
    resume=False,
    overwrite=False,
    callbacks=None,
    verbose="auto",
):
    """Pretrain a GPT from a corpus and write a model directory.

    Trains (or reuses) a tokenizer, tokenizes the train and validation splits
    once (cached), builds the model under the configured precision and
    distribution, and trains it with `model.fit`: progress bar, validation
    loss/perplexity/bits-per-byte every `eval_every` steps, a CSV log and a
    loss-curve PNG, TensorBoard, checkpoints every `checkpoint_every` steps,
    and a NaN/Inf guard. At the end it scores the whole validation split
    against a unigram baseline and saves `OUTPUT/model`.

    Args:
        config: a `PretrainConfig`, a dict of its fields, a YAML path, or
            `None` with `resume=True` (reuse the run's own config).
        output: the run directory.
        overrides: `{key: value}` applied on top of `config` (what `--set`
            passes; dotted `model.<field>` keys reach the model overrides).
            Defaults to `None`.
        resume: continue the run in `output` from its last checkpoint
            (weights, optimizer state, step and data position). Only the
            keys in `RESUMABLE_CHANGES` may differ from the saved config.
            Defaults to `False`.
        overwrite: start over in `output`, replacing the run there (never a
            directory of other files). The inputs are checked first, and the
            old run is deleted only when the new one completes (it is put
            back if the new one fails before its first checkpoint).
            Defaults to `False`.
        callbacks: extra Keras callbacks for `fit`. Defaults to `None`.
        verbose: `fit`'s verbosity (`"auto"`, 0, 1, 2). Defaults to `"auto"`.

    Returns:
        A dict: `output`, `model_dir`, `step`, `tokens`, `seconds`,
        `resumed_from` (step or `None`) and `validation` (the metrics of
        `language_model_metrics` on the validation split).

    Raises:
        ConfigError: a bad config key, type or value, or a context longer
            than the corpus allows.
        OutputDirectoryError: `output` holds a different run or other files
            (pass `resume=True` or `overwrite=True`).
        TrainingDiverged: the loss became NaN/Inf (the last good checkpoint
            is kept).

    Example:
    ```python
    from kerasllm.training import pretrain
    result = pretrain("recipes/configs/pretrain/tiny.yaml", "runs/tiny",
                      overrides={"steps": 200})
    model = kerasllm.load(result["model_dir"])
    ```
    """
    started = time.perf_counter()
    output = pathlib.Path(output)
    run = RunDirectory(output, kind="pretrain", log=_log)
    config = run.resolve_config(PretrainConfig, config, overrides, resume=resume)
    run.prepare(config.to_dict(), resume=resume, overwrite=overwrite, resumable=RESUMABLE_CHANGES)
    # Every input is checked before anything in `output` changes.
    given_tokenizer = _given_tokenizer(config)
    _check_corpus_before_tokenizing(config)
    run.set_extra(data_splits={split: _split_note(config, split) for split in ("train", "val")})

    with run.session(config.to_dict()):
        keras.utils.set_random_seed(config.seed)
        tokenizer = given_tokenizer or _tokenizer(config, output)
        train_cache, val_cache = _token_caches(config, output, tokenizer)
        model_config = config.model_config(tokenizer.vocabulary_size)
        _check_corpus_fits(config, model_config.context_length, train_cache, val_cache)
        result = _train(config, run, tokenizer, model_config, train_cache, val_cache, callbacks, verbose)
        result["seconds"] = round(time.perf_counter() - started, 1)
        run.complete(result)
    validation = result["validation"]
    _log(
        f"Done: step {result['step']}, validation loss {validation['loss']:.3f}, "
        f"{validation['bits_per_byte']:.3f} bits/byte (unigram baseline "
        f"{validation['unigram_bits_per_byte']:.3f}). Model: {result['model_dir']}"
    )
    return result


def _train(config, run, tokenizer, model_config, train_cache, val_cache, callbacks, verbose):
    """Build (or restore) the model, `fit` it, score it and save `OUTPUT/model`."""
    output = run.path
    # Keras "epochs" are logging intervals; validation, checkpoints and the
    # end of training fall on their boundaries.
    epoch_steps = math.gcd(config.log_every, config.eval_every, config.checkpoint_every, config.steps)
    epochs = config.steps // epoch_steps
    accumulation = config.gradient_accumulation_steps
    tokens_per_step = config.batch_size * accumulation * model_config.context_length

    scope, replicas = distribution_scope(config.distribution)
    if config.batch_size % replicas:
        raise ConfigError(
            f"batch_size must be divisible by the {replicas} replicas of "
            f"distribution={config.distribution!r}. Received: batch_size={config.batch_size}"
        )
    with scope:
        model = _build_model(config, model_config)
        start_step = run.restore(model)
        if start_step % epoch_steps:
            raise ConfigError(
                f"Cannot resume at step {start_step}: it is not a multiple of "
                f"gcd(log_every, eval_every, checkpoint_every, steps)={epoch_steps}. "
                "Resume with the steps value the run was started with."
            )
        if start_step >= config.steps:
            _log(f"The run is already at step {start_step} of {config.steps}; scoring it.")

        from kerasllm.data import lm_dataset

        train_data = lm_dataset(
            train_cache,
            model_config.context_length,
            config.batch_size,
            seed=config.seed,
            start_batch=start_step * accumulation,
        )
        val_drop_remainder, validation_steps = _validation_batches(
            config, val_cache, model_config.context_length
        )
        val_data = lm_dataset(
            val_cache,
            model_config.context_length,
            config.batch_size,
            shuffle=False,
            repeat=False,
            drop_remainder=val_drop_remainder,
        )
        run_callbacks = run.callbacks(
            checkpoint_every=config.checkpoint_every,
            keep=config.keep_checkpoints,
            tokens_per_step=tokens_per_step,
            val_bytes_per_token=val_cache.bytes_per_token,
            state_fn=lambda step: {
                "data_batch": step * accumulation,
                "seed": config.seed,
                "tokens": step * tokens_per_step,
            },
            title="kerasllm pretraining",
        )
        _log(
            f"Training {model.count_params():,} parameters for steps "
            f"{start_step}..{config.steps} ({tokens_per_step:,} tokens/step, "
            f"{replicas} replica(s), precision {config.precision})."
        )
        model.fit(
            train_data,
            steps_per_epoch=epoch_steps * accumulation,
            epochs=epochs,
            initial_epoch=start_step // epoch_steps,
            validation_data=val_data,
            validation_steps=validation_steps,
            validation_freq=_validation_epochs(epochs, epoch_steps, config.eval_every),
            callbacks=[*run_callbacks, *(callbacks or [])],
            shuffle=False,  # the data pipeline shuffles (seeded, resumable)
            # Redirected output gets one line per interval, not a redrawn bar.
            verbose=(1 if sys.stdout.isatty() else 2) if verbose == "auto" else verbose,
        )
    run.raise_if_diverged()

    step = run.step(model)
    _log("Scoring the whole validation split...")
    unigram = unigram_counts(train_cache.tokens, tokenizer.vocabulary_size)
    validation = language_model_metrics(
        model,
        np.asarray(val_cache.tokens),
        val_cache.num_bytes,
        unigram=unigram,
        batch_size=config.batch_size,
    )
    model_dir = output / "model"
    from kerasllm.models.model_dir import save_model_dir

    save_model_dir(
        model,
        model_dir,
        tokenizer=tokenizer,
        overwrite=True,
        metadata={
            "corpus": config.corpus,
            "pretrain_config": config.to_dict(),
            "steps": step,
            "tokens": step * tokens_per_step,
            "validation": validation,
            "unigram_counts": unigram.tolist(),
        },
    )
    return {
        "output": str(output),
        "model_dir": str(model_dir),
        "step": step,
        "tokens": step * tokens_per_step,
        "resumed_from": run.resumed_from,
        "validation": validation,
    }


# ---------------------------------------------------------------- steps


def _given_tokenizer(config):
    """`config.tokenizer` loaded (checked before the run starts), or `None`."""
    if config.tokenizer is None:
        return None
    from kerasllm import tokenizers

    try:
        return tokenizers.load(config.tokenizer)
    except (FileNotFoundError, ValueError) as error:
        raise ConfigError(f"tokenizer: {error}") from None


def _check_corpus_before_tokenizing(config):
    """Read just enough of each split to know it can fill one batch.

    Every token holds at least one UTF-8 byte (both tokenizers fall back to
    bytes) and each document adds an end token, so a split with fewer than
    `windows * context_length + 1` bytes plus documents cannot fill them
    whatever the tokenizer. An empty, binary or non-UTF-8 corpus fails here
    too, before any tokenizer is trained.
    """
    from kerasllm.data import corpus_documents

    context_length = config.context_length
    for split, windows in (("train", config.batch_size), ("val", 1)):
        spec, corpus_split, reader_kwargs = config.corpus_split(split)
        needed = windows * context_length + 1
        total = 0
        with _corpus_errors():
            for document in corpus_documents(spec, split=corpus_split, **reader_kwargs):
                total += len(document.encode("utf-8")) + 1
                if total >= needed:
                    break
        if total == 0:
            raise ConfigError(
                f"corpus: the {split} split of {spec!r} holds no text. Expected "
                "UTF-8 text files (or .jsonl / .gz); check the path and --set corpus=..."
            )
        if total < needed:
            raise ConfigError(
                f"context_length={context_length} is too long for the {split} split "
                f"of the corpus: its {total - 1:,} bytes make fewer than {windows} "
                f"window(s) of {context_length} tokens"
                + (f" (batch_size={config.batch_size})" if split == "train" else "")
                + ". Use a shorter context (--set model.context_length=...), a smaller "
                "batch_size or a larger corpus."
            )


def _tokenizer(config, output):
    from kerasllm import tokenizers
    from kerasllm.data import corpus_documents

    if config.tokenizer is not None:
        return tokenizers.load(config.tokenizer)
    directory = output / "tokenizer"
    if directory.is_dir():
        return tokenizers.load(directory)
    _log(f"Training a {config.tokenizer_kind} tokenizer (vocab_size={config.vocab_size})...")
    spec, split, reader_kwargs = config.corpus_split("train")
    documents = corpus_documents(spec, split=split, **reader_kwargs)
    if config.tokenizer_train_bytes:
        documents = _take_bytes(documents, config.tokenizer_train_bytes)
    try:
        with _corpus_errors():
            return tokenizers.train_tokenizer(
                documents,
                kind=config.tokenizer_kind,
                vocab_size=config.vocab_size,
                output_dir=directory,
                show_progress=True,  # plain lines; the trainer's bar only on a terminal
            )
    except (TypeError, ValueError) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(f"tokenizer training: {error}") from None


def _take_bytes(documents, limit):
    total = 0
    for document in documents:
        if total >= limit:
            return
        total += len(document.encode("utf-8"))
        yield document


def _token_caches(config, output, tokenizer):
    from kerasllm.data import TokenCache

    root = pathlib.Path(config.cache_dir) if config.cache_dir else output / "cache"
    caches = []
    for split in ("train", "val"):
        spec, corpus_split, reader_kwargs = config.corpus_split(split)
        _log(
            f"Tokenizing the {split} split of {spec!r} ({_split_note(config, split)}; "
            f"cached in {root / split})..."
        )
        with _corpus_errors():
            caches.append(
                TokenCache.get_or_build(
                    spec,
                    tokenizer,
                    root / split,
                    split=corpus_split,
                    # A bar redrawn with carriage returns garbles a log file.
                    show_progress=sys.stderr.isatty(),
                    **reader_kwargs,
                )
            )
    return caches


def _split_note(config, split):
    """How `split`'s text is chosen, in words (logged and kept in run.json)."""
    from kerasllm.data import is_builtin, split_rule

    spec, corpus_split, reader_kwargs = config.corpus_split(split)
    if corpus_split == "all":
        return "all of it"
    if is_builtin(spec):
        return "split by file, 90/5/5"
    with _corpus_errors():
        return split_rule(spec, **reader_kwargs)["note"]


@contextlib.contextmanager
def _corpus_errors():
    """A corpus that cannot be read or split is a config that cannot run."""
    from kerasllm.data import CorpusError

    try:
        yield
    except CorpusError as error:
        raise ConfigError(f"corpus: {error}") from None


def _validation_batches(config, val_cache, context_length):
    """`(drop_remainder, validation_steps)` that the validation split can fill.

    A split with fewer windows than `batch_size` gives one smaller batch; a
    split with fewer batches than `eval_batches` caps the validation steps,
    so `fit` never runs out of validation data.
    """
    from kerasllm.data import batches_per_epoch

    windows = (val_cache.num_tokens - 1) // context_length
    drop_remainder = windows >= config.batch_size
    available = batches_per_epoch(
        val_cache.num_tokens, context_length, config.batch_size, drop_remainder
    )
    if config.eval_batches is None or config.eval_batches <= available:
        return drop_remainder, config.eval_batches
    _log(
        f"The validation split holds {available} batch(es) ({windows} windows of "
        f"{context_length} tokens, batch_size={config.batch_size}; "
        f"{val_cache.num_tokens:,} tokens), fewer than eval_batches="
        f"{config.eval_batches}: each validation pass uses {available}."
    )
    return drop_remainder, available


def _check_corpus_fits(config, context_length, train_cache, val_cache):
    # Validation can run on one smaller batch; training needs full ones.
    for split, cache, needed in (
        ("train", train_cache, config.batch_size),
        ("val", val_cache, 1),
    ):
        windows = (cache.num_tokens - 1) // context_length
        if windows < needed:
            raise ConfigError(
                f"context_length={context_length} is too long for the {split} split "
                f"of the corpus: its {cache.num_tokens:,} tokens make {windows} "
                f"windows, fewer than the {needed} it needs (batch_size="
                f"{config.batch_size}). Use a "
                "shorter context (--set model.context_length=...), a smaller "
                "batch_size or a larger corpus."
            )


def _build_model(config, model_config):
    from kerasllm.models import GPT

    model = GPT(model_config, dtype=config.precision)
    optimizer = create_optimizer(
        learning_rate=config.learning_rate,
        total_steps=config.total_decay_steps,
        warmup_steps=config.warmup_steps,
        min_lr_ratio=config.min_lr_ratio,
        weight_decay=config.weight_decay,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        clipnorm=config.clipnorm,
    )
    if config.gradient_accumulation_steps > 1:
        # Keras averages this many micro-batches per update (set before build).
        optimizer.gradient_accumulation_steps = config.gradient_accumulation_steps
    model.compile(optimizer=optimizer, loss=LanguageModelLoss())
    model.build((None, model_config.context_length))
    return model


def _validation_epochs(epochs, epoch_steps, eval_every):
    """1-based epochs after which `fit` validates: every `eval_every` steps and at the end."""
    return sorted(
        {e for e in range(1, epochs + 1) if (e * epoch_steps) % eval_every == 0} | {epochs}
    )


def _log(message):
    print(f"[kerasllm pretrain] {message}", file=sys.stderr, flush=True)
