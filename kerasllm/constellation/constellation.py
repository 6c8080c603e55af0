"""`Constellation`: several models behind one router.

A constellation holds named members (`members.py`), a routing policy
(`policies.py`), a fallback order for members that fail or time out, and
the generation settings every member is asked with. `answer(prompts)`
returns one `RoutedAnswer` per prompt: the text, the member that wrote it,
why that member was chosen, and any member that failed on the way.

Config (YAML, `recipes/configs/constellation/*.yaml`)::

    members:
      small: {model: runs/tiny-sft/model}
      large: {model: runs/baby-sft/model}
    policy: {type: cascade, order: [small, large], threshold: -0.7}
    fallback: [large, small]
    timeout: 30
    generation: {max_new_tokens: 16}
    name: small-large        # optional: the served name (`kerasllm serve --constellation`)
"""

import concurrent.futures
import dataclasses
import pathlib
import time
from typing import List, Optional

import yaml

from kerasllm.constellation.members import Answer, MemberError, member_from_config
from kerasllm.constellation.policies import Decision, policy_from_config

CONFIG_KEYS = ("members", "policy", "fallback", "timeout", "generation", "name")


class ConstellationConfigError(ValueError):
    """A constellation config that names a missing member, policy or key."""


@dataclasses.dataclass
class RoutedAnswer:
    """The constellation's answer to one prompt.

    Attributes:
        prompt: the prompt.
        text: the answer (`None` if every member failed).
        member: the member whose answer this is (`None` if none answered).
        reason: why the policy chose it.
        finish_reason: `"stop"`, `"length"` or `"content_filter"`.
        confidence: the answering member's mean token log-probability, where known.
        num_tokens: tokens the answering member generated, where known.
        failures: `{"member", "error"}` for each member that failed on the way.
        seconds: wall time of the whole routing for the batch.
    """

    prompt: str
    text: Optional[str]
    member: Optional[str]
    reason: str
    finish_reason: Optional[str] = None
    confidence: Optional[float] = None
    num_tokens: Optional[int] = None
    failures: List[dict] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self):
        return dataclasses.asdict(self)


class _Run:
    """One `answer` call: calls members with timeouts, records failures."""

    def __init__(self, constellation, num_prompts, generation=None):
        self.constellation = constellation
        self.generation = generation
        self.failures = [[] for _ in range(num_prompts)]

    def call(self, name, prompts):
        return self.constellation.call_member(name, prompts, generation=self.generation)

    def prompt_log_likelihood(self, name, prompts):
        return self.constellation.members[name].prompt_log_likelihood(prompts)

    def note_failure(self, index, name, error):
        self.failures[index].append({"member": name, "error": str(error)})

    def answer_routed(self, prompts, decisions):
        """Ask each prompt's chosen member (batched per member), with fallback."""
        results = [None] * len(prompts)
        notes = [[] for _ in prompts]
        remaining = {i: [d.member] + [m for m in self.constellation.fallback if m != d.member] for i, d in enumerate(decisions)}
        reasons = {i: d.reason for i, d in enumerate(decisions)}
        while remaining:
            by_member = {}
            for i, order in remaining.items():
                by_member.setdefault(order[0], []).append(i)
            next_round = {}
            for name, indices in by_member.items():
                try:
                    answers = self.call(name, [prompts[i] for i in indices])
                except Exception as error:  # noqa: BLE001 - every failure falls back
                    for i in indices:
                        self.note_failure(i, name, error)
                        notes[i].append(f"{name} failed")
                        if len(remaining[i]) > 1:
                            next_round[i] = remaining[i][1:]
                    continue
                for i, answer in zip(indices, answers):
                    reason = reasons[i] if not notes[i] else f"{reasons[i]}; " + "; ".join(notes[i]) + f"; fell back to {name}"
                    results[i] = (answer, reason)
            remaining = next_round
        return self.finish(prompts, results, notes)

    def finish(self, prompts, results, notes):
        routed = []
        for i, prompt in enumerate(prompts):
            result = results[i]
            if result is None:
                routed.append(
                    RoutedAnswer(prompt, None, None, "; ".join(notes[i]) or "every member failed", failures=self.failures[i])
                )
                continue
            answer, reason = result
            if reason is None:  # an escalated answer whose stronger members all failed
                reason = "; ".join(notes[i]) + f"; kept {answer.member}'s answer"
            routed.append(
                RoutedAnswer(
                    prompt,
                    answer.text,
                    answer.member,
                    reason,
                    finish_reason=answer.finish_reason,
                    confidence=answer.confidence,
                    num_tokens=answer.num_tokens,
                    failures=self.failures[i],
                )
            )
        return routed


