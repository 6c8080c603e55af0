"""`FinetuneConfig`: every knob of a fine-tuning run, typed and validated.

The dataclass fields are the schema of `recipes/configs/finetune/*.yaml` and
of `--set key=value` (`lora.rank` reaches into `lora`). The optimizer,
schedule, logging and checkpoint keys are the pretraining ones
(`kerasllm.training.PretrainConfig`) with the same names and meanings; the
defaults differ where fine-tuning wants otherwise (noted beside them).
"""

import dataclasses
import typing
from typing import Optional

from kerasllm.finetune.data import BATCHING, FORMATS, OVERLONG
from kerasllm.training.config import ConfigError, ConfigFile, _check_type

METHODS = ("full", "partial", "lora")
POOLINGS = ("last", "mean")


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(ConfigFile):
    """Hyperparameters of `kerasllm.finetune.finetune`.

    Args:
        base: the model directory to start from (`kerasllm.load`).
        data: JSONL training file(s): a path or a list. Defaults to `None`.
        tasks: built-in task names to train on instead of `data`
            (`kerasllm.tasks`), e.g. `["add", "reverse"]`. Defaults to `None`.
        task_train: training examples per task, or a dict of them by task
            name (to weight a harder task). Defaults to `1000`.
        task_test: test examples per task (held out; the validation data).
            Defaults to `100`.
        task_seed: the task split's seed. Defaults to `0`.
        eval_data: JSONL file(s) for the validation loss; `None` with
            `tasks` uses the task test split, with `data` no validation.
            Defaults to `None`.
        format: `"auto"` (each file's from its fields), `"prompt-completion"`,
            `"messages"`, `"text"` or `"classification"`. With `tasks`,
            the format the task records are made in (`"messages"` for
            `"auto"`). Defaults to `"auto"`.
        method: `"full"` (every weight), `"partial"` (the top
            `trainable_blocks` blocks, final norm and head) or `"lora"`
            (low-rank adapters; everything else frozen). Defaults to `"full"`.
        trainable_blocks: for `partial`, how many top blocks train.
            Defaults to `None`.
        lora: for `lora`: `rank`, `alpha`, `targets` (layer-name patterns).
            Defaults to `{}` (the `apply_lora` defaults).
        trainable_tokens: for `lora` and `partial`: tokens whose embedding
            rows train while the rest of the table stays frozen, e.g. the
            chat tokens a base pretrained on plain text never learned (PEFT's
            `trainable_token_indices`). Each entry is a token (a string such
            as `"<|im_end|>"`) or `{text: TEXT}`: every token `TEXT` encodes
            to, e.g. the byte tokens of a script the base never saw
            (`{text: アイウエオ}`). Defaults to `None`.
        completion_only_loss: train on completions / assistant turns only
            (`False`: on every token). Defaults to `True`.
        max_length: the most tokens of an example (`None`: the model's
            context length). Defaults to `None`.
        overlong: an example longer than `max_length` is `"truncate"`d or
            `"drop"`ped; either is counted in the run report. Defaults to
            `"truncate"`.
        skip_bad_lines: skip bad JSONL lines (counted) instead of failing.
            Defaults to `False`.
        batching: `"bucket"` (by length) or `"random"`. Defaults to
            `"bucket"`.
        num_classes: for `classification`: the number of labels. Defaults
            to `None`.
        pooling: for `classification`: `"last"` or `"mean"`. Defaults to
            `"last"`.
        batch_size ... seed: as in `PretrainConfig`.
    """

    KIND = "A fine-tuning config"

    base: Optional[str] = None
    data: typing.Union[str, list, None] = None
    tasks: Optional[list] = None
    task_train: typing.Union[int, dict] = 1000
    task_test: int = 100
    task_seed: int = 0
    eval_data: typing.Union[str, list, None] = None
    format: str = "auto"
    method: str = "full"
    trainable_blocks: Optional[int] = None
    lora: dict = dataclasses.field(default_factory=dict)
    trainable_tokens: Optional[typing.List[typing.Union[str, dict]]] = None
    completion_only_loss: bool = True
    max_length: Optional[int] = None
    overlong: str = "truncate"
    skip_bad_lines: bool = False
    batching: str = "bucket"
    num_classes: Optional[int] = None
    pooling: str = "last"
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    steps: int = 500
    learning_rate: float = 3e-4  # pretraining's 1e-3 would wash out what the base knows
    warmup_steps: int = 20
    decay_steps: Optional[int] = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0  # short runs on small data: no decay toward zero
    beta_1: float = 0.9
    beta_2: float = 0.99
    clipnorm: Optional[float] = 1.0
    log_every: int = 10
    eval_every: int = 100
    eval_batches: Optional[int] = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
        if self.base is None:
            raise ConfigError("base (the model directory to fine-tune) is required.")
        if (self.data is None) == (self.tasks is None):
            raise ConfigError(
                "Give exactly one of data (JSONL paths) and tasks (built-in task names). "
                f"Received: data={self.data!r}, tasks={self.tasks!r}"
            )
        if self.tasks is not None:
            from kerasllm.tasks import task_names

            from kerasllm.tasks.splits import _per_task

            try:
                _per_task(self.task_train, task_names(self.tasks))
            except ValueError as error:
                raise ConfigError(f"tasks: {error}") from None
            if self.format not in ("auto", "messages", "prompt-completion"):
                raise ConfigError(
                    "tasks are made in the messages or prompt-completion format. "
                    f"Received: format={self.format!r}"
                )
        positive = (
            "batch_size", "gradient_accumulation_steps", "steps", "log_every", "eval_every",
            "checkpoint_every", "keep_checkpoints", "eval_batches", "decay_steps",
            "trainable_blocks", "max_length", "num_classes",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1. Received: {name}={value!r}")
        for name in ("task_test", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0. Received: {name}={getattr(self, name)!r}")
        for name in ("learning_rate", "clipnorm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0. Received: {name}={value!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0. Received: weight_decay={self.weight_decay!r}")
        for name in ("min_lr_ratio", "beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1]. Received: {name}={getattr(self, name)!r}")
        if self.warmup_steps > (self.decay_steps or self.steps):
            raise ConfigError(
                f"warmup_steps must not exceed steps (or decay_steps). Received: "
                f"warmup_steps={self.warmup_steps}, steps={self.steps}, decay_steps={self.decay_steps}"
            )
        for name, choices in (
            ("format", FORMATS),
            ("method", METHODS),
            ("overlong", OVERLONG),
            ("batching", BATCHING),
            ("pooling", POOLINGS),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(f"{name} must be one of {choices}. Received: {name}={getattr(self, name)!r}")
        if self.method == "partial" and self.trainable_blocks is None:
            raise ConfigError("method: partial needs trainable_blocks (how many top blocks train).")
        unknown = sorted(set(self.lora) - {"rank", "alpha", "targets"})
        if unknown:
            raise ConfigError(f"Unknown lora key(s) {unknown}; lora takes rank, alpha, targets.")
        if self.trainable_tokens is not None:
            if self.method == "full":
                raise ConfigError(
                    "trainable_tokens is for method lora or partial (full trains every "
                    f"embedding row already). Received: method='full', "
                    f"trainable_tokens={self.trainable_tokens!r}"
                )
            tokens = self.trainable_tokens
            names = [t for t in tokens if isinstance(t, str)]
            texts = [t for t in tokens if isinstance(t, dict)]
            if not tokens or not all(names) or len(set(names)) != len(names) or any(
                set(t) != {"text"} or not isinstance(t["text"], str) or not t["text"] for t in texts
            ):
                raise ConfigError(
                    "trainable_tokens must be a non-empty list of distinct tokens (strings such as "
                    "'<|im_end|>') and {text: TEXT} entries (every token of a non-empty TEXT). "
                    f"Received: trainable_tokens={tokens!r}"
                )
        if self.format == "classification" and self.num_classes is None:
            raise ConfigError("format: classification needs num_classes.")

    @property
    def task_format(self):
        return "messages" if self.format == "auto" else self.format

    @classmethod
    def from_dict(cls, values, overrides=None):
        """A config from a dict (a parsed YAML file) and `--set` overrides.

        A dotted override key (`lora.rank`) reaches into `lora`. Unknown keys
        fail with the closest valid names.
        """
        values = cls.merged_values(values, overrides)
        return cls(**{**values, "lora": dict(values.get("lora") or {})})
