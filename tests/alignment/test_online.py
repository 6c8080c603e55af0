"""GRPO and PPO: short runs, the frozen reference, config errors."""

import numpy as np
import pytest

from kerasllm.alignment import DPOConfig, GRPOConfig, PPOConfig
from kerasllm.alignment.config import ConfigError

REWARD = "tests.alignment.conftest:ends_with_ok"


def common(base_dir, prompt_file):
    return {
        "base": base_dir, "data": prompt_file, "reward_functions": [REWARD], "steps": 2,
        "prompts_per_step": 2, "max_new_tokens": 4, "warmup_steps": 0, "log_every": 1,
        "checkpoint_every": 2, "learning_rate": 1e-3,
    }


@pytest.mark.slow
def test_grpo_run(tmp_path, base_dir, prompt_file):
    import kerasllm
    from kerasllm.alignment.grpo import grpo

    overrides = {**common(base_dir, prompt_file), "group_size": 4, "kl_coefficient": 0.1,
                 "updates_per_step": 2}
    result = grpo({}, tmp_path / "grpo", overrides=overrides, verbose=0)
    assert result["step"] == 2
    for key in ("reward", "loss", "kl", "clip_fraction", "response_length"):
        assert key in result["last"]
    assert 0.0 <= result["last"]["groups_with_signal"] <= 1.0
    assert (tmp_path / "grpo" / "curves.png").is_file()
    assert any((tmp_path / "grpo" / "tensorboard").rglob("events.out.tfevents*"))
    kerasllm.load(result["model_dir"])


def test_ppo_run_never_changes_the_reference(tmp_path, base_dir, prompt_file, monkeypatch):
    import importlib

    import kerasllm

    ppo_module = importlib.import_module("kerasllm.alignment.ppo")

    seen = {}
    original = ppo_module.PPOStepper.__init__

    def spy(self, policy, config, reward_fn, reference, *args, **kwargs):
        seen["reference"] = reference
        seen["before"] = [w.copy() for w in reference.get_weights()]
        original(self, policy, config, reward_fn, reference, *args, **kwargs)

    monkeypatch.setattr(ppo_module.PPOStepper, "__init__", spy)
    overrides = {**common(base_dir, prompt_file), "ppo_epochs": 2, "minibatch_size": 1,
                 "reward_functions": ["tests.alignment.conftest:text_length"],
                 "kl_estimator": "k3", "kl_target": 1.0}
    result = ppo_module.ppo({}, tmp_path / "ppo", overrides=overrides, verbose=0)
    for key in ("reward", "kl", "entropy", "clip_fraction", "approx_kl", "value_loss", "ratio",
                "response_length", "kl_coefficient"):
        assert key in result["last"], key
    after = seen["reference"].get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(seen["before"], after))
    trained = kerasllm.load(result["model_dir"]).get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(seen["before"], trained))
    # The adaptive coefficient is kept with the checkpoint, so a resume continues from it.
    import json

    state = json.loads((tmp_path / "ppo" / "checkpoints" / "step-00000002" / "state.json").read_text())
    assert state["kl_coefficient"] != pytest.approx(PPOConfig.kl_coefficient)


def test_adaptive_kl_controller_moves_towards_the_target():
    from kerasllm.alignment.ppo import AdaptiveKLController

    controller = AdaptiveKLController(0.1, target=1.0, horizon=100)
    controller.update(kl=5.0, n_samples=10)
    assert controller.value == pytest.approx(0.1 * 1.02)
    controller.update(kl=0.1, n_samples=10)
    assert controller.value < 0.1 * 1.02


