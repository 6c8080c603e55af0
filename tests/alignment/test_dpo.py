"""DPO: the objective's loss, the cached reference, a short run, config errors."""

import json

import numpy as np
import pytest

from kerasllm.alignment import DPOConfig, dpo
from kerasllm.alignment.config import ConfigError


def test_dpo_run_raises_the_margin_and_writes_a_model(tmp_path, base_dir, preference_file):
    import kerasllm

    overrides = {
        "base": base_dir, "data": preference_file, "steps": 20, "batch_size": 8,
        "learning_rate": 3e-3, "warmup_steps": 0, "log_every": 10, "checkpoint_every": 10,
        "eval_fraction": 0.2,
    }
    result = dpo({}, tmp_path / "run", overrides=overrides, verbose=0)
    assert result["step"] == 20
    assert result["before"]["rewards_margins"] == pytest.approx(0.0, abs=1e-6)
    assert result["after"]["rewards_margins"] > 0.0
    assert (tmp_path / "run" / "reference_logps.npz").is_file()
    assert (tmp_path / "run" / "curves.png").is_file()
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert "rewards_accuracies" in header and "rewards_margins" in header
    model = kerasllm.load(result["model_dir"])
    assert len(model.generate_ids([1, 2, 3], max_new_tokens=2, end_token_id=None)) == 2
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["kind"] == "dpo"
    from kerasllm.training.run_directory import OutputDirectoryError

    with pytest.raises(OutputDirectoryError, match="--resume|--overwrite|resume|overwrite"):
        dpo({}, tmp_path / "run", overrides=overrides, verbose=0)


@pytest.mark.slow
def test_dpo_with_lora_keeps_the_base_and_saves_a_plain_model(tmp_path, base_dir, preference_file):
    import kerasllm

    overrides = {
        "base": base_dir, "data": preference_file, "steps": 5, "batch_size": 4,
        "learning_rate": 1e-2, "warmup_steps": 0, "log_every": 5, "checkpoint_every": 5,
        "lora": {"rank": 2}, "eval_fraction": 0.0,
    }
    result = dpo({}, tmp_path / "lora", overrides=overrides, verbose=0)
    trained = kerasllm.load(result["model_dir"])
    base = kerasllm.load(base_dir)
    changed = [
        not np.allclose(a, b) for a, b in zip(trained.get_weights(), base.get_weights())
    ]
    assert any(changed) and not all(changed)  # only the adapted kernels moved
    from kerasllm.finetune import load_with_adapter

    # The adapter alone, on the base, computes what the merged model computes.
    adapted = load_with_adapter(base_dir, result["adapter_dir"])
    ids = np.array([[1, 2, 3, 4]])
    np.testing.assert_allclose(adapted(ids), trained(ids), atol=1e-4)


@pytest.mark.parametrize(
    "override,message",
    [({"beta": 0.0}, "beta must be > 0"), ({"beta": -1}, "beta must be > 0"),
     ({"loss_type": "hinge"}, "loss_type"), ({"base": ""}, "base is required"),
     ({"betta": 0.1}, "Unknown config key 'betta'")],
)
def test_bad_configs(override, message):
    with pytest.raises(ConfigError, match=message):
        DPOConfig.from_dict({"base": "m", "data": "d.jsonl", **override})


def test_rpo_alpha_adds_the_chosen_per_token_nll():
    import numpy as np

    from kerasllm.alignment.dpo import DPOObjective

    chosen, rejected = np.array([-3.0, -8.0], "float32"), np.array([-5.0, -6.0], "float32")
    ref_c, ref_r = np.array([-4.0, -7.0], "float32"), np.array([-4.5, -6.5], "float32")
    labels = np.array([[-100, 5, 6, -100], [-100, -100, 7, 8]], "int32")
    x = {"chosen_labels": np.concatenate([labels, [[-100, -100, 9, -100]]])[:2],
         "reference_chosen": ref_c, "reference_rejected": ref_r}
    beta, alpha = 0.1, 0.5
    logits = beta * ((chosen - ref_c) - (rejected - ref_r))
    dpo = np.mean(np.log1p(np.exp(-logits)))
    nll = np.mean(-chosen / np.array([2.0, 2.0]))
    y_pred = np.stack([chosen, rejected], axis=1)
    plain = DPOObjective(None, beta=beta).compute_loss(x=x, y_pred=y_pred)
    with_rpo = DPOObjective(None, beta=beta, rpo_alpha=alpha).compute_loss(x=x, y_pred=y_pred)
    np.testing.assert_allclose(float(plain), dpo, rtol=1e-5)
    np.testing.assert_allclose(float(with_rpo), dpo + alpha * nll, rtol=1e-5)
