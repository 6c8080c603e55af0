"""Step times of DPO, GRPO and PPO at TRL's benchmark shapes (GPU, JAX).

TRL 1.16 on one H200 (GPT-2 124M shape, vocab 8192, bf16, random init):
GRPOTrainer with 8 prompts x 8 generations x 32 new tokens took 0.33 s per
optimizer step; DPOTrainer with its reference model and 8 pairs of at most
128 tokens, 0.079 s. This times the same work here:

- DPO: one optimizer step on 8 pairs of 128 tokens (64 prompt + 64
  completion), with the cached reference log-probs (how `kerasllm dpo`
  runs), and with a reference forward pass in every step (as TRL without
  precomputation).
- GRPO: one step = sample 64 completions of 32 tokens (compiled generator,
  no early stop), score them, group advantages, one optimizer step.
- PPO: one iteration = rollout of 8 (baby: 64) prompts x 32 tokens, policy /
  value / reference forward, GAE, 4 epochs x 1 minibatch of updates.

Usage (on the GPU machine, from the repository root):
    . benchmarks/gpu_env.sh && python3 benchmarks/alignment_gpu.py --output benchmarks/results/alignment_gpu.json
"""

import argparse
import json
import time

import keras
import numpy as np

from kerasllm.alignment.config import DPOConfig, GRPOConfig, PPOConfig
from kerasllm.alignment.dpo import DPOObjective
from kerasllm.alignment.grpo import GRPOStepper
from kerasllm.alignment.ppo import PPOStepper
from kerasllm.models import GPT

TRL = {"grpo_step_s": 0.33, "dpo_step_s": 0.079}


def model(preset, vocab, seed):
    keras.utils.set_random_seed(seed)
    return GPT.from_preset(preset, vocab_size=vocab, dtype="mixed_bfloat16")


def timed(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def bench_dpo(preset, vocab, repeats):
    policy = model(preset, vocab, 0)
    reference = model(preset, vocab, 0)
    rng = np.random.default_rng(0)
    n, length, prompt = 8, 128, 64

    def pairs():
        ids = rng.integers(0, vocab, (n, length)).astype("int32")
        labels = np.roll(ids, -1, axis=1)
        labels[:, : prompt - 1] = -100
        labels[:, -1] = -100
        return ids, labels

    (ci, cl), (ri, rl) = pairs(), pairs()
    x = {"chosen_ids": ci, "chosen_labels": cl, "rejected_ids": ri, "rejected_labels": rl,
         "reference_chosen": np.full(n, -300.0, "float32"), "reference_rejected": np.full(n, -300.0, "float32")}
    config = DPOConfig(base="-", data="-", learning_rate=1e-5, warmup_steps=0)
    from kerasllm.alignment.run import make_optimizer

    objective = DPOObjective(policy)
    objective.compile(optimizer=make_optimizer(config))
    ref_objective = DPOObjective(reference)
    inputs = {k: x[k] for k in ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")}

    def step():
        out = objective.train_on_batch(x, return_dict=True)
        float(out["loss"])

    def step_with_reference():
        ref = np.asarray(ref_objective.predict_on_batch(inputs))
        x2 = {**x, "reference_chosen": ref[:, 0], "reference_rejected": ref[:, 1]}
        float(objective.train_on_batch(x2, return_dict=True)["loss"])

    cached, times = timed(step, 3, repeats)
    with_ref, ref_times = timed(step_with_reference, 3, repeats)
    return {"dpo_step_s": cached, "dpo_step_with_reference_forward_s": with_ref,
            "times": [round(t, 4) for t in times], "times_with_reference": [round(t, 4) for t in ref_times],
            "shape": f"{preset}, 8 pairs x 128 tokens"}


def bench_grpo(preset, vocab, repeats, prompt_len=32):
    policy = model(preset, vocab, 0)
    config = GRPOConfig(base="-", data="-", reward_functions=["x:y"], group_size=8,
                        prompts_per_step=8, max_new_tokens=32, learning_rate=1e-6, warmup_steps=0)
    rng = np.random.default_rng(0)
    reward_fn = lambda records, texts, stopped: rng.random(len(records)).astype("float32")  # noqa: E731
    stepper = GRPOStepper(policy, config, reward_fn, end_token_id=None)
    prompts = [list(rng.integers(0, vocab, prompt_len)) for _ in range(8)]
    records = [{"prompt": ""}] * 8
    last = {}

    def step():
        last.update(stepper.step(records, prompts, seed=int(rng.integers(1 << 30))))

    median, times = timed(step, 2, repeats)
    return {"grpo_step_s": median, "grpo_sample_s": last["sample_seconds"], "times": [round(t, 4) for t in times],
            "shape": f"{preset}, 8 prompts x 8 generations x 32 new tokens, prompt {prompt_len}"}


def bench_ppo(preset, vocab, prompts_per_step, repeats, prompt_len=32):
    policy = model(preset, vocab, 0)
    reference = model(preset, vocab, 0)
    config = PPOConfig(base="-", data="-", reward_functions=["x:y"], prompts_per_step=prompts_per_step,
                       max_new_tokens=32, learning_rate=1e-6, warmup_steps=0)
    rng = np.random.default_rng(0)
    reward_fn = lambda records, texts, stopped: rng.normal(size=len(records)).astype("float32")  # noqa: E731
    stepper = PPOStepper(policy, config, reward_fn, reference, end_token_id=None)
    prompts = [list(rng.integers(0, vocab, prompt_len)) for _ in range(prompts_per_step)]
    records = [{"prompt": ""}] * prompts_per_step
    last = {}

    def step():
        last.update(stepper.step(records, prompts, seed=int(rng.integers(1 << 30))))

    median, times = timed(step, 2, repeats)
    return {"ppo_iteration_s": median, "ppo_sample_s": last["sample_seconds"], "times": [round(t, 4) for t in times],
            "shape": f"{preset}, {prompts_per_step} prompts x 32 new tokens, 4 PPO epochs"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output")
    args = parser.parse_args()
    import jax

    results = {"device": str(jax.devices()[0].device_kind), "backend": keras.config.backend(),
               "trl": TRL, "rows": {}}
    rows = results["rows"]
    rows["dpo_gpt2-124m"] = bench_dpo("gpt2-124m", args.vocab, args.repeats)
    print(json.dumps(rows["dpo_gpt2-124m"]), flush=True)
    rows["grpo_gpt2-124m"] = bench_grpo("gpt2-124m", args.vocab, args.repeats)
    print(json.dumps(rows["grpo_gpt2-124m"]), flush=True)
    rows["ppo_baby"] = bench_ppo("baby", args.vocab, 64, args.repeats)
    print(json.dumps(rows["ppo_baby"]), flush=True)
    rows["ppo_gpt2-124m"] = bench_ppo("gpt2-124m", args.vocab, 8, args.repeats)
    print(json.dumps(rows["ppo_gpt2-124m"]), flush=True)
    results["speedup_vs_trl"] = {
        "dpo": TRL["dpo_step_s"] / rows["dpo_gpt2-124m"]["dpo_step_s"],
        "dpo_with_reference_forward": TRL["dpo_step_s"] / rows["dpo_gpt2-124m"]["dpo_step_with_reference_forward_s"],
        "grpo": TRL["grpo_step_s"] / rows["grpo_gpt2-124m"]["grpo_step_s"],
    }
    print(json.dumps(results["speedup_vs_trl"]), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
