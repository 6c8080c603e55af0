"""`grpo`: group relative policy optimization against Python reward functions.

    kerasllm grpo --config recipes/configs/alignment/grpo.yaml --output runs/grpo

Each step samples `group_size` completions for each of `prompts_per_step`
prompts with the compiled generator, scores them (the task verifiers, any
`module:function`, or a reward model), turns the rewards into advantages
relative to each prompt's group, and takes `updates_per_step` optimizer
steps of the clipped surrogate (plus `kl_coefficient` times the k3 KL to
the frozen base, if asked). No value model.

With one update per step the ratio is 1 and the loss is the negative mean
advantage, which is zero by construction: a GRPO loss near zero is normal.
Watch the reward instead.
"""

import pathlib
import shutil
import time

import keras
import numpy as np
from keras import ops

from kerasllm.alignment import rollout as rollouts
from kerasllm.alignment.config import GRPOConfig
from kerasllm.alignment.losses import (
    clipped_policy_loss,
    group_advantages,
    kl_estimate,
    masked_mean,
    token_log_probs,
)
from kerasllm.alignment.run import (
    MetricsLog,
    diverged,
    load_policy,
    log,
    make_optimizer,
    prepare_output,
    save_policy,
)
from kerasllm.training.callbacks import list_checkpoints, write_checkpoint

TRAIN_METRICS = ("loss", "clip_fraction", "approx_kl", "ratio", "kl")


