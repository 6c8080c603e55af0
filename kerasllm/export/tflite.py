"""TFLite export: `prefill` and `decode` signatures over a fixed-size KV cache.

The on-device convention (LiteRT LLM runtimes, MediaPipe): two signatures
that share the weights, and a key/value cache of fixed length `S` that the
caller passes back in each step.

    prefill(token_ids int32 [1, S], length int32 [])
        -> logits float32 [1, V] (at position length - 1),
           kv_cache float32 [L, 1, 2, K, S, D], utf8_state int32 [1, 3]
    decode(token_id int32 [1, 1], position int32 [], kv_cache, utf8_state)
        -> logits float32 [1, V], kv_cache, utf8_state

Valid UTF-8 by construction: `utf8_state` is passed back like the cache
(`kerasllm.generation.utf8`: bytes still owed by the text generated so far),
and the logits of every token that would break a character are `-inf`, so
an app that takes the argmax, or samples from the softmax, of `logits`
never writes a broken character. The first `decode` call after `prefill`
takes `prefill`'s `utf8_state`; the prompt itself is not checked.

The prompt is right-padded to `S`; pad slots get keys and values too, but a
token at position `p` only attends to slots `<= p`, and slot `p` is written
before it is read, so the padding never leaks into an output.

Only TFLite builtin ops are used (no Flex / SELECT_TF_OPS, no custom ops), so
the plain `ai_edge_litert` interpreter runs the file. The weights are frozen
into constants before conversion: the converter otherwise keeps them as
resource variables (VAR_HANDLE / READ_VARIABLE), which need an initializer
signature that plain runtimes never call.

Output directory::

    OUT/
      model.tflite           the flatbuffer
      tokenizer/             the tokenizer files (vocab.json + merges.txt, ...)
      kerasllm_tflite.json   cache length, vocabulary size, end token, quantization

Usage:
    kerasllm export --model runs/tiny --format tflite --output exports/tiny-tflite
    python -c "import kerasllm.export as e; print(e.tflite_generate('exports/tiny-tflite', 'def '))"
"""

import json
import pathlib
import tempfile

import numpy as np

from kerasllm.export.backend_check import require_tensorflow_backend

TFLITE_FILE = "model.tflite"
TOKENIZER_DIR = "tokenizer"
CONFIG_FILE = "kerasllm_tflite.json"
QUANTIZATIONS = ("none", "float16", "int8")


def _prefill_and_decode(model, cache_length, utf8_table):
    """The two signature functions and their input specs, as plain functions."""
    import tensorflow as tf

    from kerasllm.generation import utf8

    config = model.config
    cache_spec = tf.TensorSpec(
        [config.num_layers, 1, 2, config.kv_heads, cache_length, config.head_dim],
        tf.float32,
        name="kv_cache",
    )
    table = tf.constant(utf8_table, tf.int32)  # (NUM_FIELDS, V)

    def prefill(token_ids, length):
        cache = model.init_cache(1, cache_length, "float32")
        logits, cache = model.call_with_cache(token_ids, cache, 0)  # (1, S, V)
        last = tf.gather(logits[0], length - 1)[tf.newaxis]  # (1, V)
        state = tf.constant([[0, utf8.CONT_LO, utf8.CONT_HI]], tf.int32)  # (1, 3)
        return {
            "logits": utf8.mask_logits(last, table, state),
            "kv_cache": tf.stack(cache),  # (L, 1, 2, K, S, D)
            "utf8_state": state,
        }

    def decode(token_id, position, kv_cache, utf8_state):
        logits, cache = model.call_with_cache(
            token_id, tf.unstack(kv_cache), position
        )  # (1, 1, V)
        state = utf8.advance(table, utf8_state, token_id[:, 0])  # (1, 3)
        return {
            "logits": utf8.mask_logits(logits[:, 0], table, state),
            "kv_cache": tf.stack(cache),
            "utf8_state": state,
        }

    return {
        "prefill": (
            prefill,
            [
                tf.TensorSpec([1, cache_length], tf.int32, name="token_ids"),
                tf.TensorSpec([], tf.int32, name="length"),
            ],
        ),
        "decode": (
            decode,
            [
                tf.TensorSpec([1, 1], tf.int32, name="token_id"),
                tf.TensorSpec([], tf.int32, name="position"),
                cache_spec,
                tf.TensorSpec([1, 3], tf.int32, name="utf8_state"),
            ],
        ),
    }


