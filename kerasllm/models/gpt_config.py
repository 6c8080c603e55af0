"""`GPTConfig`: the shape of a GPT model, validated, with named presets."""

import dataclasses
import difflib
import functools
import math
from typing import Optional

from kerasllm.layers.feed_forward import ACTIVATIONS
from kerasllm.layers.transformer_block import NORMS

POSITIONS = ("learned", "rope")


def closest_names(name, valid):
    """A hint naming the valid keys closest to a misspelt `name`."""
    close = difflib.get_close_matches(name, list(valid), n=3, cutoff=0.5)
    if close:
        return "Did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "Valid keys: " + ", ".join(sorted(valid)) + "."


def _hint_unknown_fields(cls):
    """Makes `cls(misspelt=...)` name the closest fields, as YAML keys do.

    The dataclass's own `__init__` raises a bare "unexpected keyword
    argument"; this one raises the same TypeError with a "Did you mean" hint.
    """
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        valid = {field.name for field in dataclasses.fields(cls)}
        for key in kwargs:
            if key not in valid:
                raise TypeError(
                    f"Unknown {cls.__name__} field {key!r}. {closest_names(key, valid)}"
                )
        init(self, *args, **kwargs)

    cls.__init__ = __init__
    return cls


@_hint_unknown_fields
@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Hyperparameters of a `GPT` causal language model.

    The defaults are the `baby` preset (nanoGPT's shakespeare-char shape).
    Construction validates every field; an error names the bad value and the
    rule it breaks.

    Args:
        vocab_size: number of token ids.
        context_length: longest sequence the model attends over.
        num_layers: transformer blocks.
        num_heads: query heads per block.
        num_kv_heads: key/value heads (grouped-query attention); must divide
            `num_heads`. `None` means `num_heads`.
        hidden_dim: model width; divisible by `num_heads`.
        intermediate_dim: feed-forward width. `None` means `4 * hidden_dim`
            (or the LLaMA `8/3 * hidden_dim` rounded up to a multiple of 64
            for SwiGLU, which keeps the parameter count of a 4x MLP).
        dropout: residual and embedding dropout rate, in `[0, 1)`.
        norm: `"layernorm"` (GPT-2) or `"rmsnorm"` (LLaMA).
        activation: `"gelu"` (tanh approximation, GPT-2), `"gelu_exact"`,
            `"relu"` or `"swiglu"`.
        position: `"learned"` absolute positions (GPT-2) or `"rope"`.
        tie_embeddings: share the token embedding with the output head.
        use_bias: biases in projections and layer norms.
        norm_epsilon: epsilon of the norms.
        rope_max_wavelength: RoPE's longest wavelength.

    Example:
    ```python
    config = GPTConfig.from_preset("tiny", num_layers=4)
    model = kerasllm.models.GPT(config)
    ```
    """

    vocab_size: int = 8192
    context_length: int = 256
    num_layers: int = 6
    num_heads: int = 6
    num_kv_heads: Optional[int] = None
    hidden_dim: int = 384
    intermediate_dim: Optional[int] = None
    dropout: float = 0.0
    norm: str = "layernorm"
    activation: str = "gelu"
    position: str = "learned"
    tie_embeddings: bool = True
    use_bias: bool = True
    norm_epsilon: float = 1e-5
    rope_max_wavelength: float = 10000.0

    def __post_init__(self):
        def check_int(name, minimum=1, optional=False):
            value = getattr(self, name)
            if optional and value is None:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(
                    f"{name} must be an int >= {minimum}. Received: {name}={value!r}"
                )

        def check_choice(name, choices):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(
                    f"{name} must be one of {choices}. Received: {name}={value!r}"
                )

        for name in ("context_length", "num_layers", "num_heads", "hidden_dim"):
            check_int(name)
        check_int("vocab_size", minimum=2)
        check_int("num_kv_heads", optional=True)
        check_int("intermediate_dim", optional=True)
        check_choice("norm", NORMS)
        check_choice("activation", ACTIVATIONS)
        check_choice("position", POSITIONS)
        for name in ("tie_embeddings", "use_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name} must be true or false. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(
                f"dropout must be a number in [0, 1). Received: dropout={self.dropout!r}"
            )
        if not isinstance(self.norm_epsilon, (int, float)) or not self.norm_epsilon > 0:
            raise ValueError(
                "norm_epsilon must be a positive number. "
                f"Received: norm_epsilon={self.norm_epsilon!r}"
            )
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                "hidden_dim must be divisible by num_heads. Received: "
                f"hidden_dim={self.hidden_dim}, num_heads={self.num_heads}"
            )
        if self.num_heads % self.kv_heads:
            raise ValueError(
                "num_kv_heads must divide num_heads. Received: "
                f"num_kv_heads={self.num_kv_heads}, num_heads={self.num_heads}"
            )
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(
                "position='rope' needs an even head_dim (hidden_dim / num_heads). "
                f"Received: hidden_dim={self.hidden_dim}, num_heads={self.num_heads}"
            )

    # ------------------------------------------------------------ derived

    @property
    def kv_heads(self):
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def head_dim(self):
        return self.hidden_dim // self.num_heads

    @property
    def ffn_dim(self):
        if self.intermediate_dim is not None:
            return self.intermediate_dim
        if self.activation == "swiglu":
            return 64 * math.ceil(8 * self.hidden_dim / 3 / 64)
        return 4 * self.hidden_dim

    def num_parameters(self, include_embeddings=True):
        """The parameter count, from the formula (tests check it against Keras).

        Args:
            include_embeddings: count the token and position tables (and an
                untied output head). Defaults to `True`.
        """
        d, bias = self.hidden_dim, int(self.use_bias)
        norm = d * (2 if self.norm == "layernorm" and self.use_bias else 1)
        qkv_out = (self.num_heads + 2 * self.kv_heads) * self.head_dim
        attention = d * qkv_out + bias * qkv_out + self.num_heads * self.head_dim * d + bias * d
        gates = 2 if self.activation == "swiglu" else 1
        ffn = gates * (d * self.ffn_dim + bias * self.ffn_dim) + self.ffn_dim * d + bias * d
        blocks = self.num_layers * (2 * norm + attention + ffn) + norm  # + final norm
        if not include_embeddings:
            return blocks
        embeddings = self.vocab_size * d
        if self.position == "learned":
            embeddings += self.context_length * d
        if not self.tie_embeddings:
            embeddings += d * self.vocab_size
        return blocks + embeddings

    def flops_per_token(self, sequence_length=None):
        """Training FLOPs per token (forward + backward), as in the PaLM paper.

        `6 * N + 12 * num_layers * sequence_length * hidden_dim`, where `N`
        counts every matmul weight (the output head included, position table
        excluded) and the second term is attention's score/value matmuls.
        Used for MFU.
        """
        sequence_length = sequence_length or self.context_length
        matmul_params = self.num_parameters(include_embeddings=False) + (
            self.vocab_size * self.hidden_dim
        )
        return 6 * matmul_params + 12 * self.num_layers * sequence_length * self.hidden_dim

    # ------------------------------------------------------------ (de)serialize

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Builds a config from a dict; unknown keys name the closest valid ones."""
        if isinstance(values, cls):
            return values
        if not isinstance(values, dict):
            raise TypeError(
                f"GPTConfig expects a dict of fields. Received: {type(values).__name__}"
            )
        valid = {field.name for field in dataclasses.fields(cls)}
        for key in values:
            if key not in valid:
                raise ValueError(
                    f"Unknown GPTConfig key {key!r}. {closest_names(key, valid)}"
                )
        return cls(**values)

    @classmethod
    def from_preset(cls, name, **overrides):
        """The named preset (see `PRESETS`), with fields replaced by `overrides`."""
        if name not in PRESETS:
            raise ValueError(
                f"Unknown preset {name!r}. Available presets: {', '.join(PRESETS)}."
            )
        return cls.from_dict({**PRESETS[name], **overrides})

    def replace(self, **changes):
        return type(self).from_dict({**self.to_dict(), **changes})


PRESETS = {
    # Small enough that a training step takes well under a second on 2 CPU
    # cores; the demo and most tests use it.
    "tiny": dict(
        vocab_size=4096,
        context_length=128,
        num_layers=4,
        num_heads=4,
        hidden_dim=128,
        intermediate_dim=512,
    ),
    # nanoGPT's shakespeare-char shape (6 layers, 6 heads, width 384,
    # context 256) with an 8k BPE vocabulary.
    "baby": dict(
        vocab_size=8192,
        context_length=256,
        num_layers=6,
        num_heads=6,
        hidden_dim=384,
    ),
    # GPT-2 small: 12 layers, 12 heads, width 768, context 1024; the
    # vocabulary padded from 50257 to 50304 (a multiple of 64) as nanoGPT
    # does, for faster matmuls. About 124M parameters with tied embeddings.
    "gpt2-124m": dict(
        vocab_size=50304,
        context_length=1024,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
    ),
}
