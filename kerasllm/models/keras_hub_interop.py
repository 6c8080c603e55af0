"""Bring weights from `keras_hub.models.GPT2Backbone` into a `GPT`.

KerasHub's GPT-2 is the standard GPT-2 block (pre-norm, learned positions,
tanh-GELU MLP, tied embeddings), so a `GPT` of the same shape computes the same
function once the weights are copied. The only layout difference is that we
fuse the query/key/value projections into one `Dense`.
"""

import numpy as np


def _check_shapes(config, backbone):
    expected = {
        "vocab_size": backbone.vocabulary_size,
        "context_length": backbone.max_sequence_length,
        "num_layers": backbone.num_layers,
        "num_heads": backbone.num_heads,
        "hidden_dim": backbone.hidden_dim,
        "ffn_dim": backbone.intermediate_dim,
    }
    actual = {
        "vocab_size": config.vocab_size,
        "context_length": config.context_length,
        "num_layers": config.num_layers,
        "num_heads": config.num_heads,
        "hidden_dim": config.hidden_dim,
        "ffn_dim": config.ffn_dim,
    }
    fixed = {
        "norm": ("layernorm", config.norm),
        "activation": ("gelu", config.activation),
        "position": ("learned", config.position),
        "tie_embeddings": (True, config.tie_embeddings),
        "use_bias": (True, config.use_bias),
        "num_kv_heads": (config.num_heads, config.kv_heads),
    }
    problems = [
        f"{key}={actual[key]} (backbone has {expected[key]})"
        for key in expected
        if expected[key] != actual[key]
    ] + [
        f"{key}={got!r} (GPT-2 needs {want!r})"
        for key, (want, got) in fixed.items()
        if want != got
    ]
    if problems:
        raise ValueError(
            "The GPT's shape does not match the GPT2Backbone: " + "; ".join(problems)
        )


def load_keras_hub_gpt2_weights(model, backbone):
    """Copies a `keras_hub.models.GPT2Backbone`'s weights into `model` in place.

    Args:
        model: a `kerasllm.models.GPT` with the backbone's shape (layer norm,
            `"gelu"`, learned positions, tied embeddings, biases, no GQA).
        backbone: a built `keras_hub.models.GPT2Backbone`.

    Returns:
        `model`.

    Example:
    ```python
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=64,
        intermediate_dim=256, max_sequence_length=128)
    model = kerasllm.models.GPT(kerasllm.models.GPTConfig(
        vocab_size=1000, context_length=128, num_layers=2, num_heads=4,
        hidden_dim=64, intermediate_dim=256))
    kerasllm.models.load_keras_hub_gpt2_weights(model, backbone)
    ```
    """
    config = model.config
    _check_shapes(config, backbone)
    d = config.hidden_dim

    def value(variable):
        return np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)

    model.embedding.token_embedding.embeddings.assign(
        value(backbone.token_embedding.embeddings)
    )
    model.embedding.position_embeddings.assign(
        value(backbone.position_embedding.position_embeddings)
    )
    for block, layer in zip(model.blocks, backbone.transformer_layers):
        hub_attention = layer._self_attention_layer
        q, k, v = (
            hub_attention._query_dense,
            hub_attention._key_dense,
            hub_attention._value_dense,
        )
        # (d, H, D) kernels → one (d, 3 * H * D) kernel: [q | k | v].
        block.attention.qkv.kernel.assign(
            np.concatenate([value(x.kernel).reshape(d, -1) for x in (q, k, v)], axis=1)
        )
        block.attention.qkv.bias.assign(
            np.concatenate([value(x.bias).reshape(-1) for x in (q, k, v)])
        )
        out = hub_attention._output_dense
        block.attention.output_dense.kernel.assign(value(out.kernel).reshape(-1, d))
        block.attention.output_dense.bias.assign(value(out.bias))
        for ours, theirs in (
            (block.attention_norm, layer._self_attention_layer_norm),
            (block.feed_forward_norm, layer._feedforward_layer_norm),
        ):
            ours.gamma.assign(value(theirs.gamma))
            ours.beta.assign(value(theirs.beta))
        for ours, theirs in (
            (block.feed_forward.up, layer._feedforward_intermediate_dense),
            (block.feed_forward.down, layer._feedforward_output_dense),
        ):
            ours.kernel.assign(value(theirs.kernel))
            ours.bias.assign(value(theirs.bias))
    model.final_norm.gamma.assign(value(backbone.layer_norm.gamma))
    model.final_norm.beta.assign(value(backbone.layer_norm.beta))
    return model
