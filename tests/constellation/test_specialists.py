"""The specialists demonstration: its shipped configs and the router's data.

The measurement itself (fine-tuning two specialists and a router) is
`benchmarks/specialists.py`; these tests check, without training, that its
configs route each task to the specialist of the task's language.
"""

import importlib.util
import pathlib

import pytest

from kerasllm.constellation import Constellation
from kerasllm.tasks import TASKS, make_split

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "recipes" / "configs" / "constellation"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("specialists", ROOT / "benchmarks" / "specialists.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _expected_member(task):
    # The reference: the suite's own language of the task.
    return {"en": "english", "ja": "japanese"}[TASKS[task].language]


def test_each_specialist_owns_the_tasks_of_one_language(script):
    for member, tasks in script.SPECIALISTS.items():
        assert {_expected_member(t) for t in tasks} == {member}


def test_the_rules_config_routes_every_test_prompt_to_its_specialist(script):
    constellation = Constellation.from_yaml(CONFIGS / "specialists.yaml")
    tasks = [t for names in script.SPECIALISTS.values() for t in names]
    records = make_split(tasks, train=0, test=30, seed=0)["test"]
    decisions = constellation.route([r["messages"][0]["content"] for r in records])
    assert [d.member for d in decisions] == [_expected_member(r["task"]) for r in records]
    # Kanji-number prompts carry no kana (`漢数字: 23` reads as Han only):
    # the keyword rule, not the language rule, sends them.
    kansuji = [d for d, r in zip(decisions, records) if r["task"] == "kansuji"]
    assert all("keyword" in d.reason for d in kansuji)


def test_the_learned_config_names_the_members_in_class_order(script):
    constellation = Constellation.from_yaml(CONFIGS / "specialists-learned.yaml")
    assert constellation.policy.labels == list(script.SPECIALISTS)
    assert set(constellation.members) == set(script.SPECIALISTS)


def test_router_records_label_each_prompt_with_its_specialist(script):
    records = script.router_records(5, seed=0)
    classes = list(script.SPECIALISTS)
    tasks = [t for names in script.SPECIALISTS.values() for t in names]
    split = make_split(tasks, train=5, test=0, seed=0)["train"]
    assert len(records) == len(split) == 5 * len(tasks)
    for record, source in zip(records, split):
        assert record["text"] == source["messages"][0]["content"]
        assert classes[record["label"]] == _expected_member(source["task"])


def test_the_benchmark_moves_the_configs_to_its_work_dir(script, tmp_path):
    constellation = script.load_constellation(CONFIGS / "specialists-learned.yaml", tmp_path)
    assert constellation.members["english"].model_dir == str(tmp_path / "english" / "model")
    assert constellation.policy.router == str(tmp_path / "router" / "model")
