"""`Tokenizer`: what the BPE and SentencePiece tokenizers have in common.

A tokenizer is a `tf.Module`: its lookup tables are tracked attributes, so a
module that holds it (an exporter's serving module) saves it with
`tf.saved_model.save`, and the SavedModel needs only TF core and
tensorflow-text ops. The same object has Python fast paths (`encode`,
`encode_batch`, `decode`) that call the trainer's own library.

Where TensorFlow is not installed (a JAX-only GPU machine), a byte-level BPE
tokenizer still loads with its Python side: `encode`, `encode_batch`,
`decode`, the vocabulary and the special tokens, which is all that
fine-tuning, alignment, generation and evaluation use. The in-graph methods
(`tokenize`, `detokenize`, tf.data pipelines, exports) then raise an
`ImportError` that says so. A SentencePiece tokenizer encodes with
tensorflow-text's op even in Python (see its class), so it needs TensorFlow.
"""

import hashlib
import json

import numpy as np

try:
    import tensorflow as tf
except ImportError:  # a JAX-only setup: the Python side works (see above)
    tf = None


def require_tensorflow(what):
    """Raise a clear `ImportError` where TensorFlow is missing and `what` needs it."""
    if tf is None:
        raise ImportError(
            f"{what} needs TensorFlow, which is not installed here. Without it "
            "a BPE tokenizer keeps its Python side (encode, encode_batch, "
            "decode): install tensorflow and tensorflow-text for in-graph "
            "tokenization, tf.data pipelines, SentencePiece and export."
        )


class _WithoutTensorFlow:
    """What `Tokenizer` derives from where TensorFlow is not installed."""

    def __init__(self, name=None):
        self._name = name

    @property
    def name(self):
        return self._name


