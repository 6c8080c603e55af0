"""Callbacks of a training run: checkpoints, the CSV log and loss curve,
TensorBoard on optimizer steps, and the NaN/Inf guard. Each works in any
`model.fit`; `RunDirectory.callbacks` puts them together.

Steps here are optimizer steps (`model.optimizer.iterations`): with gradient
accumulation, one step is several `fit` batches.
"""

import csv
import errno
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import time

import keras
import numpy as np

from kerasllm.data.atomic import write_errors

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})$")
WEIGHTS_FILE = "checkpoint.weights.h5"
LORA_FILE = "lora_layers.npz"
STATE_FILE = "state.json"
LOG_COLUMNS = (
    "step", "tokens", "loss", "perplexity", "val_loss", "val_perplexity",
    "val_bits_per_byte", "learning_rate", "seconds",
)  # fmt: skip


def _step(model):
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def _perplexity(loss):
    return math.exp(min(loss, 700.0))


# ---------------------------------------------------------------- checkpoints


class CheckpointError(RuntimeError):
    """A checkpoint is damaged or cannot be loaded into the model."""


def list_checkpoints(directory):
    """The complete checkpoints in `directory`, oldest first, as `(step, path)`.

    A checkpoint is `step-XXXXXXXX/` holding the weights (model and optimizer),
    the LoRA layers' variables if the model has any, and `state.json`; it is
    assembled under a hidden temporary name and renamed into place, so a
    directory with the right name was complete when written
    (`verify_checkpoint` checks it is still intact).
    """
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = CHECKPOINT_PATTERN.match(name)
        path = os.path.join(directory, name)
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
    return sorted(found)


def write_checkpoint(model, directory, step, state=None):
    """Save model and optimizer state as `directory/step-XXXXXXXX/`, atomically.

    `state.json` records the size and SHA-256 of each file, which
    `verify_checkpoint` checks before a resume.

    Keras saves a layer with LoRA enabled (`Dense`, `EinsumDense`,
    `Embedding`) with its factors folded into the kernel and the factors
    themselves not at all, and loads it with zero factors. A run resumed from
    that alone would train its adapter again from zero on a kernel that
    already holds the old update. So every variable of those layers is also
    written as it is, to `LORA_FILE`, and `restore_checkpoint` puts them back:
    the frozen kernels exactly as they were, the factors exactly as trained.

    Args:
        model: a compiled Keras model (its optimizer state is saved too).
        directory: the checkpoints directory.
        step: the optimizer step the state belongs to.
        state: extra JSON-able state to store (e.g. the data position).

    Returns:
        The checkpoint path.

    Raises:
        OutputWriteError: the disk is full or read-only; the previous
            checkpoints are kept and nothing half-written is left.
    """
    final = os.path.join(directory, f"step-{step:08d}")
    staging = os.path.join(directory, f".tmp-step-{step:08d}-{os.getpid()}")
    try:
        with write_errors(directory):
            shutil.rmtree(staging, ignore_errors=True)
            os.makedirs(staging)
            # HDF5 does not raise when the disk fills up mid-file: it logs from
            # destructors and may crash the process later. So the space is
            # checked first, and the size of what came out afterwards.
            payload = _payload_bytes(model)
            lora = _lora_arrays(model)
            lora_bytes = sum(array.nbytes for array in lora.values())
            if shutil.disk_usage(staging).free < payload + lora_bytes + _HDF5_MARGIN:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), staging)
            weights = os.path.join(staging, WEIGHTS_FILE)
            model.save_weights(weights)
            if os.path.getsize(weights) < payload:
                raise OSError(errno.ENOSPC, "the weights file came out short", weights)
            files = {WEIGHTS_FILE: _file_digest(weights)}
            if lora:
                lora_path = os.path.join(staging, LORA_FILE)
                with open(lora_path, "wb") as f:
                    np.savez(f, **lora)
                    f.flush()
                    os.fsync(f.fileno())
                files[LORA_FILE] = _file_digest(lora_path)
            with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(
                    {"step": step, **(state or {}), "files": files}, f, indent=2, sort_keys=True
                )
                f.flush()
                os.fsync(f.fileno())
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def verify_checkpoint(path):
    """Raise `CheckpointError` unless the checkpoint's files match `state.json`.

    Checkpoints written before sizes and checksums were recorded pass (their
    weights are checked when loaded).
    """
    try:
        with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{STATE_FILE} cannot be read ({error}).") from None
    for name, expected in (state.get("files") or {}).items():
        file = os.path.join(path, name)
        if not os.path.isfile(file):
            raise CheckpointError(f"{name} is missing.")
        size = os.path.getsize(file)
        if size != expected["size"]:
            raise CheckpointError(
                f"{name} is {size:,} bytes, but {expected['size']:,} were written "
                "(truncated or damaged)."
            )
        if _file_digest(file)["sha256"] != expected["sha256"]:
            raise CheckpointError(f"{name} does not match its recorded SHA-256 (damaged).")
    return state


