"""Generated ids to text, one row at a time: UTF-8-safe pieces and stop strings."""

from kerasllm.tokenizers.streaming_decoder import StreamingDecoder


class RowText:
    """The text of one generated row, fed token by token.

    Tokens go through `kerasllm.tokenizers.StreamingDecoder`, so text never
    holds half a character; a token after which bytes are still held back
    does not end on a character boundary, which is how a stop string maps
    back to tokens. After each token the new text is searched
    for the stop strings; at the first match the text is cut where the match
    begins (the stop string is not part of the output) and the row stops.
    `pop_text` hands out the text that can no longer change: it holds back an
    unfinished character and any tail that could still grow into a stop
    string.

    Args:
        tokenizer: a kerasllm tokenizer (anything with `token_bytes`).
        stop: a list of non-empty stop strings (may be empty).
    """

    def __init__(self, tokenizer, stop=()):
        self._decoder = StreamingDecoder(tokenizer)
        self._stop = list(stop)
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self.text = ""
        self.num_tokens = 0  # tokens whose bytes lie entirely before the stop
        self.stopped = False
        self._ends = []  # len(text) after each token, None while bytes are held
        self._emitted = 0

    def push(self, token_ids):
        """Adds generated ids; returns `True` once a stop string was met."""
        for token_id in token_ids:
            if self.stopped:
                break
            before = len(self.text)
            self.text += self._decoder.push(token_id)
            self._ends.append(None if self._decoder.pending else len(self.text))
            self.num_tokens = len(self._ends)
            cut = self._find_stop(before)
            if cut is not None:
                self.text = self.text[:cut]
                # Keep the tokens up to the last one that ends on a character
                # boundary at or before the cut.
                self.num_tokens = max(
                    (i + 1 for i, end in enumerate(self._ends) if end is not None and end <= cut),
                    default=0,
                )
                self.stopped = True
        return self.stopped

    def _find_stop(self, before):
        """The start of the first stop string that ends in the new text, or None."""
        found = []
        for stop in self._stop:
            start = self.text.find(stop, max(0, before - len(stop) + 1))
            if start >= 0:
                found.append(start)
        return min(found, default=None)

    def finish(self, incomplete="replace"):
        """Ends the row: flushes held-back bytes unless stopped.

        Args:
            incomplete: what an unfinished last character becomes:
                `"replace"` (U+FFFD) or `"drop"` (see
                `StreamingDecoder.flush`). Defaults to `"replace"`.
        """
        if not self.stopped:
            self.text += self._decoder.flush(incomplete)

    def pop_text(self, final=False):
        """The text not handed out before that is now settled (`""` if none)."""
        end = len(self.text)
        if not final and not self.stopped:
            end -= self._stop_prefix_length()
        piece = self.text[self._emitted : end]
        self._emitted = max(self._emitted, end)
        return piece

    def _stop_prefix_length(self):
        """Length of the longest tail of the text that begins a stop string."""
        for size in range(min(self._longest_stop - 1, len(self.text)), 0, -1):
            tail = self.text[-size:]
            if any(stop.startswith(tail) for stop in self._stop):
                return size
        return 0
