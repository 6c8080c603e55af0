"""`RunDirectory`: what every trainer does around `model.fit`.

Pretraining, fine-tuning and alignment share it: preparing the output
directory (new, `resume`, `overwrite`), the `run.json` status file, the
standard callbacks and resuming from the newest intact checkpoint. A run
directory looks like:

    OUTPUT/
      run.json       kind, config, status, step, result, error
      checkpoints/   step-XXXXXXXX/ (weights + optimizer, state.json with
                     the step, data position, file sizes and checksums)
      log.csv        one row per logging interval (optimizer steps)
      loss.png       train and validation loss against optimizer steps
      tensorboard/   the same metrics, x-axis in optimizer steps
      ...            what the trainer adds (tokenizer/, cache/, model/)

The promises:

- `prepare` refuses, before anything is touched, a non-empty directory that
  holds no run (even with `overwrite`), an existing run without `resume` or
  `overwrite`, and a resume whose config changes more than the trainer's
  `resumable` keys. A run that failed before its first checkpoint counts as
  nothing: it may be started again without `overwrite`.
- With `overwrite`, the old run is moved aside (a hidden sibling) when the
  session starts, and deleted only when the new run completes. A new run
  that fails before writing a checkpoint puts the old one back.
- `run.json` says `running` while training, then `complete` (with the
  result), `failed` (with the error), `interrupted` or `diverged`; `step`
  follows training; a failed resume keeps the previous `result`.
- Checkpoints record their files' sizes and SHA-256; `restore` skips a
  damaged checkpoint, says which and why, and resumes from the newest intact
  one.

Example, a new trainer:

```python
from kerasllm.training.run_directory import RunDirectory

def finetune(config, output, *, resume=False, overwrite=False):
    run = RunDirectory(output, kind="finetune")
    config = FinetuneConfig.from_dict(config or run.saved_config())
    run.prepare(config.to_dict(), resume=resume, overwrite=overwrite,
                resumable=("steps",))      # raises before touching anything
    base = kerasllm.load(config.base_model)  # validate every input first
    with run.session(config.to_dict()):    # running -> failed / interrupted
        model = build_and_compile(base, config)
        start_step = run.restore(model)    # newest intact checkpoint, else 0
        model.fit(
            data, steps_per_epoch=config.log_every,
            epochs=config.steps // config.log_every,
            initial_epoch=start_step // config.log_every,
            callbacks=run.callbacks(checkpoint_every=config.checkpoint_every),
        )
        run.raise_if_diverged()            # status diverged, TrainingDiverged
        kerasllm.save(model, run.path / "model", overwrite=True)
        return run.complete({"step": run.step(model)})
```
"""

import contextlib
import os
import pathlib
import shutil
import sys
import traceback

import keras

from kerasllm.data.atomic import (
    OutputError,
    OutputExistsError,
    atomic_write_json,
    check_output_directory,
    make_sibling_directory,
    write_errors,
)
from kerasllm.training.callbacks import (
    CheckpointError,
    NonFiniteGuard,
    StepCheckpoint,
    TrainingDiverged,
    TrainingLog,
    list_checkpoints,
    restore_checkpoint,
    tensorboard_callback,
    verify_checkpoint,
)

RUN_FILE = "run.json"
CHECKPOINTS_DIR = "checkpoints"
STATUSES = ("running", "complete", "failed", "interrupted", "diverged")


class OutputDirectoryError(OutputExistsError, ValueError):
    """The output directory holds something that this run must not overwrite."""


