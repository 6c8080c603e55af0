"""What the sampling methods (GRPO, PPO) share: prompts, rewards, rollouts, the loop.

A method supplies a stepper, a `RolloutStepper` whose `step(records,
prompt_ids, seed)` samples from the policy, scores and updates, returning
a dict of metrics. `train_online` runs it: the prompt order, logging every
`log_every` iterations to `log.csv`, `curves.png` and TensorBoard (the
iteration on the x-axis), checkpoints every `checkpoint_every` iterations
with the stepper's own state (PPO's adaptive KL coefficient), resume,
divergence, and the held-out reward before and after.
"""

import shutil

import keras
import numpy as np
from keras import ops

from kerasllm.alignment import rollout as rollouts
from kerasllm.alignment.losses import token_log_probs
from kerasllm.alignment.run import MetricsLog, diverged, load_policy, log, make_optimizer, save_model, tensorboard
from kerasllm.training.callbacks import list_checkpoints, write_checkpoint


class TokenLogProbs(keras.Model):
    """A policy's per-token log-probabilities of the labels, `(B, L)`.

    Inputs: `token_ids` and `labels` `(B, L)` (labels `-100` off the
    completion, where the result is 0).

    Args:
        policy: a `kerasllm.models.GPT`.
        temperature: the sampling temperature of the completions: the
            log-probabilities are those of `softmax(logits / temperature)`,
            the distribution the samples came from (as TRL does), so that
            ratios and KL estimates hold at any temperature. Defaults to `1.0`.
    """

    def __init__(self, policy, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.policy = policy
        self.temperature = float(temperature)
        self.built = True  # the policy's state is all there is: a checkpoint loads before the first call

    def call(self, inputs, training=False):
        labels = inputs["labels"]
        logits = self.policy(inputs["token_ids"], training=training)  # (B, L, V)
        return token_log_probs(at_temperature(logits, self.temperature), labels, labels >= 0)  # (B, L)


def at_temperature(logits, temperature):
    """`logits / temperature` (as float32), the sampler's distribution's logits."""
    logits = ops.cast(logits, "float32")
    return logits if temperature == 1.0 else logits / temperature


def predict_log_probs(model, arrays, batch_size):
    """`model.predict` of the token log-probabilities of `arrays` as float32 NumPy."""
    inputs = {"token_ids": arrays["token_ids"], "labels": arrays["labels"]}
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), "float32")


class RolloutStepper:
    """Base of `GRPOStepper` and `PPOStepper`: the compiled objective, the
    frozen reference and sampling from the policy.

    Args:
        policy: the `GPT` being trained.
        config: a `GRPOConfig` or `PPOConfig`.
        reward_fn: `(records, texts, stopped) -> rewards (N,)`.
        objective: the method's `keras.Model` around `policy`; compiled here.
        reference: a frozen `GPT` to score samples against, or `None`.
        end_token_id: the id that ends a completion; `None` always samples
            `max_new_tokens`.
        optimizer: defaults to the config's AdamW.
    """

    def __init__(self, policy, config, reward_fn, objective, reference=None, end_token_id=None, optimizer=None):
        self.policy, self.config, self.reward_fn = policy, config, reward_fn
        self.end_token_id = end_token_id
        self.objective = objective
        self.objective.compile(optimizer=optimizer or make_optimizer(config))
        self.reference = None
        if reference is not None:
            reference.trainable = False
            self.reference = TokenLogProbs(reference, config.temperature)
        self.pad_id = int(policy.tokenizer.pad_token_id) if policy.tokenizer is not None else 0

    def sample(self, prompt_ids, seed):
        """A `Rollout`: one completion per entry of `prompt_ids`, sampled by the policy."""
        config = self.config
        return rollouts.sample(
            self.policy, prompt_ids,
            max_new_tokens=config.max_new_tokens, temperature=config.temperature,
            top_k=config.top_k, seed=seed, end_token_id=self.end_token_id,
            pad_token_id=self.pad_id, max_prompt_length=self.prompt_length(prompt_ids),
        )  # fmt: skip

    def prompt_length(self, prompt_ids):
        """The padded prompt length of a rollout: the generator's bucket of the
        longest prompt, so that the train step (and the reference's forward)
        compile for a handful of shapes, not for every new longest prompt."""
        from kerasllm.generation import prompt_bucket

        context = self.policy.config.context_length
        return prompt_bucket(max(len(p) for p in prompt_ids), context - self.config.max_new_tokens)

    def state(self):
        """JSON-able state kept in checkpoints beside the weights."""
        return {}

    def load_state(self, state):
        """Takes back what `state` returned (on resume)."""

    def step(self, records, prompt_ids, seed):
        raise NotImplementedError


def prompt_records(config):
    """`(train, held_out)` prompt records from `data`.

    JSONL path(s) give training prompts only; `tasks:add,reverse` gives the
    suite's training prompts and, held out, its test split (the one
    fine-tuning and evaluate-tasks use), which training never sees.
    """
    from kerasllm.alignment.data import load_prompts, parse_prompt

    data = config.data
    if isinstance(data, str) and data.startswith("tasks:"):
        from kerasllm.tasks import DEFAULT_TEST, make_split

        split = make_split(data[len("tasks:"):], train=500, test=DEFAULT_TEST, seed=config.seed)
        return [parse_prompt(r) for r in split["train"]], [parse_prompt(r) for r in split["test"]]
    records = load_prompts(data, config.skip_bad_lines)
    if not records:
        raise ValueError(f"No prompts in {data}.")
    return records, []


