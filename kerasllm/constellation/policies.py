"""Routing policies: which member answers a prompt, and why.

A policy either picks a member for each prompt before anyone answers
(`RulesPolicy`, `PerplexityPolicy`, `LearnedRouterPolicy`: the constellation
then calls that member, falling back along its fallback order if it fails),
or looks at answers first (`CascadePolicy`: the cheap member answers and a
stronger one is asked when the cheap answer's confidence is under a
threshold; `BestOfNPolicy`: several members answer and a reward model picks
one). Every decision carries a human-readable reason.
"""

import re
import unicodedata

import numpy as np


class Decision:
    """A member chosen for a prompt, with the reason."""

    __slots__ = ("member", "reason")

    def __init__(self, member, reason):
        self.member = member
        self.reason = reason


class Policy:
    """Base class. `choose` routes before answering; `run` may override it."""

    type = None

    def members_used(self):
        """Member names the policy refers to (checked when the config loads)."""
        return set()

    def choose(self, prompts, ctx):
        raise NotImplementedError

    def run(self, prompts, ctx):
        """Answers for `prompts`: route each, then ask the chosen members."""
        decisions = self.choose(prompts, ctx)
        return ctx.answer_routed(prompts, decisions)


# ---------------------------------------------------------------- rules


def detect_language(text):
    """The language of `text` by the scripts it is written in.

    Japanese is told by kana (hiragana, katakana), Korean by Hangul, Chinese by
    Han ideographs without kana, anything else with letters is `"en"`; this
    is what script-level routing needs, and it works on a single short
    prompt, where statistical language identifiers are least sure.
    """
    counts = {"kana": 0, "han": 0, "hangul": 0, "latin": 0}
    for char in text:
        if "\u3040" <= char <= "\u30ff" or "\uff66" <= char <= "\uff9d":
            counts["kana"] += 1
        elif "\u4e00" <= char <= "\u9fff" or "\u3400" <= char <= "\u4dbf":
            counts["han"] += 1
        elif "\uac00" <= char <= "\ud7af" or "\u1100" <= char <= "\u11ff":
            counts["hangul"] += 1
        elif char.isalpha() and unicodedata.name(char, "").startswith("LATIN"):
            counts["latin"] += 1
    if counts["kana"]:
        return "ja"
    if counts["hangul"]:
        return "ko"
    if counts["han"]:
        return "zh"
    return "en" if counts["latin"] else "und"


class RulesPolicy(Policy):
    """First matching rule wins; otherwise the default member.

    Each rule maps to a `member` and matches by one of: `regex` (searched in
    the prompt), `keywords` (any of them, case-insensitive), or `language`
    (`detect_language` of the prompt, e.g. `ja`).
    """

    type = "rules"

    def __init__(self, rules, default):
        self.rules = []
        for index, rule in enumerate(rules or []):
            if not isinstance(rule, dict) or "member" not in rule:
                raise ValueError(f"rules[{index}] must be a mapping with 'member'. Received: {rule!r}")
            kinds = [k for k in ("regex", "keywords", "language") if k in rule]
            if len(kinds) != 1:
                raise ValueError(
                    f"rules[{index}] needs exactly one of regex, keywords, language. Received keys: {sorted(rule)}"
                )
            kind = kinds[0]
            if kind == "regex":
                try:
                    matcher = re.compile(rule["regex"])
                except re.error as error:
                    raise ValueError(f"rules[{index}].regex does not compile: {error}. Received: {rule['regex']!r}") from error
            elif kind == "keywords":
                words = rule["keywords"]
                if isinstance(words, str) or not words:
                    raise ValueError(f"rules[{index}].keywords must be a non-empty list. Received: {words!r}")
                matcher = [str(w).casefold() for w in words]
            else:
                matcher = str(rule["language"])
            self.rules.append((kind, matcher, rule["member"]))
        self.default = default

    def members_used(self):
        return {member for _, _, member in self.rules} | {self.default}

    def decide(self, prompt):
        folded = None
        for kind, matcher, member in self.rules:
            if kind == "regex" and matcher.search(prompt):
                return Decision(member, f"regex {matcher.pattern!r} matched")
            if kind == "keywords":
                folded = folded if folded is not None else prompt.casefold()
                hit = next((w for w in matcher if w in folded), None)
                if hit is not None:
                    return Decision(member, f"keyword {hit!r} matched")
            if kind == "language":
                language = detect_language(prompt)
                if language == matcher:
                    return Decision(member, f"language is {language}")
        return Decision(self.default, "no rule matched: default member")

    def choose(self, prompts, ctx):
        return [self.decide(p) for p in prompts]


# ---------------------------------------------------------------- perplexity


