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