def reward_source(config, end_token_id=None):
    """`(records, texts, stopped) -> rewards` from `reward_functions` and
    `reward_model` (which scores a stopped completion with its end token)."""
    functions = [rollouts.reward_function(name) for name in config.reward_functions]
    model = None
    if config.reward_model:
        from kerasllm.alignment.reward import load_reward_model

        model = load_reward_model(config.reward_model)
    return lambda records, texts, stopped: rollouts.score(
        functions, records, texts, model, stopped, end_token_id
    )


def online_accuracy(policy, records, reward_fn, config, end_token_id):
    """Mean reward of greedy completions of `records` (the eval prompts)."""
    if not records:
        return None
    from kerasllm.generation import complete

    tokenizer = policy.tokenizer
    prompts = [list(tokenizer.encode(r["prompt"])) for r in records]
    completions = complete(
        policy, prompts, max_new_tokens=config.max_new_tokens, strategy="greedy",
        end_token_id=end_token_id, truncate="left",
    )
    texts = [tokenizer.decode(c.token_ids) for c in completions]
    stopped = [c.stop_reason == "end_token" for c in completions]
    return float(np.mean(reward_fn(records, texts, stopped)))


def train_online(make_stepper, method, *, verbose):
    """The `train` of `run.execute` for a sampling method.

    Args:
        make_stepper: `(policy, config, reward_fn, reference, end_token_id)
            -> RolloutStepper`; `reference` is a frozen copy of the base when
            the method needs one (`kl_coefficient > 0`, or always for PPO).
        method: `"grpo"` or `"ppo"`.
        verbose: print a line per logged step.
    """

    def train(config, output, run):
        policy = load_policy(config)
        tokenizer = policy.tokenizer
        train_records, eval_records = prompt_records(config)
        eval_records = eval_records[: config.eval_prompts]
        end_token_id = rollouts.end_token_for(tokenizer, train_records[0].get("chat", False))
        reward_fn = reward_source(config, end_token_id)
        reference = None
        if config.kl_coefficient > 0 or method == "ppo":
            reference = load_policy(config, trainable=False)
        stepper = make_stepper(policy, config, reward_fn, reference, end_token_id)
        budget = policy.config.context_length - config.max_new_tokens
        prompt_ids = [list(tokenizer.encode(r["prompt"]))[-budget:] for r in train_records]

        before = online_accuracy(policy, eval_records, reward_fn, config, end_token_id)
        start_step = run.restore(stepper.objective)
        stepper.load_state(run.checkpoint_state or {})
        metrics_log = MetricsLog(output, f"kerasllm {method}", start_step=start_step)
        board = tensorboard(output, steps="given")
        if board is not None:
            board.set_model(stepper.objective)
        per_step = config.prompts_per_step
        rng = np.random.default_rng(config.seed)
        epochs = 1 + config.steps * per_step // len(train_records)
        order = np.concatenate([rng.permutation(len(train_records)) for _ in range(epochs)])
        sums, last = {}, {}
        log(f"{method.upper()} on {len(train_records)} prompts, steps {start_step}..{config.steps}.", method)
        for step in range(start_step, config.steps):
            chosen = order[step * per_step : (step + 1) * per_step]
            metrics = stepper.step(
                [train_records[i] for i in chosen], [prompt_ids[i] for i in chosen],
                seed=config.seed + 7919 * step,
            )  # fmt: skip
            if not np.isfinite(metrics["loss"]):
                diverged(run, step, f"The loss became {metrics['loss']} at step {step + 1}; "
                         "the last good checkpoint is kept. Try a lower learning_rate.")  # fmt: skip
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                count = config.log_every if done % config.log_every == 0 else done % config.log_every
                last = {key: value / count for key, value in sums.items()}
                sums = {}
                metrics_log.write(done, last)
                if board is not None:
                    board.on_epoch_end(done, dict(last))
                if verbose:
                    log(
                        f"step {done}: reward {last['reward']:.3f}, loss {last['loss']:.4f}, "
                        f"kl {last.get('kl', 0.0):.4f}, length {last['response_length']:.1f}",
                        method,
                    )
            if done % config.checkpoint_every == 0 or done == config.steps:
                write_checkpoint(stepper.objective, output / "checkpoints", done, stepper.state())
                for _, old in list_checkpoints(output / "checkpoints")[: -config.keep_checkpoints]:
                    shutil.rmtree(old, ignore_errors=True)
        metrics_log.plot()
        if board is not None:
            board.on_train_end()
        after = online_accuracy(policy, eval_records, reward_fn, config, end_token_id)
        result = {
            "step": config.steps,
            "eval_reward_before": before,
            "eval_reward_after": after,
            "last": {k: round(v, 5) for k, v in last.items()},
        }
        result["model_dir"] = str(save_model(policy, output, method, config, result))
        log(f"Done. Held-out reward {before} -> {after}. Model: {result['model_dir']}", method)
        return result

    return train
