"""The whole life of a model in one command, on the tiny config: raw text to a
served model that improves from its users' feedback.

Usage:
    python recipes/lifecycle.py --output runs/lifecycle             # ~10 min on an idle 2-core CPU
    python recipes/lifecycle.py --output runs/lifecycle --skip-existing   # reuse finished stages
    python recipes/lifecycle.py --output runs/small --scale 0.01    # every stage, minimal steps

Each stage prints its Japanese and English name (the words of docs/stages.md),
the `kerasllm` command a user would type for it, and its figures. Each calls
the public function that command calls:

    生データの収集    corpus          kerasllm.data.corpus_documents, corpus_statistics
    前処理            cleaning        kerasllm.data.clean_documents (one JSONL per split)
    トークン化        tokenizer       kerasllm.tokenizers.train_tokenizer
    エンコーディング  encoding        kerasllm.data.TokenCache.get_or_build
    事前学習          pretraining     kerasllm.training.pretrain (reuses the tokenizer and caches)
    評価              evaluation      kerasllm.training.evaluate
    ファインチューニング  SFT, LoRA   kerasllm.finetune.finetune (tasks: kerasllm.tasks)
    報酬モデル        reward model    kerasllm.alignment.reward
    ポリシー最適化    PPO, DPO        kerasllm.alignment.ppo, kerasllm.alignment.dpo
    AIコンステレーション  constellation  kerasllm.constellation.Constellation
    生成手法          generation      kerasllm.generation.complete (greedy, beam, top-p)
    保存と展開        export          kerasllm.export.export_saved_model, export_tflite
    サービング → フィードバックと改善   recipes/feedback_loop.py run_feedback_loop:
                      `kerasllm serve`, ratings over HTTP, `kerasllm feedback export`,
                      DPO, version N+1 swapped in under load

Outputs in --output: one directory per stage, lifecycle.json (every stage's
command, figures, outputs and seconds, rewritten after each stage) and the
SavedModels under --export-dir (default OUTPUT/saved_models).
"""

import argparse
import importlib.util
import json
import os
import pathlib
import shutil
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "configs"
CORPUS = "python-stdlib"
SPLITS = ("train", "val", "test")

# Every option, its default and its --help text. Step counts are multiplied by --scale.
OPTIONS = {
    "scale": (1.0, "Multiply every step count (and, below 1, the corpus) by this; 0.01 runs each stage minimally."),
    "export_dir": (None, "Where the SavedModels go (default OUTPUT/saved_models)."),
    "name": ("lifecycle", "The exported model's name: EXPORT_DIR/NAME/1/; the feedback loop serves NAME-loop."),
    "tasks": (None, "Task-suite tasks of fine-tuning, alignment and feedback (default: the feedback loop's)."),
    "pretrain_steps": (1000, "Pretraining steps of the tiny config (batch 16 x 128 tokens)."),
    "sft_steps": (300, "SFT steps (batch 32)."),
    "lora_steps": (300, "LoRA steps (batch 32)."),
    "task_examples": (2000, "Fine-tuning examples (and preference pairs) per task."),
    "reward_steps": (100, "Reward-model steps (batch 16 pairs)."),
    "ppo_steps": (15, "PPO rollouts (16 prompts each)."),
    "dpo_steps": (60, "DPO steps (batch 8 pairs)."),
    "eval_prompts": (100, "Held-out task prompts per task for accuracies."),
    "loop_dpo_steps": (40, "The feedback loop's DPO steps."),
    "loop_feedback_prompts": (100, "Prompts per task the users ask version N."),
    "seed": (0, "Seed of every run."),
}

STAGES = [
    ("corpus", "生データの収集", "raw data collection"),
    ("cleaning", "前処理", "preprocessing"),
    ("tokenizer", "トークン化", "tokenization"),
    ("encoding", "エンコーディング", "encoding"),
    ("pretraining", "事前学習", "pretraining"),
    ("evaluation", "評価", "evaluation"),
    ("sft", "ファインチューニング (SFT)", "fine-tuning (SFT)"),
    ("lora", "ファインチューニング (LoRA)", "fine-tuning (LoRA)"),
    ("reward", "報酬モデル", "reward model"),
    ("ppo", "ポリシー最適化 (PPO)", "policy optimization (PPO)"),
    ("dpo", "ポリシー最適化 (DPO)", "policy optimization (DPO)"),
    ("constellation", "AIコンステレーション", "AI constellation"),
    ("generation", "生成手法", "generation methods"),
    ("export", "保存と展開", "saving and deployment"),
    ("serving", "サービング", "serving"),
    ("feedback", "フィードバックと改善 (フィードバック)", "feedback and improvement: feedback"),
    ("next_version", "フィードバックと改善 (次のバージョン)", "feedback and improvement: next version"),
]

LOOP_STAGES = ("serving", "feedback", "next_version")

# Prompts the pretrained (Python) model continues; no trailing spaces: BPE tokens carry their leading space.
CODE_PROMPTS = ["def", "import os\n\n\ndef", "class Parser:\n    def __init__(self", "    for i in"]