class PerplexityPolicy(Policy):
    """The member that finds the prompt most likely (lowest perplexity)."""

    type = "perplexity"

    def __init__(self, members):
        if not members or len(members) < 2:
            raise ValueError(f"perplexity needs at least two members. Received: {members!r}")
        self.members = list(members)

    def members_used(self):
        return set(self.members)

    def choose(self, prompts, ctx):
        scores = {name: ctx.prompt_log_likelihood(name, prompts) for name in self.members}
        decisions = []
        for i in range(len(prompts)):
            best = max(self.members, key=lambda name: scores[name][i])
            shown = ", ".join(f"{name} {np.exp(-scores[name][i]):.1f}" for name in self.members)
            decisions.append(Decision(best, f"lowest prompt perplexity ({shown})"))
        return decisions


# ---------------------------------------------------------------- learned router


class LearnedRouterPolicy(Policy):
    """A trained classifier maps the prompt to a member.

    `router` is a model directory written by `kerasllm finetune` with
    `format: classification` (a `kerasllm.finetune.SequenceClassifier` with
    its tokenizer), trained on `{"text": prompt, "label": class index}`;
    `labels` names the member of each class index. A loaded classifier (with
    `.tokenizer`) can be given as `classifier=` instead.
    """

    type = "learned"

    def __init__(self, router=None, labels=None, *, classifier=None):
        if not labels or len(labels) < 2:
            raise ValueError(f"learned needs 'labels': the member of each class, at least two. Received: {labels!r}")
        if router is None and classifier is None:
            raise ValueError("learned needs 'router': a classifier model directory.")
        self.router = router
        self.labels = list(labels)
        self._classifier = classifier

    def members_used(self):
        return set(self.labels)

    def probabilities(self, prompts):
        """Class probabilities `(len(prompts), num_classes)` for the prompts."""
        from keras import ops

        if self._classifier is None:
            import kerasllm

            self._classifier = kerasllm.load(self.router)
        classifier = self._classifier
        tokenizer = classifier.tokenizer
        rows = [tokenizer.encode(p) or [tokenizer.end_token_id] for p in prompts]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), tokenizer.pad_token_id, "int32")
        mask = np.zeros((len(rows), width), "int32")
        for i, row in enumerate(rows):
            ids[i, : len(row)], mask[i, : len(row)] = row, 1
        logits = classifier({"token_ids": ids, "padding_mask": mask}, training=False)
        probabilities = ops.convert_to_numpy(ops.softmax(logits, axis=-1))
        if probabilities.shape[-1] != len(self.labels):
            raise ValueError(
                f"The router has {probabilities.shape[-1]} classes but 'labels' names {len(self.labels)} members."
            )
        return probabilities

    def choose(self, prompts, ctx):
        probabilities = self.probabilities(prompts)
        decisions = []
        for row in probabilities:
            index = int(np.argmax(row))
            decisions.append(Decision(self.labels[index], f"router gives {self.labels[index]} p={row[index]:.2f}"))
        return decisions


# ---------------------------------------------------------------- cascade


def _reward_scores(scorer, prompts, answers):
    """A reward model's scores of members' answers, each read where the
    model was trained to read it: after the end token when the answer
    stopped there (`RewardModel.score`)."""
    ended = [a.finish_reason == "stop" for a in answers]
    return scorer.score(prompts, [a.text for a in answers], end_token_id="auto", ended=ended)


