"""The built-in verifiable tasks: generated prompts whose answers a program checks.

Each task draws one example from a seeded `random.Random`: a prompt, the one
correct answer, and a plausible wrong answer (for preference pairs). Letters,
and the digits of the sums, are written with spaces between them (`c a t`,
`4 6`), so that a sub-word tokenizer cannot hide them inside one token (a BPE
trained on code merges `12` but not `46`): the tasks measure what the model
learned, not how its tokenizer happened to split a word or a number.

| task       | language | prompt                         | answer       |
|------------|----------|--------------------------------|--------------|
| `add`      | en       | `What is 1 2 + 3 4?`           | `4 6`        |
| `larger`   | en       | `Which is larger, 12 or 34?`   | `34`         |
| `reverse`  | en       | `Reverse: c a t`               | `t a c`      |
| `sort`     | en       | `Sort: d b a`                  | `a b d`      |
| `count`    | en       | `Count a in: a b a c`          | `2`          |
| `katakana` | ja       | `カタカナ: さくら`               | `サクラ`      |
| `kansuji`  | ja       | `漢数字: 23`                    | `二十三`      |
"""

import dataclasses
import string
from typing import Callable

LETTERS = string.ascii_lowercase
# The 46 basic hiragana (no small kana, no voiced marks); katakana is +0x60.
HIRAGANA = (
    "あいうえおかきくけこさしすせそたちつてとなにぬねの"
    "はひふへほまみむめもやゆよらりるれろわをん"
)
KANJI_DIGITS = "〇一二三四五六七八九"


@dataclasses.dataclass(frozen=True)
class Task:
    """One verifiable task.

    Attributes:
        name: the task's id (`"add"`), used on the command line and in records.
        language: `"en"` or `"ja"`.
        description: one line for `--help` and the docs.
        sample: `sample(rng) -> (prompt, answer, wrong)`: one example drawn
            from a `random.Random`, with a plausible wrong answer.
        size: how many distinct prompts the task can make (bounds the splits).
    """

    name: str
    language: str
    description: str
    sample: Callable
    size: int


def _spaced(letters):
    return " ".join(letters)


def _digits(number):
    return _spaced(str(number))


def _add(rng):
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    total = a + b
    wrong = total + rng.choice((-1, 1, -10, 10)) if total >= 10 else total + 1
    return f"What is {_digits(a)} + {_digits(b)}?", _digits(total), _digits(wrong)


def _larger(rng):
    a, b = rng.sample(range(100), 2)
    return f"Which is larger, {a} or {b}?", str(max(a, b)), str(min(a, b))


def _word(rng, low=3, high=5):
    return [rng.choice(LETTERS) for _ in range(rng.randint(low, high))]


def _reverse(rng):
    word = _word(rng)
    while word == word[::-1]:  # a palindrome has no "unreversed" wrong answer
        word = _word(rng)
    return f"Reverse: {_spaced(word)}", _spaced(word[::-1]), _spaced(word)


def _sort(rng):
    letters = rng.sample(LETTERS, rng.randint(3, 5))
    while letters == sorted(letters):
        rng.shuffle(letters)
    return f"Sort: {_spaced(letters)}", _spaced(sorted(letters)), _spaced(letters)


def _count(rng):
    letters = [rng.choice("abc") for _ in range(rng.randint(4, 8))]
    target = rng.choice("abc")
    count = letters.count(target)
    wrong = count + 1 if count == 0 or rng.random() < 0.5 else count - 1
    return f"Count {target} in: {_spaced(letters)}", str(count), str(wrong)


def to_katakana(text):
    """Hiragana → katakana (the two blocks are 0x60 apart in Unicode)."""
    return "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in text)


def _katakana(rng):
    word = "".join(rng.choice(HIRAGANA) for _ in range(rng.randint(2, 4)))
    return f"カタカナ: {word}", to_katakana(word), word


def to_kansuji(number):
    """An integer 0..9999 in kanji numerals: 23 → 二十三, 105 → 百五, 0 → 〇."""
    if not 0 <= number <= 9999:
        raise ValueError(f"to_kansuji takes 0..9999. Received: {number}")
    if number == 0:
        return KANJI_DIGITS[0]
    text = ""
    for value, unit in ((1000, "千"), (100, "百"), (10, "十")):
        digit, number = divmod(number, value)
        if digit:
            text += ("" if digit == 1 else KANJI_DIGITS[digit]) + unit
    return text + (KANJI_DIGITS[number] if number else "")


def _kansuji(rng):
    number = rng.randint(1, 999)
    wrong = number + rng.choice((-1, 1)) if number > 1 else 2
    return f"漢数字: {number}", to_kansuji(number), to_kansuji(wrong)


TASKS = {
    task.name: task
    for task in (
        Task("add", "en", "add two numbers from 0 to 99", _add, 100 * 100),
        Task("larger", "en", "name the larger of two numbers", _larger, 100 * 99),
        Task("reverse", "en", "reverse 3-5 letters", _reverse, sum(26**n for n in (3, 4, 5))),
        Task("sort", "en", "sort 3-5 distinct letters", _sort, 26 * 25 * 24 * 23 * 22),
        Task("count", "en", "count a letter in 4-8 letters", _count, 3 * sum(3**n for n in range(4, 9))),
        Task("katakana", "ja", "hiragana to katakana (2-4 kana)", _katakana, sum(46**n for n in (2, 3, 4))),
        Task("kansuji", "ja", "digits to kanji numerals (1-999)", _kansuji, 999),
    )
}


def task_names(tasks=None):
    """Validated task names: all of them for `None`, else a list or `"a,b"`."""
    if tasks is None:
        return list(TASKS)
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    tasks = list(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(
            f"Unknown task(s) {unknown!r}; the tasks are {', '.join(TASKS)}. "
            f"Received: tasks={tasks!r}"
        )
    return list(dict.fromkeys(tasks))


def normalize_answer(text):
    """Whitespace-insensitive form of an answer: runs of spaces collapse to one."""
    return " ".join(str(text).split())


def verify(record, completion):
    """Whether `completion` answers `record` correctly (exact match).

    The comparison ignores leading/trailing whitespace and collapses runs of
    spaces; anything else (an extra word, a second line) is wrong.

    Args:
        record: a task record: a dict with `"task"` and `"answer"` (as
            written by `make_split` / `kerasllm tasks make`).
        completion: the model's text, or a `kerasllm.generation.Completion`.

    Returns:
        `True` or `False`.

    Example:
    ```python
    >>> verify({"task": "add", "answer": "4 6"}, " 4 6 ")
    True
    >>> verify({"task": "add", "answer": "4 6"}, "4 5")
    False
    ```
    """
    if not isinstance(record, dict) or "answer" not in record:
        raise ValueError(
            f"verify needs a task record with an 'answer' field. Received: {record!r:.200}"
        )
    if record.get("task") is not None and record["task"] not in TASKS:
        raise ValueError(
            f"Unknown task {record['task']!r}; the tasks are {', '.join(TASKS)}."
        )
    text = getattr(completion, "text", completion)
    if text is None:
        return False
    return normalize_answer(text) == normalize_answer(record["answer"])
