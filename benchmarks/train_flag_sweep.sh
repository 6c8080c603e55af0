#!/usr/bin/env bash
# gpt2-124m training throughput under several XLA_FLAGS sets, one process each.
#
# Usage (on the GPU machine, from the repository root):
#     bash benchmarks/train_flag_sweep.sh RESULTS_DIR [NAME=FLAGS ...]
#
# Each NAME=FLAGS[@ARGS] pair runs `benchmarks/train.py --preset gpt2-124m --models
# kerasllm` with XLA_FLAGS=FLAGS (and
# ARGS added to its command line) and writes RESULTS_DIR/sweep_NAME.json; the
# first pair also gets a full device-op profile and an HLO dump of the train
# step (RESULTS_DIR/hlo_NAME.tar.gz, after-optimization text only). With no
# pairs, runs the default flags alone. A table of tokens/s is printed last.
# SWEEP_ARGS adds arguments to every train.py run (e.g. "--preset tiny
# --batch-size 2 --steps 2 --repeats 1" for a smoke test on a CPU).
# Keras, namex and optree wheels in .whl/ are installed first
# (benchmarks/gpu_env.sh).
set -u -o pipefail
results=${1:?usage: train_flag_sweep.sh RESULTS_DIR [NAME=FLAGS ...]}
shift
mkdir -p "$results"
results=$(cd "$results" && pwd)
. benchmarks/gpu_env.sh
[ $# -gt 0 ] || set -- default=
first=1
for pair in "$@"; do
    name=${pair%%=*}
    spec=${pair#*=}
    flags=${spec%%@*}
    runargs=
    [ "$spec" = "$flags" ] || runargs=${spec#*@}
    extra=()
    if [ $first = 1 ]; then
        dump=/tmp/hlo_$name
        flags="$flags --xla_dump_to=$dump --xla_dump_hlo_as_text"
        extra=(--profile --profile-top 0)
    fi
    echo "=== $name: XLA_FLAGS=$flags"
    XLA_FLAGS=$flags python3 benchmarks/train.py --preset gpt2-124m --models kerasllm \
        "${extra[@]}" ${SWEEP_ARGS:-} $runargs --output "$results/sweep_$name.json" 2>&1 \
        | grep -v "^ *[0-9.]* ms\|^    " | tail -n 25
    if [ $first = 1 ] && [ -d "$dump" ]; then
        (cd "$dump" && tar czf "$results/hlo_$name.tar.gz" *train_step*_after_optimizations.txt)
    fi
    first=0
done
python3 - "$results" "$@" <<'PY'
import json, sys
results, pairs = sys.argv[1], sys.argv[2:] or ["default="]
print(f"{'variant':<24} {'tokens/s':>10} {'step ms':>8}  flags")
for pair in pairs:
    name, flags = pair.split("=", 1)
    try:
        row = json.load(open(f"{results}/sweep_{name}.json"))["rows"][0]
    except (OSError, KeyError, IndexError, ValueError) as error:
        print(f"{name:<24} {'failed':>10} {'':>8}  {flags} ({error})")
        continue
    print(f"{name:<24} {row['tokens_per_second']:>10,.0f} {row['step_ms']:>8.2f}  {flags}")
PY
