"""The feedback loop, closed in one command: serve version N, collect feedback,
train on it with DPO, serve version N+1, and measure whether it is better.

Usage:
    python recipes/feedback_loop.py                           # runs/demo/model -> runs/feedback_loop
    python recipes/feedback_loop.py --sft runs/sft/model      # serve this SFT model as version N
    python recipes/feedback_loop.py --tasks larger --dpo-steps 80 --output runs/loop2

Each step is the public API or the `kerasllm` command it names:

    1. SFT           kerasllm.finetune.finetune: a short SFT on a few tasks of the
                     suite (version N: sometimes right, sometimes wrong)
    2. export        version N -> saved_models/NAME/N/: a copy of the model directory
                     (--version-format model_dir) or kerasllm.export.export_saved_model
                     (--version-format saved_model, TF Serving's layout)
    3. serve         `kerasllm serve --model-base-path saved_models/NAME --feedback-db ...`
                     (a subprocess on a free loopback port)
    4. feedback      simulated users over HTTP: POST /v1/chat/completions (n=2,
                     temperature 1), then POST /v1/feedback rating each answer
                     +1 when the task's verifier accepts it, -1 otherwise (and,
                     when both are wrong, the right answer as `preferred`)
    5. pairs         `kerasllm feedback export` -> preferences.jsonl
    6. rate N        the users rate version N on held-out prompts (the measure)
    7. DPO           kerasllm.alignment.dpo (`kerasllm dpo`) on the pairs
    8. swap          version N+1 written into saved_models/NAME/N+1/ while clients
                     keep sending requests; the server loads, warms up and swaps;
                     every failed request is counted
    9. rate N+1      the same users, prompts and seeds, answered by N+1
    10. stats        `kerasllm feedback stats` (rating per version), greedy task
                     accuracy of N and N+1 on the held-out prompts, and McNemar's
                     test of both differences

Outputs in --output: sft/, dpo/ (the runs), feedback.sqlite, preferences.jsonl,
server.log and summary.json (every figure printed). The exports go to
--export-dir/--name (default saved_models/feedback-loop/). Another script calls
`run_feedback_loop(base, output, **options)`, which returns the same figures.
"""

import argparse
import contextlib
import io
import itertools
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every option of `run_feedback_loop`, its default and its --help text.
OPTIONS = {
    "sft": (None, "An SFT model directory to serve as version N (skips the SFT step)."),
    "name": ("feedback-loop", "The served model name: EXPORT_DIR/NAME/VERSION/."),
    "export_dir": ("saved_models", "Where the versions are exported."),
    "version_format": ("model_dir", "What a version folder holds: saved_model (kerasllm export, "
                       "TF Serving's layout) or model_dir (a copy of the model directory: quicker)."),
    "tasks": ("larger,count", "Task-suite tasks the model is fine-tuned, asked and judged on."),
    "task_seed": (0, "Seed of the task split: held-out prompts are never trained on or rated for DPO."),
    "sft_steps": (300, "SFT steps (batch 32): short, so version N is often wrong."),
    "sft_examples": (2000, "SFT training examples per task."),
    "sft_learning_rate": (1e-3, "SFT learning rate."),
    "feedback_prompts": (300, "Prompts per task the users ask version N."),
    "eval_prompts": (100, "Held-out prompts per task: users ask version N+1; greedy accuracy of both."),
    "samples": (2, "Answers per prompt (the request's n): the user rates each."),
    "temperature": (1.0, "Sampling temperature of the users' requests."),
    "max_tokens": (8, "max_tokens of the users' requests."),
    "users": (4, "Simulated users sending requests at the same time."),
    "better_answers": (True, "When no answer is right, the user also writes the right one (preferred)."),
    "dpo_steps": (60, "DPO optimizer steps."),
    "dpo_batch_size": (16, "Preference pairs per DPO step."),
    "dpo_learning_rate": (1e-5, "DPO learning rate (gentle: stronger updates lowered the accuracy)."),
    "dpo_beta": (0.1, "DPO's beta."),
    "load_clients": (2, "Clients sending requests without pause through the version swap."),
    "swap_timeout": (600.0, "Seconds to wait for the server to serve version N+1."),
    "pretrain_steps": (None, "Pretraining steps when BASE is absent (default: the tiny config's)."),
    "seed": (0, "Seed of the users' sampling and of the runs."),
}

