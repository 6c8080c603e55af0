"""`SequenceClassifier`: padding side does not matter, pooling, config and .keras round trips."""

import keras
import numpy as np
import pytest
from keras import ops

from helpers import assert_close
from kerasllm.finetune import SequenceClassifier, freeze_for_partial
from kerasllm.models import GPT

SHAPE = dict(
    vocab_size=258, context_length=32, num_layers=2, num_heads=2, hidden_dim=32,
    intermediate_dim=64,
)
PAD = 257
TEXTS = [[5, 6, 7, 8, 9], [10, 11, 12], [13, 14, 15, 16, 17, 18, 19]]


def padded(side, width=9):
    ids = np.full((len(TEXTS), width), PAD, "int32")
    mask = np.zeros((len(TEXTS), width), "int32")
    for i, row in enumerate(TEXTS):
        span = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


def classifier(pooling, position="learned", **kwargs):
    keras.utils.set_random_seed(0)
    backbone = GPT.from_preset("tiny", position=position, **SHAPE)
    return SequenceClassifier(backbone, num_classes=3, pooling=pooling, **kwargs)


@pytest.mark.parametrize("pooling", ["last", "mean"])
@pytest.mark.parametrize("position", ["learned", "rope"])
def test_left_and_right_padding_agree_with_unpadded(pooling, position):
    model = classifier(pooling, position)
    unpadded = np.concatenate([model(np.array([row], "int32")) for row in TEXTS])
    for side in ("left", "right"):
        ids, mask = padded(side)
        out = model({"token_ids": ids, "padding_mask": mask})
        assert tuple(out.shape) == (3, 3)
        assert_close(out, unpadded, atol=1e-5)


def test_pad_token_id_stands_in_for_the_mask():
    model = classifier("last", pad_token_id=PAD)
    ids, mask = padded("left")
    assert_close(model(ids), model({"token_ids": ids, "padding_mask": mask}), atol=0.0)


def test_last_pooling_reads_the_last_real_token_in_numpy():
    model = classifier("last")
    ids, mask = padded("right")
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    hidden = ops.convert_to_numpy(
        model.backbone.hidden_states({"token_ids": ids, "padding_mask": mask}, positions=positions)
    )
    last = np.array([len(row) - 1 for row in TEXTS])
    pooled = hidden[np.arange(3), last]  # (B, d)
    kernel = ops.convert_to_numpy(model.head.kernel)
    bias = ops.convert_to_numpy(model.head.bias)
    assert_close(model({"token_ids": ids, "padding_mask": mask}), pooled @ kernel + bias, atol=1e-5)


def test_round_trip_and_training(tmp_path):
    model = classifier("mean", pad_token_id=PAD, dropout=0.1)
    config = model.get_config()
    clone = SequenceClassifier.from_config(config)
    assert clone.get_config()["num_classes"] == 3 and clone.pooling == "mean"
    ids, mask = padded("left")
    inputs = {"token_ids": ids, "padding_mask": mask}
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(inputs, np.array([0, 1, 2]), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    path = tmp_path / "classifier.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored, SequenceClassifier) and restored.pad_token_id == PAD
    assert_close(restored(inputs), model(inputs), atol=0.0)


def test_scalar_head_with_lora_or_partial_backbone():
    model = classifier("last")
    scalar = SequenceClassifier(model.backbone, num_classes=1)
    assert tuple(scalar(np.array([[1, 2, 3]], "int32")).shape) == (1, 1)
    assert freeze_for_partial(scalar, trainable_blocks=1) == [
        "backbone/block_1", "backbone/final_norm", "head"
    ]
    with pytest.raises(ValueError, match="num_classes must be a positive int. Received: num_classes=0"):
        SequenceClassifier(model.backbone, num_classes=0)
    with pytest.raises(ValueError, match="pooling must be one of"):
        SequenceClassifier(model.backbone, num_classes=2, pooling="first")