def restore_checkpoint(model, path):
    """Load a checkpoint written by `write_checkpoint` into a compiled model.

    The model and its optimizer are built first (if needed), so the optimizer
    moments and iteration count are restored too. The variables of LoRA
    layers come from `LORA_FILE` (see `write_checkpoint`), so the model has
    LoRA on the same layers as the one saved.

    Returns:
        The checkpoint's state dict (with `"step"`).

    Raises:
        CheckpointError: the weights cannot be read or do not fit the model,
            or the model has LoRA layers and the checkpoint lacks their
            variables (an older kerasllm's, with the factors only folded into
            the kernels: it cannot be resumed exactly).
    """
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(os.path.join(path, WEIGHTS_FILE))
        _restore_lora_variables(model, os.path.join(path, LORA_FILE))
        with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"its weights cannot be loaded ({first_line}).") from None


def _lora_variables(model):
    """`{key: variable}` of every variable of the layers with LoRA enabled.

    Keys are `"INDEX/NAME"`, the layer's place among the LoRA layers in model
    order and the variable's name: the same for the same model built in
    another process, whatever the auto-numbered layer names.
    """
    layers = [
        layer for layer in model._flatten_layers(include_self=False)
        if getattr(layer, "lora_enabled", False)
    ]
    return {
        f"{index}/{variable.name}": variable
        for index, layer in enumerate(layers)
        for variable in layer.weights
    }


def _lora_arrays(model):
    return {
        key: keras.ops.convert_to_numpy(variable)
        for key, variable in _lora_variables(model).items()
    }