def feedback_loop_module():
    """recipes/feedback_loop.py, imported from its path (recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("feedback_loop", ROOT / "recipes" / "feedback_loop.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_lifecycle(output, *, log=print, skip_existing=False, **options):
    """Run every stage of the model's life; return the stage records.

    Args:
        output: the directory for every stage's outputs and `lifecycle.json`.
        log: called with each line to print. Defaults to `print`.
        skip_existing: reuse a stage finished by an earlier run with the same
            options (its record in `lifecycle.json`, its outputs present).
            Defaults to `False`.
        **options: the keys of `OPTIONS` (`python recipes/lifecycle.py --help`).

    Returns:
        `{"options", "stages": [{"key", "ja", "en", "command", "figures",
        "outputs", "seconds", "headline"}, ...], "total_seconds"}`, also
        written to `OUTPUT/lifecycle.json`.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown}; the options are {sorted(OPTIONS)}.")
    opts = {key: options.get(key, default) for key, (default, _) in OPTIONS.items()}
    if not opts["scale"] > 0:
        raise ValueError(f"scale must be > 0. Received: scale={opts['scale']}")
    import keras

    if keras.config.backend() != "tensorflow":
        raise ValueError("The lifecycle exports SavedModels, which needs the TensorFlow backend. "
                         f"Received: KERAS_BACKEND={keras.config.backend()!r}")
    from kerasllm.tasks import task_names

    loop = feedback_loop_module()
    opts["tasks"] = ",".join(task_names(opts["tasks"] or loop.OPTIONS["tasks"][0]))
    opts["export_dir"] = opts["export_dir"] or str(pathlib.Path(output) / "saved_models")
    life = _Lifecycle(pathlib.Path(output), opts, log, skip_existing, loop)
    for key, _, _ in STAGES:
        life.run(key)
    return life.finish()