class RunDirectory:
    """One training run's directory: preparation, status, callbacks, resume.

    Args:
        path: the run directory.
        kind: what trains here (`"pretrain"`, `"finetune"`, ...), recorded in
            `run.json` and used in messages. Defaults to `"pretrain"`.
        log: called with each message for the user. Defaults to printing
            `[kerasllm KIND] message` on stderr.
    """

    def __init__(self, path, kind="pretrain", log=None):
        self.path = pathlib.Path(path)
        self.kind = kind
        self.log = log or (
            lambda message: print(f"[kerasllm {kind}] {message}", file=sys.stderr, flush=True)
        )
        self.checkpoints = self.path / CHECKPOINTS_DIR
        self.guard = None
        self.resumed_from = None
        self._config = None
        self._mode = None
        self._previous = None  # the record of the run found here
        self._aside = None  # where an overwritten run waits until the new one completes
        self._step = 0

    # ------------------------------------------------------------ run.json

    def record(self):
        """The parsed `run.json`, or `None` if there is none (or it is damaged)."""
        import json

        try:
            with open(self.path / RUN_FILE, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def saved_config(self):
        """The config dict of the run in this directory, or `None`."""
        record = self.record()
        return record.get("config") if record else None

    def resolve_config(self, config_class, config, overrides, *, resume):
        """The run's config: `config` (a YAML path or dict), or the saved one on resume.

        `config_class` has `from_yaml(path, overrides)` and
        `from_dict(values, overrides)` and the schedule keys `steps` and
        `decay_steps`. A resumed run given a larger `steps` keeps the
        learning-rate schedule it was trained with (and says so).
        """
        import dataclasses

        from kerasllm.training.config import ConfigError

        saved = self.saved_config()
        if config is None:
            if saved is None:
                raise ConfigError(f"No config given and no run to resume in {self.path}.")
            config = saved
        if isinstance(config, (str, os.PathLike)):
            config = config_class.from_yaml(config, overrides)
        else:
            config = config_class.from_dict(config, overrides)
        if resume and saved and config.decay_steps is None and config.steps != saved.get("steps"):
            # A longer run must not restart the cosine from the top.
            kept = saved.get("decay_steps") or saved.get("steps")
            print(
                f"steps changed from {saved.get('steps')} to {config.steps} on resume: the "
                f"learning-rate schedule is kept (its decay ends at step {kept}, then the "
                "rate stays at its floor). Set decay_steps to choose another schedule.",
                file=sys.stderr,
            )
            config = dataclasses.replace(config, decay_steps=kept)
        return config

    def write_status(self, status, *, step=None, result=None, error=None):
        """Rewrite `run.json` with this status (the previous `result` is kept).

        Args:
            status: one of `STATUSES`.
            step: the optimizer step reached. Defaults to the last known one.
            result: the run's result (for `"complete"`). Defaults to the
                previous run's result, so a failed resume never loses it.
            error: a one-line description of what went wrong.
        """
        from kerasllm.version import __version__

        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}. Received: {status!r}")
        if step is not None:
            self._step = int(step)
        if result is None and self._previous:
            result = self._previous.get("result")
        atomic_write_json(
            self.path / RUN_FILE,
            {
                **(self._extra or {}),
                "kind": self.kind,
                "config": self._config,
                "status": status,
                "step": self._step,
                "result": result,
                "error": error,
                "kerasllm_version": __version__,
                "keras_backend": keras.backend.backend(),
            },
        )

    _extra = None

    def set_extra(self, **fields):
        """JSON-able fields to keep in `run.json` beside the standard ones."""
        self._extra = {**(self._extra or {}), **fields}

    # ------------------------------------------------------------ prepare

    def prepare(self, config, *, resume=False, overwrite=False, resumable=()):
        """Check the directory against the run asked for; change nothing.

        Args:
            config: the run's config as a JSON-able dict.
            resume: continue the run found here. Defaults to `False`.
            overwrite: replace the run found here (never other files).
                Defaults to `False`.
            resumable: config keys that may differ from the saved run's on
                resume. Defaults to `()`.

        Returns:
            `"new"`, `"resume"` or `"overwrite"`.

        Raises:
            OutputDirectoryError: the directory may not be used this way; the
                message says why and what to pass.
        """
        if resume and overwrite:
            raise ValueError("Pass resume or overwrite, not both.")
        self._config = config
        record = self.record()
        self._previous = record
        try:
            occupied = check_output_directory(
                self.path, overwrite=True, marker=RUN_FILE, what="run"
            )
        except OutputExistsError as error:
            raise OutputDirectoryError(str(error)) from None
        if not occupied:
            self._mode = "new"
        elif overwrite:
            self._mode = "overwrite"
        elif resume:
            saved = (record or {}).get("config") or {}
            changed = {
                key: (saved.get(key), value)
                for key, value in config.items()
                if key not in resumable and saved.get(key) != value
            }
            if changed:
                details = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
                allowed = ", ".join(resumable) or "nothing"
                raise OutputDirectoryError(
                    f"{self.path} holds a different run; resuming it with this config "
                    f"would change {details}. Only {allowed} may change on resume; "
                    "pass --overwrite to start over."
                )
            self._mode = "resume"
        elif self._nothing_trained(record):
            self._mode = "overwrite"
        else:
            raise OutputDirectoryError(
                f"{self.path} already holds a run; pass --resume to continue it or "
                "--overwrite to start over."
            )
        if self._mode == "resume":
            self._step = int((record or {}).get("step") or 0)
        return self._mode

    def _nothing_trained(self, record):
        """A run that ended before its first checkpoint: nothing to keep."""
        return (
            record is not None
            and record.get("status") in ("failed", "running", "interrupted")
            and not list_checkpoints(self.checkpoints)
        )

    # ------------------------------------------------------------ session

    @contextlib.contextmanager
    def session(self, config=None):
        """Run the training inside this block; `run.json` tracks how it ends.

        On entry an overwritten run is moved aside and `run.json` says
        `running`. An exception marks the run `failed` (with the error),
        Ctrl-C `interrupted`, both at the last step reached; `TrainingDiverged`
        keeps the `diverged` status `raise_if_diverged` wrote. If the new run
        failed before its first checkpoint, an overwritten run is put back.

        Args:
            config: the config dict, if it changed since `prepare`.
        """
        if self._mode is None:
            raise RuntimeError("Call prepare() before session().")
        if config is not None:
            self._config = config
        with write_errors(self.path):
            if self._mode == "overwrite" and os.path.lexists(self.path):
                self._aside = make_sibling_directory(self.path, "replaced")
                os.replace(self.path, self._aside / "run")
                self._previous = None
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_status("running")
        try:
            yield self
        except TrainingDiverged:
            self._finish_aside(failed=True)
            raise
        except KeyboardInterrupt:
            self._safe_status("interrupted", error="interrupted by the user")
            self._finish_aside(failed=True)
            raise
        except BaseException as error:
            message = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self._safe_status("failed", error=f"{type(error).__name__}: {message}")
            self._finish_aside(failed=True)
            raise
        else:
            self._finish_aside(failed=False)

    def _safe_status(self, status, **kwargs):
        model = getattr(self, "_model", None)
        if "step" not in kwargs and model is not None and model.optimizer is not None:
            with contextlib.suppress(Exception):
                kwargs["step"] = self.step(model)  # where training got to
        # Best effort: the disk that broke training may refuse this too.
        try:
            self.write_status(status, **kwargs)
        except OSError:
            traceback.print_exc(limit=0)

    def _finish_aside(self, failed):
        if self._aside is None:
            return
        aside, self._aside = self._aside, None
        if not failed:
            shutil.rmtree(aside, ignore_errors=True)
        elif not list_checkpoints(self.checkpoints):
            # Nothing of the new run is worth more than the old run.
            shutil.rmtree(self.path, ignore_errors=True)
            os.replace(aside / "run", self.path)
            shutil.rmtree(aside, ignore_errors=True)
            self.log(f"The previous run in {self.path} is restored unchanged.")
        else:
            self.log(
                f"The previous run that --overwrite replaced is kept at "
                f"{aside / 'run'} until a new run completes; delete it when done."
            )

    def complete(self, result):
        """Mark the run `complete` with `result`; returns `result`."""
        self.write_status("complete", step=result.get("step", self._step), result=result)
        return result

    # ------------------------------------------------------------ training

    def callbacks(
        self,
        *,
        checkpoint_every,
        keep=3,
        tokens_per_step=0,
        val_bytes_per_token=None,
        state_fn=None,
        title=None,
    ):
        """The standard callbacks, in order: NaN guard, CSV log + loss curve,
        TensorBoard (optimizer steps), checkpoints, `run.json` step.

        Args:
            checkpoint_every: optimizer steps between checkpoints.
            keep: how many of the latest checkpoints to keep. Defaults to `3`.
            tokens_per_step: tokens per optimizer step (log's `tokens`).
            val_bytes_per_token: for `val_bits_per_byte` in the log.
            state_fn: step -> extra JSON-able checkpoint state (the data
                position). Defaults to `None`.
            title: the loss curve's title. Defaults to `"kerasllm KIND"`.

        Returns:
            A list of Keras callbacks; `raise_if_diverged` reads the guard.
        """
        self.guard = NonFiniteGuard()
        callbacks = [
            self.guard,
            TrainingLog(
                self.path / "log.csv",
                self.path / "loss.png",
                tokens_per_step=tokens_per_step,
                val_bytes_per_token=val_bytes_per_token,
                title=title or f"kerasllm {self.kind}",
            ),
            tensorboard_callback(self.path / "tensorboard"),  # None without TensorFlow
            StepCheckpoint(self.checkpoints, every=checkpoint_every, keep=keep, state_fn=state_fn),
            _RunStep(self),
        ]
        return [callback for callback in callbacks if callback is not None]

    def restore(self, model):
        """Load the newest intact checkpoint into a compiled model.

        Damaged checkpoints (size or checksum differs from what `state.json`
        recorded, or the weights do not load) are skipped with a message
        saying which and why.

        Returns:
            The step restored (0 when there is no usable checkpoint).
            `self.resumed_from` holds it, or `None`; `self.checkpoint_state`
            holds the checkpoint's state dict.
        """
        self.checkpoint_state = None
        for step, path in reversed(list_checkpoints(self.checkpoints)):
            try:
                verify_checkpoint(path)
                state = restore_checkpoint(model, path)
            except CheckpointError as error:
                self.log(f"Skipping checkpoint {path}: {error}")
                continue
            self.log(f"Resumed from {path} (step {state['step']}).")
            self.resumed_from = step
            self.checkpoint_state = state
            self._step = int(state["step"])
            return self._step
        if list_checkpoints(self.checkpoints):
            raise CheckpointError(
                f"No intact checkpoint in {self.checkpoints}: every one is damaged "
                "(see above). Pass --overwrite to start over."
            )
        return 0

    def raise_if_diverged(self):
        """After `fit`: if the guard stopped training, mark `diverged` and raise."""
        if self.guard is not None and self.guard.diverged_at is not None:
            self._safe_status("diverged", step=self.guard.diverged_at, error=self.guard.message)
            raise TrainingDiverged(self.guard.message)

    @staticmethod
    def step(model):
        """The optimizer step of a compiled model."""
        return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


class _RunStep(keras.callbacks.Callback):
    """Keeps `run.json`'s `step` up to date at each logging interval."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def on_train_begin(self, logs=None):
        self.run._model = self.model

    def on_epoch_end(self, epoch, logs=None):
        try:
            self.run.write_status("running", step=RunDirectory.step(self.model))
        except OutputError:
            pass  # the checkpoint writer reports a full disk


__all__ = [
    "CHECKPOINTS_DIR",
    "RUN_FILE",
    "STATUSES",
    "CheckpointError",
    "OutputDirectoryError",
    "RunDirectory",
]