@pytest.mark.parametrize(
    "cls,override,message",
    [
        (GRPOConfig, {"group_size": 1}, "group_size must be >= 2"),
        (GRPOConfig, {"reward_functions": []}, "No reward source"),
        (PPOConfig, {"reward_functions": []}, "No reward source"),
        (PPOConfig, {"minibatch_size": 3}, "minibatch_size must divide"),
        (PPOConfig, {"kl_estimator": "k9"}, "kl_estimator"),
        (GRPOConfig, {"temperature": 0}, "temperature must be > 0"),
        (DPOConfig, {"rpo_alpha": -1}, "rpo_alpha must be a number >= 0"),
        (PPOConfig, {"value_model": "reward_model"}, "reward_model is not set"),
    ],
)
def test_bad_configs(cls, override, message):
    values = {"base": "m", "data": "p.jsonl", **override}
    if cls is not DPOConfig:
        values.setdefault("reward_functions", ["tasks.verify"])
    with pytest.raises(ConfigError, match=message):
        cls.from_dict(values)


def test_reward_function_names():
    from kerasllm.alignment.rollout import reward_function

    verify = reward_function("tasks.verify")
    assert verify({"task": "add", "answer": "5"}, " 5") == 1.0
    with pytest.raises(ValueError, match="module:function"):
        reward_function("nonsense")


@pytest.mark.slow
def test_cli_dpo_json(tmp_path, base_dir, preference_file, capsys):
    import json

    from kerasllm.cli import main

    main(["dpo", "--output", str(tmp_path / "cli"), "--json", "--config", "recipes/configs/alignment/dpo.yaml",
          "--set", f"base={base_dir}", "--set", f"data={preference_file}", "--set", "steps=2",
          "--set", "warmup_steps=0", "--set", "log_every=1", "--set", "checkpoint_every=2"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 2 and result["model_dir"].endswith("model")


def test_rollouts_are_samples_of_the_policy_itself(tokenizer):
    # A lone UTF-8 continuation byte is a token the generator's valid-UTF-8
    # mask refuses; a policy that puts nearly all its mass there must still
    # sample it, or the ratios and KL of GRPO and PPO would be estimated on
    # samples of another distribution.
    from kerasllm.alignment.rollout import sample
    from kerasllm.generation import utf8
    from kerasllm.models import GPT

    vocab = tokenizer.vocabulary_size
    table = np.asarray(utf8.token_table(tokenizer, vocab))
    lone = [i for i in range(vocab) if table[utf8.WHOLE, i] == 1 and table[utf8.LEAD, i] == 1]
    assert lone, "the byte-level tokenizer has single continuation-byte tokens"
    target = lone[0]
    model = GPT.from_preset(
        "tiny", vocab_size=vocab, num_layers=1, hidden_dim=32, num_heads=2,
        intermediate_dim=64, context_length=32, tie_embeddings=False,
    )
    model.tokenizer = tokenizer
    # Every position's hidden state becomes the first unit vector, whose
    # logit row puts 30 nats on `target` (p > 0.999999 over 300 tokens).
    gamma, beta = model.final_norm.weights
    gamma.assign(np.zeros(gamma.shape, "float32"))
    beta.assign(np.eye(1, beta.shape[0], dtype="float32")[0])
    kernel = np.zeros(model.lm_head.kernel.shape, "float32")
    kernel[0, target] = 30.0
    model.lm_head.kernel.assign(kernel)

    prompt = list(tokenizer.encode("1 + 1 ="))
    rollout = sample(model, [prompt] * 4, max_new_tokens=3, seed=0, pad_token_id=0)
    completion = rollout.labels[rollout.mask > 0]
    assert completion.size == 12
    assert (completion == target).all(), completion


def test_log_probs_are_those_of_the_sampling_temperature(base_dir):
    # Rollouts sampled at temperature T come from softmax(logits / T): the
    # objectives' and the reference's log-probabilities must be of that
    # distribution (NumPy's log-softmax here), or ratios and KL are biased.
    import kerasllm
    from keras import ops

    from kerasllm.alignment.grpo import PolicyGradientObjective
    from kerasllm.alignment.online import TokenLogProbs
    from kerasllm.alignment.ppo import PPOObjective

    model = kerasllm.load(base_dir)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, model.config.vocab_size, (2, 7)).astype("int32")
    labels = np.concatenate([ids[:, 1:], ids[:, :1]], axis=1)
    labels[:, :3] = -100  # the prompt
    logits = ops.convert_to_numpy(model(ids)).astype("float64") / 0.5
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = np.take_along_axis(log_softmax, np.maximum(labels, 0)[..., None], -1)[..., 0]
    expected = np.where(labels >= 0, expected, 0.0)
    inputs = {"token_ids": ids, "labels": labels}
    for got in (
        TokenLogProbs(model, temperature=0.5)(inputs),
        PolicyGradientObjective(model, temperature=0.5)(inputs),
        PPOObjective(model, temperature=0.5)(inputs)["log_probs"],
    ):
        np.testing.assert_allclose(ops.convert_to_numpy(got), expected, atol=1e-4)
    at_one = ops.convert_to_numpy(TokenLogProbs(model)(inputs))
    assert np.abs(at_one - expected).max() > 1e-2  # the test tells the two apart


def test_rollout_rewards_give_the_reward_model_the_stop_flags():
    # Functions get the answer's text; the reward model also learns which
    # answers stopped at the end token, to read them where it was trained.
    from kerasllm.alignment.rollout import score

    seen = {}

    class Recorder:
        def score(self, prompts, completions, end_token_id=None, ended=None):
            seen.update(prompts=prompts, completions=completions, end=end_token_id, ended=ended)
            return np.array([0.5, -0.5])

    records = [{"prompt": "p1"}, {"prompt": "p2"}]
    rewards = score([lambda r, t: len(t)], records, ["ab", "c"], Recorder(),
                    stopped=np.array([True, False]), end_token_id=7)
    assert list(rewards) == [2.5, 0.5]
    assert seen == {"prompts": ["p1", "p2"], "completions": ["ab", "c"], "end": 7, "ended": [True, False]}


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory, base_dir):
    """A reward model directory over the policy's tokenizer (random head)."""
    import kerasllm
    from kerasllm.alignment.heads import RewardModel

    keras_seed(3)
    backbone = kerasllm.load(base_dir)
    rm = RewardModel(backbone)
    rm({"token_ids": np.ones((1, 3), "int32"), "padding_mask": np.ones((1, 3), "int32")})
    path = tmp_path_factory.mktemp("rm") / "model"
    kerasllm.save(rm, path, tokenizer=backbone.tokenizer)
    return str(path)


