"""Export: SavedModel for TensorFlow Serving (strings in, strings out) and TFLite.

    kerasllm.export.export_saved_model(model, "saved_models", name="tiny")
    kerasllm.export.export_tflite(model, "exports/tiny-tflite", quantize="int8")
    kerasllm.export.tflite_generate("exports/tiny-tflite", "def ", max_new_tokens=16)

Both need the TensorFlow backend. See docs/export.md.
"""

from kerasllm.export.op_allowlist import (
    TF_TEXT_OPS,
    DisallowedOpsError,
    check_saved_model_ops,
    saved_model_ops,
)
from kerasllm.export.saved_model import export_saved_model, load_signature, next_version
from kerasllm.export.serving_module import ServingModule
from kerasllm.export.tflite import (
    TFLiteGenerator,
    convert_to_tflite,
    export_tflite,
    tflite_generate,
)

__all__ = [
    "DisallowedOpsError",
    "ServingModule",
    "TFLiteGenerator",
    "TF_TEXT_OPS",
    "check_saved_model_ops",
    "convert_to_tflite",
    "export_saved_model",
    "export_tflite",
    "load_signature",
    "next_version",
    "saved_model_ops",
    "tflite_generate",
]
