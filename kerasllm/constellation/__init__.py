"""Constellation: several models behind one router.

    Constellation.from_yaml(path).answer(prompts)   routed answers, each naming
                                                     its member and the reason
    members:  LocalMember (model directory + optional LoRA adapter),
              OpenAIMember (any OpenAI-compatible URL), TFServingMember,
              RayMember (a Ray Serve deployment; pip install kerasllm[ray])
    policies: rules, perplexity, learned router, cascade, best of n

See docs/constellation.md.
"""

from kerasllm.constellation.constellation import (
    Constellation,
    ConstellationConfigError,
    RoutedAnswer,
)
from kerasllm.constellation.members import (
    Answer,
    LocalMember,
    Member,
    MemberError,
    OpenAIMember,
    RayMember,
    TFServingMember,
    member_from_config,
)
from kerasllm.constellation.policies import (
    BestOfNPolicy,
    CascadePolicy,
    Decision,
    LearnedRouterPolicy,
    PerplexityPolicy,
    RulesPolicy,
    detect_language,
    policy_from_config,
)

__all__ = [
    "Answer",
    "BestOfNPolicy",
    "CascadePolicy",
    "Constellation",
    "ConstellationConfigError",
    "Decision",
    "LearnedRouterPolicy",
    "LocalMember",
    "Member",
    "MemberError",
    "OpenAIMember",
    "PerplexityPolicy",
    "RayMember",
    "RoutedAnswer",
    "RulesPolicy",
    "TFServingMember",
    "detect_language",
    "member_from_config",
    "policy_from_config",
]
