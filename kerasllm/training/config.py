"""`PretrainConfig`: every knob of a pretraining run, typed and validated.

The dataclass fields are the schema: the YAML recipes in
`recipes/configs/pretrain/` and `--set key=value` use exactly these names
(`model.<field>` for the `GPTConfig` overrides), unknown keys fail with the
closest valid names, and values of the wrong type fail with what was received.
"""

import dataclasses
import typing
from typing import Optional

from kerasllm.data.readers import TEXT_UNITS
from kerasllm.models.gpt_config import GPTConfig, PRESETS, closest_names

TOKENIZER_KINDS = ("bpe", "sentencepiece")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker", "data_parallel")


class ConfigError(ValueError):
    """A pretraining config that cannot be run: bad key, type or value."""


def yaml_loader():
    """A YAML `SafeLoader` that reads `3e-4` and `1e3` as floats.

    YAML 1.1 (PyYAML) wants a dot in a float (`3.0e-4`) and reads `3e-4` as
    a string; people write learning rates the short way.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_yaml(stream):
    """`yaml.load` with `yaml_loader()`: a YAML document of configs."""
    import yaml

    return yaml.load(stream, Loader=yaml_loader())


class ConfigFile:
    """How every run config (pretraining, fine-tuning, alignment) is read.

    A subclass is a frozen dataclass whose fields are the schema. It is built
    from a dict (a parsed YAML file) plus `--set key=value` overrides, where a
    dotted key (`lora.rank`, `model.num_layers`) reaches into a mapping field;
    unknown keys fail with the closest valid names.
    """

    KIND = "A config"

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls):
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def merged_values(cls, values, overrides=None):
        """`values` with `overrides` applied and every key checked against the fields."""
        if isinstance(values, cls):
            values = values.to_dict()
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ConfigError(
                f"{cls.KIND} is a mapping of keys to values. Received: {type(values).__name__}"
            )
        values = dict(values)
        for key, value in (overrides or {}).items():
            outer, dot, inner = key.partition(".")
            if not dot:
                values[key] = value
                continue
            nested = values.get(outer) or {}
            if not isinstance(nested, dict):
                raise ConfigError(
                    f"{key} reaches into {outer}, which must be a mapping. "
                    f"Received: {outer}={nested!r} ({type(nested).__name__})"
                )
            values[outer] = {**nested, inner: value}
        valid = cls.field_names()
        for key in values:
            if key not in valid:
                raise ConfigError(f"Unknown config key {key!r}. {closest_names(key, valid)}")
        return values

    @classmethod
    def from_dict(cls, values, overrides=None):
        """A config from a dict and `--set` overrides.

        Raises:
            ConfigError: an unknown key (the message names the closest valid
                keys), a value of the wrong type, or an invalid value.
        """
        return cls(**cls.merged_values(values, overrides))

    @classmethod
    def from_yaml(cls, path, overrides=None):
        """A config from a YAML file, with `--set` style `overrides` applied."""
        import yaml

        with open(path, encoding="utf-8") as f:
            try:
                values = load_yaml(f)
            except yaml.YAMLError as error:
                raise ConfigError(f"{path} is not valid YAML: {error}") from None
        try:
            return cls.from_dict(values, overrides)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None


@dataclasses.dataclass(frozen=True)
class PretrainConfig(ConfigFile):
    """Hyperparameters of `kerasllm.training.pretrain`.

    Args:
        corpus: a built-in corpus name (`"python-stdlib"`) or a path / list of
            paths (files, directories, globs). Split 90/5/5 into train, val
            and test. Defaults to `"python-stdlib"`.
        text_unit: what one document of a plain text file is: `"file"`,
            `"paragraph"` (blocks between blank lines) or `"line"`. A corpus
            with too few documents for a 90/5/5 split by document is split by
            byte range instead (see `kerasllm.data.split_rule`). Defaults to
            `"file"`.
        jsonl_field: the field of `.jsonl` records that holds the text.
            Defaults to `"text"`.
        validation_corpus: files (path, list, glob) to validate on, all of
            their text; `None` takes the val split of `corpus`. When set,
            `corpus` is used whole for training. Defaults to `None`.
        test_corpus: files held out for testing (`kerasllm evaluate
            --input`); `None` takes the test split of `corpus`. Defaults to
            `None`.
        tokenizer: directory of a trained tokenizer to reuse; `None` trains a
            new one on the training split. Defaults to `None`.
        tokenizer_kind: `"bpe"` (byte-level BPE) or `"sentencepiece"`, for a
            new tokenizer. Defaults to `"bpe"`.
        vocab_size: vocabulary of a new tokenizer; the model's `vocab_size` is
            always the tokenizer's. Defaults to `4096`.
        tokenizer_train_bytes: train a new tokenizer on at most this many
            bytes of the training split (`None`: all of it). Defaults to
            `None`.
        preset: `GPTConfig` preset: `"tiny"`, `"baby"`, `"gpt2-124m"`.
            Defaults to `"tiny"`.
        model: `GPTConfig` fields that override the preset, e.g.
            `{"num_layers": 2, "context_length": 64}`. Defaults to `{}`.
        batch_size: global examples per micro-batch (split across devices).
            Defaults to `32`.
        gradient_accumulation_steps: micro-batches averaged per optimizer
            step, so an optimizer step sees `batch_size *
            gradient_accumulation_steps` examples. Defaults to `1`.
        steps: optimizer steps to train for. Defaults to `1000`.
        learning_rate: peak learning rate (AdamW). Defaults to `1e-3`.
        warmup_steps: linear warmup steps from 0 to the peak. Defaults to
            `100`.
        decay_steps: step at which the cosine decay reaches its floor (`None`:
            `steps`). Defaults to `None`.
        min_lr_ratio: the floor of the cosine decay, as a fraction of the
            peak; `1.0` keeps the rate constant after warmup. Defaults to
            `0.1`.
        weight_decay: AdamW decoupled weight decay (matrices only). Defaults
            to `0.1`.
        beta_1: Adam first-moment decay. Defaults to `0.9`.
        beta_2: Adam second-moment decay. Defaults to `0.95`.
        clipnorm: global gradient-norm clip (`None`: no clipping). Defaults
            to `1.0`.
        precision: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (with dynamic loss scaling). Defaults to `"float32"`.
        log_every: steps between rows of the CSV log / TensorBoard points.
            Defaults to `10`.
        eval_every: steps between validation passes. Defaults to `100`.
        eval_batches: validation batches per pass (`None`: the whole
            validation split). Defaults to `20`.
        checkpoint_every: steps between checkpoints. Defaults to `100`.
        keep_checkpoints: how many of the latest checkpoints to keep.
            Defaults to `3`.
        seed: seed of the weight initialization and of the data order.
            Defaults to `0`.
        distribution: `"none"`, `"mirrored"` (tf.distribute, one host),
            `"multi_worker"` (tf.distribute, several hosts via `TF_CONFIG`)
            or `"data_parallel"` (keras.distribution on JAX). Defaults to
            `"none"`.
        cache_dir: where tokenized corpora are cached (`None`:
            `OUTPUT/cache`); point several runs at one directory to tokenize
            once. Defaults to `None`.

    Example:
    ```python
    config = PretrainConfig.from_yaml(
        "recipes/configs/pretrain/tiny.yaml", overrides={"steps": 200})
    kerasllm.training.pretrain(config, "runs/tiny")
    ```
    """

    KIND = "A pretraining config"

    corpus: typing.Union[str, list] = "python-stdlib"
    text_unit: str = "file"
    jsonl_field: str = "text"
    validation_corpus: typing.Union[str, list, None] = None
    test_corpus: typing.Union[str, list, None] = None
    tokenizer: Optional[str] = None
    tokenizer_kind: str = "bpe"
    vocab_size: int = 4096
    tokenizer_train_bytes: Optional[int] = None
    preset: str = "tiny"
    model: dict = dataclasses.field(default_factory=dict)
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    steps: int = 1000
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    decay_steps: Optional[int] = None
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    beta_1: float = 0.9
    beta_2: float = 0.95
    clipnorm: Optional[float] = 1.0
    precision: str = "float32"
    log_every: int = 10
    eval_every: int = 100
    eval_batches: Optional[int] = 20
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    seed: int = 0
    distribution: str = "none"
    cache_dir: Optional[str] = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            _check_type(field.name, getattr(self, field.name), field.type)
        positive = (
            "vocab_size", "batch_size", "gradient_accumulation_steps", "steps",
            "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
            "tokenizer_train_bytes", "eval_batches", "decay_steps",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1. Received: {name}={value!r}")
        for name in ("learning_rate", "clipnorm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0. Received: {name}={value!r}")
        for name in ("weight_decay", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(
                    f"{name} must be >= 0. Received: {name}={getattr(self, name)!r}"
                )
        for name in ("min_lr_ratio", "beta_1", "beta_2"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(
                    f"{name} must be in [0, 1]. Received: {name}={getattr(self, name)!r}"
                )
        if self.warmup_steps > self.total_decay_steps:
            raise ConfigError(
                "warmup_steps must not exceed steps (or decay_steps). Received: "
                f"warmup_steps={self.warmup_steps}, steps={self.steps}, "
                f"decay_steps={self.decay_steps}"
            )
        for name, choices in (
            ("text_unit", TEXT_UNITS),
            ("tokenizer_kind", TOKENIZER_KINDS),
            ("precision", PRECISIONS),
            ("distribution", DISTRIBUTIONS),
            ("preset", tuple(PRESETS)),
        ):
            if getattr(self, name) not in choices:
                raise ConfigError(
                    f"{name} must be one of {choices}. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        if "vocab_size" in self.model:
            raise ConfigError(
                "model.vocab_size is set by the tokenizer; use the top-level "
                f"vocab_size key. Received: model.vocab_size={self.model['vocab_size']!r}"
            )
        try:
            self.model_config(vocab_size=self.vocab_size)
        except (ValueError, TypeError) as error:
            raise ConfigError(f"model: {error}") from None

    # ------------------------------------------------------------ derived

    @property
    def total_decay_steps(self):
        return self.decay_steps or self.steps

    def model_config(self, vocab_size):
        """The `GPTConfig`: the preset, the `model` overrides, the vocabulary."""
        return GPTConfig.from_preset(self.preset, **{**self.model, "vocab_size": vocab_size})

    def corpus_split(self, split):
        """The corpus spec, split and reader options that hold `split`.

        `validation_corpus` / `test_corpus`, when set, hold all of their
        split; with `validation_corpus`, `corpus` is read whole for training.

        Returns:
            A tuple `(spec, split, reader_kwargs)` for
            `kerasllm.data.corpus_documents` / `TokenCache.get_or_build`.
        """
        from kerasllm.data import is_builtin

        named = {"val": self.validation_corpus, "test": self.test_corpus}
        if named.get(split) is not None:
            spec, split = named[split], "all"
        else:
            spec = self.corpus
            if split == "train" and self.validation_corpus is not None:
                split = "all"
        if is_builtin(spec):
            return spec, split, {}
        return spec, split, {"text_unit": self.text_unit, "jsonl_field": self.jsonl_field}

    @property
    def context_length(self):
        return self.model_config(self.vocab_size).context_length

    # ------------------------------------------------------------ (de)serialize

    @classmethod
    def from_dict(cls, values, overrides=None):
        """A config from a dict (a parsed YAML file) and `--set` overrides.

        Args:
            values: a dict of fields. `model` is a dict of `GPTConfig` fields.
            overrides: a dict of `key: value`; a key may be dotted
                (`model.num_layers`) to reach into `model`. Defaults to `None`.

        Raises:
            ConfigError: an unknown key (the message names the closest valid
                keys), a value of the wrong type, or an invalid value.
        """
        if isinstance(values, dict) and not isinstance(values.get("model") or {}, dict):
            model = values["model"]
            raise ConfigError(
                "model must be dict (GPTConfig fields over the preset). "
                f"Received: model={model!r} ({type(model).__name__})"
            )
        values = cls.merged_values(values, overrides)
        model = values.get("model") or {}
        if not isinstance(model, dict):
            raise ConfigError(
                "model must be dict (GPTConfig fields over the preset; set one "
                f"with model.<field>=...). Received: model={model!r} "
                f"({type(model).__name__})"
            )
        model_fields = [f.name for f in dataclasses.fields(GPTConfig)]
        for key in model:
            if key not in model_fields:
                raise ConfigError(
                    f"Unknown model key {key!r} (model.{key}). "
                    f"{closest_names(key, model_fields)}"
                )
        return cls(**{**values, "model": dict(model)})


def _type_name(kind):
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        items = typing.get_args(item) or (item,)
        return "a list of " + " or ".join(_type_name(i) for i in items)
    return getattr(kind, "__name__", str(kind))


def _check_type(name, value, annotation):
    """Raises `ConfigError` unless `value` fits the field's annotation."""
    allowed = (typing.get_args(annotation)
               if typing.get_origin(annotation) is typing.Union else (annotation,))
    for kind in allowed:
        if kind is type(None) and value is None:
            return
        if typing.get_origin(kind) is list:  # List[X] or List[Union[X, Y]]: each item
            (item,) = typing.get_args(kind)
            items = typing.get_args(item) or (item,)
            if isinstance(value, list) and all(isinstance(v, items) for v in value):
                return
            continue
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if kind in (str, bool, dict, list) and isinstance(value, kind):
            if kind is list and not all(isinstance(v, str) for v in value):
                continue
            return
    expected = " or ".join(_type_name(kind) for kind in allowed)
    raise ConfigError(
        f"{name} must be {expected}. Received: {name}={value!r} "
        f"({type(value).__name__})"
    )
