"""Which models to serve: `--model-base-path`, or TF Serving's model config file.

The config file is TF Serving's text-proto `ModelServerConfig`, parsed with
`tensorflow_serving`'s own `model_server_config_pb2`, so one file works for
`tensorflow_model_server --model_config_file` and for `kerasllm serve`:

    model_config_list {
      config {
        name: "tiny"
        base_path: "saved_models/tiny"
        model_platform: "tensorflow"
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }

A relative `base_path` is read from the directory the server was started in,
as TF Serving does.
"""

import dataclasses
import pathlib
import re
from typing import Dict, Optional, Tuple

from kerasllm.serving.errors import invalid

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def check_model_name(name):
    """A model name is a URL path segment: no separators, no `..`."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise invalid(
            "A model name holds only letters, digits, '.', '_' and '-', starts with "
            f"a letter or digit and has no path separators. Received: {name!r}"
        )
    return name


@dataclasses.dataclass
class ModelSpec:
    """One served model: its name, base path, version policy and labels.

    Attributes:
        name: the name in `/v1/models/NAME` and the OpenAI `model` field.
        base_path: the directory holding numbered version folders (or one
            kerasllm model directory, served as version 1).
        policy: `"latest"`, `"all"` or `"specific"`.
        num_versions: how many of the newest versions `"latest"` serves.
        versions: the versions `"specific"` serves.
        labels: version labels, e.g. `{"stable": 1}`.
    """

    name: str
    base_path: pathlib.Path
    policy: str = "latest"
    num_versions: int = 1
    versions: Tuple[int, ...] = ()
    labels: Dict[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        check_model_name(self.name)
        self.base_path = pathlib.Path(self.base_path).resolve()
        if self.policy not in ("latest", "all", "specific"):
            raise ValueError(f"policy must be latest, all or specific. Received: {self.policy!r}")
        if self.policy == "specific" and not self.versions:
            raise ValueError(f"A specific version policy needs versions. Received: model {self.name!r}")

    def wanted(self, available):
        """The versions (ints) this policy serves out of `available`."""
        available = sorted(set(available))
        if self.policy == "all":
            return available
        if self.policy == "specific":
            return [v for v in available if v in self.versions]
        return available[-max(1, self.num_versions):]


def spec_from_flags(base_path, name=None):
    """The one model of `--model-base-path` / `--model-name`."""
    base_path = pathlib.Path(base_path)
    return ModelSpec(name=name or base_path.resolve().name, base_path=base_path)


def parse_model_config(text, *, config_path: Optional[pathlib.Path] = None):
    """`ModelSpec`s from the text of a TF Serving model config file."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ValueError(f"{config_path or 'model config'}: {error}") from error
    if config.WhichOneof("config") != "model_config_list":
        raise ValueError(
            f"{config_path or 'model config'}: expected a model_config_list "
            "(custom_model_config is not supported)."
        )
    specs = []
    for model in config.model_config_list.config:
        if model.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"model {model.name!r}: only model_platform 'tensorflow' is served. "
                f"Received: {model.model_platform!r}"
            )
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        specs.append(
            ModelSpec(
                name=model.name,
                base_path=model.base_path,
                policy=policy,
                num_versions=model.model_version_policy.latest.num_versions or 1,
                versions=tuple(model.model_version_policy.specific.versions),
                labels=dict(model.version_labels),
            )
        )
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"{config_path or 'model config'}: model names repeat: {names}")
    if not specs:
        raise ValueError(f"{config_path or 'model config'}: no model in model_config_list")
    return specs


def read_model_config(path):
    path = pathlib.Path(path)
    return parse_model_config(path.read_text(encoding="utf-8"), config_path=path)
