"""Local members: real (tiny, random) models answering and scoring."""

import numpy as np
import pytest

from generation.support import ByteTokenizer, tiny_gpt
from kerasllm.constellation import Constellation, LocalMember, PerplexityPolicy, RulesPolicy
from kerasllm.constellation.scoring import token_log_probs
from kerasllm.generation import get_generator


def _model(seed):
    model = tiny_gpt(seed=seed)
    model.tokenizer = ByteTokenizer()
    get_generator(model).jit_compile = False  # plain graphs: fast to build in tests
    return model


@pytest.fixture(scope="module")
def models():
    return _model(1), _model(2)


def _numpy_log_probs(model, prompt, continuation):
    """The reference: full-sequence logits, a NumPy log-softmax, picked by hand."""
    ids = np.array([prompt + continuation], "int32")
    logits = np.asarray(model(ids, training=False), "float64")[0]
    logits -= logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.array([log_probs[len(prompt) - 1 + j, t] for j, t in enumerate(continuation)])


def test_token_log_probs_match_numpy_with_ragged_rows(models):
    model = models[0]
    prompts = [[72, 105], [87, 104, 121, 32, 110, 111, 116]]
    continuations = [[33, 33, 10], [63]]
    got = token_log_probs(model, prompts, continuations, batch_size=2)
    for prompt, continuation, values in zip(prompts, continuations, got):
        np.testing.assert_allclose(values, _numpy_log_probs(model, prompt, continuation), atol=1e-4)


def test_local_member_answers_with_its_own_confidence(models):
    model = models[0]
    member = LocalMember("tiny", model=model)
    [answer] = member.complete(["Hello"], max_new_tokens=5)
    [completion] = get_generator(model).complete(["Hello"], max_new_tokens=5)
    assert answer.text == completion.text and answer.member == "tiny"
    expected = _numpy_log_probs(model, list(b"Hello"), completion.token_ids).mean()
    assert answer.confidence == pytest.approx(expected, abs=1e-4)
    assert answer.finish_reason in ("stop", "length") and answer.num_tokens == len(completion.token_ids)


def test_perplexity_policy_with_real_members(models):
    a, b = (LocalMember(n, model=m) for n, m in zip(("a", "b"), models))
    prompts = ["abc", "xyz!", "日本"]
    scores = {m.name: m.prompt_log_likelihood(prompts) for m in (a, b)}
    constellation = Constellation({"a": a, "b": b}, PerplexityPolicy(["a", "b"]), generation={"max_new_tokens": 2})
    routed = constellation.answer(prompts)
    for i, r in enumerate(routed):
        assert r.member == ("a" if scores["a"][i] > scores["b"][i] else "b")


def test_routed_answer_equals_the_member_answering_alone(models):
    member = LocalMember("b", model=models[1])
    constellation = Constellation({"b": member}, RulesPolicy([], default="b"), generation={"max_new_tokens": 4})
    [routed] = constellation.answer(["Hi"])
    [alone] = member.complete(["Hi"], max_new_tokens=4)
    assert routed.text == alone.text and routed.member == "b"


def test_learned_router_routes_by_the_classifier_probabilities(models):
    from kerasllm.constellation import LearnedRouterPolicy
    from kerasllm.finetune import SequenceClassifier

    backbone = tiny_gpt(seed=3)
    classifier = SequenceClassifier(backbone, num_classes=2)
    classifier.tokenizer = ByteTokenizer()
    policy = LearnedRouterPolicy(labels=["a", "b"], classifier=classifier)
    prompts = ["short", "a much longer prompt here"]
    probabilities = policy.probabilities(prompts)
    # The reference: each prompt alone, unpadded.
    for prompt, row in zip(prompts, probabilities):
        alone = classifier(np.array([list(prompt.encode())], "int32"), training=False)
        expected = np.exp(alone[0] - np.max(alone[0]))
        np.testing.assert_allclose(row, expected / expected.sum(), atol=1e-5)
    members = {n: LocalMember(n, model=m) for n, m in zip(("a", "b"), models)}
    constellation = Constellation(members, policy, generation={"max_new_tokens": 2})
    routed = constellation.answer(prompts)
    assert [r.member for r in routed] == [["a", "b"][int(np.argmax(row))] for row in probabilities]