def keras_seed(seed):
    import keras

    keras.utils.set_random_seed(seed)


def test_a_separate_value_model_starts_as_the_reward_model(base_dir, reward_model_dir):
    # The value at position t is the reward model's score of the text up to
    # and including token t: the critic knows the reward model's judgement
    # before it sees a rollout.
    import kerasllm
    from kerasllm.alignment.ppo import PPOObjective
    from kerasllm.alignment.reward import load_reward_model

    rm = load_reward_model(reward_model_dir)
    objective = PPOObjective(kerasllm.load(base_dir), critic=load_reward_model(reward_model_dir))
    ids = np.array([[5, 9, 11, 7, 3, 8]], "int32")
    labels = np.full_like(ids, -100)
    labels[0, 2:] = ids[0, 2:]
    values = np.asarray(objective({"token_ids": ids, "labels": labels})["values"])[0]
    for t in range(ids.shape[1]):
        prefix = ids[:, : t + 1]
        expected = float(np.asarray(rm({"token_ids": prefix, "padding_mask": np.ones_like(prefix)}))[0])
        assert values[t] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("separate", [False, True])
def test_the_value_loss_moves_the_policy_only_with_a_shared_head(base_dir, reward_model_dir, separate):
    # Zero advantages: the clipped surrogate has no gradient, so whatever
    # moves is the value loss's doing. With a shared head it reaches the
    # policy's backbone; with a separate value network it must not.
    import keras

    import kerasllm
    from kerasllm.alignment.ppo import PPOObjective
    from kerasllm.alignment.reward import load_reward_model

    policy = kerasllm.load(base_dir)
    critic = load_reward_model(reward_model_dir) if separate else None
    objective = PPOObjective(policy, critic=critic, vf_coefficient=1.0, value_clip_range=10.0)
    objective.compile(optimizer=keras.optimizers.SGD(0.1))
    ids = np.array([[5, 9, 11, 7, 3, 8]] * 2, "int32")
    labels = np.full_like(ids, -100)
    labels[:, 2:] = ids[:, 2:]
    batch = {"token_ids": ids, "labels": labels, "old_log_probs": np.zeros(ids.shape, "float32"),
             "old_values": np.zeros(ids.shape, "float32"), "advantages": np.zeros(ids.shape, "float32"),
             "returns": np.full(ids.shape, 5.0, "float32")}
    before = [w.copy() for w in policy.get_weights()]
    critic_before = [w.copy() for w in critic.get_weights()] if separate else None
    for _ in range(2):  # a shared head starts at zero: its first step leaves the backbone's gradient at 0
        objective.train_on_batch(batch)
    moved = any(not np.array_equal(a, b) for a, b in zip(before, policy.get_weights()))
    assert moved is (not separate)
    if separate:
        assert any(not np.array_equal(a, b) for a, b in zip(critic_before, critic.get_weights()))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["grpo", "ppo", "ppo_value_model", "ppo_lora"])
