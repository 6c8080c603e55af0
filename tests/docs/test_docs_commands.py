"""Every shell command and Python snippet in the docs runs, so the docs cannot drift.

The pages are README.md, README.ja.md, docs/*.md and docs/ja/*.md (a new page
is picked up by itself). Each fenced block with a `bash`/`sh`/`shell`/`console`
or `python` label is one test item, `page.md#N` (N counts every fence of the
page from 0). A block that appears in the English and the Japanese page (after
dropping comments and blank lines) runs once, under the English page's id, and
its item names both locations.

How a block runs:
- in a fresh temporary directory holding what the docs assume exists: the
  `recipes/` folder and the "world" built once per session by `docs_world`
  (a really tiny model pretrained for two steps at `runs/tiny`, copied to
  `runs/demo`, `runs/sft` and `runs/tiny-ja`; a LoRA adapter at
  `runs/lora/adapter`; a reward model at `runs/rm`; its SavedModel export at
  `saved_models/tiny/1`; its int8 TFLite export at `exports/tiny-int8`; the task
  data at `data/tasks`; small corpora under the
  names the pages use). A path the block writes itself (`--output PATH`,
  `export --name N`, `output_dir="PATH"`, the output argument of `pretrain(...)`,
  `finetune(...)`, `dpo(...)`, ...) is left out, so the block makes it.
- shell lines: bash expands each line's words; `kerasllm ...` then runs
  `kerasllm.cli.main` in this process (a TensorFlow start-up per command would
  cost ~10 s each), `python SCRIPT ...` runs the script with `runpy`, anything
  else runs in bash. A non-zero exit fails the test. `kerasllm serve` starts a
  server that runs until stopped: its arguments are parsed and checked against
  the parser, not served.
- Python blocks run with `exec` in a fresh namespace; a REPL-style last
  expression is evaluated and its repr kept (for an `output` block).
- `TEST_SETTINGS` below makes the training commands small for the test run
  only; the pages keep telling users the real numbers.
- The blocks that need the trained models are marked slow: `make test` (and
  so CI) runs them; `pytest -m "not slow"` leaves them out.

Markers: an HTML comment on the line directly before the opening fence.
    <!-- docs-test: skip (needs a GPU) -->          also (needs a container
        engine), (needs another machine), (runs for hours), (needs a running
        server): the item is reported as skipped with that reason.
    <!-- docs-test: slow -->                        the item is marked slow
        (every block that needs the session's trained models is slow anyway).
    <!-- docs-test: continues -->                   a Python block that goes on
        from the page's previous block of its language (a Python namespace, or
        the files a shell block made): the chain runs in one workspace.
    <!-- docs-test: setup NAME -->                  a Python block that assumes
        variables the page describes in prose; `SETUPS` below defines them.
    <!-- docs-test: output -->                      an unlabelled block showing
        what the previous block prints (or the repr of its last expression):
        the test of that block compares, line by line, ignoring trailing spaces.
    <!-- docs-test: output of COMMAND -->           an excerpt of what COMMAND,
        a line of the previous block, prints: the lines shown must appear in
        its output, in order.
A block with lines starting `$ ` is a console transcript: the `$ ` lines run,
the other lines are compared with their output.
"""

import contextlib
import dataclasses
import io
import os
import pathlib
import re
import runpy
import shlex
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent

FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
SHELL = {"bash", "sh", "shell", "console"}