STEPS = [
    ("pretrain", "事前学習", "pretraining"),
    ("sft", "教師ありファインチューニング", "supervised fine-tuning (version N)"),
    ("export", "エクスポート", "export version N"),
    ("serve", "配信開始", "serve"),
    ("feedback", "ユーザーのフィードバック", "user feedback on version N"),
    ("pairs", "選好ペアの書き出し", "export preference pairs"),
    ("rate_before", "未学習プロンプトでの評価", "users rate version N on held-out prompts"),
    ("dpo", "直接選好最適化", "DPO (version N+1)"),
    ("swap", "無停止の切り替え", "export N+1 and swap under load"),
    ("feedback_after", "新バージョンへの評価", "users rate version N+1 on held-out prompts"),
    ("stats", "集計", "feedback stats and task accuracy"),
]


def run_feedback_loop(base, output, *, log=print, **options):
    """Serve version N, collect feedback, DPO, serve version N+1; return the figures.

    Args:
        base: a pretrained model directory (SFT starts from it; pretrained
            with the tiny config first if absent). Unused with `sft=`.
        output: the directory for the runs, the feedback database, the
            preference pairs, the server log and `summary.json`.
        log: called with each line to print. Defaults to `print`.
        **options: the keys of `OPTIONS` (`python recipes/feedback_loop.py --help`).

    Returns:
        A dict with at least `version_before`, `version_after`,
        `rating_before`, `rating_after` (share of the answers to the
        held-out prompts the users rated +1), `accuracy_before`,
        `accuracy_after` (greedy, held-out prompts),
        `failed_requests_during_swap` and `pairs_exported`; also
        `p_value_rating`, `p_value_accuracy` (McNemar), `stats` (`kerasllm
        feedback stats --json`), `swap`, `dpo` and the seconds per step.
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown}; the options are {sorted(OPTIONS)}.")
    opts = {key: options.get(key, default) for key, (default, _) in OPTIONS.items()}
    if opts["version_format"] not in ("saved_model", "model_dir"):
        raise ValueError(
            f"version_format must be saved_model or model_dir. Received: {opts['version_format']!r}")
    import keras

    if keras.config.backend() != "tensorflow":
        raise ValueError(
            "The feedback loop exports SavedModels, which needs the TensorFlow backend. "
            f"Received: KERAS_BACKEND={keras.config.backend()!r}"
        )
    from kerasllm.tasks import make_split, task_names

    started = time.perf_counter()
    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    tasks = task_names(opts["tasks"])
    split = make_split(tasks, train=opts["feedback_prompts"], test=opts["eval_prompts"],
                       seed=opts["task_seed"])
    summary = {"tasks": tasks, "options": opts, "output": str(output), "seconds": {}}
    clock = _Clock(summary["seconds"], log)

    # 1. Version N: an SFT model of the tasks.
    if opts["sft"]:
        sft_dir = pathlib.Path(opts["sft"])
        if not (sft_dir / "kerasllm.json").is_file():
            raise FileNotFoundError(f"sft must be a kerasllm model directory. Received: {sft_dir}")
        clock.step("sft", f"(given: {sft_dir})")
    else:
        base = pathlib.Path(base)
        if not (base / "kerasllm.json").is_file():
            clock.step("pretrain")
            _pretrain(base, opts["pretrain_steps"], log)
        clock.step("sft")
        sft_dir = _sft(base, output / "sft", tasks, opts, log)
    summary["sft_model"] = str(sft_dir)

    # 2. Export it as the newest version of the served model.
    clock.step("export")
    from kerasllm.export import next_version

    base_path = pathlib.Path(opts["export_dir"]) / opts["name"]
    version_before = next_version(base_path)
    path = _publish(sft_dir, base_path, version_before, opts["version_format"])
    log(f"  {path}  ({opts['version_format']}, version N = {version_before})")

    db = output / "feedback.sqlite"
    for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)  # this run's feedback only
    clock.step("serve")
    with _Server(base_path, opts["name"], db, output / "server.log") as server:
        log(f"  kerasllm serve on {server.url}, feedback in {db}  (log: {output / 'server.log'})")
        with server.client() as http:
            # 3. Users ask version N and rate its answers.
            clock.step("feedback")
            feedback = _users(http, opts["name"], split["train"], opts, seed=opts["seed"])
            _report_users(feedback, log)

            # 4. Their ratings become preference pairs.
            clock.step("pairs")
            pairs_path = output / "preferences.jsonl"
            exported_pairs = _cli_json(["feedback", "export", "--db", str(db), "--output",
                                        str(pairs_path), "--json"])["pairs"]
            log(f"  kerasllm feedback export: {exported_pairs} pairs -> {pairs_path}")
            if exported_pairs == 0:
                raise RuntimeError(
                    "No preference pairs: every prompt's answers were all right or all wrong. "
                    "Ask more prompts (feedback_prompts), more samples, or a higher temperature."
                )
            summary["pair_check"] = _check_pairs(pairs_path, split["train"])
            log(f"  chosen answers right: {summary['pair_check']['chosen_right']}/{exported_pairs}, "
                f"rejected answers wrong: {summary['pair_check']['rejected_wrong']}/{exported_pairs}")

            # The measure: users rate N on held-out prompts, after the pairs
            # were written (so nothing held out is trained on), as they will
            # rate N+1: same prompts, same seeds, no better answers.
            clock.step("rate_before")
            measure = {**opts, "better_answers": False}
            held_out_seed = opts["seed"] + 10**6
            before = _users(http, opts["name"], split["test"], measure, seed=held_out_seed)
            _report_users(before, log)

            # 5. DPO on the pairs gives version N+1.
            clock.step("dpo")
            dpo_result = _dpo(sft_dir, pairs_path, output / "dpo", opts, log)

            # 6. Export N+1 beside N while clients keep asking; count failures.
            clock.step("swap")
            swap = _swap(server, http, dpo_result["model_dir"], version_before + 1, split["test"], opts, log)

            # 7. Users ask version N+1 (held-out prompts).
            clock.step("feedback_after")
            after = _users(http, opts["name"], split["test"], measure, seed=held_out_seed)
            _report_users(after, log)

    # 8. What the feedback database and the verifier say.
    clock.step("stats")
    log("  kerasllm feedback stats:")
    for line in _cli_text(["feedback", "stats", "--db", str(db)]).splitlines():
        log(f"    {line}")
    stats = _cli_json(["feedback", "stats", "--db", str(db), "--json"])["models"]
    by_version = {int(r["version"]): r for r in stats if r["model"] == opts["name"]}
    from kerasllm.tasks import evaluate_tasks

    accuracy = {}
    for label, model_dir in (("before", sft_dir), ("after", dpo_result["model_dir"])):
        accuracy[label] = evaluate_tasks(model_dir, tasks, records=split["test"], format="messages",
                                         return_answers=True)
    clock.stop()

    version_after = version_before + 1
    summary.update(
        version_before=version_before,
        version_after=version_after,
        rating_before=_share(before, "correct"),
        rating_after=_share(after, "correct"),
        rating_feedback_round=_share(feedback, "correct"),
        approval_in_stats={str(v): by_version[v]["approval"] for v in sorted(by_version)},
        accuracy_before=accuracy["before"]["mean_accuracy"],
        accuracy_after=accuracy["after"]["mean_accuracy"],
        accuracy_per_task={t: {"before": accuracy["before"]["tasks"][t]["accuracy"],
                               "after": accuracy["after"]["tasks"][t]["accuracy"]} for t in tasks},
        served_versions_before=sorted({a["version"] for a in feedback + before}),
        served_versions_after=sorted({a["version"] for a in after}),
        stats=stats,
        pairs_exported=exported_pairs,
        preferences=str(pairs_path),
        dpo={k: dpo_result[k] for k in ("model_dir", "step", "pairs", "before", "after", "seconds")},
        swap=swap,
        failed_requests_during_swap=swap["failed"],
        export_base_path=str(base_path),
        total_seconds=round(time.perf_counter() - started, 1),
    )
    summary["improved"] = bool(
        summary["accuracy_after"] > summary["accuracy_before"]
        and (summary["rating_after"] or 0) > (summary["rating_before"] or 0)
    )
    # Both measures pair the same prompts (and, for the ratings, the same
    # seeds) across the versions: McNemar's exact test on the answers that changed.
    summary["p_value_rating"] = _mcnemar([a["correct"] for a in before], [a["correct"] for a in after])
    summary["p_value_accuracy"] = _mcnemar([a["correct"] for a in accuracy["before"]["answers"]],
                                           [a["correct"] for a in accuracy["after"]["answers"]])
    summary["significant"] = bool(summary["improved"] and max(
        summary["p_value_rating"], summary["p_value_accuracy"]) < 0.05)
    _print_table(summary, log)
    from kerasllm.data.atomic import atomic_write_json

    atomic_write_json(output / "summary.json", summary)
    log(f"\nsummary: {output / 'summary.json'}")
    return summary


# ---------------------------------------------------------------- training


def _pretrain(base, steps, log):
    from kerasllm.training import pretrain

    log(f"  {base} is absent: pretraining the tiny config into {base.parent}")
    overrides = {"steps": steps} if steps else None
    pretrain(str(ROOT / "recipes/configs/pretrain/tiny.yaml"), base.parent, overrides=overrides,
             overwrite=True, verbose=0)


def _sft(base, output, tasks, opts, log):
    from kerasllm.finetune import finetune

    steps = opts["sft_steps"]
    result = finetune({}, output, overwrite=True, verbose=0, overrides={
        "base": str(base), "tasks": tasks, "task_train": opts["sft_examples"],
        "task_test": opts["eval_prompts"], "task_seed": opts["task_seed"], "format": "messages",
        "batch_size": 32, "steps": steps, "learning_rate": opts["sft_learning_rate"],
        "warmup_steps": min(20, steps), "log_every": max(1, min(50, steps)),
        "eval_every": steps, "eval_batches": 1, "checkpoint_every": steps, "seed": opts["seed"],
    })
    log(f"  {steps} steps from {base} on {', '.join(tasks)}: {result['model_dir']}")
    return pathlib.Path(result["model_dir"])


def _dpo(sft_dir, pairs_path, output, opts, log):
    from kerasllm.alignment import dpo

    steps = opts["dpo_steps"]
    result = dpo({}, output, overwrite=True, verbose=0, overrides={
        "base": str(sft_dir), "data": str(pairs_path), "steps": steps,
        "batch_size": opts["dpo_batch_size"], "learning_rate": opts["dpo_learning_rate"],
        "warmup_steps": min(5, steps), "beta": opts["dpo_beta"], "max_length": 64,
        "eval_fraction": 0.1, "log_every": max(1, min(10, steps)), "checkpoint_every": steps,
        "seed": opts["seed"],
    })
    before, after = result["before"], result["after"]
    if after:
        log(f"  {result['step']} steps on {result['pairs']['train']} pairs; held-out pairs: reward "
            f"accuracy {before.get('rewards_accuracies', 0):.2f} -> {after['rewards_accuracies']:.2f}, "
            f"margin {after['rewards_margins']:.3f}")
    log(f"  {result['model_dir']}")
    return result


# ---------------------------------------------------------------- serving


def _publish(model_dir, base_path, version, version_format):
    """Write version `version` of the served model; the server sees it whole or not at all."""
    import shutil
    import uuid

    path = pathlib.Path(base_path) / str(version)
    if version_format == "saved_model":
        import kerasllm
        from kerasllm.export import export_saved_model

        export_saved_model(kerasllm.load(model_dir), base_path.parent, name=base_path.name,
                           version=version)
    elif version_format == "model_dir":
        if path.exists():
            raise FileExistsError(f"{path} already exists; versions are never replaced.")
        # A hidden staging folder (the server's scan skips it), renamed when complete.
        staging = path.with_name(f".{version}.tmp-{uuid.uuid4().hex[:8]}")
        shutil.copytree(model_dir, staging)
        os.replace(staging, path)
    else:
        raise ValueError(f"version_format must be saved_model or model_dir. Received: {version_format!r}")
    return path


class _Server:
    """`kerasllm serve` in a subprocess on a free loopback port, its log in a file."""

    def __init__(self, base_path, name, db, log_path, timeout=600):
        self.command = [
            sys.executable, "-m", "kerasllm.cli", "serve", "--model-base-path", str(base_path),
            "--model-name", name, "--rest-port", "0", "--grpc-port", "0", "--feedback-db", str(db),
            "--file-system-poll-wait-seconds", "0.5", "--shutdown-timeout", "5", "--no-jit-compile",
        ]
        self.base_path = pathlib.Path(base_path)
        self.log_path = pathlib.Path(log_path)
        self.timeout = timeout
        self.url = None
        self._ready = threading.Event()

    def __enter__(self):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.timeout
        while not self._ready.wait(0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                tail = self.log_path.read_text(encoding="utf-8")[-3000:]
                raise RuntimeError(f"kerasllm serve did not start ({' '.join(self.command)}):\n{tail}")
        return self

    def _read(self):
        for line in self.process.stderr:
            self._log.write(line)
            self._log.flush()
            found = re.search(r"REST on (http://\S+?):(\d+)", line)
            if found and not self._ready.is_set():
                self.url = f"{found.group(1)}:{found.group(2)}"
                self._ready.set()

    def client(self):
        import httpx

        # No retries anywhere: a failed request must be seen as failed.
        return httpx.Client(base_url=self.url, timeout=300)

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        self._log.close()


def _version_of(body):
    """The serving version from a response's `system_fingerprint` (`NAME-vVERSION`)."""
    return int(body["system_fingerprint"].rsplit("-v", 1)[1])