class _Lifecycle:
    """The stages as methods; each returns (command, figures, outputs, headline)."""

    def __init__(self, output, opts, log, skip_existing, loop):
        self.out, self.opts, self.log, self.loop = output, opts, log, loop
        self.out.mkdir(parents=True, exist_ok=True)
        self.json_path = self.out / "lifecycle.json"
        self.started = time.perf_counter()
        self.records = {}
        previous = {}
        if skip_existing and self.json_path.is_file():
            saved = json.loads(self.json_path.read_text(encoding="utf-8"))
            if saved.get("options") == _comparable(opts):
                previous = {s["key"]: s for s in saved["stages"]}
            else:
                log(f"{self.json_path} was made with other options: every stage runs again.")
        self.previous = previous
        self.scale = opts["scale"]
        from kerasllm.training import PretrainConfig

        self.pretrain_config = PretrainConfig.from_yaml(CONFIGS / "pretrain" / "tiny.yaml")

    # ------------------------------------------------------------ machinery

    def steps(self, n, minimum=2):
        return max(minimum, round(n * self.scale))

    def count(self, n, minimum):
        return max(minimum, round(n * min(1.0, self.scale)))

    def path(self, *parts):
        return self.out.joinpath(*parts)

    def run(self, key):
        number = [k for k, _, _ in STAGES].index(key) + 1
        _, ja, en = STAGES[number - 1]
        self.log(f"\n=== {number}/{len(STAGES)} {ja} / {en} ===")
        old = self.previous.get(key)
        group = LOOP_STAGES if key in LOOP_STAGES else (key,)  # one call makes the loop's three stages
        if all(self.previous.get(k) and all(pathlib.Path(p).exists() for p in self.previous[k]["outputs"].values())
               for k in group):
            self.log(f"  $ {old['command']}\n  reused from {self.json_path} (--skip-existing): {old['headline']}")
            self.records[key] = {**old, "reused": True}
            return
        t0 = time.perf_counter()
        command, figures, outputs, headline = getattr(self, "_" + key)()
        seconds = round(time.perf_counter() - t0, 1)
        if key in LOOP_STAGES:
            seconds = figures.pop("_seconds")
        self.records[key] = {"key": key, "ja": ja, "en": en, "command": command, "figures": figures,
                             "outputs": {k: str(v) for k, v in outputs.items()}, "seconds": seconds,
                             "headline": headline}
        self.log(f"  -> {headline}  ({seconds:.0f} s)")
        self._write(complete=False)

    def show(self, command):
        self.log(f"  $ {command}")
        return command

    def _write(self, complete):
        from kerasllm.data.atomic import atomic_write_json

        document = {"options": _comparable(self.opts), "complete": complete,
                    "stages": [self.records[k] for k, _, _ in STAGES if k in self.records],
                    "total_seconds": round(time.perf_counter() - self.started, 1)}
        atomic_write_json(self.json_path, document)
        return document

    def finish(self):
        document = self._write(complete=True)
        _print_table(document, self.log)
        self.log(f"\nEvery figure: {self.json_path}")
        return document

    def quiet(self, function, *args, **kwargs):
        """Run a trainer with its progress lines indented under the stage."""
        from kerasllm.cli.quiet import plain_progress

        with plain_progress():
            return function(*args, **kwargs)

    # ------------------------------------------------------------ data

    def split_bytes(self):
        """Bytes read per split: all of it at scale 1, a prefix below."""
        return None if self.scale >= 1 else max(60_000, int(20_000_000 * self.scale))

    def documents(self, split):
        from kerasllm.data import corpus_documents

        limit, total = self.split_bytes(), 0
        for document in corpus_documents(CORPUS, split):
            if limit is not None and total >= limit:
                return
            total += len(document.encode("utf-8"))
            yield document

    def _corpus(self):
        from kerasllm.data import corpus_statistics

        command = self.show(f"kerasllm data stats --input {CORPUS} --split all")
        figures = {}
        for split in SPLITS:
            stats = corpus_statistics(self.documents(split))
            figures[split] = {k: stats[k] for k in ("documents", "bytes", "lines", "non_ascii_fraction")}
            self.log(f"  {split:<5} {stats['documents']:>5,} documents, {stats['bytes']:>11,} bytes, "
                     f"{stats['lines']:>9,} lines")
        figures["limit_bytes_per_split"] = self.split_bytes()
        total = {k: sum(figures[s][k] for s in SPLITS) for k in ("documents", "bytes")}
        figures.update(total)
        headline = f"{total['documents']:,} documents, {total['bytes'] / 1e6:.1f} MB of Python (90/5/5 by file)"
        return command, figures, {}, headline

    def _cleaning(self):
        from kerasllm.data import CleaningConfig, atomic_path, clean_documents

        directory = self.path("cleaning")
        directory.mkdir(exist_ok=True)
        command = self.show(f"kerasllm data clean --input {CORPUS} --split train --output {directory}/train.jsonl"
                            "   (and val, test)")
        figures, outputs = {}, {}
        for split in SPLITS:
            documents, report = clean_documents(self.documents(split), CleaningConfig(), stream=True)
            target = directory / f"{split}.jsonl"
            with atomic_path(target, overwrite=True) as tmp:
                with open(tmp, "w", encoding="utf-8") as f:
                    for document in documents:
                        f.write(json.dumps({"text": document}, ensure_ascii=False) + "\n")
            report.save(directory / f"{split}.report.json")
            removed = {s.name: s.removed for s in report.steps if s.removed}
            figures[split] = {"documents_in": report.documents_in, "documents_out": report.documents_out,
                              "chars_in": report.chars_in, "chars_out": report.chars_out, "removed": removed}
            outputs[split] = target
            self.log(f"  {split:<5} {report.documents_in:,} -> {report.documents_out:,} documents "
                     f"(removed: {', '.join(f'{k} {v}' for k, v in removed.items()) or 'none'})")
        kept = sum(figures[s]["documents_out"] for s in SPLITS)
        dropped = sum(figures[s]["documents_in"] for s in SPLITS) - kept
        figures.update(documents_kept=kept, documents_removed=dropped)
        return command, figures, outputs, f"{kept:,} documents kept, {dropped:,} removed (NFC, length, dedup)"

    def _tokenizer(self):
        from kerasllm.data import corpus_documents
        from kerasllm.tokenizers import train_tokenizer

        config = self.pretrain_config
        directory = self.path("tokenizer")
        train = self.path("cleaning", "train.jsonl")
        command = self.show(f"kerasllm tokenizer train --input {train} --vocab-size {config.vocab_size} "
                            f"--output {directory} --overwrite")
        limit, documents = config.tokenizer_train_bytes, []
        taken = 0
        for document in corpus_documents(str(train), "all"):
            if taken >= limit:
                break
            taken += len(document.encode("utf-8"))
            documents.append(document)
        tokenizer = train_tokenizer(documents, kind=config.tokenizer_kind, vocab_size=config.vocab_size,
                                    output_dir=directory, overwrite=True, show_progress=False)
        sample = "def 合計(xs):\n    return sum(xs)  # 🐍 naïve\n"
        ids = tokenizer.encode(sample)
        figures = {"kind": tokenizer.kind, "vocabulary_size": tokenizer.vocabulary_size,
                   "trained_on_bytes": taken, "special_tokens": list(tokenizer.special_tokens),
                   "sample_tokens": len(ids), "sample_bytes": len(sample.encode("utf-8")),
                   "round_trip": tokenizer.decode(ids) == sample}
        self.log(f"  {sample!r} -> {len(ids)} tokens {ids[:12]}..., decoded back unchanged: {figures['round_trip']}")
        headline = (f"byte-level BPE, {tokenizer.vocabulary_size:,} tokens, trained on {taken / 1e6:.1f} MB; "
                    f"decode(encode(x)) == x: {figures['round_trip']}")
        return command, figures, {"tokenizer": directory}, headline

    def pretrain_overrides(self):
        cleaned = self.path("cleaning")
        return {"corpus": str(cleaned / "train.jsonl"), "validation_corpus": str(cleaned / "val.jsonl"),
                "test_corpus": str(cleaned / "test.jsonl"), "tokenizer": str(self.path("tokenizer")),
                "cache_dir": str(self.path("cache"))}

    def _encoding(self):
        from kerasllm import tokenizers
        from kerasllm.data import TokenCache
        from kerasllm.training import PretrainConfig

        # The same splits and reader options pretraining reads, so it opens these caches.
        config = PretrainConfig.from_dict(self.pretrain_config.to_dict(), self.pretrain_overrides())
        tokenizer = tokenizers.load(self.path("tokenizer"))
        command = self.show(f"kerasllm data cache --input {config.corpus} --tokenizer {config.tokenizer} "
                            f"--output {config.cache_dir}/train   (and val)")
        figures, outputs = {}, {}
        for split in ("train", "val"):
            spec, corpus_split, reader_kwargs = config.corpus_split(split)
            cache = TokenCache.get_or_build(spec, tokenizer, self.path("cache", split), split=corpus_split,
                                            show_progress=False, **reader_kwargs)
            figures[split] = {"tokens": cache.num_tokens, "bytes": cache.num_bytes,
                              "bytes_per_token": round(cache.bytes_per_token, 3)}
            outputs[split] = self.path("cache", split)
            self.log(f"  {split:<5} {cache.num_tokens:>10,} tokens, {cache.bytes_per_token:.2f} bytes per token")
        headline = (f"{figures['train']['tokens']:,} train + {figures['val']['tokens']:,} val tokens, "
                    f"{figures['train']['bytes_per_token']:.2f} bytes/token (memory-mapped)")
        return command, figures, outputs, headline

    # ------------------------------------------------------------ training

    def _pretraining(self):
        from kerasllm.training import pretrain

        steps = self.steps(self.opts["pretrain_steps"])
        every = min(steps, 250)
        overrides = {**self.pretrain_overrides(), "steps": steps, "seed": self.opts["seed"],
                     "warmup_steps": min(self.pretrain_config.warmup_steps, steps),
                     "log_every": min(10, steps), "eval_every": every, "checkpoint_every": every,
                     "eval_batches": 10 if self.scale >= 1 else 1}
        sets = " ".join(f"--set {k}={v}" for k, v in overrides.items() if k in ("corpus", "tokenizer", "steps"))
        output = self.path("pretrain")
        command = self.show(f"kerasllm pretrain --config recipes/configs/pretrain/tiny.yaml {sets} ... "
                            f"--output {output} --overwrite")
        result = self.quiet(pretrain, str(CONFIGS / "pretrain" / "tiny.yaml"), output, overrides=overrides,
                            overwrite=True, verbose=2)
        validation = result["validation"]
        import kerasllm

        model = kerasllm.load(result["model_dir"])
        figures = {"parameters": model.count_params(), "steps": result["step"], "tokens": result["tokens"],
                   "val_loss": round(validation["loss"], 4), "val_bits_per_byte": round(validation["bits_per_byte"], 4),
                   "unigram_bits_per_byte": round(validation["unigram_bits_per_byte"], 4)}
        headline = (f"{figures['parameters']:,} parameters, {result['step']} steps, {result['tokens']:,} tokens; "
                    f"val loss {validation['loss']:.3f}, {validation['bits_per_byte']:.3f} bits/byte")
        return command, figures, {"model": result["model_dir"], "log": output / "log.csv",
                                  "loss_curve": output / "loss.png"}, headline

    def pretrained(self):
        return self.path("pretrain", "model")

    def _evaluation(self):
        from kerasllm.training import evaluate

        model_dir = self.pretrained()
        command = self.show(f"kerasllm evaluate --model {model_dir} --split test --json")
        metrics = evaluate(str(model_dir), split="test", batch_size=16)
        figures = {k: round(float(metrics[k]), 4) for k in
                   ("loss", "perplexity", "bits_per_byte", "unigram_bits_per_byte")}
        figures["tokens"] = metrics["num_tokens"]
        figures["share_of_unigram"] = round(metrics["bits_per_byte"] / metrics["unigram_bits_per_byte"], 3)
        path = self.path("evaluation.json")
        from kerasllm.data.atomic import atomic_write_json

        atomic_write_json(path, metrics)
        headline = (f"test: perplexity {figures['perplexity']:.1f}, {figures['bits_per_byte']:.3f} bits/byte "
                    f"= {figures['share_of_unigram']:.0%} of the unigram baseline's")
        return command, figures, {"metrics": path}, headline

    def finetune_overrides(self, steps):
        return {"base": str(self.pretrained()), "tasks": self.opts["tasks"].split(","),
                "task_train": self.count(self.opts["task_examples"], 64),
                "task_test": self.count(self.opts["eval_prompts"], 8), "task_seed": 0,
                "batch_size": 32, "steps": steps, "warmup_steps": min(20, steps),
                "log_every": min(50, steps), "eval_every": steps, "eval_batches": 1,
                "checkpoint_every": steps, "seed": self.opts["seed"]}

    def _sft(self):
        result, command = self.finetune_stage("sft")
        return command, *self.finetune_figures(result, {"model": result["model_dir"]})

    def _lora(self):
        result, command = self.finetune_stage("lora")
        return command, *self.finetune_figures(result, {"adapter": result["adapter_dir"]})

    def finetune_stage(self, recipe):
        """`kerasllm finetune` with `recipes/configs/finetune/RECIPE.yaml`: `(result, command)`."""
        from kerasllm.finetune import finetune

        steps = self.steps(self.opts[f"{recipe}_steps"])
        output = self.path(recipe)
        command = self.show(f"kerasllm finetune --config recipes/configs/finetune/{recipe}.yaml --set base={self.pretrained()} "
                            f"--set tasks={self.opts['tasks']} --set steps={steps} --output {output} --overwrite")
        result = self.quiet(finetune, str(CONFIGS / "finetune" / f"{recipe}.yaml"), output,
                            overrides=self.finetune_overrides(steps), overwrite=True, verbose=0)
        return result, command

    def finetune_figures(self, result, outputs):
        trainable = result["trainable"]
        accuracy = result["tasks"]
        figures = {"method": result["method"], "steps": result["step"], "examples": result["data"]["examples"],
                   "trainable_parameters": trainable["trainable"], "trainable_fraction": round(trainable["fraction"], 4),
                   "task_accuracy": round(accuracy["mean_accuracy"], 4),
                   "task_accuracy_per_task": {k: v["accuracy"] for k, v in accuracy["tasks"].items()}}
        headline = (f"{result['step']} steps, {trainable['fraction']:.1%} of the weights trained; held-out task "
                    f"accuracy {accuracy['mean_accuracy']:.1%} (" +
                    ", ".join(f"{k} {v['accuracy']:.0%}" for k, v in accuracy["tasks"].items()) + ")")
        return figures, outputs, headline

    def sft_model(self):
        return self.path("sft", "model")

    def preferences(self):
        """Preference pairs of the task suite: a right answer chosen, a plausible mistake rejected."""
        from kerasllm.tasks import make_task_files

        made = make_task_files(self.path("tasks"), self.opts["tasks"],
                               train=self.count(self.opts["task_examples"], 64),
                               test=self.count(self.opts["eval_prompts"], 8), seed=0, preferences=True)
        return made["files"]["preferences"], made["counts"]["preferences"]

    def _reward(self):
        from kerasllm.alignment import reward

        steps = self.steps(self.opts["reward_steps"])
        output = self.path("reward")
        data = self.path("tasks", "preferences.jsonl")
        self.show(f"kerasllm tasks make --tasks {self.opts['tasks']} --preferences --output {self.path('tasks')}")
        command = self.show(f"kerasllm reward --config recipes/configs/alignment/reward.yaml --set base={self.sft_model()} "
                            f"--set data={data} --set steps={steps} --output {output} --overwrite")
        data, pairs = self.preferences()
        result = self.quiet(reward, str(CONFIGS / "alignment" / "reward.yaml"), output, verbose=0, overwrite=True,
                            overrides={"base": str(self.sft_model()), "data": str(data), "steps": steps,
                                       "warmup_steps": min(20, steps), "log_every": min(10, steps),
                                       "checkpoint_every": steps, "seed": self.opts["seed"]})
        before, after = _eval_pair(result)
        figures = {"steps": result["step"], "pairs": pairs,
                   "pairwise_accuracy_before": before.get("accuracy"), "pairwise_accuracy_after": after.get("accuracy"),
                   "margin_after": after.get("margin")}
        headline = (f"{result['step']} steps on {pairs:,} pairs; held-out pairwise accuracy "
                    f"{_pct(before.get('accuracy'))} -> {_pct(after.get('accuracy'))}")
        return command, figures, {"model": result["model_dir"], "preferences": data}, headline

    def task_accuracy(self, model_dir):
        from kerasllm.tasks import evaluate_tasks

        return round(evaluate_tasks(str(model_dir), self.opts["tasks"], test=self.count(self.opts["eval_prompts"], 8),
                                    format="messages")["mean_accuracy"], 4)

    def _ppo(self):
        from kerasllm.alignment import ppo

        steps = self.steps(self.opts["ppo_steps"])
        output = self.path("ppo")
        reward_model = self.path("reward", "model")
        command = self.show(f"kerasllm ppo --config recipes/configs/alignment/ppo.yaml --set base={self.sft_model()} "
                            f"--set reward_model={reward_model} --set data=tasks:{self.opts['tasks']} "
                            f"--set steps={steps} --output {output} --overwrite")
        result = self.quiet(ppo, str(CONFIGS / "alignment" / "ppo.yaml"), output, verbose=0, overwrite=True,
                            overrides={"base": str(self.sft_model()), "reward_model": str(reward_model),
                                       "data": f"tasks:{self.opts['tasks']}", "steps": steps,
                                       "warmup_steps": min(5, steps), "log_every": min(5, steps),
                                       "checkpoint_every": steps, "eval_prompts": self.count(64, 8),
                                       "seed": self.opts["seed"]})
        before, after = result["eval_reward_before"], result["eval_reward_after"]
        figures = {"rollouts": result["step"], "held_out_reward_before": before, "held_out_reward_after": after,
                   "kl": result["last"].get("kl"), "task_accuracy_sft": self.task_accuracy(self.sft_model()),
                   "task_accuracy": self.task_accuracy(result["model_dir"])}
        headline = (f"{result['step']} rollouts against the reward model; held-out reward {_num(before)} -> "
                    f"{_num(after)}; task accuracy {figures['task_accuracy_sft']:.1%} -> {figures['task_accuracy']:.1%}")
        return command, figures, {"model": result["model_dir"]}, headline

    def _dpo(self):
        from kerasllm.alignment import dpo

        steps = self.steps(self.opts["dpo_steps"])
        output = self.path("dpo")
        data = self.path("tasks", "preferences.jsonl")
        command = self.show(f"kerasllm dpo --config recipes/configs/alignment/dpo.yaml --set base={self.sft_model()} "
                            f"--set data={data} --set steps={steps} --output {output} --overwrite")
        result = self.quiet(dpo, str(CONFIGS / "alignment" / "dpo.yaml"), output, verbose=0, overwrite=True,
                            overrides={"base": str(self.sft_model()), "data": str(data), "steps": steps,
                                       "warmup_steps": min(10, steps), "log_every": min(10, steps),
                                       "checkpoint_every": steps, "seed": self.opts["seed"]})
        before, after = result["before"] or {}, result["after"] or {}
        sft_accuracy = self.previous_figure("ppo", "task_accuracy_sft") or self.task_accuracy(self.sft_model())
        figures = {"steps": result["step"], "pairs": result["pairs"].get("train"),
                   "reward_accuracy_before": before.get("rewards_accuracies"),
                   "reward_accuracy_after": after.get("rewards_accuracies"),
                   "margin_after": after.get("rewards_margins"), "task_accuracy_sft": sft_accuracy,
                   "task_accuracy": self.task_accuracy(result["model_dir"])}
        headline = (f"{result['step']} steps; held-out pairs ranked right {_pct(before.get('rewards_accuracies'))} -> "
                    f"{_pct(after.get('rewards_accuracies'))}; task accuracy {sft_accuracy:.1%} -> "
                    f"{figures['task_accuracy']:.1%}")
        return command, figures, {"model": result["model_dir"]}, headline

    def previous_figure(self, key, name):
        return (self.records.get(key) or {}).get("figures", {}).get(name)

    def aligned(self):
        """The model the later stages use: DPO's (its pairs are right/wrong by the verifier)."""
        return self.path("dpo", "model")

    # ------------------------------------------------------------ use

    def test_records(self, per_task):
        from kerasllm.tasks import make_split

        return make_split(self.opts["tasks"].split(","), train=0, test=per_task, seed=0)["test"]

    def _constellation(self):
        import yaml

        from kerasllm.constellation import Constellation
        from kerasllm.tasks import verify

        directory = self.path("constellation")
        directory.mkdir(exist_ok=True)
        config_path = directory / "constellation.yaml"
        config = {
            "members": {"code": {"model": str(self.pretrained())},
                        "tasks": {"model": str(self.aligned()), "chat": True}},
            "policy": {"type": "rules", "rules": [{"regex": r"^\s*(def|class|import|from|for)\b", "member": "code"}],
                       "default": "tasks"},
            "fallback": ["tasks"], "timeout": 600,
            "generation": {"max_new_tokens": 16, "strategy": "greedy"},
        }
        config_path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
        records = self.test_records(self.count(20, 4))
        prompts = CODE_PROMPTS + [r["messages"][0]["content"] for r in records]
        command = self.show(f"kerasllm route --config {config_path} --prompt {prompts[0]!r} "
                            f"--prompt {prompts[len(CODE_PROMPTS)]!r} ...")
        answers = Constellation.from_yaml(config_path).answer(prompts)
        routed = {}
        for answer in answers:
            routed[answer.member] = routed.get(answer.member, 0) + 1
        task_answers = answers[len(CODE_PROMPTS):]
        right = sum(verify(r, a.text or "") for r, a in zip(records, task_answers))
        code_right = sum(a.member == "code" for a in answers[:len(CODE_PROMPTS)])
        tasks_right = sum(a.member == "tasks" for a in task_answers)
        failures = sum(len(a.failures) for a in answers)
        path = directory / "answers.json"
        from kerasllm.data.atomic import atomic_write_json

        atomic_write_json(path, [a.to_dict() for a in answers])
        for answer in answers[:2] + task_answers[:2]:
            self.log(f"  {answer.prompt[:40]!r:<44} -> {answer.member or '-':<5} {(answer.text or '')[:40]!r}")
        figures = {"prompts": len(prompts), "routed": routed,
                   "routed_as_expected": code_right + tasks_right, "failures": failures,
                   "task_accuracy_through_router": round(right / len(records), 4)}
        headline = (f"{len(prompts)} prompts: " + ", ".join(f"{v} to {k}" for k, v in sorted(routed.items()))
                    + f" ({code_right + tasks_right}/{len(prompts)} where the rules say); task answers right "
                    f"{right}/{len(records)}; {failures} failures")
        return command, figures, {"config": config_path, "answers": path}, headline

    def _generation(self):
        import kerasllm
        from kerasllm.generation import complete
        from kerasllm.tasks import prompt_text, verify
        from kerasllm.tokenizers.chat_template import IM_END

        strategies = {
            "greedy": {"strategy": "greedy"},
            "beam": {"strategy": "beam", "num_beams": 4},
            "top_p": {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "seed": self.opts["seed"]},
        }
        aligned = kerasllm.load(self.aligned())
        records = self.test_records(self.count(self.opts["eval_prompts"], 8) // 2)
        prompts = [prompt_text(r, "messages") for r in records]
        end = aligned.tokenizer.token_to_id(IM_END)
        question = records[0]["messages"][0]["content"]
        command = self.show(f"kerasllm generate --model {self.aligned()} --chat --prompt {question!r} "
                            "--strategy greedy | beam --num-beams 4 | top_p --top-p 0.9 --temperature 0.8")
        figures, samples = {}, {}
        for name, options in strategies.items():
            complete(aligned, prompts, max_new_tokens=8, end_token_id=end, **options)  # compiles; timed below
            t0 = time.perf_counter()
            completions = complete(aligned, prompts, max_new_tokens=8, end_token_id=end, **options)
            seconds = time.perf_counter() - t0
            right = sum(verify(r, c.text) for r, c in zip(records, completions))
            tokens = sum(len(c.token_ids) for c in completions)
            figures[name] = {"task_accuracy": round(right / len(records), 4),
                             "tokens_per_second": round(tokens / seconds, 1)}
            self.log(f"  {name:<7} {right}/{len(records)} task answers right, {tokens / seconds:,.0f} tokens/s "
                     f"(batch of {len(prompts)})")
        code_model = kerasllm.load(self.pretrained())
        for name, options in strategies.items():
            completions = complete(code_model, CODE_PROMPTS[:2], max_new_tokens=32, **options)
            samples[name] = [c.prompt + c.text for c in completions]
        self.log(f"  pretrained model, top_p: {samples['top_p'][1][:70]!r}")
        path = self.path("generation.json")
        from kerasllm.data.atomic import atomic_write_json

        atomic_write_json(path, {"figures": figures, "code_samples": samples})
        headline = "task accuracy " + ", ".join(
            f"{k} {v['task_accuracy']:.0%} ({v['tokens_per_second']:,.0f} tok/s)" for k, v in figures.items())
        return command, figures, {"samples": path}, headline

    def _export(self):
        import kerasllm
        from kerasllm.export import export_saved_model, export_tflite, tflite_generate

        model = kerasllm.load(self.pretrained())
        name = self.opts["name"]
        tflite_dir = self.path("tflite")
        command = self.show(f"kerasllm export --model {self.aligned()} --format saved_model --output "
                            f"{self.opts['export_dir']} --name {name} --version 1 --overwrite && kerasllm export "
                            f"--model {self.pretrained()} --format tflite --output {tflite_dir} --overwrite")
        aligned = kerasllm.load(self.aligned())
        saved = export_saved_model(aligned, self.opts["export_dir"], name=name, version=1, overwrite=True)
        lite = export_tflite(model, tflite_dir, overwrite=True)
        prompt = CODE_PROMPTS[0]
        keras_text = model.generate(prompt, max_new_tokens=16, strategy="greedy")
        lite_text = tflite_generate(tflite_dir, prompt, max_new_tokens=16)
        figures = {"saved_model_bytes": _size(saved["path"]), "signatures": list(saved["signatures"]),
                   "saved_model_op_kinds": len(saved["ops"]), "tflite_bytes": lite["size_bytes"],
                   "tflite_op_kinds": len(lite["ops"]), "tflite_matches_keras_greedy": lite_text == keras_text}
        self.log(f"  greedy {prompt!r}: Keras {keras_text!r}, TFLite {lite_text!r}")
        headline = (f"SavedModel {figures['saved_model_bytes'] / 1e6:.1f} MB ({', '.join(saved['signatures'])}); "
                    f"TFLite {lite['size_bytes'] / 1e6:.1f} MB, greedy text equal to Keras: {lite_text == keras_text}")
        return command, figures, {"saved_model": saved["path"], "tflite": lite["path"]}, headline

    # ------------------------------------------------------------ the loop

    def _serving(self):
        """serving -> feedback -> next version: one call of the feedback loop, reported as three stages."""
        loop_name = f"{self.opts['name']}-loop"
        output = self.path("feedback_loop")
        export_dir = pathlib.Path(self.opts["export_dir"])
        stale = export_dir / loop_name
        if stale.is_dir() and _inside(stale, self.out):
            shutil.rmtree(stale)  # this run's versions start at 1
        command = self.show(f"kerasllm serve --model-base-path {export_dir / loop_name} --feedback-db "
                            f"{output / 'feedback.sqlite'}   (python recipes/feedback_loop.py --sft {self.aligned()} "
                            f"--output {output})")
        steps = {"dpo_steps": self.steps(self.opts["loop_dpo_steps"]),
                 "feedback_prompts": self.count(self.opts["loop_feedback_prompts"], 8),
                 "eval_prompts": self.count(self.opts["eval_prompts"], 6)}

        def indented(text):
            self.log("\n".join("  | " + line for line in text.split("\n")))

        summary = self.loop.run_feedback_loop(
            self.pretrained(), output, log=indented, sft=str(self.aligned()),
            name=loop_name, export_dir=str(export_dir), tasks=self.opts["tasks"], better_answers=True,
            seed=self.opts["seed"], **steps)
        self.loop_summary = summary
        seconds = summary["seconds"]
        loop_db = output / "feedback.sqlite"
        swap = summary["swap"]
        figures = {"requests_during_swap": swap["requests"],
                   "failed_requests_during_swap": summary["failed_requests_during_swap"],
                   "served_by_version": swap["served_by_version"],
                   "seconds_to_new_version": swap["seconds_to_new_version"],
                   "_seconds": round(seconds.get("export", 0) + seconds.get("serve", 0) + seconds.get("swap", 0), 1)}
        self.commands = {"feedback": f"kerasllm feedback export --db {loop_db} --output {summary['preferences']}",
                         "next_version": f"kerasllm dpo --set base={self.aligned()} --set data={summary['preferences']} "
                                         f"... && kerasllm feedback stats --db {loop_db}"}
        headline = (f"version {summary['version_before']} served, version {summary['version_after']} swapped in under "
                    f"load: {swap['requests']} requests, {summary['failed_requests_during_swap']} failed")
        outputs = {"saved_models": summary["export_base_path"], "server_log": output / "server.log"}
        return command, figures, outputs, headline

    def _feedback(self):
        summary, seconds = self.loop_summary, self.loop_summary["seconds"]
        command = self.show(self.commands["feedback"])
        stats = [s for s in summary["stats"] if int(s["version"]) == summary["version_before"]]
        rated = stats[0]["thumbs_up"] + stats[0]["thumbs_down"] if stats else None
        figures = {"answers_rated": rated, "rating_before": summary["rating_before"],
                   "pairs_exported": summary["pairs_exported"], "chosen_right": summary["pair_check"]["chosen_right"],
                   "_seconds": round(seconds.get("feedback", 0) + seconds.get("pairs", 0), 1)}
        headline = (f"users rated {rated} answers of version {summary['version_before']}: "
                    f"{_pct(summary['rating_before'])} thumbs up; "
                    f"{summary['pairs_exported']} preference pairs exported")
        return command, figures, {"feedback_db": self.path("feedback_loop", "feedback.sqlite"),
                                  "preferences": summary["preferences"]}, headline

    def _next_version(self):
        summary, seconds = self.loop_summary, self.loop_summary["seconds"]
        command = self.show(self.commands["next_version"])
        figures = {"version_before": summary["version_before"], "version_after": summary["version_after"],
                   "rating_before": summary["rating_before"], "rating_after": summary["rating_after"],
                   "accuracy_before": summary["accuracy_before"], "accuracy_after": summary["accuracy_after"],
                   "improved": summary.get("improved"),
                   "_seconds": round(sum(seconds.get(k, 0) for k in ("dpo", "feedback_after", "stats")), 1)}
        headline = (f"version {summary['version_before']} -> {summary['version_after']}: rating "
                    f"{_pct(summary['rating_before'])} -> {_pct(summary['rating_after'])}, held-out accuracy "
                    f"{_pct(summary['accuracy_before'])} -> {_pct(summary['accuracy_after'])}")
        return command, figures, {"model": summary["dpo"]["model_dir"],
                                  "summary": self.path("feedback_loop", "summary.json")}, headline


# ---------------------------------------------------------------- helpers


def _comparable(opts):
    return json.loads(json.dumps(opts))


def _eval_pair(result):
    """(before, after) held-out pairwise metrics of a reward-model run."""
    return result.get("eval_before") or {}, result.get("eval") or {}


def _pct(value):
    return "-" if value is None else f"{value:.1%}"


def _num(value):
    return "-" if value is None else f"{value:.3f}"


def _size(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def _inside(path, root):
    try:
        pathlib.Path(path).resolve().relative_to(pathlib.Path(root).resolve())
        return True
    except ValueError:
        return False


def _print_table(document, log):
    log("\n=== The life of the model: every stage ===")
    rows = [(f"{i}", s["ja"], s["en"], f"{s['seconds']:.0f}", s["headline"], ", ".join(s["outputs"].values()) or "-")
            for i, s in enumerate(document["stages"], 1)]
    for number, ja, en, seconds, headline, outputs in rows:
        log(f"{number:>2}. {ja} / {en}  [{seconds} s]\n      {headline}\n      -> {outputs}")
    reused = sum(bool(s.get("reused")) for s in document["stages"])
    stages = sum(s["seconds"] for s in document["stages"])
    log(f"\nstages {stages / 60:.1f} min in all; this run {document['total_seconds'] / 60:.1f} min"
        + (f" ({reused} stages reused from an earlier run)" if reused else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--output", default="runs/lifecycle", help="Output directory. Default runs/lifecycle.")
    parser.add_argument("--skip-existing", action="store_true",
                        help="Reuse the stages an earlier run with the same options finished (lifecycle.json).")
    for key, (default, text) in OPTIONS.items():
        kind = type(default) if default is not None else str
        parser.add_argument("--" + key.replace("_", "-"), type=kind, default=default, help=f"{text} Default {default}.")
    args = vars(parser.parse_args(argv))
    output, skip = args.pop("output"), args.pop("skip_existing")
    document = run_lifecycle(output, skip_existing=skip, **args)
    return 0 if len(document["stages"]) == len(STAGES) else 1


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"  # the SavedModel export traces TF graphs
    from kerasllm.cli.quiet import quiet_tensorflow_startup

    quiet_tensorflow_startup()  # no CUDA/oneDNN start-up notes between the stages
    sys.exit(main())
