"""Fine-tuning: SFT with completion-only loss and the chat template, partial
fine-tuning, LoRA adapters and classification heads, on the pretraining
machinery (checkpoints, resume, log, TensorBoard).

    kerasllm.finetune.finetune("recipes/configs/finetune/sft.yaml", "runs/sft")

See docs/finetuning.md.
"""

from kerasllm.finetune.config import METHODS, FinetuneConfig
from kerasllm.finetune.data import (
    BatchSchedule,
    DataError,
    detect_format,
    encode_record,
    encode_records,
    language_model_batch,
    read_jsonl,
)
from kerasllm.finetune.lora import (
    apply_lora,
    base_fingerprint,
    load_adapter,
    load_with_adapter,
    lora_config,
    merge_lora,
    save_adapter,
    unload_adapter,
)
from kerasllm.finetune.partial import freeze_for_partial
from kerasllm.finetune.run import finetune
from kerasllm.finetune.sequence_classifier import SequenceClassifier
from kerasllm.finetune.trainable import format_trainable, trainable_summary

__all__ = [
    "METHODS",
    "BatchSchedule",
    "DataError",
    "FinetuneConfig",
    "SequenceClassifier",
    "apply_lora",
    "base_fingerprint",
    "detect_format",
    "encode_record",
    "encode_records",
    "finetune",
    "format_trainable",
    "freeze_for_partial",
    "language_model_batch",
    "load_adapter",
    "load_with_adapter",
    "lora_config",
    "merge_lora",
    "read_jsonl",
    "save_adapter",
    "trainable_summary",
    "unload_adapter",
]
