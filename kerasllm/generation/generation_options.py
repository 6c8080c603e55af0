"""`GenerationOptions`: every generation setting, its default and its check, once.

The CLI flags of `kerasllm generate` and `kerasllm export`, the in-graph
parameter defaults of `generate_tokens`, and the optional inputs of the
exported SavedModel all read their defaults from here.
"""

import dataclasses
from typing import Optional

import numpy as np

STRATEGIES = ("greedy", "sample", "top_k", "top_p", "beam")
# What the `top_k` and `top_p` strategy names stand for when the value is unset.
DEFAULT_TOP_K = 50
DEFAULT_TOP_P = 0.9


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _option(default, help, **metadata):
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


@dataclasses.dataclass
class GenerationOptions:
    """Validated generation settings.

    Each field's `metadata["help"]` is its one-line description (the CLI's
    `--help`); `metadata["choices"]`, where present, lists the accepted values.

    Example:
    ```python
    >>> options = GenerationOptions(strategy="top_p", temperature=0.8)
    >>> options.graph_strategy, options.sampling_values()
    ('sample', (0, 0.9))
    ```
    """

    max_new_tokens: int = _option(64, "Most tokens generated per prompt.")
    strategy: str = _option(
        "greedy",
        "Decoding strategy: greedy, sample, top_k (sampling with top_k "
        f"defaulting to {DEFAULT_TOP_K}), top_p (top_p defaulting to "
        f"{DEFAULT_TOP_P}) or beam.",
        choices=STRATEGIES,
    )
    temperature: float = _option(1.0, "Sampling temperature, >= 0 (0 is greedy).")
    top_k: Optional[int] = _option(None, "Keep the K most likely tokens (0 keeps all).")
    top_p: Optional[float] = _option(
        None, "Keep the smallest set of tokens holding this much probability (1 keeps all)."
    )
    min_p: float = _option(
        0.0, "Keep tokens at least this fraction as likely as the most likely one (0 keeps all)."
    )
    repetition_penalty: float = _option(
        1.0, "Divide the logits of tokens already present by this (> 1 discourages repeats)."
    )
    num_beams: int = _option(4, "Beams kept per prompt (strategy beam).")
    length_penalty: float = _option(
        1.0,
        "Beam search: exponent of the length dividing a hypothesis's log-probability "
        "(> 1 favours longer outputs).",
    )
    early_stopping: bool = _option(
        False, "Beam search: stop as soon as num_beams hypotheses have ended."
    )
    seed: Optional[int] = _option(None, "Sampling seed (row i uses seed + i); unset draws one.")
    stop: tuple = _option((), "Stop strings; the output ends before the first one.")
    stop_token_ids: tuple = _option(
        (), "Token ids that end a row like the end token (e.g. a chat template's end of turn)."
    )
    truncate: Optional[str] = _option(
        None,
        "None: a prompt too long for max_new_tokens is an error; left: drop its oldest tokens.",
        choices=(None, "left"),
    )
    valid_utf8: bool = _option(
        True,
        "Allow only tokens that keep the text valid UTF-8 (no broken characters); "
        "needs a tokenizer.",
    )

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def is_number(v):
            return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

        _check(
            self.strategy in STRATEGIES,
            f"strategy must be one of {STRATEGIES}. Received: strategy={self.strategy!r}",
        )
        _check(
            is_int(self.max_new_tokens) and self.max_new_tokens >= 1,
            f"max_new_tokens must be an int >= 1. Received: max_new_tokens={self.max_new_tokens!r}",
        )
        _check(
            is_number(self.temperature) and self.temperature >= 0,
            f"temperature must be a number >= 0. Received: temperature={self.temperature!r}",
        )
        _check(
            self.top_k is None or (is_int(self.top_k) and self.top_k >= 0),
            f"top_k must be an int >= 0 (0 = off). Received: top_k={self.top_k!r}",
        )
        _check(
            self.top_p is None or (is_number(self.top_p) and 0 < self.top_p <= 1),
            f"top_p must be in (0, 1]. Received: top_p={self.top_p!r}",
        )
        _check(
            is_number(self.min_p) and 0 <= self.min_p < 1,
            f"min_p must be in [0, 1). Received: min_p={self.min_p!r}",
        )
        _check(
            is_number(self.repetition_penalty) and self.repetition_penalty > 0,
            "repetition_penalty must be a number > 0. "
            f"Received: repetition_penalty={self.repetition_penalty!r}",
        )
        _check(
            is_int(self.num_beams) and self.num_beams >= 1,
            f"num_beams must be an int >= 1. Received: num_beams={self.num_beams!r}",
        )
        _check(
            is_number(self.length_penalty),
            f"length_penalty must be a number. Received: length_penalty={self.length_penalty!r}",
        )
        _check(
            isinstance(self.early_stopping, (bool, np.bool_)),
            f"early_stopping must be a bool. Received: early_stopping={self.early_stopping!r}",
        )
        _check(
            isinstance(self.valid_utf8, (bool, np.bool_)),
            f"valid_utf8 must be a bool. Received: valid_utf8={self.valid_utf8!r}",
        )
        _check(
            self.seed is None or is_int(self.seed),
            f"seed must be an int or None. Received: seed={self.seed!r}",
        )
        _check(
            self.truncate in (None, "left"),
            f"truncate must be None or 'left'. Received: truncate={self.truncate!r}",
        )
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or ())
        for s in stop:
            _check(
                isinstance(s, str) and s != "",
                f"stop strings must be non-empty strings. Received: stop={self.stop!r}",
            )
        self.stop = tuple(stop)
        ids = list(self.stop_token_ids or ())
        _check(
            all(is_int(i) and i >= 0 for i in ids),
            f"stop_token_ids must be ints >= 0. Received: stop_token_ids={self.stop_token_ids!r}",
        )
        self.stop_token_ids = tuple(int(i) for i in ids)

    @property
    def graph_strategy(self):
        """`"greedy"`, `"sample"` or `"beam"`: which compiled program runs."""
        if self.strategy in ("sample", "top_k", "top_p"):
            return "sample" if self.temperature > 0 else "greedy"
        return self.strategy

    def sampling_values(self):
        """`(top_k, top_p)` with the defaults that the strategy name implies."""
        top_k = self.top_k
        top_p = self.top_p
        if top_k is None:
            top_k = DEFAULT_TOP_K if self.strategy == "top_k" else 0
        if top_p is None:
            top_p = DEFAULT_TOP_P if self.strategy == "top_p" else 1.0
        return top_k, top_p

    def graph_values(self):
        """The in-graph sampling parameters these options stand for.

        One graph samples with every value (`generate_tokens` under
        `strategy="sample"`), greedy being temperature 0, so this dict is
        what a single-graph decoder (the exported SavedModel) needs.

        Returns:
            A dict: `temperature` (0 for greedy), `top_k`, `top_p`, `min_p`,
            `repetition_penalty`, `seed` (0 when unset).
        """
        top_k, top_p = self.sampling_values()
        return {
            "temperature": float(self.temperature if self.graph_strategy == "sample" else 0.0),
            "top_k": int(top_k),
            "top_p": float(top_p),
            "min_p": float(self.min_p),
            "repetition_penalty": float(self.repetition_penalty),
            "seed": int(self.seed or 0),
        }


def option_help(name):
    """The help text of a `GenerationOptions` field."""
    return GenerationOptions.__dataclass_fields__[name].metadata["help"]


def option_default(name):
    """The default of a `GenerationOptions` field."""
    return GenerationOptions.__dataclass_fields__[name].default


def option_choices(name):
    """The accepted values of a `GenerationOptions` field (`None` if any)."""
    return GenerationOptions.__dataclass_fields__[name].metadata.get("choices")