def _users(http, name, records, opts, *, seed):
    """Simulated users: ask each record's question, rate every answer by the verifier.

    Returns one dict per answer: task, version, correct.
    """
    import concurrent.futures

    from kerasllm.tasks import verify

    def ask(item):
        index, record = item
        body = {
            "model": name, "messages": [record["messages"][0]], "n": opts["samples"],
            "temperature": opts["temperature"], "max_tokens": opts["max_tokens"],
            "seed": seed + index * opts["samples"],
        }
        response = http.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        answer = response.json()
        version = _version_of(answer)
        rows = []
        for choice in answer["choices"]:
            correct = verify(record, choice["message"]["content"])
            feedback = {"id": answer["id"], "index": choice["index"], "rating": 1 if correct else -1}
            http.post("/v1/feedback", json=feedback).raise_for_status()
            rows.append({"task": record["task"], "version": version, "correct": correct})
        wrong = [c["index"] for c in answer["choices"] if c["message"]["content"].strip()]
        if opts["better_answers"] and wrong and not any(r["correct"] for r in rows):
            # The playground's "write a better answer", for an answer that said something.
            better = {"id": answer["id"], "index": wrong[0], "preferred": record["answer"]}
            http.post("/v1/feedback", json=better).raise_for_status()
        return rows

    with concurrent.futures.ThreadPoolExecutor(opts["users"]) as pool:
        return [row for rows in pool.map(ask, enumerate(records)) for row in rows]