def _restore_lora_variables(model, lora_path):
    """Assign the arrays of `lora_path` to the LoRA layers' variables (after `load_weights`)."""
    variables = _lora_variables(model)
    if not os.path.isfile(lora_path):
        if variables:
            raise CheckpointError(
                f"the model has LoRA layers, but the checkpoint has no {LORA_FILE} with "
                "their variables: an older kerasllm wrote it, which kept the factors only "
                "folded into the kernels, so it cannot be resumed exactly."
            )
        return
    with np.load(lora_path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    if sorted(arrays) != sorted(variables):
        raise CheckpointError(
            f"{LORA_FILE} holds {sorted(arrays)}, but the model's LoRA layers have "
            f"{sorted(variables)}: the checkpoint is of a model with LoRA on other layers."
        )
    for key, variable in variables.items():
        if tuple(arrays[key].shape) != tuple(variable.shape):
            raise CheckpointError(
                f"{key} in {LORA_FILE} has shape {tuple(arrays[key].shape)}; the model's "
                f"variable has shape {tuple(variable.shape)}."
            )
        variable.assign(arrays[key])


# HDF5's own structures on top of the arrays: a few KB per variable, rounded up.
_HDF5_MARGIN = 1 << 20


def _payload_bytes(model):
    """Bytes of the model's and optimizer's variables in the weights file: the least it takes."""
    # Keras saves a LoRA layer's kernel with its factors folded in, not the factors
    # (`write_checkpoint` writes those to LORA_FILE).
    variables = [v for v in model.weights if not v.name.startswith("lora_")]
    if getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    total = 0
    for variable in variables:
        dtype = np.dtype(keras.backend.standardize_dtype(variable.dtype))
        total += int(np.prod(variable.shape)) * dtype.itemsize
    return total


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


class StepCheckpoint(keras.callbacks.Callback):
    """Writes a checkpoint every `every` optimizer steps, keeping the last `keep`.

    Checkpoints are written atomically (see `write_checkpoint`), never when
    the loss is NaN/Inf, and once more when training ends. Half-written
    checkpoints left by a killed process are removed when the next one is
    written.

    Args:
        directory: where checkpoints go.
        every: optimizer steps between checkpoints.
        keep: how many of the latest checkpoints to keep. Defaults to `3`.
        state_fn: called with the step; returns extra JSON-able state to store
            (e.g. the data position). Defaults to `None`.

    Example:
    ```python
    model.fit(data, steps_per_epoch=100, epochs=10,
              callbacks=[StepCheckpoint("ckpt", every=50)])
    ```
    """

    def __init__(self, directory, every, keep=3, state_fn=None):
        super().__init__()
        self.directory = os.fspath(directory)
        self.every = every
        self.keep = keep
        self.state_fn = state_fn
        self.last_saved = None
        self.healthy = True

    def on_train_begin(self, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        for name in os.listdir(self.directory):
            if name.startswith(".tmp-step-"):
                shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        self.last_saved = _step(self.model)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.healthy = False
        step = _step(self.model)
        if self.healthy and step != self.last_saved and step % self.every == 0:
            self.save(step)

    def on_train_end(self, logs=None):
        step = _step(self.model)
        if self.healthy and step != self.last_saved:
            self.save(step)

    def save(self, step):
        state = self.state_fn(step) if self.state_fn else {}
        write_checkpoint(self.model, self.directory, step, state)
        self.last_saved = step
        for _, old in list_checkpoints(self.directory)[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- NaN guard


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf; training stopped."""


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training as soon as the loss is NaN or Inf, and says why.

    After `fit` returns, `diverged_at` holds the step (or `None`) and
    `message` a sentence for the user. Put it before checkpointing callbacks
    so that no checkpoint is written from diverged weights (`StepCheckpoint`
    also refuses to save a non-finite loss on its own).
    """

    def __init__(self):
        super().__init__()
        self.diverged_at = None
        self.message = None

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)) or self.diverged_at is not None:
            return
        self.diverged_at = _step(self.model)
        self.message = (
            f"Training stopped: the loss became {float(loss)} at step "
            f"{self.diverged_at}. The weights from then on are not saved; "
            "the last good checkpoint is kept. Try a lower learning_rate, a "
            "longer warmup, clipnorm, or precision=float32."
        )
        self.model.stop_training = True


# ---------------------------------------------------------------- log + curve


class TrainingLog(keras.callbacks.Callback):
    """Per-interval metrics as a CSV file and a loss-curve PNG.

    At each epoch end (one epoch = one logging interval) it adds
    `perplexity`, `val_perplexity` and `val_bits_per_byte` to the logs (so
    callbacks after it, such as TensorBoard, see them), appends a row with
    the columns of `LOG_COLUMNS` to the CSV, and redraws the PNG whenever a
    validation result arrives and when training ends.

    On resume, rows at or after the resumed step are dropped first, so the
    file holds one continuous curve.

    Args:
        csv_path: the CSV log.
        plot_path: the loss-curve PNG, or `None` for none.
        tokens_per_step: tokens per optimizer step (for the `tokens` column).
        val_bytes_per_token: UTF-8 bytes per token of the validation text,
            to convert the validation loss to bits per byte. Defaults to
            `None` (no `val_bits_per_byte`).
        title: the loss curve's title. Defaults to `"kerasllm pretraining"`.
    """

    def __init__(
        self,
        csv_path,
        plot_path=None,
        tokens_per_step=0,
        val_bytes_per_token=None,
        title="kerasllm pretraining",
    ):
        super().__init__()
        self.title = title
        self.csv_path = os.fspath(csv_path)
        self.plot_path = plot_path and os.fspath(plot_path)
        self.tokens_per_step = tokens_per_step
        self.val_bytes_per_token = val_bytes_per_token
        self._start = None

    def on_train_begin(self, logs=None):
        step = _step(self.model)
        rows = [r for r in read_log(self.csv_path) if int(r["step"]) <= step]
        seconds = float(rows[-1]["seconds"]) if rows else 0.0
        self._start = time.perf_counter() - seconds
        with write_errors(self.csv_path):
            os.makedirs(os.path.dirname(self.csv_path) or ".", exist_ok=True)
            with open(self.csv_path, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, LOG_COLUMNS)
                writer.writeheader()
                writer.writerows(rows)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        step = _step(self.model)
        if "loss" in logs:
            logs["perplexity"] = _perplexity(float(logs["loss"]))
        if "val_loss" in logs:
            val_loss = float(logs["val_loss"])
            logs["val_perplexity"] = _perplexity(val_loss)
            if self.val_bytes_per_token:
                logs["val_bits_per_byte"] = val_loss / math.log(2) / self.val_bytes_per_token
        row = {
            "step": step,
            "tokens": step * self.tokens_per_step,
            "learning_rate": _learning_rate(self.model.optimizer),
            "seconds": round(time.perf_counter() - self._start, 3),
        }
        for key in ("loss", "perplexity", "val_loss", "val_perplexity", "val_bits_per_byte"):
            if key in logs:
                row[key] = f"{float(logs[key]):.6g}"
        with write_errors(self.csv_path):
            with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, LOG_COLUMNS).writerow(row)
        if "val_loss" in logs:
            self.plot()

    def on_train_end(self, logs=None):
        self.plot()

    def plot(self):
        if self.plot_path:
            plot_loss_curve(self.csv_path, self.plot_path, title=self.title)