class PolicyGradientObjective(keras.Model):
    """The policy with a clipped policy-gradient loss as its `compute_loss`.

    Inputs: `token_ids`, `labels` `(B, L)` (labels `-100` off the
    completion), `advantages` `(B,)` or `(B, L)`, and optionally
    `old_log_probs` (else the current ones, detached: one update per
    sample) and `reference_log_probs` `(B, L)` for the KL term. `call`
    returns the per-token log-probabilities `(B, L)`.

    Args:
        policy: a `kerasllm.models.GPT`.
        clip_range: PPO's epsilon. Defaults to `0.2`.
        kl_coefficient: weight of the KL to the reference. Defaults to `0.0`.
        kl_estimator: `"k1"`, `"k2"` or `"k3"`. Defaults to `"k3"`.
    """

    def __init__(self, policy, clip_range=0.2, kl_coefficient=0.0, kl_estimator="k3", **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.clip_range = clip_range
        self.kl_coefficient = kl_coefficient
        self.kl_estimator = kl_estimator
        self.trackers = [keras.metrics.Mean(name=name) for name in TRAIN_METRICS]

    @property
    def metrics(self):
        return list(self.trackers)

    def call(self, inputs, training=False):
        labels = inputs["labels"]
        logits = self.policy(inputs["token_ids"], training=training)  # (B, L, V)
        return token_log_probs(logits, labels, labels >= 0)  # (B, L)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        mask = ops.cast(x["labels"] >= 0, "float32")
        old = x["old_log_probs"] if "old_log_probs" in x else ops.stop_gradient(y_pred)
        loss, stats = clipped_policy_loss(y_pred, old, x["advantages"], mask, self.clip_range)
        kl = ops.zeros(())
        if "reference_log_probs" in x:
            kl = masked_mean(kl_estimate(y_pred, x["reference_log_probs"], self.kl_estimator), mask)
            loss = loss + self.kl_coefficient * kl
        values = (loss, stats["clip_fraction"], stats["approx_kl"], stats["ratio"], kl)
        for tracker, value in zip(self.trackers, values):
            tracker.update_state(value)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        return self.get_metrics_result()


def _predict_log_probs(objective, arrays, batch_size):
    inputs = {"token_ids": arrays["token_ids"], "labels": arrays["labels"]}
    return np.asarray(objective.predict(inputs, batch_size=batch_size, verbose=0), "float32")


class GRPOStepper:
    """One GRPO step at a time: sample, score, advantages, update.

    Usable alone (the benchmark times `step`), and what `grpo` runs.

    Args:
        policy: the `GPT` being trained (compiled into an objective here).
        config: a `GRPOConfig`.
        reward_fn: `(records, texts) -> rewards (N,)`.
        reference: a frozen `GPT` for the KL term (needed when
            `kl_coefficient > 0`). Defaults to `None`.
        end_token_id: the id that ends a completion; `None` always samples
            `max_new_tokens`.
    """

    def __init__(self, policy, config, reward_fn, reference=None, end_token_id=None, optimizer=None):
        self.policy, self.config, self.reward_fn = policy, config, reward_fn
        self.end_token_id = end_token_id
        self.objective = PolicyGradientObjective(
            policy, config.clip_range, config.kl_coefficient, config.kl_estimator
        )
        self.objective.compile(optimizer=optimizer or make_optimizer(config))
        self.reference = None
        if reference is not None and config.kl_coefficient > 0:
            reference.trainable = False
            self.reference = PolicyGradientObjective(reference)
        self.pad_id = int(policy.tokenizer.pad_token_id) if policy.tokenizer is not None else 0

    def step(self, records, prompt_ids, seed):
        """One step over `records` (with their prompt ids); returns a dict of metrics."""
        config, group = self.config, self.config.group_size
        started = time.perf_counter()
        repeated = [ids for ids in prompt_ids for _ in range(group)]
        sampled = rollouts.sample(
            self.policy, repeated,
            max_new_tokens=config.max_new_tokens, temperature=config.temperature,
            top_k=config.top_k, seed=seed, end_token_id=self.end_token_id,
            pad_token_id=self.pad_id, max_prompt_length=max(len(p) for p in prompt_ids),
        )  # fmt: skip
        sample_seconds = time.perf_counter() - started
        group_records = [r for r in records for _ in range(group)]
        rewards = np.asarray(self.reward_fn(group_records, sampled.texts), "float32")
        advantages = ops.convert_to_numpy(
            group_advantages(rewards, group, scale=config.scale_rewards)
        )
        arrays = {"token_ids": sampled.token_ids, "labels": sampled.labels, "advantages": advantages}
        if self.reference is not None:
            arrays["reference_log_probs"] = _predict_log_probs(self.reference, arrays, len(repeated))
        if config.updates_per_step > 1:
            arrays["old_log_probs"] = _predict_log_probs(self.objective, arrays, len(repeated))
        totals = {}
        for _ in range(config.updates_per_step):
            metrics = self.objective.train_on_batch(arrays, return_dict=True)
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + float(value) / config.updates_per_step
        grouped = rewards.reshape(-1, group)
        return {
            **totals,
            "reward": float(rewards.mean()),
            "reward_std_in_group": float(grouped.std(axis=1).mean()),
            "response_length": float(sampled.lengths.mean()),
            "stopped": float(sampled.stopped.mean()),
            "sample_seconds": sample_seconds,
            "step_seconds": time.perf_counter() - started,
        }


# ---------------------------------------------------------------- the run


def prompt_records(config, tokenizer):
    """Prompt records from `data`: JSONL path(s), or `tasks:add,reverse` (the suite's train split)."""
    from kerasllm.alignment.data import load_prompts

    data = config.data
    if isinstance(data, str) and data.startswith("tasks:"):
        from kerasllm.tasks import DEFAULT_TEST, make_split

        # The suite's own test split (as fine-tuning and evaluate-tasks use
        # it) stays held out: training prompts never include it.
        split = make_split(data[len("tasks:"):], train=500, test=DEFAULT_TEST, seed=config.seed)
        from kerasllm.alignment.data import parse_prompt

        return [parse_prompt(r) for r in split["train"]], [parse_prompt(r) for r in split["test"]]
    records = load_prompts(data, config.skip_bad_lines)
    if not records:
        raise ValueError(f"No prompts in {data}.")
    return records, []


def reward_source(config):
    """`(records, texts) -> rewards` from `reward_functions` and `reward_model`."""
    functions = [rollouts.reward_function(name) for name in config.reward_functions]
    model = None
    if config.reward_model:
        from kerasllm.alignment.reward import load_reward_model

        model = load_reward_model(config.reward_model)
    return lambda records, texts: rollouts.score(functions, records, texts, model)


def online_accuracy(policy, records, reward_fn, config, end_token_id):
    """Mean reward of greedy completions of `records` (the eval prompts)."""
    if not records:
        return None
    tokenizer = policy.tokenizer
    prompts = [list(tokenizer.encode(r["prompt"])) for r in records]
    completions = policy.generate_ids(
        prompts, max_new_tokens=config.max_new_tokens, end_token_id=end_token_id, truncate="left"
    )
    texts = [tokenizer.decode(ids) for ids in completions]
    return float(np.mean(reward_fn(records, texts)))


def grpo(config, output, *, overrides=None, resume=False, overwrite=False, verbose=1):
    """Trains a model directory with GRPO; writes `OUTPUT/model`.

    Args:
        config: a `GRPOConfig`, a dict, a YAML path, or `None` with `resume`.
        output: the run directory.
        overrides, resume, overwrite: as in `dpo`.
        verbose: print a line per logged step. Defaults to `1`.

    Returns:
        A dict: `output`, `model_dir`, `step`, `seconds`, `eval_reward_before`
        / `eval_reward_after` (mean reward of greedy answers to held-out
        prompts, when there are some) and `last` (the last logged metrics).
    """
    return _online(GRPOConfig, "grpo", config, output, overrides, resume, overwrite, verbose)


def _online(config_cls, method, config, output, overrides, resume, overwrite, verbose):
    started = time.perf_counter()
    output = pathlib.Path(output)
    config, run = prepare_output(
        output, config_cls, config, overrides, resume=resume, overwrite=overwrite, method=method
    )
    with run.session(config.to_dict()):
        return _train_online(config, output, run, method, verbose, started)


def _train_online(config, output, run, method, verbose, started):
    keras.utils.set_random_seed(config.seed)
    policy = load_policy(config)
    tokenizer = policy.tokenizer
    train_records, eval_records = prompt_records(config, tokenizer)
    eval_records = eval_records[: config.eval_prompts]
    end_token_id = rollouts.end_token_for(tokenizer, train_records[0].get("chat", False))
    reward_fn = reward_source(config)
    reference = None
    if config.kl_coefficient > 0 or method == "ppo":
        reference = load_policy(config, trainable=False)
    if method == "grpo":
        stepper = GRPOStepper(policy, config, reward_fn, reference, end_token_id)
    else:
        from kerasllm.alignment.ppo import PPOStepper

        stepper = PPOStepper(policy, config, reward_fn, reference, end_token_id)
    budget = policy.config.context_length - config.max_new_tokens
    prompt_ids = [list(tokenizer.encode(r["prompt"]))[-budget:] for r in train_records]

    before = online_accuracy(policy, eval_records, reward_fn, config, end_token_id)
    start_step = run.restore(stepper.objective)
    metrics_log = MetricsLog(output, f"kerasllm {method}", start_step=start_step)
    rng = np.random.default_rng(config.seed)
    orders = [rng.permutation(len(train_records)) for _ in range(1 + config.steps * config.prompts_per_step // len(train_records))]
    order = np.concatenate(orders)
    sums, last = {}, {}
    log(f"{method.upper()} on {len(train_records)} prompts, steps {start_step}..{config.steps}.", method)
    for step in range(start_step, config.steps):
        chosen = order[step * config.prompts_per_step : (step + 1) * config.prompts_per_step]
        metrics = stepper.step(
            [train_records[i] for i in chosen], [prompt_ids[i] for i in chosen], seed=config.seed + 7919 * step
        )
        if not np.isfinite(metrics["loss"]):
            diverged(run, step, f"The loss became {metrics['loss']} at step {step + 1}; "
                     "the last good checkpoint is kept. Try a lower learning_rate.")
        for key, value in metrics.items():
            sums[key] = sums.get(key, 0.0) + value
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            count = config.log_every if done % config.log_every == 0 else done % config.log_every
            last = {key: value / count for key, value in sums.items()}
            sums = {}
            metrics_log.write(done, last)
            if verbose:
                log(
                    f"step {done}: reward {last['reward']:.3f}, loss {last['loss']:.4f}, "
                    f"kl {last.get('kl', 0.0):.4f}, length {last['response_length']:.1f}",
                    method,
                )
        if done % config.checkpoint_every == 0 or done == config.steps:
            write_checkpoint(stepper.objective, output / "checkpoints", done)
            for _, old in list_checkpoints(output / "checkpoints")[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
    metrics_log.plot()
    after = online_accuracy(policy, eval_records, reward_fn, config, end_token_id)
    result = {
        "output": str(output),
        "step": config.steps,
        "eval_reward_before": before,
        "eval_reward_after": after,
        "last": {k: round(v, 5) for k, v in last.items()},
    }
    result["model_dir"] = str(save_policy(policy, output, method, config, result))
    result["seconds"] = round(time.perf_counter() - started, 1)
    run.complete(result)
    log(f"Done. Held-out reward {before} -> {after}. Model: {result['model_dir']}", method)
    return result
