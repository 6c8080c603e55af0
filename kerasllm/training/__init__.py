"""Training: losses, optimizers and schedules (keras.ops only), and the
pretraining run built on them: config, callbacks, evaluation, distribution,
and `RunDirectory`, the run machinery every trainer shares.
"""

from kerasllm.training.callbacks import (
    CheckpointError,
    NonFiniteGuard,
    StepCheckpoint,
    StepTensorBoard,
    TrainingDiverged,
    TrainingLog,
    list_checkpoints,
    plot_loss_curve,
    restore_checkpoint,
    verify_checkpoint,
    write_checkpoint,
)
from kerasllm.training.config import ConfigError, PretrainConfig
from kerasllm.training.distribution import distribution_scope
from kerasllm.training.evaluation import (
    evaluate,
    language_model_metrics,
    unigram_bits,
    unigram_counts,
)
from kerasllm.training.losses import (
    IGNORE_INDEX,
    LanguageModelLoss,
    masked_sparse_categorical_crossentropy,
)
from kerasllm.training.optimizers import AdamW, create_optimizer, warmup_cosine_schedule
from kerasllm.training.pretrain import pretrain
from kerasllm.training.run_directory import OutputDirectoryError, RunDirectory

__all__ = [
    "IGNORE_INDEX",
    "AdamW",
    "CheckpointError",
    "ConfigError",
    "LanguageModelLoss",
    "NonFiniteGuard",
    "OutputDirectoryError",
    "PretrainConfig",
    "RunDirectory",
    "StepCheckpoint",
    "StepTensorBoard",
    "TrainingDiverged",
    "TrainingLog",
    "create_optimizer",
    "distribution_scope",
    "evaluate",
    "language_model_metrics",
    "list_checkpoints",
    "masked_sparse_categorical_crossentropy",
    "plot_loss_curve",
    "pretrain",
    "restore_checkpoint",
    "unigram_bits",
    "unigram_counts",
    "verify_checkpoint",
    "warmup_cosine_schedule",
    "write_checkpoint",
]
