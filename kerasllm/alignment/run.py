"""The run directory of an alignment command, and what every method shares.

Layout of `OUTPUT/` (as pretraining's)::

    run.json        config, status, step, result
    log.csv         one row per logged step, a column per metric
    curves.png      the logged metrics, one panel each
    tensorboard/    the same metrics for TensorBoard
    checkpoints/    step-XXXXXXXX/ (weights + optimizer state), the last few
    model/          the trained model directory (`kerasllm.load`)
    adapter/        with `lora`: the adapter alone (`kerasllm generate --adapter`)

`execute` prepares the directory through the `RunDirectory` that
pretraining and fine-tuning share (refusing to replace a run without
`overwrite=True`, continuing one with `resume=True`, `run.json` tracking how
the run ends) and runs a method's training inside its session. `fit_pairs`
is the `fit` loop of the pair methods (reward, DPO); `online.train_online`
the loop of the sampling ones (GRPO, PPO). `MetricsLog` writes the CSV and
the PNG, `tensorboard` gives training's TensorBoard callback. LoRA is
fine-tuning's (`apply_lora`, `save_adapter`, `merge_lora`).
"""

import csv
import math
import os
import pathlib
import sys
import time

import keras
import numpy as np

from kerasllm.training.callbacks import NonFiniteGuard, StepCheckpoint, tensorboard_callback
from kerasllm.training.config import ConfigError
from kerasllm.training.optimizers import create_optimizer

RESUMABLE_CHANGES = ("steps", "keep_checkpoints", "log_every")


def prepare_output(output, config_cls, config, overrides, *, resume, overwrite, method):
    """The config and the `RunDirectory` of a run, checked before anything is touched.

    Args:
        output: the run directory.
        config_cls: `RewardConfig`, `DPOConfig`, `GRPOConfig` or `PPOConfig`.
        config: a config, a dict, a YAML path, or `None` to reuse the run's.
        overrides: `--set` values.
        resume, overwrite: as in `kerasllm.training.pretrain`.
        method: `"reward"`, `"dpo"`, `"grpo"` or `"ppo"` (the run's kind).

    Returns:
        `(config, run)`; train inside `with run.session():`.
    """
    from kerasllm.training.run_directory import RunDirectory

    if resume and overwrite:
        raise ValueError("Pass resume or overwrite, not both.")
    run = RunDirectory(output, kind=method, log=lambda message: log(message, method))
    if config is None:
        config = run.saved_config()
        if config is None:
            raise ConfigError(f"No config given and no run to resume in {output}.")
    if isinstance(config, (str, os.PathLike)):
        config = config_cls.from_yaml(config, overrides)
    else:
        config = config_cls.from_dict(config, overrides)
    run.prepare(config.to_dict(), resume=resume, overwrite=overwrite, resumable=RESUMABLE_CHANGES)
    return config, run


def diverged(run, step, message):
    """Marks the run `diverged` and raises `TrainingDiverged`."""
    from kerasllm.training.callbacks import TrainingDiverged

    run.write_status("diverged", step=step, error=message)
    raise TrainingDiverged(message)


def make_optimizer(config):
    return create_optimizer(
        learning_rate=config.learning_rate,
        total_steps=config.steps,
        warmup_steps=config.warmup_steps,
        min_lr_ratio=config.min_lr_ratio,
        weight_decay=config.weight_decay,
        beta_1=config.beta_1,
        beta_2=config.beta_2,
        clipnorm=config.clipnorm,
    )


def load_policy(config, *, trainable=True, lora=True):
    """The base model under the configured precision; LoRA applied if asked.

    With `lora` in the config (and `lora=True` here), fine-tuning's
    `apply_lora` adapts the layers `targets` names (default: every
    projection of every block) and freezes everything else.
    """
    import kerasllm

    policy = kerasllm.load(config.base)
    tokenizer, metadata = policy.tokenizer, policy.metadata
    if config.precision != "float32":
        # Rebuild under the policy's dtype and copy the weights across.
        from kerasllm.models import GPT

        weights = policy.get_weights()
        policy = GPT(policy.config, dtype=config.precision)
        policy.set_weights(weights)
        policy.tokenizer, policy.metadata = tokenizer, metadata
    policy.trainable = trainable
    if trainable and lora:
        apply_configured_lora(policy, config)
    return policy