def test_a_resumed_run_ends_where_the_uninterrupted_one_does(tmp_path, base_dir, prompt_file, reward_model_dir,
                                                             method):
    # Stopped after 2 of 3 iterations and resumed: the same prompts, samples
    # (seeded per iteration), optimizer moments and PPO state, so the same
    # weights at the end. (The actor-critic must load a checkpoint before its
    # first call for this to work at all.)
    import importlib

    import kerasllm

    name = method.split("_")[0]
    run = getattr(importlib.import_module(f"kerasllm.alignment.{name}"), name)
    overrides = {**common(base_dir, prompt_file), "steps": 3, "checkpoint_every": 1}
    if name == "grpo":
        overrides["group_size"] = 2
    if method == "ppo_value_model":
        overrides.update(reward_functions=[], reward_model=reward_model_dir, value_model="reward_model")
    if method == "ppo_lora":
        overrides["lora"] = {"rank": 2}
    whole = run({}, tmp_path / "whole", overrides=overrides, verbose=0)
    run({}, tmp_path / "parts", overrides={**overrides, "steps": 2}, verbose=0)
    resumed = run({}, tmp_path / "parts", overrides=overrides, resume=True, verbose=0)
    assert resumed["step"] == 3
    for a, b in zip(kerasllm.load(whole["model_dir"]).get_weights(),
                    kerasllm.load(resumed["model_dir"]).get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_value_model_over_another_tokenizer_is_refused(tmp_path, base_dir, prompt_file):
    import kerasllm
    from kerasllm.alignment.heads import RewardModel
    from kerasllm.alignment.ppo import ppo
    from kerasllm.models import GPT
    from kerasllm.tokenizers import train_tokenizer

    other = train_tokenizer(["abc def ghi"] * 10, kind="bpe", vocab_size=280, output_dir=tmp_path / "tok",
                            show_progress=False)
    backbone = GPT.from_preset("tiny", vocab_size=other.vocabulary_size, num_layers=1, hidden_dim=16,
                               num_heads=2, intermediate_dim=32, context_length=64)
    kerasllm.save(RewardModel(backbone), tmp_path / "rm", tokenizer=other)
    overrides = {**common(base_dir, prompt_file), "value_model": str(tmp_path / "rm")}
    with pytest.raises(ValueError, match="reads text with another tokenizer than the policy"):
        ppo({}, tmp_path / "ppo", overrides=overrides, verbose=0)
