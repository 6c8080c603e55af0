"""The chat template: a conversation as text over the reserved chat tokens.

One function renders a conversation for every stage that needs it
(fine-tuning data, `kerasllm generate --chat`, the exported model's chat
input, the server's `/v1/chat/completions`), so a model is always prompted
the way it was trained. The shape is ChatML's::

    <|im_start|>system
    You are terse.<|im_end|>
    <|im_start|>user
    2+3=<|im_end|>
    <|im_start|>assistant
    5<|im_end|>

Each turn is `<|im_start|>{role}\\n{content}<|im_end|>\\n`. A prompt for the
model to answer ends with the opening of an assistant turn
(`add_generation_prompt=True`); the model's answer ends with `<|im_end|>`,
which generation treats as its stop token.
"""

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ROLES = ("system", "user", "assistant")


class ChatFormatError(ValueError):
    """A conversation that the template cannot render (names what is wrong)."""


def validate_messages(messages):
    """Check a conversation's shape; raise `ChatFormatError` naming the problem.

    A conversation is a non-empty list of `{"role": ..., "content": ...}`
    dicts, roles from `ROLES`, contents strings; an assistant turn may not be
    empty (it would teach the model to stop at once).
    """
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ChatFormatError(
            f"messages must be a non-empty list of {{role, content}} objects. "
            f"Received: {messages!r}"
        )
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ChatFormatError(
                f"messages[{index}] must be an object with 'role' and 'content'. "
                f"Received: {message!r}"
            )
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ChatFormatError(
                f"messages[{index}] has an unknown role: expected one of "
                f"{', '.join(ROLES)}. Received: role={role!r}"
            )
        if not isinstance(content, str):
            raise ChatFormatError(
                f"messages[{index}].content must be a string. Received: {content!r}"
            )
        for special in (IM_START, IM_END):
            if special in content:
                raise ChatFormatError(
                    f"messages[{index}].content contains the reserved token "
                    f"{special}, which would end or open a turn."
                )
        if role == "assistant" and not content.strip():
            raise ChatFormatError(f"messages[{index}] is an empty assistant turn.")


def render_turn(role, content):
    """One turn: `<|im_start|>{role}\\n{content}<|im_end|>\\n`."""
    return f"{IM_START}{role}\n{content}{IM_END}\n"


def generation_prompt():
    """What a prompt ends with to ask for the assistant's answer."""
    return f"{IM_START}assistant\n"


def render_chat(messages, *, add_generation_prompt=False):
    """Render a conversation to the text the model reads.

    Args:
        messages: a list of `{"role": "system"|"user"|"assistant",
            "content": str}`.
        add_generation_prompt: end with the opening of an assistant turn,
            for the model to continue. Defaults to `False`.

    Returns:
        The conversation as one string.

    Example:
    ```python
    >>> render_chat([{"role": "user", "content": "2+3="}], add_generation_prompt=True)
    '<|im_start|>user\\n2+3=<|im_end|>\\n<|im_start|>assistant\\n'
    ```
    """
    validate_messages(messages)
    text = "".join(render_turn(m["role"], m["content"]) for m in messages)
    if add_generation_prompt:
        text += generation_prompt()
    return text


def check_chat_tokenizer(tokenizer):
    """Raise `ChatFormatError` unless `tokenizer` has the chat special tokens."""
    special = getattr(tokenizer, "special_tokens", None) or {}
    missing = [token for token in (IM_START, IM_END) if token not in special]
    if missing:
        raise ChatFormatError(
            f"The tokenizer has no {' / '.join(missing)} special token(s), so it "
            f"cannot encode the chat template. Its special tokens: {sorted(special)}. "
            "Train a tokenizer with kerasllm's default special tokens, or use the "
            "prompt-completion or text format."
        )


def chat_segments(messages, *, add_generation_prompt=False):
    """The rendered conversation as `(text, trained)` pieces, in order.

    Joined, the pieces are exactly `render_chat(messages,
    add_generation_prompt=...)`. A trained piece is an assistant turn's
    content with its closing `<|im_end|>`; everything else (system and user
    turns, the `<|im_start|>assistant\\n` that opens a turn, the newline that
    follows `<|im_end|>`) is context.
    """
    validate_messages(messages)
    segments, context = [], ""
    for message in messages:
        if message["role"] == "assistant":
            context += f"{IM_START}assistant\n"
            segments.append((context, False))
            segments.append((f"{message['content']}{IM_END}", True))
            context = "\n"
        else:
            context += render_turn(message["role"], message["content"])
    if add_generation_prompt:
        context += generation_prompt()
    if context:
        segments.append((context, False))
    return segments


def encode_chat(tokenizer, messages, *, add_generation_prompt=False, train_on="assistant"):
    """Encode a conversation to ids and a loss mask for fine-tuning.

    The ids spell exactly `render_chat(messages, ...)`. Each piece of
    `chat_segments` is encoded on its own, so an assistant answer starts a
    fresh encode right after `<|im_start|>assistant\\n`, as the model's own
    output does at generation time (the prompt part, up to and including
    that opening, is then the same ids that generation feeds the model).

    Args:
        tokenizer: a kerasllm tokenizer with `<|im_start|>` and `<|im_end|>`
            among its special tokens.
        messages: a list of `{"role", "content"}` (see `render_chat`).
        add_generation_prompt: end with an opened assistant turn. Defaults
            to `False`.
        train_on: `"assistant"` (mask 1 on each assistant turn's content and
            its `<|im_end|>`, the end-of-turn token always included) or
            `"all"` (mask 1 everywhere). Defaults to `"assistant"`.

    Returns:
        `(ids, mask)`: two lists of ints of the same length.

    Raises:
        ChatFormatError: a malformed conversation, or a tokenizer without
            the chat special tokens.

    Example:
    ```python
    ids, mask = encode_chat(tokenizer, [
        {"role": "user", "content": "2+3="},
        {"role": "assistant", "content": "5"},
    ])
    tokenizer.decode([i for i, m in zip(ids, mask) if m])  # '5<|im_end|>'
    ```
    """
    if train_on not in ("assistant", "all"):
        raise ValueError(f"train_on must be 'assistant' or 'all'. Received: train_on={train_on!r}")
    check_chat_tokenizer(tokenizer)
    segments = chat_segments(messages, add_generation_prompt=add_generation_prompt)
    ids, mask = [], []
    for (text, trained), piece in zip(segments, tokenizer.encode_batch([t for t, _ in segments])):
        ids.extend(piece)
        mask.extend([1 if trained or train_on == "all" else 0] * len(piece))
    return ids, mask