def _learning_rate(optimizer):
    rate = optimizer.learning_rate
    return f"{float(keras.ops.convert_to_numpy(rate)):.6g}"


def read_log(csv_path):
    """The rows of a `TrainingLog` CSV as dicts (empty if there is no file)."""
    if not os.path.exists(csv_path):
        return []
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if row.get("step")]


def plot_loss_curve(csv_path, plot_path, title="kerasllm pretraining"):
    """Draw train and validation loss against step from a `TrainingLog` CSV.

    Written with matplotlib's Agg backend (no display needed), atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = read_log(csv_path)
    series = {
        key: [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]
        for key in ("loss", "val_loss")
    }
    figure, axis = plt.subplots(figsize=(7, 4.5), dpi=100)
    for key, label, style in (("loss", "train", "-"), ("val_loss", "validation", "o-")):
        if series[key]:
            steps, values = zip(*series[key])
            axis.plot(steps, values, style, label=label, markersize=3)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss (nats / token)")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    root, extension = os.path.splitext(plot_path)
    staging = f"{root}.tmp-{os.getpid()}{extension}"
    try:
        with write_errors(plot_path):
            figure.savefig(staging)
            os.replace(staging, plot_path)
    finally:
        plt.close(figure)
        if os.path.exists(staging):
            os.remove(staging)


# ---------------------------------------------------------------- TensorBoard


def tensorboard_callback(log_dir, steps="optimizer"):
    """A TensorBoard callback writing to `log_dir`, or `None` without TensorFlow.

    Keras's TensorBoard callback writes through TensorFlow's summary writer,
    imported when it first writes. Where TensorFlow is not installed (a
    JAX-only setup) there is no writer, and the metrics go to the run's
    CSV log and PNG curves alone.

    Args:
        log_dir: the directory of the event files.
        steps: `"optimizer"` for `fit` (`StepTensorBoard`: optimizer steps
            on the x-axis) or `"given"` for a loop that calls
            `on_epoch_end(step, logs)` itself with its own step.
    """
    if importlib.util.find_spec("tensorflow") is None:
        return None
    if steps == "optimizer":
        return StepTensorBoard(log_dir=str(log_dir))
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=False)


class StepTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` with optimizer steps on the x-axis.

    Keras writes a point per epoch at the epoch index; in a run whose
    "epochs" are logging intervals that index means nothing to the reader,
    and differs from `log.csv` and `loss.png`. This writes each point at
    `model.optimizer.iterations` instead. Same arguments as the Keras class.
    """

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(_step(self.model), logs)