class Tokenizer(tf.Module if tf is not None else _WithoutTensorFlow):
    """Base class: input handling and the shared Python API.

    Subclasses implement `_tokenize_strings` (a 1-D string tensor to ragged
    int32 ids, in-graph), `_detokenize_ids` (ragged ids to a 1-D string
    tensor, in-graph), `encode_batch`, `token_bytes` and `save`, and set
    `self._special_tokens`, `self._end_token` and `self._pad_token`.
    """

    kind = None

    def _in_graph(self, method, value):
        """Run `_tokenize_strings` / `_detokenize_ids` on `value`.

        Inside a graph (tf.data, tf.function) the method is traced into the
        caller's graph: a nested `tf.function` there runs as a separate call
        that tf.data does not optimize with the rest (measured: ~1.5x slower).
        Eagerly it runs as a `tf.function`, traced once per method.
        """
        if not tf.executing_eagerly():
            return method(value)
        compiled = self.__dict__.get("_compiled_" + method.__name__)
        if compiled is None:
            spec = (
                tf.TensorSpec([None], tf.string)
                if method.__name__ == "_tokenize_strings"
                else tf.RaggedTensorSpec([None, None], tf.int32)
            )
            compiled = tf.function(method, input_signature=[spec])
            # Not a tracked attribute: a SavedModel holds the caller's
            # functions, which trace the methods themselves.
            self.__dict__["_compiled_" + method.__name__] = compiled
        return compiled(value)

    # ------------------------------------------------------------ in-graph

    def tokenize(self, inputs):
        """Turn strings into token ids, in-graph.

        Works eagerly, inside `tf.data.Dataset.map`, inside `tf.function` and
        inside a SavedModel.

        Args:
            inputs: a Python `str`, a list of `str`, or a string `tf.Tensor`
                (scalar or 1-D).

        Returns:
            For a scalar string, a 1-D int32 `tf.Tensor` of ids. For a batch,
            an int32 `tf.RaggedTensor` of shape `[batch, None]`.

        Example:

        >>> tokenizer = kerasllm.tokenizers.load("tokenizer/")
        >>> tokenizer("def f():")  # 1-D int32 tensor
        >>> tokenizer(["a", "b c"])  # RaggedTensor [2, None]
        """
        require_tensorflow("tokenize (in-graph tokenization)")
        if isinstance(inputs, tf.RaggedTensor):
            raise ValueError(
                "tokenize expects a str, a list of str, or a scalar or 1-D "
                f"string tensor. Received: a RaggedTensor of shape {inputs.shape}"
            )
        inputs = tf.convert_to_tensor(inputs)
        if inputs.dtype != tf.string:
            raise ValueError(
                f"tokenize expects strings. Received: dtype={inputs.dtype.name}"
            )
        if inputs.shape.rank == 0:
            return self._in_graph(self._tokenize_strings, inputs[tf.newaxis])[0]
        if inputs.shape.rank == 1:
            return self._in_graph(self._tokenize_strings, inputs)
        raise ValueError(
            "tokenize expects a scalar or 1-D string tensor. "
            f"Received: shape={inputs.shape}"
        )

    def __call__(self, inputs):
        return self.tokenize(inputs)

    def detokenize(self, ids):
        """Turn token ids back into strings, in-graph.

        Ids outside the vocabulary are skipped.

        Args:
            ids: int ids: a 1-D tensor (one sequence), a 2-D dense tensor or
                an int `tf.RaggedTensor` `[batch, None]`; Python lists and
                NumPy arrays are accepted too.

        Returns:
            A scalar string tensor for 1-D ids, else a `[batch]` string tensor.
            The strings are UTF-8 bytes; a sequence cut inside a character
            ends in incomplete bytes, which `.numpy().decode("utf-8",
            "replace")` shows as U+FFFD.

        Example:

        >>> tokenizer.detokenize(tokenizer("日本語"))  # b'日本語'
        """
        require_tensorflow("detokenize (in-graph detokenization)")
        if isinstance(ids, (list, tuple)):
            nested = any(isinstance(row, (list, tuple, np.ndarray)) for row in ids)
            # int64 so that an empty list is an int tensor, not float32.
            ids = (tf.ragged.constant if nested else tf.constant)(ids, tf.int64)
        elif not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise ValueError(
                f"detokenize expects integer ids. Received: dtype={ids.dtype.name}"
            )
        ids = tf.cast(ids, tf.int32)
        if ids.shape.rank == 1:
            return self._in_graph(
                self._detokenize_ids, tf.RaggedTensor.from_tensor(ids[tf.newaxis])
            )[0]
        if ids.shape.rank == 2:
            if not isinstance(ids, tf.RaggedTensor):
                ids = tf.RaggedTensor.from_tensor(ids)
            return self._in_graph(self._detokenize_ids, ids)
        raise ValueError(
            f"detokenize expects 1-D or 2-D ids. Received: shape={ids.shape}"
        )

    def _in_vocabulary(self, ids):
        """Ragged `ids` without the ids outside `[0, vocabulary_size)`."""
        valid = (ids.flat_values >= 0) & (ids.flat_values < self.vocabulary_size)
        return tf.ragged.boolean_mask(ids, ids.with_flat_values(valid))

    # ------------------------------------------------------------ Python

    def encode_batch(self, texts):
        """Encode a list of strings in Python (fast, not in-graph).

        Args:
            texts: a list of `str`.

        Returns:
            A list of id lists, equal to `tokenize(texts)`.
        """
        texts = list(texts)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(
                    f"encode_batch expects a list of str. Received an item of "
                    f"type {type(text).__name__}: {text!r:.80}"
                )
        return self._encode_batch(texts) if texts else []

    def _encode_batch(self, texts):
        """Encode a non-empty list of `str` (each subclass's library)."""
        raise NotImplementedError

    def encode(self, text):
        """Encode one string with the Python library (fast, not in-graph).

        Args:
            text: a `str`.

        Returns:
            A `list` of int ids, equal to `tokenize(text)`.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str. Received: {type(text).__name__}")
        return self.encode_batch([text])[0]

    def decode(self, ids):
        """Decode ids to a `str` in Python (not in-graph).

        Incomplete or invalid UTF-8 (only possible for ids that no string
        encodes to) becomes U+FFFD. Ids outside the vocabulary are skipped.

        Args:
            ids: an iterable of int ids (a list, NumPy array or 1-D tensor).

        Returns:
            The text; `decode(encode(s)) == s` for every string `s`.
        """
        ids = np.asarray(ids).reshape(-1).tolist()
        return b"".join(self.token_bytes(i) for i in ids).decode(
            "utf-8", errors="replace"
        )

    def token_bytes(self, token_id):
        """The bytes one token contributes to decoded text (`b""` if unknown)."""
        raise NotImplementedError

    @property
    def vocabulary_size(self):
        """The number of ids (`max id + 1`)."""
        raise NotImplementedError

    @property
    def metadata(self):
        """The contents of `kerasllm_tokenizer.json` (a fresh dict)."""
        return json.loads(self._metadata)

    @property
    def fingerprint(self):
        """A hash of what decides the ids: kind, vocabulary, merges or model, specials.

        Two tokenizers with the same fingerprint give the same ids for every
        text. A model directory records it, and `kerasllm.load` checks it.
        """
        return self._fingerprint

    @property
    def special_tokens(self):
        """A dict from special token string to its id."""
        return dict(self._special_tokens)

    @property
    def end_token_id(self):
        """The id of `<|endoftext|>`, appended after each document."""
        return self._special_tokens[self._end_token]

    @property
    def pad_token_id(self):
        """The id used for padding (`<|pad|>`, or the end token without one)."""
        return self._special_tokens[self._pad_token]

    def token_to_id(self, token):
        """The id of a vocabulary entry (a special token or a piece).

        Raises:
            KeyError: `token` is not in the vocabulary.
        """
        raise NotImplementedError

    def id_to_token(self, token_id):
        """The vocabulary entry for an id, as stored in the vocabulary file.

        Raises:
            KeyError: `token_id` is outside `[0, vocabulary_size)`.
        """
        raise NotImplementedError

    def _check_id(self, token_id):
        if not 0 <= int(token_id) < self.vocabulary_size:
            raise KeyError(
                f"Token id out of range [0, {self.vocabulary_size}). "
                f"Received: token_id={token_id!r}"
            )
        return int(token_id)

    def __repr__(self):
        return (
            f"<{type(self).__name__} vocabulary_size={self.vocabulary_size} "
            f"special_tokens={len(self._special_tokens)}>"
        )


def fingerprint_of(kind, metadata, *contents):
    """The `fingerprint` of a tokenizer: SHA-256 over its defining contents."""
    digest = hashlib.sha256(kind.encode())
    defining = {key: metadata.get(key) for key in ("special_tokens", "split_pattern")}
    digest.update(json.dumps(defining, sort_keys=True).encode())
    for content in contents:
        content = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        digest.update(len(content).to_bytes(8, "little"))
        digest.update(content)
    return "sha256:" + digest.hexdigest()[:32]