class CascadePolicy(Policy):
    """Cheap member first; escalate when its confidence is under a threshold.

    Confidence is the mean token log-probability of the cheap member's own
    answer (`confidence: logprob`) or a reward model's score of it
    (`confidence: reward`, with `reward_model`). `calibrate` sets the
    threshold so that a target share of prompts escalates.
    """

    type = "cascade"

    def __init__(self, order, threshold=None, confidence="logprob", reward_model=None):
        if not order or len(order) < 2:
            raise ValueError(f"cascade needs an 'order' of at least two members, cheapest first. Received: {order!r}")
        if confidence not in ("logprob", "reward"):
            raise ValueError(f"cascade confidence must be 'logprob' or 'reward'. Received: {confidence!r}")
        if confidence == "reward" and not reward_model:
            raise ValueError("cascade with confidence: reward needs 'reward_model' (a reward model directory).")
        self.order = list(order)
        self.threshold = None if threshold is None else float(threshold)
        self.confidence = confidence
        self.reward_model = reward_model
        self._scorer = None

    def members_used(self):
        return set(self.order)

    def _scores(self, prompts, answers):
        if self.confidence == "logprob":
            return [a.confidence for a in answers]
        if self._scorer is None:
            from kerasllm.alignment import load_reward_model

            self._scorer = load_reward_model(self.reward_model)
        return [float(s) for s in _reward_scores(self._scorer, prompts, answers)]

    def calibrate(self, prompts, escalate_share, ctx):
        """Set the threshold so that `escalate_share` of `prompts` escalate.

        Returns:
            The threshold (also stored on the policy).
        """
        if not 0.0 <= escalate_share <= 1.0:
            raise ValueError(f"escalate_share must be in [0, 1]. Received: {escalate_share!r}")
        answers = ctx.call(self.order[0], prompts)
        scores = np.sort([s if s is not None else -np.inf for s in self._scores(prompts, answers)])
        # Escalation is `score < threshold`: the k-th smallest score as the
        # threshold sends exactly the k lower ones up (ties go together).
        k = int(round(escalate_share * len(scores)))
        self.threshold = float(scores[k]) if k < len(scores) else float("inf")
        return self.threshold

    def run(self, prompts, ctx):
        if self.threshold is None:
            raise ValueError("cascade has no threshold: set 'threshold' or calibrate it ('calibrate: {prompts, escalate_share}').")
        pending = list(range(len(prompts)))
        results = [None] * len(prompts)
        notes = [[] for _ in prompts]
        for level, name in enumerate(self.order):
            if not pending:
                break
            last = level == len(self.order) - 1
            batch = [prompts[i] for i in pending]
            try:
                answers = ctx.call(name, batch)
            except Exception as error:  # noqa: BLE001 - any member failure escalates
                for i in pending:
                    ctx.note_failure(i, name, error)
                    notes[i].append(f"{name} failed")
                continue
            scores = [None] * len(batch) if last else self._scores(batch, answers)
            still = []
            for i, answer, score in zip(pending, answers, scores):
                sure = last or (score is not None and score >= self.threshold)
                if sure:
                    shown = "last in the cascade" if last else f"confidence {score:.3f} >= {self.threshold:.3f}"
                    results[i] = (answer, "; ".join(notes[i] + [f"{name}: {shown}"]))
                else:
                    shown = "no confidence" if score is None else f"confidence {score:.3f} < {self.threshold:.3f}"
                    notes[i].append(f"{name}: {shown}, escalated")
                    results[i] = (answer, None)  # kept if every later member fails
                    still.append(i)
            pending = still
        return ctx.finish(prompts, results, notes)


# ---------------------------------------------------------------- best of n


class BestOfNPolicy(Policy):
    """Every listed member answers; a reward model picks the best answer."""

    type = "best_of_n"

    def __init__(self, members, reward_model):
        if not members or len(members) < 2:
            raise ValueError(f"best_of_n needs at least two members. Received: {members!r}")
        if not reward_model:
            raise ValueError("best_of_n needs 'reward_model' (a reward model directory).")
        self.members = list(members)
        self.reward_model = reward_model
        self._scorer = None

    def members_used(self):
        return set(self.members)

    def run(self, prompts, ctx):
        if self._scorer is None:
            from kerasllm.alignment import load_reward_model

            self._scorer = load_reward_model(self.reward_model)
        candidates = [[] for _ in prompts]
        for name in self.members:
            try:
                answers = ctx.call(name, prompts)
            except Exception as error:  # noqa: BLE001 - a failed member just offers nothing
                for i in range(len(prompts)):
                    ctx.note_failure(i, name, error)
                continue
            scores = _reward_scores(self._scorer, prompts, answers)
            for i, (answer, score) in enumerate(zip(answers, scores)):
                candidates[i].append((float(score), answer))
        results, notes = [], []
        for options in candidates:
            if not options:
                results.append(None)
                notes.append(["every member failed"])
                continue
            score, answer = max(options, key=lambda pair: pair[0])
            shown = ", ".join(f"{a.member} {s:.2f}" for s, a in options)
            results.append((answer, f"highest reward ({shown})"))
            notes.append([])
        return ctx.finish(prompts, results, notes)


POLICIES = {
    "rules": RulesPolicy,
    "perplexity": PerplexityPolicy,
    "learned": LearnedRouterPolicy,
    "cascade": CascadePolicy,
    "best_of_n": BestOfNPolicy,
}


def policy_from_config(spec):
    """Build a policy from its config mapping (`type` plus its own keys)."""
    if not isinstance(spec, dict) or "type" not in spec:
        raise ValueError(f"policy must be a mapping with 'type' ({', '.join(POLICIES)}). Received: {spec!r}")
    kind = spec["type"]
    if kind not in POLICIES:
        raise ValueError(f"Unknown policy type {kind!r}; expected one of {', '.join(POLICIES)}.")
    arguments = {k: v for k, v in spec.items() if k not in ("type", "calibrate")}
    try:
        return POLICIES[kind](**arguments)
    except TypeError as error:
        raise ValueError(f"policy {kind!r}: {error}") from error