def _report_users(rows, log):
    versions = sorted({r["version"] for r in rows})
    log(f"  {len(rows)} answers rated (version {', '.join(map(str, versions))}): "
        f"{sum(r['correct'] for r in rows)} up, {sum(not r['correct'] for r in rows)} down "
        f"({_share(rows, 'correct'):.0%} right)")
    for task in sorted({r["task"] for r in rows}):
        rows_task = [r for r in rows if r["task"] == task]
        log(f"    {task:<9} {_share(rows_task, 'correct'):.0%} of {len(rows_task)} right")


def _share(rows, key):
    return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else None


class _Load:
    """Clients sending greedy chat requests without pause; every failure is kept."""

    def __init__(self, url, name, records, clients):
        self.url, self.name = url, name
        self.records = itertools.cycle(records)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.by_version, self.failures = {}, []
        self.first_seen = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=300)

    def _run(self):
        import httpx

        with httpx.Client(base_url=self.url, timeout=300) as http:
            while not self.stop_event.is_set():
                with self.lock:
                    record = next(self.records)
                body = {"model": self.name, "messages": [record["messages"][0]], "temperature": 0,
                        "max_tokens": 4}
                try:
                    response = http.post("/v1/chat/completions", json=body)
                    ok = response.status_code == 200
                    version = _version_of(response.json()) if ok else None
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except Exception as error:  # noqa: BLE001 (a failed request, counted)
                    version, problem = None, f"{type(error).__name__}: {error}"
                with self.lock:
                    if problem is None:
                        self.by_version[version] = self.by_version.get(version, 0) + 1
                        self.first_seen.setdefault(version, time.monotonic())
                    else:
                        self.failures.append(problem)

    def served(self, version):
        with self.lock:
            return self.by_version.get(version, 0)


