"""The run directory of an alignment command, and what every method shares.

Layout of `OUTPUT/` (as pretraining's)::

    run.json        config, status, step, result
    log.csv         one row per logged step, a column per metric
    curves.png      the logged metrics, one panel each
    tensorboard/    the same metrics for TensorBoard
    checkpoints/    step-XXXXXXXX/ (weights + optimizer state), the last few
    model/          the trained model directory (`kerasllm.load`)

`prepare_output` checks the directory against the run asked for through the
`RunDirectory` that pretraining and fine-tuning share (refusing to replace a
run without `overwrite=True`, continuing one with `resume=True`, `run.json`
tracking how the run ends); `MetricsLog` writes the CSV, the PNG and
TensorBoard.
"""

import csv
import math
import os
import pathlib
import sys

import keras

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


def load_policy(config, *, trainable=True):
    """The base model under the configured precision; LoRA enabled if asked.

    With `lora`, Keras's own `enable_lora(rank, lora_alpha)` is switched on
    for the `Dense` layers whose path contains one of `targets` (default
    `qkv` and `output`, the attention projections); everything else is
    frozen. A normal save merges the adapters into the kernels.
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
    if trainable and config.lora:
        enable_lora(policy, **config.lora)
    return policy


def enable_lora(model, rank=8, alpha=None, targets=("qkv", "output")):
    """Turns on Keras LoRA for the Dense layers whose path matches `targets`.

    Returns:
        The paths of the layers adapted.
    """
    model.trainable = False
    adapted = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Dense) and any(t in layer.path for t in targets):
            layer.trainable = True
            layer.enable_lora(rank, lora_alpha=alpha or rank)
            adapted.append(layer.path)
    if not adapted:
        names = sorted(
            l.path for l in model._flatten_layers(include_self=False)
            if isinstance(l, keras.layers.Dense)
        )
        raise ConfigError(f"lora.targets {list(targets)} match no Dense layer; there are: {names}")
    return adapted


def merge_lora(model):
    """A plain copy of `model` with its LoRA factors folded into the kernels.

    Keras's `Dense.save_own_variables` writes `kernel + (alpha / rank) A B`,
    so the weights file of the adapted model loads into a fresh one.
    """
    import tempfile

    from kerasllm.models import GPT

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "merged.weights.h5")
        model.save_weights(path)
        merged = GPT(model.config, dtype=model.dtype_policy.name)
        merged.load_weights(path)
    merged.tokenizer, merged.metadata = model.tokenizer, model.metadata
    return merged


def save_policy(policy, output, method, config, result):
    """Writes `OUTPUT/model`: the trained policy as a plain model directory."""
    import kerasllm

    if config.lora:
        policy = merge_lora(policy)
    model_dir = pathlib.Path(output) / "model"
    metadata = dict(policy.metadata or {})
    metadata.update({f"{method}_config": config.to_dict(), f"{method}_result": result})
    kerasllm.save(policy, model_dir, metadata=metadata, overwrite=True)
    return model_dir


class MetricsLog(keras.callbacks.Callback):
    """Metrics as CSV rows, one PNG panel each, and TensorBoard scalars.

    Works as a `fit` callback (a row per epoch: one logging interval) and by
    hand (`write(step, logs)`) in the online methods' loops. Rows at or past
    the step a run resumes from are dropped first.

    Args:
        output: the run directory (`log.csv`, `curves.png`, `tensorboard/`).
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
        self._writer = None

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
        self._tensorboard(step, row)

    def _tensorboard(self, step, row):
        try:
            import tensorflow as tf  # TensorBoard's writer; present with every backend here
        except ImportError:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.output / "tensorboard"))
        with self._writer.as_default():
            for key, value in row.items():
                if key != "step" and math.isfinite(value):
                    tf.summary.scalar(key, value, step=step)
        self._writer.flush()

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
