"""Corpora, cleaning and the tf.data pipeline: raw text to packed batches.

    read_documents / corpus_documents / builtin_corpus   text in, streamed
    clean_documents(docs, CleaningConfig(...))           normalized, deduplicated
    TokenCache.get_or_build(corpus, tokenizer, dir)      tokenized once, memory-mapped
    lm_dataset(cache, context_length, batch_size)        (inputs, targets) batches

TensorFlow is imported only when `lm_dataset` is called.
"""

from kerasllm.data.atomic import atomic_path, atomic_write_json, atomic_write_text
from kerasllm.data.builtin import (
    BUILTIN_CORPORA,
    builtin_corpus,
    builtin_corpus_files,
    corpus_documents,
    is_builtin,
)
from kerasllm.data.cleaning import (
    CleaningConfig,
    CleaningReport,
    clean_documents,
    normalize_whitespace,
    repeated_line_fraction,
    strip_control_characters,
)
from kerasllm.data.filters import (
    InappropriateContent,
    LanguageFilter,
    PiiScrubber,
    QualityFilter,
    identify_language,
)
from kerasllm.data.html import html_to_text
from kerasllm.data.lm_dataset import batches_per_epoch, lm_dataset
from kerasllm.data.statistics import corpus_statistics
from kerasllm.data.readers import CorpusError, corpus_files, read_documents
from kerasllm.data.splits import SPLITS, byte_range_split, split_of, split_rule
from kerasllm.data.token_cache import TokenCache, tokenizer_fingerprint

__all__ = [
    "BUILTIN_CORPORA",
    "SPLITS",
    "CleaningConfig",
    "CleaningReport",
    "CorpusError",
    "InappropriateContent",
    "LanguageFilter",
    "PiiScrubber",
    "QualityFilter",
    "TokenCache",
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "batches_per_epoch",
    "builtin_corpus",
    "byte_range_split",
    "builtin_corpus_files",
    "clean_documents",
    "corpus_documents",
    "corpus_files",
    "corpus_statistics",
    "html_to_text",
    "identify_language",
    "is_builtin",
    "lm_dataset",
    "normalize_whitespace",
    "read_documents",
    "repeated_line_fraction",
    "split_of",
    "split_rule",
    "strip_control_characters",
    "tokenizer_fingerprint",
]