def _swap(server, http, model_dir, version, records, opts, log):
    """Export `model_dir` as `version` while `_Load` runs; wait until it serves."""
    with _Load(server.url, opts["name"], records, opts["load_clients"]) as load:
        while load.served(version - 1) < 3 and not load.failures:
            time.sleep(0.2)  # the clients are sending
        t0 = time.monotonic()
        path = _publish(model_dir, server.base_path, version, opts["version_format"])
        exported_at = time.monotonic()
        log(f"  {path} ({opts['version_format']}) written in {exported_at - t0:.0f} s, under load")
        deadline = exported_at + opts["swap_timeout"]
        while load.served(version) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        status = http.get(f"/v1/models/{opts['name']}").json()
    states = {s["version"]: s["state"] for s in status.get("model_version_status", [])}
    swap = {
        "requests": sum(load.by_version.values()) + len(load.failures),
        "failed": len(load.failures),
        "failures": load.failures[:10],
        "served_by_version": {str(k): v for k, v in sorted(load.by_version.items())},
        "export_seconds": round(exported_at - t0, 1),
        "seconds_to_new_version": (round(load.first_seen[version] - exported_at, 1)
                                   if version in load.first_seen else None),
        "version_states": states,
    }
    if load.served(version) == 0:
        raise RuntimeError(f"The server did not serve version {version} within "
                           f"{opts['swap_timeout']} s; see {server.log_path}. States: {states}")
    log(f"  {swap['requests']} requests during the swap: {swap['failed']} failed; served by version "
        + ", ".join(f"{v}: {n}" for v, n in swap["served_by_version"].items())
        + f"; version {version} answered {swap['seconds_to_new_version']} s after its export")
    log(f"  GET /v1/models/{opts['name']}: "
        + ", ".join(f"version {v} {s}" for v, s in sorted(states.items())))
    for failure in swap["failures"]:
        log(f"    failed: {failure}")
    return swap


