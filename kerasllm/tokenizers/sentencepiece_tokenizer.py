"""`SentencePieceTokenizer`: a SentencePiece model, in-graph and in Python."""

import json
import pathlib
import types

import tensorflow as tf
from tensorflow_text.python.ops.sentencepiece_tokenizer import (
    gen_sentencepiece_tokenizer as _sentencepiece_ops,
)

from kerasllm.tokenizers import files
from kerasllm.tokenizers.tokenizer import Tokenizer, fingerprint_of


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (unigram or BPE) with the kerasllm tokenizer API.

    It encodes with tensorflow-text's SentencePiece ops, in-graph and in the
    Python `encode`/`encode_batch` alike, and reads the vocabulary and
    decodes with the `sentencepiece` library. Why not encode with the
    library too: a unigram model often scores two segmentations the same (the
    same pieces in another order: "\n\n" + "\n" or "\n" + "\n\n"), and
    `sentencepiece` 0.2 breaks such ties differently from the copy compiled
    into tensorflow-text. Encoding with one implementation everywhere keeps
    the ids a model was trained on equal to the ids it is served with.

    Trained by `train_tokenizer(kind="sentencepiece")`, the model has no
    normalization, keeps every space and falls back to bytes, so
    `decode(encode(s)) == s` for every string with one exception
    SentencePiece cannot remove: it writes spaces as "▁" (U+2581) inside
    pieces, so a literal "▁" in the text decodes as a space.

    Args:
        directory: a tokenizer directory with `spm.model` and
            `kerasllm_tokenizer.json`.
        name: the `tf.Module` name. Defaults to `"sentencepiece_tokenizer"`.

    Example:

    >>> tokenizer = kerasllm.tokenizers.load("spm-8k/")
    >>> ids = tokenizer("吾輩は猫である。")
    >>> tokenizer.decode(ids)
    '吾輩は猫である。'
    """

    kind = "sentencepiece"

    def __init__(self, directory, name="sentencepiece_tokenizer"):
        super().__init__(name=name)
        import sentencepiece

        directory = pathlib.Path(directory)
        metadata = files.read_metadata(directory)
        self._metadata = json.dumps(metadata)
        try:
            model = (directory / "spm.model").read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{directory} has no spm.model.") from None
        try:
            processor = sentencepiece.SentencePieceProcessor(model_proto=model)
        except RuntimeError as error:
            raise ValueError(
                f"{directory / 'spm.model'} is damaged ({error}). Train or copy "
                "the tokenizer again."
            ) from None
        self._fingerprint = fingerprint_of("sentencepiece", metadata, model)
        self._end_token = metadata["end_token"]
        self._pad_token = metadata["pad_token"]
        self._special_tokens = {
            token: processor.piece_to_id(token) for token in metadata["special_tokens"]
        }
        size = processor.get_piece_size()
        token_bytes = []
        for i in range(size):
            piece = processor.id_to_piece(i)
            if processor.is_byte(i):
                token_bytes.append(bytes([int(piece[3:5], 16)]))  # "<0x0A>"
            elif processor.is_control(i):
                token_bytes.append(b"")
            else:
                token_bytes.append(processor.decode([i]).encode("utf-8"))
        self._py = types.SimpleNamespace(
            processor=processor, model=model, token_bytes=token_bytes
        )

    def _model_handle(self):
        # The ops of `tf_text.SentencepieceTokenizer`, with the model resource
        # made inside each traced function instead of once, eagerly: an eager
        # kernel owns that resource, and clearing the eager caches (which
        # `tf.random.set_seed` and `keras.utils.set_random_seed` do) deletes
        # it ("Resource ..._SentencepieceOp... does not exist"). In a
        # function the model is an attribute of the graph, parsed once per
        # function instance, and it is saved with the SavedModel.
        return _sentencepiece_ops.sentencepiece_op(model=self._py.model)

    def _tokenize_strings(self, strings):
        values, row_splits = _sentencepiece_ops.sentencepiece_tokenize_op(
            self._model_handle(),
            strings,
            nbest_size=0,
            alpha=1.0,
            add_bos=False,
            add_eos=False,
            reverse=False,
            out_type=tf.int32,
            return_nbest=False,
        )
        return tf.RaggedTensor.from_row_splits(values, row_splits, validate=False)

    def _detokenize_ids(self, ids):
        ids = self._in_vocabulary(ids)
        return _sentencepiece_ops.sentencepiece_detokenize_op(
            self._model_handle(),
            ids.flat_values,
            ids.row_splits,
            add_bos=False,
            add_eos=False,
            reverse=False,
        )

    def _encode_batch(self, texts):
        # tensorflow-text's op, run eagerly: the `sentencepiece` library breaks
        # ties between equal-score splits differently (see the module doc).
        return self._in_graph(self._tokenize_strings, tf.constant(texts)).to_list()

    def decode(self, ids):
        ids = [i for i in _as_list(ids) if 0 <= i < self.vocabulary_size]
        return self._py.processor.decode(ids)

    def token_bytes(self, token_id):
        token_id = int(token_id)
        if 0 <= token_id < len(self._py.token_bytes):
            return self._py.token_bytes[token_id]
        return b""

    @property
    def vocabulary_size(self):
        return self._py.processor.get_piece_size()

    def token_to_id(self, token):
        token_id = self._py.processor.piece_to_id(token)
        # piece_to_id answers <unk>'s id for unknown pieces.
        if self._py.processor.id_to_piece(token_id) != token:
            raise KeyError(f"Token not in the vocabulary. Received: token={token!r}")
        return token_id

    def id_to_token(self, token_id):
        return self._py.processor.id_to_piece(self._check_id(token_id))

    def save(self, directory, overwrite=False):
        """Write the tokenizer's files to `directory`, atomically.

        Args:
            directory: the target directory.
            overwrite: replace an existing tokenizer directory there (never
                other files). Defaults to `False`.
        """
        with files.atomic_directory(
            directory, overwrite=overwrite, marker=files.METADATA_FILE
        ) as staging:
            (staging / "spm.model").write_bytes(self._py.model)
            files.write_json(staging / files.METADATA_FILE, json.loads(self._metadata))
        return directory


def _as_list(ids):
    if isinstance(ids, (tf.Tensor, tf.RaggedTensor)):
        ids = ids.numpy()
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    return [int(i) for i in tf.nest.flatten(ids)]
