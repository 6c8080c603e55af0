"""Every shipped YAML config parses, and each one is checked against the
function it feeds, so configs cannot drift from the code.

Add a directory of `recipes/configs/` to `VALIDATORS` with the loader that
validates it (it must raise on unknown keys and wrong types).
"""

import pathlib

import pytest
import yaml

CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "configs"


def _pretrain(path):
    from kerasllm.training import PretrainConfig

    return PretrainConfig.from_yaml(path)


def _constellation(path):
    from kerasllm.constellation import Constellation

    # Checks members, policy and fallback; members load only when asked.
    Constellation.from_yaml(path, calibrate=False)


def _finetune(path):
    from kerasllm.finetune import FinetuneConfig

    return FinetuneConfig.from_yaml(path)


def _alignment(path):
    from kerasllm.alignment import DPOConfig, GRPOConfig, PPOConfig, RewardConfig

    by_method = {"dpo": DPOConfig, "reward": RewardConfig, "grpo": GRPOConfig, "ppo": PPOConfig}
    return by_method[path.stem.split("-")[0]].from_yaml(path)


VALIDATORS = {
    "pretrain": _pretrain, "constellation": _constellation, "finetune": _finetune,
    "alignment": _alignment,
}
ALL = sorted(CONFIGS.rglob("*.yaml")) + sorted(CONFIGS.rglob("*.yml"))


def _id(path):
    return str(path.relative_to(CONFIGS))


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_config_parses(path):
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(values, dict), f"{_id(path)} is not a mapping"


@pytest.mark.parametrize(
    "path", [p for p in ALL if p.parent.name in VALIDATORS], ids=_id
)
def test_config_validates_against_its_function(path):
    VALIDATORS[path.parent.name](path)


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "pretrain").glob("*.yaml")), ids=_id
)
def test_every_pretrain_key_has_a_comment(path):
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"{_id(path)}: no comment on {line.strip()!r}"


def test_the_shipped_pretrain_configs_exist():
    names = {p.stem for p in (CONFIGS / "pretrain").glob("*.yaml")}
    assert {"tiny", "baby", "gpt2-124m"} <= names