# ---------------------------------------------------------------- reporting


def _cli_text(argv):
    """Run a `kerasllm` command in this process; its stdout."""
    from kerasllm.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    if code:
        raise RuntimeError(f"kerasllm {' '.join(argv)} exited with {code}")
    return buffer.getvalue()


def _cli_json(argv):
    return json.loads(_cli_text(argv).strip().splitlines()[-1])


def _check_pairs(path, records):
    """How many exported pairs chose a right answer and rejected a wrong one (verifier)."""
    from kerasllm.tasks import verify

    by_question = {r["messages"][0]["content"]: r for r in records}
    chosen_right = rejected_wrong = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            pair = json.loads(line)
            prompt = pair["prompt"]
            question = prompt[-1]["content"] if isinstance(prompt, list) else None
            record = by_question.get(question)
            if record is not None:
                chosen_right += verify(record, pair["chosen"])
                rejected_wrong += not verify(record, pair["rejected"])
    return {"chosen_right": chosen_right, "rejected_wrong": rejected_wrong}


class _Clock:
    """Prints each step's banner and keeps its seconds."""

    def __init__(self, seconds, log):
        self.seconds, self.log = seconds, log
        self.current, self.started = None, None

    def step(self, key, note=""):
        self.stop()
        number = [k for k, _, _ in STEPS].index(key) + 1
        _, ja, en = STEPS[number - 1]
        self.log(f"\n=== {number}. {ja} / {en} {note}".rstrip() + " ===")
        self.current, self.started = key, time.perf_counter()

    def stop(self):
        if self.current is not None:
            self.seconds[self.current] = round(time.perf_counter() - self.started, 1)
            self.log(f"  ({self.seconds[self.current]:.0f} s)")
        self.current = None