def _frozen_signatures(model, cache_length, utf8_table):
    """Concrete functions with the weights folded in as constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    signatures = {}
    for name, (fn, specs) in _prefill_and_decode(model, cache_length, utf8_table).items():
        concrete = tf.function(fn).get_concrete_function(*specs)
        _drop_empty_collection_items(concrete.graph)
        frozen = convert_variables_to_constants_v2(concrete)
        named = _with_output_names(frozen, concrete.structured_outputs)
        signatures[name] = tf.function(named, input_signature=specs).get_concrete_function()
    return signatures


def _drop_empty_collection_items(graph):
    """Remove `None` items from a function graph's collections.

    A function graph inherits the collections of the eager context, where a
    tokenizer's lookup tables leave `None` under `table_initializer`; the
    freezing step exports a meta graph and printed "'NoneType' object has no
    attribute 'name'" for each.
    """
    for key in graph.get_all_collection_keys():
        items = graph.get_collection_ref(key)
        items[:] = [item for item in items if item is not None]


def _with_output_names(frozen, structure):
    """The frozen function returns a flat list; re-wrap it so the TFLite
    signature keeps the output names `logits` and `kv_cache`."""
    import tensorflow as tf

    def named(*args):
        return tf.nest.pack_sequence_as(structure, frozen(*args))

    return named


def convert_to_tflite(model, *, tokenizer=None, cache_length=None, quantize="none"):
    """Convert a GPT to TFLite flatbuffer bytes with `prefill`/`decode`.

    Args:
        model: a `kerasllm.models.GPT`.
        tokenizer: the tokenizer whose token bytes make the valid-UTF-8
            mask. Defaults to `model.tokenizer`.
        cache_length: KV cache slots `S` (prompt + generated tokens). Defaults
            to `model.config.context_length`.
        quantize: `"none"` (float32), `"float16"` (weights stored as float16)
            or `"int8"` (dynamic-range: int8 weights, float activations,
            no representative data). Defaults to `"none"`.

    Returns:
        The `.tflite` bytes.
    """
    require_tensorflow_backend("TFLite export")
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ValueError(
            f"quantize must be one of {QUANTIZATIONS}. Received: quantize={quantize!r}"
        )
    context_length = model.config.context_length
    cache_length = cache_length or context_length
    if not isinstance(cache_length, int) or not 2 <= cache_length <= context_length:
        raise ValueError(
            "cache_length must be an int in [2, context_length]. Received: "
            f"cache_length={cache_length!r}, context_length={context_length}"
        )
    from kerasllm.generation.utf8 import token_table

    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            "The TFLite decode signature masks tokens that would break a UTF-8 "
            "character, from the tokenizer's token bytes, but no tokenizer was "
            "given and model.tokenizer is None. Pass tokenizer=... or load the "
            "model with kerasllm.load(model_dir)."
        )
    table = token_table(tokenizer, model.config.vocab_size)
    signatures = _frozen_signatures(model, cache_length, table)
    with tempfile.TemporaryDirectory() as tmp:
        # Several signatures convert only through a SavedModel; this one holds
        # no variables (the weights are constants already).
        tf.saved_model.save(tf.Module(), tmp, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            tmp, signature_keys=["prefill", "decode"]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = False
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def tflite_op_names(model_content):
    """The op names in a TFLite flatbuffer, as the LiteRT interpreter reads them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_content)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def check_builtin_ops(model_content):
    """Raise unless every op is a TFLite builtin (no Flex, no custom op)."""
    names = tflite_op_names(model_content)
    bad = [n for n in names if n.startswith("Flex") or n.upper() in ("CUSTOM", "DELEGATE")]
    if bad:
        raise ValueError(
            "The TFLite model uses ops outside the TFLite builtins, which the "
            f"plain LiteRT interpreter cannot run. Received: {bad}"
        )
    return names


