"""The reward model: read at the last real token on either padding side; a short run."""

import numpy as np
import pytest

from kerasllm.alignment.heads import RewardModel, last_token_index
from tests.helpers import assert_close


def test_last_token_index_left_and_right_padding():
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert list(np.asarray(last_token_index(mask))) == [2, 4, 4]


@pytest.mark.parametrize("position", ["learned", "rope"])
def test_reward_is_the_same_with_left_and_right_padding(position):
    from kerasllm.models import GPT

    backbone = GPT.from_preset("tiny", vocab_size=50, num_layers=2, hidden_dim=32, num_heads=2,
                               intermediate_dim=64, context_length=16, position=position)
    rm = RewardModel(backbone)
    rows = [[5, 6, 7], [8, 9, 10, 11, 12], [13]]
    alone = [float(np.asarray(rm({"token_ids": np.array([r]), "padding_mask": np.ones((1, len(r)))}))[0])
             for r in rows]
    width = 6
    right = np.zeros((3, width), "int32"); right_mask = np.zeros((3, width), "int32")
    left = np.zeros((3, width), "int32"); left_mask = np.zeros((3, width), "int32")
    for i, r in enumerate(rows):
        right[i, : len(r)] = r; right_mask[i, : len(r)] = 1
        left[i, width - len(r):] = r; left_mask[i, width - len(r):] = 1
    assert_close(rm({"token_ids": right, "padding_mask": right_mask}), alone, atol=1e-5)
    assert_close(rm({"token_ids": left, "padding_mask": left_mask}), alone, atol=1e-5)


def test_reward_run_learns_the_preference_and_scores(tmp_path, base_dir, preference_file):
    from kerasllm.alignment.reward import load_reward_model, reward

    overrides = {
        "base": base_dir, "data": preference_file, "steps": 30, "batch_size": 8,
        "learning_rate": 3e-3, "warmup_steps": 0, "log_every": 10, "checkpoint_every": 30,
        "eval_fraction": 0.2,
    }
    result = reward({}, tmp_path / "rm", overrides=overrides, verbose=0)
    assert result["eval"]["accuracy"] > 0.8
    rm = load_reward_model(result["model_dir"])
    scores = rm.score(["1 + 2 =", "1 + 2 ="], [" 3 ok<|endoftext|>", " 3 dog<|endoftext|>"])
    assert scores.shape == (2,) and scores[0] > scores[1]


@pytest.mark.parametrize("completion", ["5<|im_end|>", "5"])
def test_a_stopped_completion_is_scored_where_training_read_the_reward(base_dir, completion):
    # Training pairs end with <|im_end|> (written into the text or appended
    # to the rendered turn), and the reward is read there. A sampled answer's
    # text leaves the end token out: `score` must append it for the answers
    # that stopped, or the reward model is read one token early, at a
    # position it never learned (the PPO runs against it then lost accuracy).
    import kerasllm
    from kerasllm.alignment.data import PreferencePair
    from kerasllm.alignment.reward import pair_arrays

    rm = RewardModel(kerasllm.load(base_dir))
    tokenizer = rm.tokenizer
    prompt = "<|im_start|>user\n2 + 3 =<|im_end|>\n<|im_start|>assistant\n"
    arrays, _ = pair_arrays([PreferencePair(prompt, completion, "4<|im_end|>")], tokenizer, 64)
    trained = float(np.asarray(rm({"token_ids": arrays["chosen_ids"], "padding_mask": arrays["chosen_mask"]}))[0])

    im_end = tokenizer.token_to_id("<|im_end|>")
    stopped = rm.score([prompt], ["5"], end_token_id=im_end, ended=[True])[0]
    auto = rm.score([prompt], ["5"], end_token_id="auto", ended=[True])[0]
    early = rm.score([prompt], ["5"])[0]
    if completion.endswith("<|im_end|>"):
        assert stopped == pytest.approx(trained, abs=1e-5)
        assert auto == pytest.approx(trained, abs=1e-5)
        assert abs(early - trained) > 1e-4  # the test tells the two apart
    else:
        # A plain-text completion without <|im_end|> learns to stop at the
        # tokenizer's end-of-text token.
        plain = rm.score([prompt], ["5"], end_token_id=tokenizer.end_token_id)[0]
        assert plain == pytest.approx(trained, abs=1e-5)


def test_score_names_bad_arguments(base_dir, monkeypatch):
    import kerasllm

    rm = RewardModel(kerasllm.load(base_dir))
    prompt = "<|im_start|>user\n2 + 3 =<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(ValueError, match="1 prompts, 1 completions, 2 ended"):
        rm.score([prompt], ["5"], end_token_id="auto", ended=[True, False])
    with pytest.raises(ValueError, match="end_token_id must be None, a token id or \"auto\". Received: 'last'"):
        rm.score([prompt], ["5"], end_token_id="last")
    # A tokenizer without the chat end token cannot read a chat answer "auto"matically.
    tokenizer = rm.backbone.tokenizer
    original = tokenizer.token_to_id
    monkeypatch.setattr(tokenizer, "token_to_id", lambda t: None if t == "<|im_end|>" else original(t))
    with pytest.raises(ValueError, match=r"at <\|im_end\|>, but the reward model's tokenizer has no such token"):
        rm.score([prompt], ["5"], end_token_id="auto", ended=[True])
    assert rm.score([prompt], ["5"], end_token_id="auto", ended=[False]).shape == (1,)  # not needed there