def _print_table(s, log):
    def fmt(value):
        return "-" if value is None else f"{value:.1%}"

    n, m = s["version_before"], s["version_after"]
    swap = s["swap"]
    rows = [
        ("評価 / users' rating, held-out (thumbs up)", fmt(s["rating_before"]), fmt(s["rating_after"])),
        ("stats: approval, all answers", fmt(s["approval_in_stats"].get(str(n))),
         fmt(s["approval_in_stats"].get(str(m)))),
        ("正答率(貪欲) / held-out accuracy, greedy", fmt(s["accuracy_before"]), fmt(s["accuracy_after"])),
        *[(f"  {task}", fmt(a["before"]), fmt(a["after"])) for task, a in s["accuracy_per_task"].items()],
        ("選好ペア / preference pairs exported", str(s["pairs_exported"]), ""),
        ("切替中のリクエスト / requests during the swap", str(swap["requests"]), ""),
        ("切替中の失敗 / failed during the swap", str(swap["failed"]), ""),
        ("合計時間 / total time", f"{s['total_seconds']:.0f} s", ""),
    ]
    width = max(_display_width(r[0]) for r in rows) + 2

    def line(label, before, after):
        return label + " " * (width - _display_width(label)) + f"{before:>12}{after:>12}"

    log("\n" + line("", f"version {n}", f"version {m}"))
    for row in rows:
        log(line(*row))
    tests = (f"McNemar p = {s['p_value_rating']:.2f} for the rating, "
             f"{s['p_value_accuracy']:.2f} for the accuracy")
    if s["significant"]:
        log(f"\nVersion {m} is rated higher and answers more held-out prompts right than version {n} "
            f"({tests}).")
    elif s["improved"]:
        log(f"\nVersion {m} is rated higher and answers more held-out prompts right than version {n}, "
            f"but the gain is within the noise of this many prompts ({tests}).")
    else:
        log(f"\nVersion {m} did NOT beat version {n} on both the users' rating and held-out accuracy "
            "in this run: DPO on this feedback alone was not enough (see docs/alignment.md).")


def _mcnemar(before, after):
    """Two-sided exact McNemar p-value of paired right/wrong outcomes."""
    import math

    gained = sum(1 for b, a in zip(before, after) if a and not b)
    lost = sum(1 for b, a in zip(before, after) if b and not a)
    changed = gained + lost
    if changed == 0:
        return 1.0
    tail = sum(math.comb(changed, k) for k in range(min(gained, lost) + 1)) / 2**changed
    return round(min(1.0, 2 * tail), 4)


def _display_width(text):
    """Columns a terminal gives `text` (CJK characters take two)."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="runs/demo/model",
                        help="Pretrained model directory (pretrained here if absent). Default runs/demo/model.")
    parser.add_argument("--output", default="runs/feedback_loop", help="Output directory. Default runs/feedback_loop.")
    for key, (default, text) in OPTIONS.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=f"{text} Default {default}.")
        else:
            kind = type(default) if default is not None else (int if key.endswith("steps") else str)
            parser.add_argument(flag, type=kind, default=default, help=f"{text} Default {default}.")
    args = vars(parser.parse_args(argv))
    base, output = args.pop("base"), args.pop("output")
    summary = run_feedback_loop(base, output, log=lambda line: print(line, flush=True), **args)
    return 0 if summary["failed_requests_during_swap"] == 0 else 1


if __name__ == "__main__":
    os.environ["KERAS_BACKEND"] = "tensorflow"  # the SavedModel export traces TF graphs
    sys.exit(main())