def apply_configured_lora(model, config):
    """`kerasllm.finetune.apply_lora` with the config's `lora` keys (nothing without them)."""
    if not config.lora:
        return None
    from kerasllm.finetune import apply_lora
    from kerasllm.finetune.lora import DEFAULT_TARGETS

    lora = config.lora
    try:
        return apply_lora(
            model, lora.get("rank", 8), lora.get("alpha"), lora.get("targets", DEFAULT_TARGETS)
        )
    except ValueError as error:
        raise ConfigError(f"lora: {error}") from None


def save_model(model, output, method, config, result):
    """Writes `OUTPUT/model`, a plain model directory, and with LoRA `OUTPUT/adapter`.

    The adapter alone (fine-tuning's `save_adapter`) is kept beside the
    model; the model has it merged into its kernels (`merge_lora`), so it
    loads, generates and exports like any other.
    """
    import kerasllm
    from kerasllm.finetune import lora_config, merge_lora, save_adapter

    output = pathlib.Path(output)
    if lora_config(model) is not None:
        save_adapter(model, output / "adapter", overwrite=True)
        result["adapter_dir"] = str(output / "adapter")
        merge_lora(model)
    metadata = dict(model.metadata or {})
    metadata.update({f"{method}_config": config.to_dict(), f"{method}_result": result})
    kerasllm.save(model, output / "model", metadata=metadata, overwrite=True)
    return output / "model"


def execute(method, config_cls, train, config, output, *, overrides, resume, overwrite):
    """Prepares the run directory, runs `train(config, output, run)` inside its session.

    `train` returns the result dict (with `step` and `model_dir`); this
    adds `output` and `seconds` and marks the run complete.
    """
    started = time.perf_counter()
    output = pathlib.Path(output)
    config, run = prepare_output(
        output, config_cls, config, overrides, resume=resume, overwrite=overwrite, method=method
    )
    with run.session(config.to_dict()):
        keras.utils.set_random_seed(config.seed)
        result = {"output": str(output), **train(config, output, run)}
        result["seconds"] = round(time.perf_counter() - started, 1)
        return run.complete(result)


# ---------------------------------------------------------------- pairs (reward, DPO)


def split_pairs(pairs, fraction, seed):
    """`(train, held_out)`: a seeded share `fraction` of `pairs` held out."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    n_eval = int(round(len(pairs) * fraction)) if len(pairs) > 1 else 0
    return [pairs[i] for i in order[n_eval:]], [pairs[i] for i in order[:n_eval]]


def load_pair_splits(config, report=None):
    """The config's train and held-out preference pairs (`eval_data`, else a split)."""
    from kerasllm.alignment.data import load_preferences

    pairs = load_preferences(config.data, config.skip_bad_lines, report)
    if not pairs:
        raise ValueError(f"No preference pairs in {config.data}.")
    if config.eval_data:
        return pairs, load_preferences(config.eval_data)
    return split_pairs(pairs, config.eval_fraction, config.seed)