# What the test run changes in documented commands, and why: training for the
# documented number of steps on the full corpora takes minutes to hours, the
# test trains for a few steps on a few kilobytes. A key the command sets
# itself keeps the command's value (after NUMBER_REWRITES).
SMALL_TRAINING = {"steps": 2, "warmup_steps": 0, "log_every": 1, "checkpoint_every": 2}
TEST_SETTINGS = {
    "pretrain": {**SMALL_TRAINING, "eval_every": 2, "corpus": "small-corpus/", "batch_size": 2,
                 "vocab_size": 300, "eval_batches": 1},
    "finetune": {**SMALL_TRAINING, "eval_every": 2, "task_train": 8, "task_test": 2, "batch_size": 4,
                 "eval_batches": 1},
    "reward": {**SMALL_TRAINING, "batch_size": 2},
    "dpo": {**SMALL_TRAINING, "batch_size": 2},
    "grpo": {**SMALL_TRAINING, "group_size": 2, "prompts_per_step": 2, "max_new_tokens": 4,
             "eval_prompts": 2},
    "ppo": {**SMALL_TRAINING, "prompts_per_step": 2, "minibatch_size": 2, "ppo_epochs": 1,
            "max_new_tokens": 4, "eval_prompts": 2},
}
# Flags appended to commands that take them (unless the command gives them).
TEST_FLAGS = {
    ("evaluate-tasks",): ["--test", "2"],   # 2 test prompts per task, not 100
    ("tasks", "make"): ["--train", "20", "--test", "5"],
}
# Literal rewrites, applied to the block's text before it runs.
NUMBER_REWRITES = {
    "--set steps=2000": "--set steps=4",      # "trains longer" after a 2-step run
    "--vocab-size 16000": "--vocab-size 800",  # a few-kilobyte corpus has no 16k pieces
    "--split all --vocab-size 8000": "--split all --vocab-size 800",
    '{"steps": 200}': '{"steps": 2, **TEST_PRETRAIN}',
    '{"steps": 300}': '{"steps": 2, **TEST_FINETUNE}',
    '{"beta": 0.2}': '{"beta": 0.2, **TEST_DPO}',
    "make demo": "true  # the session's runs/demo/model stands in for make demo",
    "steps_per_epoch=1000, epochs=10": "steps_per_epoch=2, epochs=1",
    "keras_hub.models.GPT2Backbone(...)": "keras_hub.models.GPT2Backbone(vocabulary_size=300, "
    "num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64, max_sequence_length=64)",
}

# Variables a Python block assumes from the page's prose (marker `setup NAME`).
SETUPS = {
    # A model directory, its tokenizer, and a left-padded batch of prompts.
    "tiny-model": """
import keras, numpy as np, kerasllm
model = kerasllm.load("runs/tiny/model")
tokenizer = model.tokenizer
vocab_size = model.config.vocab_size
token_ids = np.array([[1, 1, 50, 51], [52, 53, 54, 55]], "int32")
padding_mask = token_ids != 1
ids, mask = token_ids, padding_mask
max_new_tokens = 4
""",
    # The models guide's imports and a short prompt.
    "models": """
import keras, keras_hub, numpy as np, kerasllm
from kerasllm.models import GPT, GPTConfig
prompt_ids = np.array([[5, 6, 7]], "int32")
""",
    # A compiled model and token caches of a train and a validation corpus.
    "lm-data": """
import kerasllm, kerasllm.data as data
model = kerasllm.load("runs/tiny/model")
model.compile(optimizer="adam", loss=kerasllm.training.LanguageModelLoss())
cache = data.TokenCache.get_or_build("small-corpus/", model.tokenizer, "cache/train", split="all")
val_cache = data.TokenCache.get_or_build("ja-val.txt", model.tokenizer, "cache/val", split="all")
""",
}


@dataclasses.dataclass
class Block:
    page: str            # path relative to the repository root
    index: int           # the fence's position in the page
    language: str        # "bash", "python" or "" (not a command)
    text: str
    markers: list
    others: list = dataclasses.field(default_factory=list)  # the same block elsewhere

    @property
    def id(self):
        return f"{self.page}#{self.index}"

    def marker(self, name):
        for marker in self.markers:
            if marker == name or marker.startswith(name + " "):
                return marker[len(name):].strip() or True
        return None


def pages():
    found = [ROOT / "README.md", ROOT / "README.ja.md"]
    found += sorted((ROOT / "docs").glob("*.md")) + sorted((ROOT / "docs" / "ja").glob("*.md"))
    return [p for p in found if p.exists()]


def page_blocks(path):
    text = path.read_text(encoding="utf-8")
    blocks = []
    for index, match in enumerate(FENCE.finditer(text)):
        before = text[: match.start()].rstrip("\n").splitlines()
        markers = []
        for line in reversed(before):
            found = MARKER.match(line.strip())
            if not found:
                break
            markers.insert(0, found.group(1))
        language = match.group(1).lower()
        language = "bash" if language in SHELL else "python" if language in {"python", "py"} else ""
        blocks.append(Block(str(path.relative_to(ROOT)), index, language, match.group(2), markers))
    return blocks


