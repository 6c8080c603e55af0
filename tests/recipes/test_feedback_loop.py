"""The feedback loop of recipes/feedback_loop.py, end to end on a 2-layer model.

The model is too small to learn the task in these few steps, so this checks
the plumbing, not the gain: the simulated users' ratings (and better answers)
reach the server's feedback database, become preference pairs, DPO trains on
them, version N+1 lands beside N, the running server swaps to it without one
failed request, and `kerasllm feedback stats` lists both versions.
"""

import importlib.util
import json
import pathlib

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.tf_only]

RECIPE = pathlib.Path(__file__).resolve().parents[2] / "recipes" / "feedback_loop.py"


def _recipe():
    spec = importlib.util.spec_from_file_location("feedback_loop", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base(root):
    """A random 2-layer GPT with a small BPE that has the chat tokens."""
    import keras

    import kerasllm
    from kerasllm.models import GPT
    from kerasllm.tasks import make_split
    from kerasllm.tokenizers import train_tokenizer

    texts = [m["content"] for r in make_split(["larger"], train=200, test=0)["train"]
             for m in r["messages"]]
    tokenizer = train_tokenizer(texts * 3, vocab_size=300, output_dir=root / "tokenizer",
                                show_progress=False)
    keras.utils.set_random_seed(0)
    model = GPT.from_preset("tiny", vocab_size=tokenizer.vocabulary_size, context_length=64,
                            num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
    kerasllm.save(model, root / "base", tokenizer=tokenizer)
    return root / "base"


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="dpo_stepz"):
        _recipe().run_feedback_loop("base", "out", dpo_stepz=3)


def test_feedback_loop_end_to_end(tmp_path):
    base = _base(tmp_path)
    lines = []
    summary = _recipe().run_feedback_loop(
        base, tmp_path / "loop", log=lines.append, export_dir=str(tmp_path / "saved_models"),
        name="loop", tasks="larger", sft_steps=20, sft_examples=200, feedback_prompts=12,
        eval_prompts=6, users=2, better_answers=True, version_format="model_dir", dpo_steps=4, dpo_batch_size=4,
        load_clients=2, swap_timeout=300,
    )
    # Versions: N was exported first, N+1 beside it, and the server swapped.
    assert (summary["version_before"], summary["version_after"]) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "saved_models" / "loop").iterdir()) == ["1", "2"]
    assert summary["served_versions_before"] == [1] and summary["served_versions_after"] == [2]
    swap = summary["swap"]
    assert summary["failed_requests_during_swap"] == 0 and swap["failures"] == []
    assert swap["served_by_version"].get("1", 0) > 0 and swap["served_by_version"].get("2", 0) > 0
    assert swap["version_states"]["2"] == "AVAILABLE"

    # The pairs file is what `kerasllm feedback export` wrote from the ratings:
    # conversational pairs whose chosen answer the verifier accepts.
    pairs = [json.loads(l) for l in (tmp_path / "loop" / "preferences.jsonl").read_text().splitlines()]
    assert summary["pairs_exported"] == len(pairs) > 0
    assert summary["pair_check"]["chosen_right"] == len(pairs)
    assert all(isinstance(p["prompt"], list) and p["prompt"][-1]["role"] == "user" for p in pairs)

    # Stats list both versions with their ratings. The users rate by the
    # verifier: N got 12 prompts x 2 answers (the feedback) and 6 x 2 held-out
    # ones (the measure), N+1 the same 6 x 2 held-out ones.
    versions = {s["version"]: s for s in summary["stats"] if s["model"] == "loop"}
    assert set(versions) == {"1", "2"}
    assert versions["1"]["thumbs_up"] + versions["1"]["thumbs_down"] == 12 * 2 + 6 * 2
    assert versions["2"]["thumbs_up"] + versions["2"]["thumbs_down"] == 6 * 2
    assert versions["1"]["thumbs_up"] == round(summary["rating_feedback_round"] * 24 + summary["rating_before"] * 12)
    assert versions["2"]["approval"] == pytest.approx(summary["rating_after"], abs=1e-3)
    assert 0.0 <= summary["accuracy_before"] <= 1.0 and 0.0 <= summary["accuracy_after"] <= 1.0

    written = json.loads((tmp_path / "loop" / "summary.json").read_text())
    for key in ("version_before", "version_after", "rating_before", "rating_after", "accuracy_before",
                "accuracy_after", "failed_requests_during_swap", "pairs_exported"):
        assert written[key] == summary[key]
    text = "\n".join(lines)
    for name in ("ユーザーのフィードバック / user feedback", "直接選好最適化 / DPO", "集計 / feedback stats",
                 "無停止の切り替え / export N+1 and swap under load"):
        assert name in text