def batches(arrays, batch_size, seed, start_step):
    """An endless stream of shuffled batches, each epoch reshuffled, from `start_step`."""
    n = len(next(iter(arrays.values())))
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(1 + (start_step + 1) * batch_size // n)])
    position = start_step * batch_size
    while True:
        while position + batch_size > len(order):
            order = np.concatenate([order, rng.permutation(n)])
        index = order[position : position + batch_size]
        position += batch_size
        yield ({k: v[index] for k, v in arrays.items()},)


def fit_pairs(objective, run, output, config, arrays, *, title, metrics, callbacks, verbose):
    """Resumes and trains a compiled objective on `arrays` for `config.steps` steps.

    The callbacks are pretraining's (NaN guard, checkpoints, TensorBoard on
    optimizer steps) with `MetricsLog` for the method's own metrics; a
    `fit` epoch is one logging interval.

    Returns:
        The optimizer step reached.
    """
    start_step = run.restore(objective)
    epoch_steps = math.gcd(config.log_every, config.checkpoint_every, config.steps)
    guard = NonFiniteGuard()
    run_callbacks = [
        guard,
        MetricsLog(output, title, metrics, start_step=start_step),
        *filter(None, [tensorboard(output)]),
        StepCheckpoint(output / "checkpoints", every=config.checkpoint_every, keep=config.keep_checkpoints),
        *(callbacks or []),
    ]
    if start_step < config.steps:
        objective.fit(
            batches(arrays, config.batch_size, config.seed, start_step),
            steps_per_epoch=epoch_steps,
            epochs=config.steps // epoch_steps,
            initial_epoch=start_step // epoch_steps,
            shuffle=False,  # the batches are shuffled (seeded, resumable) by `batches`
            callbacks=run_callbacks,
            verbose=verbose,
        )
    if guard.diverged_at is not None:
        diverged(run, guard.diverged_at, guard.message)
    return run.step(objective)


def evaluate_pairs(objective, arrays, batch_size):
    """The objective's metrics on held-out `arrays` (rounded), or `{}` without any."""
    if not arrays:
        return {}
    metrics = objective.evaluate(arrays, batch_size=batch_size, verbose=0, return_dict=True)
    return {k: round(float(v), 5) for k, v in metrics.items()}


# ---------------------------------------------------------------- logging


def tensorboard(output, steps="optimizer"):
    """Training's TensorBoard callback on `OUTPUT/tensorboard`, or `None`.

    See `kerasllm.training.callbacks.tensorboard_callback` (`None` where
    TensorFlow is not installed).
    """
    return tensorboard_callback(pathlib.Path(output) / "tensorboard", steps)


class MetricsLog(keras.callbacks.Callback):
    """Metrics as CSV rows and one PNG panel each (TensorBoard: `tensorboard`).

    Works as a `fit` callback (a row per epoch: one logging interval) and by
    hand (`write(step, logs)`) in the online methods' loops. Rows at or past
    the step a run resumes from are dropped first.

    Args:
        output: the run directory (`log.csv`, `curves.png`).
        title: the figure's title.
        panels: metric names to plot, in order. Defaults to every column.
    """

    def __init__(self, output, title, panels=None, start_step=0):
        super().__init__()
        self.output = pathlib.Path(output)
        self.csv_path = self.output / "log.csv"
        self.plot_path = self.output / "curves.png"
        self.title = title
        self.panels = panels
        self.rows = [r for r in _read_csv(self.csv_path) if int(float(r["step"])) <= start_step]

    def on_epoch_end(self, epoch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.write(step, logs or {})

    def on_train_end(self, logs=None):
        self.plot()

    def write(self, step, logs):
        row = {"step": step}
        for key, value in logs.items():
            try:
                row[key] = float(keras.ops.convert_to_numpy(value))
            except (TypeError, ValueError):
                continue
        self.rows.append(row)
        columns = ["step"] + sorted({k for r in self.rows for k in r} - {"step"})
        staging = self.csv_path.with_suffix(".csv.tmp")
        with open(staging, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        os.replace(staging, self.csv_path)

    def plot(self):
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        if not self.rows:
            return
        keys = self.panels or sorted({k for r in self.rows for k in r} - {"step"})
        keys = [k for k in keys if any(k in r for r in self.rows)]
        columns = min(3, max(1, len(keys)))
        lines = math.ceil(len(keys) / columns)
        figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 2.8 * lines), dpi=90, squeeze=False)
        for axis, key in zip(axes.flat, keys):
            points = [(r["step"], r[key]) for r in self.rows if key in r]
            axis.plot(*zip(*points), "-", marker="o" if len(points) < 30 else None, markersize=3)
            axis.set_title(key, fontsize=9)
            axis.grid(alpha=0.3)
        for axis in list(axes.flat)[len(keys):]:
            axis.axis("off")
        figure.suptitle(self.title)
        figure.tight_layout()
        staging = self.plot_path.with_name(f".curves-{os.getpid()}.png")
        figure.savefig(staging)
        plt.close(figure)
        os.replace(staging, self.plot_path)


def _read_csv(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)
        ]


def log(message, method="align"):
    print(f"[kerasllm {method}] {message}", file=sys.stderr, flush=True)