def export_tflite(
    model, output_dir, *, tokenizer=None, quantize="none", cache_length=None, overwrite=False
):
    """Write `model.tflite`, the tokenizer files and a small JSON to a directory.

    The directory is assembled under a temporary name beside `output_dir` and
    renamed into place, so a failed export leaves nothing behind.

    Args:
        model: a `kerasllm.models.GPT` (from `kerasllm.load`).
        output_dir: the directory to write.
        tokenizer: the tokenizer to ship beside the model. Defaults to
            `model.tokenizer`.
        quantize: `"none"`, `"float16"` or `"int8"`; see `convert_to_tflite`.
            Defaults to `"none"`.
        cache_length: KV cache slots. Defaults to the context length.
        overwrite: replace an existing `output_dir`. Defaults to `False`.

    Returns:
        A dict with `path`, `size_bytes`, `quantize`, `cache_length` and `ops`.

    Example:
    ```python
    model = kerasllm.load("runs/tiny")
    kerasllm.export.export_tflite(model, "exports/tiny-int8", quantize="int8")
    kerasllm.export.tflite_generate("exports/tiny-int8", "def ", max_new_tokens=16)
    ```
    """
    from kerasllm.tokenizers.files import atomic_directory

    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError(
            "export_tflite ships the tokenizer beside the model, but none was "
            "given and model.tokenizer is None. Pass tokenizer=... or load the "
            "model with kerasllm.load(model_dir)."
        )
    output_dir = pathlib.Path(output_dir)
    if output_dir.exists() and not overwrite:
        raise FileExistsError(
            f"{output_dir} already exists; pass overwrite=True (--overwrite) to replace it."
        )
    cache_length = cache_length or model.config.context_length
    content = convert_to_tflite(
        model, tokenizer=tokenizer, cache_length=cache_length, quantize=quantize
    )
    ops = check_builtin_ops(content)
    with atomic_directory(output_dir) as staging:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide it from other users
        (staging / TFLITE_FILE).write_bytes(content)
        tokenizer.save(staging / TOKENIZER_DIR)
        (staging / TOKENIZER_DIR).chmod(0o755)
        config = {
            "format": "kerasllm-tflite",
            "format_version": 2,
            "cache_length": cache_length,
            "vocabulary_size": int(model.config.vocab_size),
            "end_token_id": int(tokenizer.end_token_id),
            "quantize": quantize,
            "num_layers": model.config.num_layers,
            "signatures": {
                "prefill": "token_ids int32 [1, S], length int32 [] "
                "-> logits [1, V], kv_cache, utf8_state [1, 3]",
                "decode": "token_id int32 [1, 1], position int32 [], kv_cache, utf8_state "
                "-> logits [1, V], kv_cache, utf8_state",
            },
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return {
        "path": str(output_dir),
        "size_bytes": len(content),
        "quantize": quantize,
        "cache_length": cache_length,
        "ops": ops,
    }


class TFLiteGenerator:
    """Greedy generation from an exported `.tflite` with the LiteRT interpreter.

    Needs only `ai_edge_litert`, NumPy and the tokenizer files beside the
    model (read with `kerasllm.tokenizers.load`, whose Python path is Hugging
    Face `tokenizers` / `sentencepiece`). This is the loop an app runs on a
    device: prefill once, then one `decode` per token, feeding the cache back.

    Args:
        path: the export directory (or the `model.tflite` inside it).
        num_threads: interpreter threads. Defaults to `None` (LiteRT's choice).

    Example:
    ```python
    generator = kerasllm.export.TFLiteGenerator("exports/tiny-tflite")
    generator.generate("def ", max_new_tokens=16)
    ```
    """

    def __init__(self, path, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        path = pathlib.Path(path)
        directory = path.parent if path.suffix == ".tflite" else path
        model_file = path if path.suffix == ".tflite" else path / TFLITE_FILE
        if not model_file.is_file():
            raise FileNotFoundError(
                f"No {TFLITE_FILE} in {directory}. Expected a directory written "
                "by `kerasllm export --format tflite`."
            )
        self.config = json.loads((directory / CONFIG_FILE).read_text())
        self.cache_length = self.config["cache_length"]
        self.end_token_id = self.config["end_token_id"]
        self._tokenizer_dir = directory / TOKENIZER_DIR
        self._tokenizer = None
        self.interpreter = Interpreter(model_path=str(model_file), num_threads=num_threads)
        self._prefill = self.interpreter.get_signature_runner("prefill")
        self._decode = self.interpreter.get_signature_runner("decode")

    @property
    def tokenizer(self):
        """The tokenizer shipped beside the model (loaded on first use)."""
        if self._tokenizer is None:
            from kerasllm.tokenizers import load

            self._tokenizer = load(self._tokenizer_dir)
        return self._tokenizer

    def generate_ids(self, token_ids, max_new_tokens=32, stop_at_end=True):
        """Greedy-decode after `token_ids`; returns `(new_ids, stop_reason)`.

        Args:
            token_ids: the prompt ids (a list of int), at least one.
            max_new_tokens: tokens to generate at most (cut to the cache).
            stop_at_end: stop after the end token (which is included).
                Defaults to `True`.

        Returns:
            `(list of int, "stop" | "length")`; at the length limit, the ids
            end at the last whole character.
        """
        from kerasllm.tokenizers.streaming_decoder import StreamingDecoder

        token_ids = [int(i) for i in token_ids]
        length = len(token_ids)
        if length < 1:
            raise ValueError("The prompt is empty: it has no tokens. Received: token_ids=[]")
        if length >= self.cache_length:
            raise ValueError(
                "The prompt leaves no room to generate: the cache holds "
                f"{self.cache_length} tokens. Received: {length} prompt tokens"
            )
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(
                f"max_new_tokens must be a positive int. Received: {max_new_tokens!r}"
            )
        padded = np.zeros((1, self.cache_length), np.int32)
        padded[0, :length] = token_ids
        out = self._prefill(token_ids=padded, length=np.array(length, np.int32))
        new_ids = []
        text = StreamingDecoder(self.tokenizer)
        whole = 0  # tokens up to the last one that completed a character
        position = length
        while True:
            next_id = int(np.argmax(out["logits"][0]))
            new_ids.append(next_id)
            if stop_at_end and next_id == self.end_token_id:
                return new_ids, "stop"
            text.push(next_id)
            if not text.pending:
                whole = len(new_ids)
            if len(new_ids) >= max_new_tokens or position >= self.cache_length:
                # A character cut by the limit is left out.
                return new_ids[:whole], "length"
            out = self._decode(
                token_id=np.array([[next_id]], np.int32),
                position=np.array(position, np.int32),
                kv_cache=out["kv_cache"],
                utf8_state=out["utf8_state"],
            )
            position += 1

    def generate(self, prompt, max_new_tokens=32):
        """Greedy-decode text after `prompt`; returns the new text only."""
        new_ids, _ = self.generate_ids(self.tokenizer.encode(prompt), max_new_tokens)
        if new_ids and new_ids[-1] == self.end_token_id:
            new_ids = new_ids[:-1]
        return self.tokenizer.decode(new_ids)


def tflite_generate(path, prompt, max_new_tokens=32):
    """Greedy text from an exported `.tflite`; see `TFLiteGenerator`.

    Args:
        path: the export directory (or its `model.tflite`).
        prompt: the prompt text.
        max_new_tokens: tokens to generate at most. Defaults to `32`.

    Returns:
        The generated text (without the prompt and the end token).
    """
    return TFLiteGenerator(path).generate(prompt, max_new_tokens=max_new_tokens)