class Constellation:
    """Named members, a routing policy and a fallback order.

    Args:
        members: `{name: Member}`.
        policy: a `Policy` from `kerasllm.constellation.policies`.
        fallback: member names to try, in order, when the chosen one fails.
            Defaults to none.
        timeout: seconds a member may take for one batch before it counts as
            failed. Defaults to 60.
        generation: generation settings for every member (`max_new_tokens`,
            `strategy`, `temperature`, `top_p`, `stop`, `seed`). Defaults to
            greedy with 64 new tokens.
        name: the name it is served under. Defaults to `None` (the server
            names it after its config file).

    Example:
    ```python
    constellation = Constellation.from_yaml("recipes/configs/constellation/rules.yaml")
    [routed] = constellation.answer(["日本の首都は?"])
    routed.member, routed.reason, routed.text
    ```
    """

    def __init__(self, members, policy, *, fallback=(), timeout=60.0, generation=None, name=None):
        if not members:
            raise ConstellationConfigError("A constellation needs at least one member. Received: no members")
        self.members = dict(members)
        self.policy = policy
        self.fallback = list(fallback or ())
        self.timeout = float(timeout)
        self.generation = dict(generation or {})
        if name is not None and (not isinstance(name, str) or not name):
            raise ConstellationConfigError(f"A constellation's name must be a non-empty string. Received: {name!r}")
        self.name = name
        missing = sorted((policy.members_used() | set(self.fallback)) - set(self.members))
        if missing:
            raise ConstellationConfigError(
                f"The routing config names members that do not exist: {missing}. "
                f"Members: {sorted(self.members)}"
            )
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(2, len(self.members)))

    # ------------------------------------------------------------ config

    @classmethod
    def from_config(cls, config, *, base_dir=None, calibrate=True):
        """Build from a config mapping (see the module docstring).

        Members are loaded when first asked, so building only checks the
        config; `calibrate=False` also skips a cascade's calibration run.
        """
        if not isinstance(config, dict):
            raise ConstellationConfigError(f"A constellation config must be a mapping. Received: {config!r}")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ConstellationConfigError(f"Unknown constellation config keys {unknown}; allowed: {list(CONFIG_KEYS)}")
        if "members" not in config or "policy" not in config:
            raise ConstellationConfigError("A constellation config needs 'members' and 'policy'.")
        members_spec = config["members"]
        if not isinstance(members_spec, dict) or not members_spec:
            raise ConstellationConfigError(f"'members' must map names to member configs. Received: {members_spec!r}")
        members = {}
        for name, spec in members_spec.items():
            spec = dict(spec) if isinstance(spec, dict) else spec
            if base_dir is not None and isinstance(spec, dict):
                for key in ("model", "adapter"):
                    if spec.get(key) and not pathlib.Path(spec[key]).is_absolute():
                        spec[key] = str(pathlib.Path(base_dir) / spec[key])
            try:
                members[name] = member_from_config(name, spec)
            except ValueError as error:
                raise ConstellationConfigError(str(error)) from error
        try:
            policy = policy_from_config(config["policy"])
        except ValueError as error:
            raise ConstellationConfigError(str(error)) from error
        constellation = cls(
            members,
            policy,
            fallback=config.get("fallback", ()),
            timeout=config.get("timeout", 60.0),
            generation=config.get("generation"),
            name=config.get("name"),
        )
        calibration = config["policy"].get("calibrate")
        if calibration is not None:
            if not isinstance(calibration, dict) or set(calibration) != {"prompts", "escalate_share"}:
                raise ConstellationConfigError(
                    f"policy.calibrate must be {{prompts: FILE, escalate_share: 0..1}}. Received: {calibration!r}"
                )
            if calibrate:
                constellation.calibrate(**calibration)
        return constellation

    @classmethod
    def from_yaml(cls, path, *, base_dir=None, calibrate=True):
        """Build from a YAML file; relative model paths resolve against `base_dir`."""
        path = pathlib.Path(path)
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise ConstellationConfigError(f"No constellation config at {path}.") from error
        except yaml.YAMLError as error:
            raise ConstellationConfigError(f"{path} is not valid YAML: {error}") from error
        return cls.from_config(config, base_dir=base_dir, calibrate=calibrate)

    def calibrate(self, prompts, escalate_share):
        """Calibrate a cascade's threshold on `prompts` (a list or a JSONL/text file)."""
        if not hasattr(self.policy, "calibrate"):
            raise ConstellationConfigError(f"Only a cascade can be calibrated. Received policy: {self.policy.type}")
        if isinstance(prompts, (str, pathlib.Path)):
            prompts = _read_prompts(prompts)
        return self.policy.calibrate(list(prompts), float(escalate_share), _Run(self, len(prompts)))

    # ------------------------------------------------------------ answering

    def call_member(self, name, prompts, generation=None):
        """`name`'s answers to `prompts`; `MemberError` if it fails or times out.

        `generation` overrides the constellation's settings for this call.
        """
        member = self.members[name]
        timeout = member.timeout or self.timeout
        options = {**self.generation, **(generation or {})}
        # A member that runs past its timeout is reported as failed; its
        # thread cannot be stopped and finishes in the background.
        future = self._pool.submit(member.complete, list(prompts), **options)
        try:
            answers = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError as error:
            raise MemberError(f"member {name!r} timed out after {timeout:g} s") from error
        except MemberError:
            raise
        except Exception as error:  # noqa: BLE001 - reported as the member's failure
            raise MemberError(f"member {name!r} failed: {type(error).__name__}: {error}") from error
        if len(answers) != len(prompts):
            raise MemberError(f"member {name!r} gave {len(answers)} answers for {len(prompts)} prompts")
        return answers

    def route(self, prompts):
        """The member each prompt would go to, without answering (routing policies only)."""
        prompts = _check_prompts(prompts)
        return self.policy.choose(prompts, _Run(self, len(prompts)))

    def answer(self, prompts, generation=None):
        """Route and answer each prompt; a list of `RoutedAnswer`.

        `generation` overrides the config's generation settings for this call
        (a server passes each request's `max_new_tokens`, `temperature`, ...).
        """
        single = isinstance(prompts, str)
        prompts = _check_prompts(prompts)
        started = time.perf_counter()
        routed = self.policy.run(prompts, _Run(self, len(prompts), generation))
        seconds = time.perf_counter() - started
        for item in routed:
            item.seconds = seconds
        return routed[0] if single else routed

    def describe(self):
        return {
            "name": self.name,
            "members": {name: m.describe() for name, m in self.members.items()},
            "policy": self.policy.type,
            "fallback": self.fallback,
        }


def _check_prompts(prompts):
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a string or a non-empty list of strings. Received: {prompts!r}")
    return list(prompts)


def _read_prompts(path):
    """Prompts from a JSONL file (`prompt` or `text` field) or a text file (one per line)."""
    import json

    path = pathlib.Path(path)
    prompts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ConstellationConfigError(f"{path}:{number}: not JSON: {error}") from error
            if not isinstance(record, dict) or not isinstance(record.get("prompt", record.get("text")), str):
                raise ConstellationConfigError(f"{path}:{number}: expected a 'prompt' (or 'text') string")
            prompts.append(record.get("prompt", record.get("text")))
        else:
            prompts.append(line)
    if not prompts:
        raise ConstellationConfigError(f"{path} holds no prompts")
    return prompts


__all__ = ["Answer", "Constellation", "ConstellationConfigError", "Decision", "RoutedAnswer"]
