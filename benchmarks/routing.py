"""Routing between a weak and a strong model, measured as RouteLLM does.

Both models answer the task suite's test prompts greedily; each answer is
checked by the task's verifier. Each router gives every prompt a score
(higher: send it to the strong model first), and sweeping the share of
prompts sent up traces accuracy against cost. Printed per router: APGR (area
under the performance-gap-recovered curve; random routing is 0.5) and
CPT(50%) / CPT(80%) (the share of strong calls needed to recover half / 80%
of the weak→strong accuracy gap). Writes JSON and a PNG of the curves.

Routers:
    random       the baseline: expected accuracy of a random share
    cascade      the weak model's mean token log-probability of its own
                 answer (least sure goes up first): what `CascadePolicy` uses
    perplexity   how much likelier the strong model finds the prompt than the
                 weak one: what `PerplexityPolicy` compares
    oracle       the best any router could do (knows which answers are right)

Usage:
    python benchmarks/routing.py --weak runs/sft-tiny/model --strong runs/sft-baby/model
    python benchmarks/routing.py --weak W --strong S --tasks add,reverse --test 50
"""

import argparse
import json
import pathlib
import sys
import time

import numpy as np

# Run as a script, this folder is first on the path, and its tokenizers.py
# would shadow Hugging Face's `tokenizers`: import from the repository root.
HERE = pathlib.Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if pathlib.Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def answers_and_confidence(model, records):
    """Correct (0/1), own-answer mean log-prob and prompt mean log-prob per record."""
    from kerasllm.constellation.scoring import mean_log_prob, token_log_probs
    from kerasllm.tasks import evaluate_tasks, model_format, prompt_text

    format = model_format(model)
    report = evaluate_tasks(model, records=[_in_format(r, format) for r in records], format=format, return_answers=True)
    tokenizer = model.tokenizer
    prompts = [prompt_text(_in_format(r, format), format) for r in records]
    completions = [a["completion"] for a in report["answers"]]
    prompt_ids = [tokenizer.encode(p) for p in prompts]
    own = token_log_probs(model, prompt_ids, [tokenizer.encode(c) for c in completions])
    start = [[tokenizer.end_token_id]] * len(prompts)
    prompt_ll = token_log_probs(model, start, prompt_ids)
    correct = np.array([a["correct"] for a in report["answers"]], dtype="float64")
    return correct, np.array([mean_log_prob(s) for s in own]), np.array([mean_log_prob(s) for s in prompt_ll]), report


def _in_format(record, format):
    from kerasllm.tasks.splits import make_record

    return make_record(record["task"], record["prompt"], record["answer"], format=format)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weak", required=True, help="The weak (cheap) model directory.")
    parser.add_argument("--strong", required=True, help="The strong model directory.")
    parser.add_argument("--tasks", help="Comma-separated task names (default: all).")
    parser.add_argument("--test", type=int, default=100, help="Test prompts per task. Default 100.")
    parser.add_argument("--seed", type=int, default=0, help="The split's seed (the one the models were trained with).")
    parser.add_argument("--output", default=str(RESULTS / "routing.json"), help="JSON to write.")
    parser.add_argument("--plot", default=str(RESULTS / "routing.png"), help="PNG of the curves.")
    args = parser.parse_args(argv)

    import kerasllm
    from kerasllm.constellation.metrics import random_curve, routing_report
    from kerasllm.tasks import task_names
    from kerasllm.tasks.splits import make_split

    records = make_split(task_names(args.tasks), train=0, test=args.test, seed=args.seed, format="prompt-completion")["test"]
    started = time.perf_counter()
    weak_model, strong_model = kerasllm.load(args.weak), kerasllm.load(args.strong)
    weak, weak_own, weak_prompt, weak_report = answers_and_confidence(weak_model, records)
    strong, _, strong_prompt, strong_report = answers_and_confidence(strong_model, records)
    weak_accuracy, strong_accuracy = float(weak.mean()), float(strong.mean())
    print(f"{len(records)} prompts; weak accuracy {weak_accuracy:.3f}, strong {strong_accuracy:.3f}")
    if strong_accuracy <= weak_accuracy:
        raise SystemExit("The strong model must beat the weak one on these prompts for routing to matter.")

    scores = {
        "cascade": -weak_own,
        "perplexity": strong_prompt - weak_prompt,
        "oracle": strong - weak,
    }
    routers = {name: routing_report(s, weak, strong) for name, s in scores.items()}
    shares = np.linspace(0, 1, len(records) + 1)
    line = random_curve(weak, strong, shares)
    from kerasllm.constellation.metrics import apgr, call_performance_threshold

    routers["random"] = {
        "apgr": apgr(shares, line, weak_accuracy, strong_accuracy),
        "cpt": {f"{t}%": call_performance_threshold(shares, line, weak_accuracy, strong_accuracy, t / 100) for t in (50, 80)},
        "shares": shares.tolist(),
        "accuracies": line.tolist(),
    }

    print(f"\n{'router':<12} {'APGR':>6} {'CPT(50%)':>9} {'CPT(80%)':>9}")
    for name in ("random", "cascade", "perplexity", "oracle"):
        r = routers[name]
        cpt = [("-" if v is None else f"{v:.2f}") for v in r["cpt"].values()]
        print(f"{name:<12} {r['apgr']:6.3f} {cpt[0]:>9} {cpt[1]:>9}")

    result = {
        "weak": args.weak,
        "strong": args.strong,
        "num_prompts": len(records),
        "weak_accuracy": weak_accuracy,
        "strong_accuracy": strong_accuracy,
        "weak_tasks": weak_report["tasks"],
        "strong_tasks": strong_report["tasks"],
        "routers": routers,
        "seconds": round(time.perf_counter() - started, 1),
    }
    output = pathlib.Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(output)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for name in ("random", "cascade", "perplexity", "oracle"):
        r = routers[name]
        axis.plot(r["shares"], r["accuracies"], label=f"{name} (APGR {r['apgr']:.2f})", linestyle="--" if name in ("random", "oracle") else "-")
    axis.set_xlabel("share of prompts sent to the strong model")
    axis.set_ylabel("task accuracy")
    axis.set_title("Routing: accuracy against strong-model calls")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    print(f"\nwrote {output} and {args.plot}")


if __name__ == "__main__":
    main()