def normalized(block):
    lines = []
    for line in block.text.splitlines():
        stripped = line.split("  #")[0].rstrip() if block.language else line.rstrip()
        if stripped.strip() and not stripped.lstrip().startswith("#"):
            lines.append(stripped)
    return block.language, "\n".join(lines)


def all_blocks():
    """Runnable blocks, each distinct one once (English location first)."""
    seen = {}
    runnable = []
    for path in pages():
        blocks = page_blocks(path)
        for block in blocks:
            if block.language == "":
                continue
            key = normalized(block)
            if block.marker("continues"):
                key = (key, tuple(normalized(b) for b in chain_of(block, blocks)))
            shown = shown_outputs(block, blocks)
            if shown:
                key = (key, tuple(normalized(b) for b in shown))
            if key in seen:
                seen[key].others.append(block.id)
                continue
            seen[key] = block
            runnable.append(block)
    return runnable


def shown_outputs(block, blocks):
    """The `output` blocks right after `block`."""
    found = []
    for following in blocks[block.index + 1:]:
        if not following.marker("output"):
            break
        found.append(following)
    return found


def chain_of(block, blocks):
    """The blocks (of its language) that run before a `continues` block, in order."""
    chain = []
    current = block
    while current.marker("continues"):
        earlier = [b for b in blocks if b.index < current.index and b.language == current.language]
        assert earlier, f"{current.id}: marked {current.markers} but has no block before it"
        current = earlier[-1]
        chain.insert(0, current)
    return chain


# ---------------------------------------------------------------------------
# The world the docs assume, built once per session.


def _small_corpus(directory):
    """A few kilobytes of Python and Japanese text in several files."""
    from kerasllm.data import builtin_corpus

    directory.mkdir(parents=True)
    for i, document in enumerate(builtin_corpus("python-stdlib", split="val")):
        (directory / f"code{i}.txt").write_text(document[:3000], encoding="utf-8")
        if i == 5:
            break
    ja = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。\n" * 20
    for document in builtin_corpus("debian-doc-ja", split="val"):
        ja += document[:20000]
        break
    (directory / "ja.txt").write_text(ja, encoding="utf-8")


