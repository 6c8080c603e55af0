"""recipes/lifecycle.py end to end at its smallest scale: every stage runs
(a few steps each), reports its figures and leaves its outputs, and
lifecycle.json holds the same table. The model learns nothing in these steps;
this checks the plumbing from raw text to version N+1, not the quality.
"""

import importlib.util
import json
import pathlib

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.tf_only]

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "lifecycle.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("lifecycle", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="pretrain_stepz"):
        _recipe().run_lifecycle("out", pretrain_stepz=3)


def test_every_stage_reports_figures_and_outputs(tmp_path):
    recipe = _recipe()
    lines = []
    document = recipe.run_lifecycle(tmp_path / "life", log=lines.append, scale=0.001, eval_prompts=6,
                                    task_examples=64, loop_feedback_prompts=8)

    keys = [key for key, _, _ in recipe.STAGES]
    assert [s["key"] for s in document["stages"]] == keys
    assert document["complete"] is True
    for stage in document["stages"]:
        # The stage was printed with both names, its command and its headline.
        assert any(stage["ja"] in line and stage["en"] in line for line in lines), stage["key"]
        assert stage["command"].startswith("kerasllm ") and any(stage["command"] in l for l in lines)
        assert stage["figures"] and stage["headline"] and stage["seconds"] >= 0
        for path in stage["outputs"].values():
            assert pathlib.Path(path).exists(), (stage["key"], path)
    # The JSON on disk is the returned table.
    saved = json.loads((tmp_path / "life" / "lifecycle.json").read_text(encoding="utf-8"))
    assert saved["stages"] == json.loads(json.dumps(document["stages"]))
    by_key = {s["key"]: s["figures"] for s in document["stages"]}

    # Each stage's figures describe what the next one read.
    assert by_key["cleaning"]["documents_kept"] <= by_key["corpus"]["documents"]
    assert by_key["tokenizer"]["round_trip"] is True
    assert by_key["pretraining"]["tokens"] == by_key["pretraining"]["steps"] * 16 * 128
    assert 1 < by_key["evaluation"]["perplexity"] < by_key["tokenizer"]["vocabulary_size"] * 4
    assert by_key["lora"]["trainable_fraction"] < by_key["sft"]["trainable_fraction"] == 1.0
    assert set(by_key["generation"]) == {"greedy", "beam", "top_p"}
    assert by_key["constellation"]["routed_as_expected"] == by_key["constellation"]["prompts"]
    # An untrained model's logits nearly tie, so float rounding may pick another token.
    assert isinstance(by_key["export"]["tflite_matches_keras_greedy"], bool)
    assert by_key["serving"]["failed_requests_during_swap"] == 0
    assert by_key["feedback"]["pairs_exported"] > 0
    assert (by_key["next_version"]["version_before"], by_key["next_version"]["version_after"]) == (1, 2)

    # A rerun with --skip-existing reuses every stage.
    again = recipe.run_lifecycle(tmp_path / "life", log=lines.append, skip_existing=True, scale=0.001,
                                 eval_prompts=6, task_examples=64, loop_feedback_prompts=8)
    assert all(s.get("reused") for s in again["stages"])
