"""`StreamingDecoder`: turn generated ids into text as they arrive."""

import codecs


class StreamingDecoder:
    """Decode one token id at a time, never emitting a broken character.

    A token may end inside a multi-byte UTF-8 character (byte-level BPE and
    SentencePiece byte fallback both split characters such as "😀" across
    tokens). `push` returns only complete characters and holds the remaining
    bytes until the next token completes them (`pending` counts them); bytes
    that can never form a character come out as U+FFFD. Joining every `push`
    and the final `flush` gives `tokenizer.decode(ids)`.

    Args:
        tokenizer: a kerasllm tokenizer (anything with `token_bytes`).

    Example:

    >>> decoder = StreamingDecoder(tokenizer)
    >>> pieces = [decoder.push(token_id) for token_id in tokenizer.encode("日本😀")]
    >>> "".join(pieces) + decoder.flush()
    '日本😀'
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id):
        """Add one token id; return the text it completes (possibly `""`)."""
        return self._decoder.decode(self.tokenizer.token_bytes(int(token_id)))

    @property
    def pending(self):
        """How many bytes of an unfinished character are held back."""
        return len(self._decoder.getstate()[0])

    def flush(self, incomplete="replace"):
        """End the stream and reset; return what the held-back bytes give.

        Args:
            incomplete: `"replace"` turns the bytes of an unfinished
                character into U+FFFD (as `tokenizer.decode` does); `"drop"`
                discards them. Defaults to `"replace"`.
        """
        if incomplete not in ("replace", "drop"):
            raise ValueError(
                f"incomplete must be 'replace' or 'drop'. Received: incomplete={incomplete!r}"
            )
        text = "" if incomplete == "drop" else self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