def _write_inputs(world):
    """The files the pages' commands read, under the names they use."""
    import gzip
    import json

    corpus = world / "small-corpus"
    code = "\n".join(p.read_text(encoding="utf-8") for p in sorted(corpus.glob("code*.txt")))
    ja = (corpus / "ja.txt").read_text(encoding="utf-8")
    (world / "ja.txt").write_text(ja * 3, encoding="utf-8")
    (world / "ja-val.txt").write_text(ja, encoding="utf-8")
    (world / "book.txt").write_text(ja.replace("\n", "\n\n"), encoding="utf-8")
    (world / "lines.txt").write_text("def f(x):\nreturn x\n", encoding="utf-8")
    (world / "my-words.txt").write_text("badword\n", encoding="utf-8")
    (world / "a.txt").write_text(code[:2000], encoding="utf-8")
    for folder in ("notes", "corpus", "my_code", "ja-corpus"):
        (world / folder).mkdir()
    (world / "notes" / "a.txt").write_text(code[:4000], encoding="utf-8")
    (world / "corpus" / "one.txt").write_text(code[:4000], encoding="utf-8")
    (world / "corpus" / "two.txt").write_text(ja * 2, encoding="utf-8")
    (world / "my_code" / "m.py").write_text(code[:4000], encoding="utf-8")
    (world / "ja-corpus" / "ja.txt").write_text(ja * 3, encoding="utf-8")
    records = [json.dumps({"body": text}, ensure_ascii=False) + "\n" for text in (code[:3000], ja)]
    (world / "dump.jsonl").write_text("".join(records), encoding="utf-8")
    with gzip.open(world / "dump.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(r.replace('"body"', '"text"') for r in records)
    (world / "logs" / "day").mkdir(parents=True)
    with gzip.open(world / "logs" / "day" / "x.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "hello from a log"}) + "\n")
    (world / "pages.jsonl").write_text(
        json.dumps({"text": "<p>吾輩は<b>猫</b>である。</p>"}, ensure_ascii=False) + "\n", encoding="utf-8")
    from kerasllm.serving.feedback_store import FeedbackStore

    store = FeedbackStore(str(world / "feedback.sqlite"))   # what a served model's users rated
    for id, prompt, completion in (("cmpl-0123abcd", "def main", "():"),
                                   ("chatcmpl-4567ef", "日本の首都は？", "大阪")):
        store.record_completion(id, 0, model="tiny", version="1", endpoint="completions",
                                prompt=prompt, completion=completion, finish_reason="stop", params={})
    store.add_feedback("cmpl-0123abcd", rating=1)
    store.add_feedback("chatcmpl-4567ef", preferred="東京です。")
    (world / "data").mkdir()
    for name, first in (("train", 0), ("test", 5)):
        rows = [{"messages": [{"role": "user", "content": f"{a}+{a}="},
                              {"role": "assistant", "content": str(2 * a)}]} for a in range(first, first + 5)]
        (world / "data" / f"{name}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (world / "site").mkdir()
    (world / "site" / "index.html").write_text(
        "<html><body><p>" + ja.replace("\n", "</p><p>") + "</p></body></html>", encoding="utf-8")


def _cli(*argv):
    from kerasllm.cli import main

    code = main(list(argv))
    assert not code, f"kerasllm {' '.join(argv)} exited with {code}"


def _set(settings):
    return [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="session")
def docs_inputs(tmp_path_factory):
    """The small input files every block's workspace starts with."""
    inputs = tmp_path_factory.mktemp("docs-inputs")
    _small_corpus(inputs / "small-corpus")
    _write_inputs(inputs)
    for name in ("tiny", "tiny-ja", "baby", "gpt2-124m"):   # a user's own copy of a config
        shutil.copy(ROOT / "recipes" / "configs" / "pretrain" / f"{name}.yaml", inputs)
    return inputs


@pytest.fixture(scope="session")
def docs_world(docs_inputs, tmp_path_factory):
    """The trained models every slow block's workspace is copied from."""
    world = tmp_path_factory.mktemp("docs-world")
    shutil.copytree(docs_inputs / "small-corpus", world / "small-corpus")
    previous = os.getcwd()
    os.chdir(world)
    os.symlink(ROOT / "recipes", world / "recipes")
    try:
        _cli("pretrain", "--config", "recipes/configs/pretrain/tiny.yaml", "--output", "runs/tiny",
             *_set(TEST_SETTINGS["pretrain"]), "--set", "model.num_layers=2")
        for copy in ("runs/demo", "runs/sft", "runs/tiny-ja"):
            shutil.copytree("runs/tiny", copy)
        _cli("tasks", "make", "--preferences", "--output", "data/tasks", "--train", "20", "--test", "5")
        _cli("finetune", "--config", "recipes/configs/finetune/lora.yaml", "--output", "runs/lora",
             *_set(TEST_SETTINGS["finetune"]))
        _cli("reward", "--config", "recipes/configs/alignment/reward.yaml", "--output", "runs/rm",
             *_set(TEST_SETTINGS["reward"]))
        _cli("export", "--model", "runs/tiny", "--format", "saved_model", "--name", "tiny")
        _cli("export", "--model", "runs/tiny", "--format", "tflite", "--output", "exports/tiny-int8",
             "--quantize", "int8")
        shutil.copytree("runs/tiny/tokenizer", "tokenizer")
    finally:
        os.chdir(previous)
    os.unlink(world / "recipes")
    shutil.rmtree(world / "small-corpus")
    return world


# ---------------------------------------------------------------------------
# Running a block.


def written_paths(text):
    """Paths the block writes itself (its world copies are left out)."""
    found = re.findall(r"--output[ =]['\"]?([\w./-]+)", text)
    found += [f"saved_models/{name}" for name in re.findall(r"export .*--name (\w+)", text)]
    found += re.findall(r"output_dir=['\"]([\w./-]+)", text)
    found += re.findall(r"\b(?:pretrain|finetune|dpo|reward|grpo|ppo)\(\s*['\"][^'\"]*['\"],\s*['\"]([\w./-]+)",
                        text)
    found += re.findall(r"\bexport_tflite\(\s*\w+,\s*['\"]([\w./-]+)", text)
    return [p.rstrip("/") for p in found]


def prepare_workspace(workspace, inputs, world, text):
    os.symlink(ROOT / "recipes", workspace / "recipes")
    # A copy: a benchmark writes its results beside its code, never into the repository.
    shutil.copytree(ROOT / "benchmarks", workspace / "benchmarks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    written = written_paths(text)
    entries = []
    for root in (inputs, world) if world is not None else (inputs,):
        for top in root.iterdir():
            if top.name in ("runs", "data") and top.is_dir():
                entries += [(child, f"{top.name}/{child.name}") for child in top.iterdir()]
            else:
                entries.append((top, top.name))
    for entry, relative in entries:
        if any(w == relative or relative.startswith(w + "/") for w in written):
            continue
        target = workspace / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if entry.is_dir() else shutil.copy)(entry, target)
        for w in written:   # a path written inside a copied run (runs/lora/merged): the block makes it
            if w.startswith(relative + "/") and (workspace / w).exists():
                inner = workspace / w
                shutil.rmtree(inner) if inner.is_dir() else inner.unlink()


def rewrite(text):
    for old, new in NUMBER_REWRITES.items():
        text = text.replace(old, new)
    return text


def shell_commands(text):
    """The block's commands, continuation lines joined, comment lines dropped."""
    commands, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        commands.append(current + line)
        current = ""
    return commands


def expand(command, env):
    """The command's words after bash's quoting, expansion and comments."""
    result = subprocess.run(["bash", "-c", "printf '%s\\0' " + command], capture_output=True,
                            text=True, env=env, check=True)
    return result.stdout.split("\0")[:-1]


def with_test_settings(words):
    """`words` with TEST_SETTINGS / TEST_FLAGS added where the command lacks them."""
    command = words[1] if words[0] == "kerasllm" else None
    if words[0] == "python" and len(words) > 1 and words[1].startswith("recipes/"):
        command = pathlib.Path(words[1]).stem
    extra = []
    settings = TEST_SETTINGS.get(command, {})
    given = set()
    for i, word in enumerate(words[:-1]):
        if word == "--set":
            given.add(words[i + 1].split("=")[0])
    extra += _set({k: v for k, v in settings.items() if k not in given})
    for prefix, flags in TEST_FLAGS.items():
        if tuple(words[1:1 + len(prefix)]) == prefix:
            for flag, value in zip(flags[::2], flags[1::2]):
                if flag not in words:
                    extra += [flag, value]
    return words + extra


def run_kerasllm(args, out):
    from kerasllm.cli import build_parser, main

    if args and args[0] == "serve":
        parsed = build_parser().parse_args(args)  # a server runs until stopped: parse only
        assert parsed.func, args
        return 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return main(args) or 0
        except SystemExit as error:
            return error.code or 0


def run_shell_block(text, out, outputs=None):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for command in shell_commands(text):
        start = len(out.getvalue())
        words = expand(command, env)
        if not words or words[0] == "true":
            continue
        extra_env = {}
        while words and re.match(r"^[A-Z_]+=", words[0]):
            key, value = words.pop(0).split("=", 1)
            extra_env[key] = value
        if words[0] in ("kerasllm", "python") and not extra_env:
            words = with_test_settings(words)
        if words[0] == "kerasllm":
            code = run_kerasllm(words[1:], out)
        elif words[0] == "python" and words[1].endswith(".py"):
            saved = sys.argv
            sys.argv = words[1:]
            try:
                with contextlib.redirect_stdout(out):
                    runpy.run_path(words[1], run_name="__main__")
                code = 0
            except SystemExit as error:
                code = error.code or 0
            finally:
                sys.argv = saved
        else:
            result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                    env={**env, **extra_env})
            out.write(result.stdout)
            code = result.returncode
            if code:
                out.write(result.stderr)
        assert code == 0, f"`{command}` exited with {code}:\n{out.getvalue()[-3000:]}"
        if outputs is not None:
            outputs[" ".join(shlex.split(command, comments=True))] = out.getvalue()[start:]


def run_python_block(text, namespace, out):
    """Runs `text`; returns the repr of a last bare expression (REPL-style) or None."""
    import ast

    tree = ast.parse(text)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    with contextlib.redirect_stdout(out):
        exec(compile(tree, "<docs>", "exec"), namespace)
        if last is not None:
            value = eval(compile(last, "<docs>", "eval"), namespace)
            return None if value is None else repr(value)
    return None


def run_block(block, blocks_of_page, out, outputs):
    """Runs the block (and the chain before it); returns what it showed."""
    namespace = {"__name__": "__docs__", **TEST_NAMESPACE}
    shown = None
    for step in chain_of(block, blocks_of_page) + [block]:
        text = rewrite(step.text)
        if step.language == "bash":
            run_shell_block(text, out, outputs)
            continue
        setup = step.marker("setup")
        if setup:
            assert setup in SETUPS, f"{step.id}: unknown setup {setup!r}; known: {sorted(SETUPS)}"
            exec(SETUPS[setup], namespace)
        shown = run_python_block(text, namespace, out)
    return shown


TEST_NAMESPACE = {
    "TEST_PRETRAIN": {k: v for k, v in TEST_SETTINGS["pretrain"].items() if k != "steps"},
    "TEST_FINETUNE": {k: v for k, v in TEST_SETTINGS["finetune"].items() if k != "steps"},
    "TEST_DPO": TEST_SETTINGS["dpo"],
}


# ---------------------------------------------------------------------------
# The test items.


def needs_world(block, blocks_of_page):
    texts = [b.text for b in chain_of(block, blocks_of_page)] + [block.text]
    joined = "\n".join(texts)
    return bool(re.search(r"runs/|saved_models|kerasllm (pretrain|finetune|reward|dpo|grpo|ppo|"
                          r"evaluate|generate|export|lora|route|serve)|recipes/|data/tasks|"
                          r"tokenizer/|exports/|Constellation", joined)) or any(
                              b.marker("setup") for b in chain_of(block, blocks_of_page) + [block])


def params():
    by_page = {}
    items = []
    for block in all_blocks():
        blocks = by_page.setdefault(block.page, page_blocks(ROOT / block.page))
        marks = []
        skip = block.marker("skip")
        if skip:
            marks.append(pytest.mark.skip(reason=f"{block.id}: {skip.strip('()')}"))
        elif any(b.marker("slow") for b in chain_of(block, blocks) + [block]) or needs_world(block, blocks):
            marks.append(pytest.mark.slow)
        items.append(pytest.param(block, id=block.id, marks=marks))
    return items


@pytest.mark.parametrize("block", params())
def test_documented_block_runs(block, tmp_path, monkeypatch, request):
    blocks = page_blocks(ROOT / block.page)
    world = request.getfixturevalue("docs_world") if needs_world(block, blocks) else None
    texts = "\n".join(b.text for b in chain_of(block, blocks) + [block])
    prepare_workspace(tmp_path, request.getfixturevalue("docs_inputs"), world, texts)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    out = io.StringIO()
    if block.language == "bash" and any(line.startswith("$ ") for line in block.text.splitlines()):
        check_transcript(block, out)
        return
    outputs = {}
    shown = run_block(block, blocks, out, outputs)
    for output in shown_outputs(block, blocks):
        lines = lambda text: [line.rstrip() for line in text.strip("\n").splitlines() if line.strip()]
        expected = lines(output.text)
        command = output.marker("output")
        if command is True:
            actual = lines(shown if shown is not None else out.getvalue())
            assert actual == expected, f"{output.id} is not what {block.id} shows"
        else:
            command = command.removeprefix("of").strip()
            assert command in outputs, f"{output.id}: `{command}` is not run by {block.id}"
            actual = lines(outputs[command])
            rest = iter(actual)
            missing = [line for line in expected if line not in rest]
            assert not missing, (f"{output.id}: `{command}` no longer prints {missing}; it printed\n"
                                 + "\n".join(actual))


def check_transcript(block, out):
    lines = block.text.strip("\n").splitlines()
    commands = [i for i, line in enumerate(lines) if line.startswith("$ ")]
    for n, i in enumerate(commands):
        end = commands[n + 1] if n + 1 < len(commands) else len(lines)
        out.seek(0)
        out.truncate()
        run_shell_block(rewrite(lines[i][2:]), out)
        expected = [line.rstrip() for line in lines[i + 1:end]]
        actual = [line.rstrip() for line in out.getvalue().strip("\n").splitlines()]
        assert actual == expected, f"{block.id}: `{lines[i]}` printed something else"


def test_every_marker_is_known():
    known = {"skip", "slow", "continues", "setup", "output"}
    for path in pages():
        for block in page_blocks(path):
            for marker in block.markers:
                assert marker.split()[0] in known, f"{block.id}: unknown docs-test marker {marker!r}"
                if marker.startswith("skip"):
                    assert re.fullmatch(r"skip \(.+\)", marker), (
                        f"{block.id}: a skip names its reason in parentheses: {marker!r}")
